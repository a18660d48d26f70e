"""Refuse a launcher that does not match the MPI mpi4py loaded, before anything is measured.

The trap: ``srun -n 2`` without a PMI plugin the MPI understands, Open MPI's
``mpirun`` over the MPICH wheel, or PALS ``mpiexec`` over a wheel instead of
the site's MPI.  Each process starts, finds no process manager it can talk
to, and comes up as rank 0 of a world of one: every rank measures alone,
busbw is 0, and a results file gets every point N times.  nccl-tests users
know it as "every rank says rank 0".

:func:`check` compares the process count the launcher put in the
environment (:func:`ground.env.detect`; under srun the step's own
``SLURM_STEP_NUM_TASKS``, since a batch script's ``SLURM_NTASKS`` counts the
whole allocation) with the MPI world's size, and returns one line naming
both counts, the launcher, the MPI library mpi4py loaded (its version and
the file it was loaded from) and the fix.  Launches that do not use MPI's
world (torchrun; a plain ``python -m ...``) are never refused.

Pure apart from reading ``/proc/self/maps`` and ``PATH``; imports nothing
of the project but :mod:`ground.env`.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Mapping, Optional

from ground.env import LaunchEnv, detect

__all__ = ["LaunchMismatch", "check", "before_init", "library_line", "expected_size", "mpi_family", "loaded_library", "describe_launcher"]


class LaunchMismatch(RuntimeError):
    """The launcher started a different number of processes than MPI's world holds (exit 2)."""


_LAUNCHERS = {
    "slurm": "srun",
    "openmpi": "Open MPI's mpirun",
    "hydra": "an MPICH-family mpiexec (Hydra)",
    "pmi": "a PMI launcher",
    "pals": "PALS mpiexec",
}


def describe_launcher(launcher: str) -> str:
    return _LAUNCHERS.get(launcher, launcher)


def expected_size(launched: LaunchEnv, env: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """How many processes the launcher says it started, or None where it does not say
    (no launcher, torchrun: their worlds are not MPI's)."""
    env = os.environ if env is None else env
    if launched.launcher in ("none", "torchrun"):
        return None
    if launched.launcher == "slurm":
        for name in ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"):
            try:
                return int(env[name])
            except (KeyError, ValueError):
                continue
        return None
    return launched.size


def mpi_family(library_version: str) -> str:
    """``"openmpi"``, ``"mpich"`` (MPICH and its derivatives: Intel MPI, Cray MPICH, MVAPICH)
    or ``"unknown"``, from ``MPI_Get_library_version``'s text."""
    text = library_version.lower()
    if "open mpi" in text:
        return "openmpi"
    if any(word in text for word in ("mpich", "intel(r) mpi", "intel mpi", "mvapich", "cray mpi")):
        return "mpich"
    return "unknown"


def loaded_library() -> Optional[str]:
    """The libmpi file this process has mapped (``/proc/self/maps``), or None."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rstrip("\n").split(None, 5)[-1] if line.count(" ") >= 5 else ""
                base = os.path.basename(path)
                if base.startswith(("libmpi.so", "libmpi_", "libmpich")) and "/" in path:
                    return path
    except OSError:
        return None
    return None


def library_line(text: str) -> str:
    """The first line of ``MPI_Get_library_version``'s text, normalised the same way wherever it is
    compared or shown: NULs dropped (Open MPI's text through mpi4py ends in one; read from C it stops
    there), runs of white space as one space; "" for no text."""
    text = text.replace("\x00", " ").strip()
    return " ".join(text.splitlines()[0].split()) if text else ""


def _first_line(text: str) -> str:
    return library_line(text) or "an unknown MPI"


def _mpirun_here() -> str:
    """The mpirun this environment finds first, and the one beside this Python if different."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpirun")
    first = shutil.which("mpirun")
    if first and os.path.exists(beside) and os.path.realpath(first) != os.path.realpath(beside):
        return f"the first mpirun on PATH is {first}; the one installed with this Python is {beside}"
    if first:
        return f"the mpirun found on PATH is {first}"
    return "no mpirun is on PATH"


def _fix(launcher: str, family: str) -> str:
    if launcher == "slurm":
        pmi = "pmix" if family == "openmpi" else "pmi2"
        return (f"srun: add --mpi={pmi} (launch.sweep slurm does; `srun --mpi=list` shows what this "
                f"Slurm offers); or run mpirun from the same MPI")
    if launcher == "pals":
        return ("use an mpi4py built against the site's MPI (MPICC=cc pip install --no-binary mpi4py "
                "mpi4py), or launch with the mpirun of the MPI mpi4py loaded")
    return "launch with the mpirun of the MPI mpi4py loaded, or rebuild mpi4py against this launcher's MPI"


# The MPI family each launcher belongs to; srun and bare PMI serve either.
_LAUNCHER_FAMILY = {"openmpi": "openmpi", "hydra": "mpich", "pals": "mpich"}


def before_init(library_version: str, env: Optional[Mapping[str, str]] = None,
                launched: Optional[LaunchEnv] = None) -> Optional[str]:
    """One line when the launcher belongs to another MPI family than the library mpi4py loaded
    (known before MPI_Init, whose own failure would be an error stack), else None."""
    launched = launched if launched is not None else detect(env)
    expected = expected_size(launched, env)
    want = _LAUNCHER_FAMILY.get(launched.launcher)
    library = _first_line(library_version)
    family = mpi_family(library)
    if expected in (None, 1) or want is None or family in ("unknown", want):
        return None
    where = loaded_library()
    return (f"{describe_launcher(launched.launcher)} started {expected} processes, but mpi4py loaded "
            f"{library}" + (f" ({where})" if where else "") + f", another MPI: its processes cannot form "
            f"one world; {_mpirun_here()}. Fix: {_fix(launched.launcher, family)}")


def check(world_size: int, library_version: str, env: Optional[Mapping[str, str]] = None,
          launched: Optional[LaunchEnv] = None) -> Optional[str]:
    """One line saying why this launch cannot be measured, or None when it matches.

    ``world_size``: ``COMM_WORLD``'s size; ``library_version``:
    ``MPI.Get_library_version()``.
    """
    launched = launched if launched is not None else detect(env)
    expected = expected_size(launched, env)
    if expected is None or expected == world_size:
        return None
    library = _first_line(library_version)
    where = loaded_library()
    family = mpi_family(library)
    return (f"{describe_launcher(launched.launcher)} started {expected} processes, but MPI's world has "
            f"{world_size} (each process {'is its own rank 0' if world_size == 1 else 'sees another world'}): "
            f"mpi4py loaded {library}" + (f" ({where})" if where else "")
            + f"; {_mpirun_here()}. Fix: {_fix(launched.launcher, family)}")
