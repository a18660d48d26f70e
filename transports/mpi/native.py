"""Whether the mpi transport's calls carry a compiled loop, and why (not).

:class:`Compiled` builds the loop at transport start (before any clock
runs: compiling is start-up work), and every rank agrees on the outcome:
either all ranks time through the compiled loop or none does.  ``--loop
compiled`` makes a missing compiler an error (exit 2); ``auto`` falls back
to the Python loop and the header's note says why.
"""

from __future__ import annotations

import os
import uuid
from typing import Optional

from transports.native import agree

__all__ = ["Compiled"]


class Compiled:
    """The mpi transport's compiled loop, if this run has one."""

    def __init__(self, comm, mode: Optional[str]):
        self.comm = comm
        self.loops, self.loop, self.note = agree(comm.allgather, mode, self._start, "the mpi transport")

    def _start(self):
        from transports.native import mpi as native_mpi

        token = self.comm.bcast(uuid.uuid4().hex if self.comm.Get_rank() == 0 else None)
        loops = native_mpi.load(self.comm, token)
        built = loops.built
        how = (f"compiled in {built.seconds:.1f} s" if built.compiled else "cached") + (
            f"; {built.note}" if built.note else "")
        return loops, (f"timed loop: compiled C over this MPI, iterations without Python "
                       f"({os.path.basename(native_mpi.mpi_compiler()[0])}, {how}: {built.path})")

    def bind(self, kind: str, send, recv, count: int, datatype=None, mpi_op=None, dtype=None,
             op: Optional[str] = None, result=None, root: int = 0, peer: int = 0, source: int = 0):
        """The compiled form of one bound call, or None (no compiled loop, or none for this case)."""
        if self.loops is None:
            return None
        divide = result if op == "avg" and result is not None else None
        return self.loops.bind(kind, self.comm, send, recv, count, datatype, mpi_op, root, peer, source,
                               divide=divide, divide_by=self.comm.Get_size(),
                               dtype_name=dtype.name if dtype is not None else "")
