"""The mpi transport: the MPI library's own collectives, through mpi4py.

:mod:`.host` measures host (numpy) buffers; :mod:`.cupy_buffers` CuPy
arrays on a GPU (``--buffer cupy``), directly or staged through host memory.
This module only checks the options and picks one; nothing here initialises
MPI or imports CuPy.
"""

from __future__ import annotations

from typing import Optional

from transports.base import TransportOptions, Unsupported

__all__ = ["create", "probe"]


def probe() -> Optional[str]:
    """None when usable here, else why not (mpi4py is only imported, MPI not initialised)."""
    try:
        import mpi4py  # noqa: F401  (availability only; MPI is not initialised)
    except ImportError as exc:
        return f"mpi4py is not installed ({exc})"
    return None


def create(comm, options: TransportOptions):
    from ground.dtypes import ConfigError

    if options.algo not in (None, "", "auto"):
        raise ConfigError("--algo: the mpi transport has no algorithm choices (the MPI library picks; "
                          "MPICH takes MPIR_CVAR_*_ALGORITHM variables, Open MPI --mca coll_tuned_*)")
    buffer = options.buffer or "host"
    if buffer not in ("host", "cupy"):
        raise ConfigError(f"--buffer {buffer}: the mpi transport has host (default) and cupy buffers")
    if options.device not in (None, "", "cpu") and buffer != "cupy":
        raise ConfigError("--device: the mpi transport moves host memory; use --buffer cupy for GPU arrays")
    mpi_comm = getattr(comm, "mpi", None)
    if mpi_comm is None:
        raise Unsupported("the mpi transport needs the job to run under MPI (mpi4py)")
    if buffer == "cupy":
        from transports.mpi.cupy_buffers import MPICupyTransport

        return MPICupyTransport(mpi_comm)
    from transports.mpi.host import MPITransport

    return MPITransport(mpi_comm, options)
