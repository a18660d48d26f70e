"""The mpi transport's compiled loop: built with the MPI that mpi4py loaded, verified, bound.

:func:`load` compiles ``mpi_loop.c`` (once per MPI library, compiler and
source; see :mod:`ground.native_build`) with the compiler wrapper of the
MPI mpi4py uses, loads its verified bytes with ctypes (from memory, never
the cached file), and checks before anything is timed that it talks to the *same* initialised library as mpi4py: same library
version string, same handle sizes, and the communicator's size and this
rank as mpi4py sees them.  Any mismatch (a wrapper of another MPI first on
PATH, say) is a :class:`BuildError`, and the transport falls back to the
Python loop, saying why.

The wrapper: ``COLLSCALE_MPICC`` or ``MPICC`` if set; else the ``mpicc``
mpi4py was built with (a source build against a site MPI records it); else
the ``mpicc`` beside this Python (the ``mpich`` wheel installs one); else the
first on PATH.  ``CC``, if set, is the C compiler the wrapper runs.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import sys
from functools import partial
from pathlib import Path
from typing import List, Optional

import numpy as np

from ground.native_build import BuildError, Built, build, load as load_built
from transports.native.timer import NativeLoop
from ground.mismatch import library_line

__all__ = ["MPILoops", "load", "mpi_compiler", "KINDS", "DIVIDE_TYPES"]

SOURCE = Path(__file__).with_name("mpi_loop.c")

KINDS = {name: k for k, name in enumerate(
    ("allreduce", "bcast", "reduce", "allgather", "reduce_scatter", "alltoall", "sendrecv",
     "sendrecv_replace", "ping", "pong", "barrier"), start=1)}
DIVIDE_TYPES = {name: k for k, name in enumerate(
    ("int8", "uint8", "int32", "uint32", "int64", "uint64", "float16", "bfloat16", "float32", "float64"),
    start=1)}
_NARGS = 11
_INT_MAX = 2**31 - 1


def mpi_compiler() -> List[str]:
    """The compiler wrapper of the MPI that mpi4py uses (see the module docstring)."""
    explicit = os.environ.get("COLLSCALE_MPICC") or os.environ.get("MPICC")
    if explicit:
        return shlex.split(explicit)
    import mpi4py

    built_with = (mpi4py.get_config() or {}).get("mpicc")
    if built_with:
        return shlex.split(built_with)
    beside = Path(sys.executable).parent / "mpicc"
    if beside.exists():
        return [str(beside)]
    return [shutil.which("mpicc") or "mpicc"]


_first_line = library_line  # the one normalisation (ground.mismatch), so both sides compare alike


class MPILoops:
    """The loaded object: binds one operation at a time into a :class:`NativeLoop`."""

    def __init__(self, built: Built, MPI, comm):
        self.built, self.MPI = built, MPI
        # the verified bytes, from a sealed memfd; its libmpi is the one already loaded (same soname)
        lib = load_built(built)
        lib.cs_mpi_library.restype = ctypes.c_int
        lib.cs_mpi_library.argtypes = [ctypes.c_char_p, ctypes.c_int64]
        text = ctypes.create_string_buffer(8192)
        lib.cs_mpi_library(text, len(text))
        mine, theirs = _first_line(text.value.decode(errors="replace")), _first_line(MPI.Get_library_version())
        if mine != theirs:
            raise BuildError(f"the compiled loop links {mine!r}, but mpi4py uses {theirs!r} "
                             "(set MPICC to that MPI's mpicc)")
        lib.cs_mpi_check.restype = ctypes.c_int
        lib.cs_mpi_check.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                     ctypes.POINTER(ctypes.c_int64)]
        out = (ctypes.c_int64 * 5)()
        status = lib.cs_mpi_check(MPI._addressof(comm), MPI._sizeof(MPI.Comm), MPI._sizeof(MPI.Datatype), out)
        if status == 1:
            raise BuildError(f"the compiled loop's handles are {out[0]}/{out[1]} bytes, mpi4py's "
                             f"{MPI._sizeof(MPI.Comm)}/{MPI._sizeof(MPI.Datatype)} (another MPI's mpi.h)")
        if status != 0 or (out[3], out[4]) != (comm.Get_size(), comm.Get_rank()):
            raise BuildError("the compiled loop does not see mpi4py's initialised MPI library "
                             "(a second copy of the library was loaded)")
        fn = lib.cs_mpi_loop
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64, ctypes.c_void_p]
        self._fn = fn
        self._can_divide = lib.cs_mpi_can_divide
        self._can_divide.restype = ctypes.c_int
        self._can_divide.argtypes = [ctypes.c_int64]

    def bind(self, kind: str, comm, send, recv, count: int, datatype=None, op=None, root: int = 0,
             peer: int = 0, source: int = 0, divide: Optional[np.ndarray] = None,
             divide_by: int = 1, dtype_name: str = "") -> Optional[NativeLoop]:
        """A compiled ``kind`` (see :data:`KINDS`) over numpy buffers, or None where it has no
        compiled form here (a count past C's int, avg on a type the C side cannot divide).

        ``send`` None means MPI_IN_PLACE; ``divide`` (avg): the result, divided by ``divide_by``
        after every call, as the Python loop does.
        """
        if count > _INT_MAX:
            return None
        div_type = 0
        if divide is not None:
            div_type = DIVIDE_TYPES[dtype_name]
            if not self._can_divide(div_type):
                return None
        MPI = self.MPI
        args = np.zeros(_NARGS, np.int64)
        args[:] = [KINDS[kind], _address(send), _address(recv), count, root, peer, source, div_type,
                   _address(divide), 0 if divide is None else divide.size, divide_by]
        handles = [MPI._addressof(comm), MPI._addressof(datatype) if datatype is not None else None,
                   MPI._addressof(op) if op is not None else None]
        call = partial(self._fn, args.ctypes.data, *handles)
        keep = (args, comm, datatype, op, send, recv, divide)
        return NativeLoop(call, _mpi_failed, keep)


def _address(buf) -> int:
    if buf is None:
        return 0
    if not buf.flags.c_contiguous:
        raise ValueError("the compiled loop needs contiguous buffers")
    return buf.__array_interface__["data"][0]


def _mpi_failed(status: int) -> None:
    from mpi4py import MPI

    try:
        text = MPI.Get_error_string(status) if status > 0 else "an unknown operation or type"
    except Exception:
        text = "?"
    raise RuntimeError(f"the compiled MPI loop failed: error {status} ({text})")


def load(comm, token: Optional[str] = None) -> MPILoops:
    """Build (or find in the cache) and verify the loop for mpi4py's MPI; :class:`BuildError` if not."""
    from mpi4py import MPI

    library = _first_line(MPI.Get_library_version())
    built = build("mpi_loop", str(SOURCE), mpi_compiler(), key_parts=(library, MPI.__file__), token=token)
    return MPILoops(built, MPI, comm)
