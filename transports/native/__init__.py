"""Compiled timed loops: the iterations run in C, not in Python.

At a few microseconds a Python loop's own cost is most of the figure (a
C loop around an 8 B MPI allreduce is several times faster than the same
call from Python through mpi4py: docs/results/2026-12.md, "The latency
floor").  Transports with a compiled path attach it to the
calls they bind (``Bound.native``); the harness then runs warm-up, timed
loop and validation through it (:class:`~transports.native.timer.NativeTimer`).

* :mod:`ground.native_build` (below every package: the analysis builds C
  too): compile on first use, cached by source, compiler and MPI library;
  one compiler at a time under a file lock.
* :mod:`.timer`: :class:`NativeLoop` (one compiled call) and the timer.
* :mod:`.mpi` + ``mpi_loop.c``: the loop over the MPI library mpi4py loaded.
* :mod:`.shm` + ``shm_loop.c``: the shm transport's steps (flags, copies,
  reductions) interpreted in C, with acquire/release atomics.

The flags here (``--loop``, ``--thread-level``, ``--cuda-graph``) are the
collective CLI's; :func:`ground.comm.requested_thread_level` reads the
thread level from argv before MPI starts.
"""

from __future__ import annotations

from typing import Optional

from ground.dtypes import ConfigError

__all__ = ["add_loop_flags", "agree", "thread_hint", "LOOP_CHOICES", "THREAD_LEVELS"]

LOOP_CHOICES = ("auto", "compiled", "python")
THREAD_LEVELS = ("auto", "single", "funneled", "serialized", "multiple")


def add_loop_flags(g) -> None:
    """``--loop``, ``--thread-level`` and ``--cuda-graph`` on an argparse group."""
    g.add_argument("--loop", choices=LOOP_CHOICES, default="auto",
                   help="timed loop: compiled (iterations in C, built on first use with the MPI's mpicc; "
                   "mpi with host buffers and shm), python, or auto: compiled where the transport has "
                   "it, else python (default auto; the header and each record's loop field say which ran)")
    g.add_argument("--thread-level", choices=THREAD_LEVELS, default="auto",
                   help="MPI thread level requested at MPI_Init. auto: funneled when every rank has a core "
                   "(with MPICH at any size: its intra-node allreduce and bcast then use its shared-memory "
                   "algorithm up to 256 KiB and its generic ones above, as MULTIPLE would; with another MPI, "
                   "only for sweeps ending at 256 KiB or below), multiple when ranks outnumber cores or "
                   "larger sizes run on another MPI. A level given here is requested as it is, with the "
                   "library's own selection (see docs/timing.md)")
    g.add_argument("--cuda-graph", action="store_true",
                   help="nccl on CUDA: capture the timed iterations as CUDA graphs and replay them "
                   "(nccl-tests' -G); untested on hardware")


def thread_hint(argv, sized: bool = True):
    """``(--thread-level, the largest size)`` read from a collective's argv before MPI starts
    (see :func:`ground.comm.choose_thread_level`); None where absent or unreadable (argparse
    reports a bad value later).  ``sized=False`` (barrier): no message at all, size 0."""
    from ground.sizes import parse_size

    argv = list(argv or ())

    def value(*names):
        for i, arg in enumerate(argv):
            for name in names:
                if arg == name and i + 1 < len(argv):
                    return argv[i + 1]
                if arg.startswith(name + "=") or (len(name) == 2 and arg.startswith(name) and len(arg) > 2):
                    return arg[len(name):].lstrip("=")
        return None
    level = (value("--thread-level") or "").strip().lower()
    level = level if level in THREAD_LEVELS else None
    if not sized:
        return level, 0
    try:
        largest = parse_size(value("-e", "--maxbytes"))
    except Exception:  # absent (None) or not a size: the run's default sweep, or argparse's error
        largest = None
    return level, largest


def agree(comm_allgather, mode: Optional[str], start, what: str):
    """Run ``start()`` (returns (loops, note) or raises) on every rank and agree.

    Returns ``(loops or None, "compiled"|"python", note)``, the same on every
    rank.  Shared by the mpi and shm transports.
    """
    mode = (mode or "auto").lower()
    if mode not in LOOP_CHOICES:
        raise ConfigError(f"--loop {mode}: choose {', '.join(LOOP_CHOICES)}")
    if mode == "python":
        return None, "python", "timed loop: Python (--loop python)"
    loops, error, note = None, None, ""
    try:
        loops, note = start()
    except Exception as exc:  # BuildError (one line) or anything the loader met
        error = f"{str(exc) or type(exc).__name__}"
    errors = [e for e in comm_allgather(error) if e is not None]
    if errors:
        reason = errors[0]
        if mode == "compiled":
            raise ConfigError(f"--loop compiled: {what} has no compiled loop here ({reason})")
        return None, "python", f"timed loop: Python (the compiled loop could not be built: {reason})"
    notes = comm_allgather(note)
    return loops, "compiled", max(notes, key=lambda n: "compiled in" in n)
