"""The control communicator: how the harness's ranks agree, outside any timing.

The harness needs a handful of small, object-level collectives of its own
(agree on an iteration count, aggregate times, sum ``#wrong``, gather host
names).  They go through a :class:`Comm`, never through the transport being
measured, so a transport under test cannot disturb its own bookkeeping.

:func:`world` builds one from MPI when ``mpi4py`` is importable, applying the
oversubscription settings of :mod:`ground.env` *before* ``MPI_Init``;
otherwise a single process is :class:`SelfComm`.  :func:`as_comm` accepts an
mpi4py communicator too, so tests can pass ``MPI.COMM_WORLD`` directly.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, List, Optional, Protocol

from ground import env as launch_env
from ground import mismatch
from ground.errors import flush_stdio

__all__ = ["Comm", "MPIComm", "SelfComm", "TorchComm", "world", "as_comm", "mpi_available",
           "release_mpich_segments", "choose_thread_level", "is_auto", "THREAD_LEVELS", "FUNNELED_MAX_BYTES",
           "COLLECTIVE_TUNING"]

THREAD_LEVELS = ("single", "funneled", "serialized", "multiple")
FUNNELED_MAX_BYTES = 256 * 1024  # auto: FUNNELED for sweeps up to here (measured; see choose_thread_level)

_REDUCERS = {"sum": sum, "max": max, "min": min}


class Comm(Protocol):
    """Object collectives for the harness's own coordination."""

    rank: int
    size: int

    def barrier(self) -> None: ...
    def bcast(self, obj: Any, root: int = 0) -> Any: ...
    def allgather(self, obj: Any) -> List[Any]: ...
    def allreduce(self, value: Any, op: str = "sum") -> Any: ...
    def abort(self, code: int) -> None: ...


class SelfComm:
    """One process, no launcher, no MPI: every collective is the identity."""

    rank = 0
    size = 1
    mpi = None

    def barrier(self) -> None:
        return None

    def bcast(self, obj, root=0):
        return obj

    def allgather(self, obj):
        return [obj]

    def allreduce(self, value, op="sum"):
        return value

    def abort(self, code: int) -> None:
        flush_stdio()
        os._exit(code)

    def split(self, color):
        """This process alone (``color`` None: not in any group)."""
        return None if color is None else self


class MPIComm:
    """A :class:`Comm` over an mpi4py communicator (kept as ``.mpi``)."""

    def __init__(self, mpi_comm):
        self.mpi = mpi_comm
        self.rank = mpi_comm.Get_rank()
        self.size = mpi_comm.Get_size()

    def barrier(self) -> None:
        self.mpi.Barrier()

    def bcast(self, obj, root=0):
        return self.mpi.bcast(obj, root=root)

    def allgather(self, obj):
        return self.mpi.allgather(obj)

    def allreduce(self, value, op="sum"):
        # Small Python objects: gather and reduce locally, which keeps one
        # code path for ints, floats and tuples alike.
        return _REDUCERS[op](self.mpi.allgather(value))

    def split(self, color):
        """A communicator of the ranks that give the same ``color`` (a group index), ranked as here; None
        for ``color`` None (this rank is in no group).  Collective: every rank calls it."""
        from mpi4py import MPI

        sub = self.mpi.Split(MPI.UNDEFINED if color is None else int(color), self.rank)
        return None if sub == MPI.COMM_NULL else MPIComm(sub)

    def free(self) -> None:
        """Release a communicator made by :meth:`split`."""
        self.mpi.Free()

    def finalize(self) -> None:
        """MPI_Finalize now (a process's entry point then ends at once)."""
        from mpi4py import MPI

        if MPI.Is_initialized() and not MPI.Is_finalized():
            MPI.Finalize()

    def abort(self, code: int) -> None:
        flush_stdio()
        # Give the launcher a moment to forward what this rank just printed:
        # MPI_Abort tears the job down at once and its last lines can be lost.
        time.sleep(0.2)
        self.mpi.Abort(code)


class TorchComm:
    """A :class:`Comm` over torch.distributed's default (gloo) process group.

    For jobs started by torchrun, where every process would be an MPI
    singleton: the default group is created from torchrun's environment
    (``env://``) and carries only the harness's coordination; transports
    create their own groups for what they measure.  ``abort`` ends this
    process, and torchrun ends the others.
    """

    mpi = None
    exit_at_close = True  # see collectives.lifecycle (closing the job)

    def __init__(self, timeout: float = 300.0):
        from datetime import timedelta

        import torch.distributed as dist

        self._dist = dist
        if not dist.is_initialized():
            # Bounded: a wrong MASTER_ADDR/PORT must fail, not wait torch's 30 minutes.
            dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=timeout))
        self.rank = dist.get_rank()
        self.size = dist.get_world_size()

    def barrier(self) -> None:
        self._dist.barrier()

    def bcast(self, obj, root=0):
        box = [obj]
        self._dist.broadcast_object_list(box, src=root)
        return box[0]

    def allgather(self, obj):
        out = [None] * self.size
        self._dist.all_gather_object(out, obj)
        return out

    def allreduce(self, value, op="sum"):
        return _REDUCERS[op](self.allgather(value))

    def abort(self, code: int) -> None:
        flush_stdio()
        os._exit(code)

    def close(self) -> None:
        """Tear the group down on every rank (a barrier first, so no rank is still using it)."""
        if self._dist.is_initialized():
            try:
                self._dist.barrier()
            finally:
                self._dist.destroy_process_group()


def mpi_available() -> bool:
    """True when mpi4py can be imported (without initialising MPI)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


_WORLD = None


def is_auto(requested: Optional[str]) -> bool:
    """True when the thread level is left to collscale (no --thread-level, no COLLSCALE_THREAD_LEVEL)."""
    return (requested or os.environ.get("COLLSCALE_THREAD_LEVEL") or "auto").strip().lower() == "auto"


def choose_thread_level(requested: Optional[str], oversubscribed: bool, largest: Optional[int] = None,
                        tuned: bool = False) -> str:
    """The MPI thread level to request at MPI_Init: ``requested`` (``--thread-level``), else
    ``COLLSCALE_THREAD_LEVEL``, else by situation (``auto``).

    ``largest``: the largest message size the run will measure (None: not
    known).  With a core per rank, FUNNELED makes small calls cheaper than
    MULTIPLE.  With MPICH, large ones were slower at FUNNELED only because
    MPICH then picks its shared-memory release_gather algorithm at every
    size; ``tuned`` (:func:`ground.mpich_tuning.apply` succeeded) means it
    no longer does above 256 KiB, and auto takes FUNNELED for any sweep.
    Untuned (another MPI, or the user's own MPICH selection), auto takes
    FUNNELED when the sweep ends at :data:`FUNNELED_MAX_BYTES` or below and
    MULTIPLE otherwise.  With more ranks than cores, FUNNELED's
    busy-polling progress starves the ranks waiting for a core
    (milliseconds against microseconds per small call), so MULTIPLE there.
    FUNNELED is the honest level below MULTIPLE: only the main thread calls
    MPI (the watchdog thread never does).  Measured: docs/results/2026-12.md.
    """
    level = (requested or os.environ.get("COLLSCALE_THREAD_LEVEL") or "auto").strip().lower()
    if level == "auto":
        small = largest is not None and largest <= FUNNELED_MAX_BYTES
        return "funneled" if (small or tuned) and not oversubscribed else "multiple"
    if level not in THREAD_LEVELS:
        raise ValueError(f"COLLSCALE_THREAD_LEVEL={level}: choose {', '.join(THREAD_LEVELS)} or auto")
    return level


def world(thread_level: Optional[str] = None, largest: Optional[int] = None):
    """The job's control communicator; initialises MPI on first use.

    Returns ``(comm, settings)`` where ``settings`` is what was put into the
    environment to tame oversubscription (empty when not needed).
    ``thread_level`` (``--thread-level``) and ``largest`` (the sweep's largest
    size, if known) choose the level requested at MPI_Init; see
    :func:`choose_thread_level` (MPI initialised earlier keeps its level).
    """
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    launched = launch_env.detect()
    settings = {}
    oversubscribed = launch_env.is_oversubscribed(launch_env.ranks_sharing_cores(launched))
    if oversubscribed:
        settings = launch_env.apply_oversubscription_settings()
    if launched.launcher == "torchrun":
        # torchrun started us: MPI would make every process a world of one.
        _WORLD = (TorchComm(), settings)
        return _WORLD
    if mpi_available():
        import mpi4py

        if "mpi4py.MPI" not in sys.modules:  # the level is fixed at MPI_Init, for the whole run
            _init_mpi(mpi4py, thread_level, oversubscribed, largest, launched)
        from mpi4py import MPI

        comm = MPIComm(MPI.COMM_WORLD)
        release_mpich_segments(comm)
        refused = mismatch.check(comm.size, MPI.Get_library_version(), launched=launched)
        if refused:  # before anything is measured or written; MPI finalises at exit
            raise mismatch.LaunchMismatch(refused)
    elif launched.size not in (None, 1):
        raise RuntimeError(
            f"launched as {launched.size} ranks by {launched.launcher}, but mpi4py is not "
            "installed, so the ranks cannot coordinate; install collscale's core "
            "dependencies (pip install collscale) or run a single rank"
        )
    else:
        comm = SelfComm()
    _WORLD = (comm, settings)
    return _WORLD


COLLECTIVE_TUNING: Optional[str] = None  # what ground.mpich_tuning did at MPI_Init (for the header), or None


def _init_mpi(mpi4py, requested: Optional[str], oversubscribed: bool, largest: Optional[int], launched) -> None:
    """MPI_Init_thread at the level :func:`choose_thread_level` gives, after a look at the library that
    refuses a launcher of another MPI family (Open MPI's mpirun over MPICH, say: MPICH's own MPI_Init
    would abort with an error stack about PMIx) and, with the level left to auto and a core per rank,
    points MPICH at collscale's intra-node selection (:mod:`ground.mpich_tuning`).  The library's
    version is readable before MPI_Init; mpi4py finalises at exit."""
    global COLLECTIVE_TUNING
    from ground import mpich_tuning

    mpi4py.rc.initialize = False
    mpi4py.rc.finalize = True
    from mpi4py import MPI

    library = MPI.Get_library_version()
    refused = mismatch.before_init(library, launched=launched)
    if refused:
        raise mismatch.LaunchMismatch(refused)
    if is_auto(requested) and not oversubscribed:
        COLLECTIVE_TUNING = mpich_tuning.apply(library)
    level = choose_thread_level(requested, oversubscribed, largest, tuned=COLLECTIVE_TUNING is not None)
    mpi4py.rc.thread_level = level
    MPI.Init_thread({"single": MPI.THREAD_SINGLE, "funneled": MPI.THREAD_FUNNELED,
                     "serialized": MPI.THREAD_SERIALIZED, "multiple": MPI.THREAD_MULTIPLE}[level])


def release_mpich_segments(comm: "MPIComm") -> int:
    """Unlink MPICH's start-up shared-memory segment once every rank has attached.

    MPICH creates ``/dev/shm/mpich_shm_*`` in MPI_Init and unlinks it only in
    MPI_Finalize, so a rank that is killed, aborts or times out leaves it
    behind.  Every local rank maps it during MPI_Init; after a barrier the
    name is no longer needed (the mappings stay valid, and Finalize ignores
    the missing name), so no exit path can leak it.  Measured safe with
    sub-communicators and shared windows created afterwards.  Only MPICH's
    own segment is touched: UCX and Open MPI attach theirs lazily by name.
    """
    comm.barrier()
    removed = 0
    for path in _mapped_shm("/dev/shm/mpich_shm_"):
        try:
            os.unlink(path)
            removed += 1
        except OSError:
            pass  # another local rank was first
    return removed


def _mapped_shm(prefix: str):
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[5].strip() for line in maps if prefix in line}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith(prefix) and not p.endswith("(deleted)"))


def as_comm(obj) -> Comm:
    """Accept a :class:`Comm`, an mpi4py communicator, or None (the world)."""
    if obj is None:
        return world()[0]
    if hasattr(obj, "Get_rank") and hasattr(obj, "Barrier"):
        return MPIComm(obj)
    return obj
