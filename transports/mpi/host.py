"""The MPI transport on host buffers: the MPI library's own collectives, through mpi4py.

Every operation is pre-bound (buffer specs with explicit datatypes, the op,
the peers) so the timed loop calls straight into mpi4py's C code; the
overhead benchmark (benchmarks/overhead.py) compares it with a raw mpi4py
loop in the same job.

What MPI cannot do is reported, not emulated:

* ``broadcast`` out of place: MPI_Bcast works on one buffer.
* ``bfloat16`` where the library has no ``MPI_BFLOAT16_T`` (MPICH and
  Open MPI wheels today), ``float16`` where it has no ``MPI_FLOAT16_T``.
* ``avg`` has no MPI_Op: it is MPI_SUM followed by a local division by
  the rank count inside the timed call; the header and each record's
  ``op_impl`` say so.

The compiled loop (``--loop auto``, the default, or ``compiled``): each
bound call also carries the same operation compiled (:mod:`.native`), so
the warm-up, timed and validated iterations run in C against the MPI that
mpi4py loaded, as an OSU or nccl-tests loop does.  Where it cannot be built
(no compiler), the Python loop runs and the header says why.
"""

from __future__ import annotations

from typing import Any, Dict

from ground.dtypes import DType
from transports.base import Bound, TransportBase, TransportOptions, Unsupported, local_divide
from transports.mpi.native import Compiled

__all__ = ["MPITransport"]

_DATATYPE_NAMES = {
    "int8": "INT8_T",
    "uint8": "UINT8_T",
    "int32": "INT32_T",
    "uint32": "UINT32_T",
    "int64": "INT64_T",
    "uint64": "UINT64_T",
    "float16": "FLOAT16_T",
    "bfloat16": "BFLOAT16_T",
    "float32": "FLOAT",
    "float64": "DOUBLE",
}


class MPITransport(TransportBase):
    name = "mpi"

    def __init__(self, mpi_comm, options: TransportOptions = TransportOptions(loop="python")):
        from mpi4py import MPI

        self._MPI = MPI
        # A private communicator: the harness's own messages never mix with
        # the measured ones.
        self.comm = mpi_comm.Dup()
        super().__init__(self.comm.Get_rank(), self.comm.Get_size())
        self._ops = {"sum": MPI.SUM, "prod": MPI.PROD, "min": MPI.MIN, "max": MPI.MAX, "avg": MPI.SUM}
        self.compiled = Compiled(self.comm, options.loop)

    # -- helpers -------------------------------------------------------------
    def _type(self, dtype: DType):
        mpi_type = getattr(self._MPI, _DATATYPE_NAMES[dtype.name], self._MPI.DATATYPE_NULL)
        if mpi_type == self._MPI.DATATYPE_NULL:
            raise Unsupported(
                f"this MPI library has no MPI_{_DATATYPE_NAMES[dtype.name]} datatype for {dtype.name}"
            )
        return mpi_type

    def _op(self, op: str):
        return self._ops[op]

    def _then_divide(self, call, result, op: str, native=None) -> Bound:
        """``avg``: the sum, then a local division inside the timed call."""
        if op != "avg":
            return Bound(call, result, native)
        divisor = self.size

        def run():
            call()
            if result is not None:
                local_divide(result, divisor)

        return Bound(run, result, native)

    # -- collectives ---------------------------------------------------------
    def allreduce(self, send, recv, dtype, op):
        t, mop = self._type(dtype), self._op(op)
        src = self._MPI.IN_PLACE if send is None else [send, t]
        call = _bind(self.comm.Allreduce, src, [recv, t], mop)
        native = self.compiled.bind("allreduce", send, recv, len(recv), t, mop, dtype, op, recv)
        return self._then_divide(call, recv, op, native)

    def broadcast(self, send, recv, dtype, root):
        t = self._type(dtype)
        if send is not None:
            raise Unsupported("MPI_Bcast is in place only (one buffer)")
        native = self.compiled.bind("bcast", None, recv, len(recv), t, root=root)
        return Bound(_bind(self.comm.Bcast, [recv, t], root), recv, native)

    def reduce(self, send, recv, dtype, op, root):
        t, mop = self._type(dtype), self._op(op)
        at_root = self.rank == root
        if send is None:
            args = (self._MPI.IN_PLACE, [recv, t]) if at_root else ([recv, t], None)
            buffers = (None, recv) if at_root else (recv, None)
        else:
            args = ([send, t], [recv, t] if at_root else None)
            buffers = (send, recv if at_root else None)
        call = _bind(self.comm.Reduce, args[0], args[1], mop, root)
        result = recv if at_root else None
        native = self.compiled.bind("reduce", *buffers, len(recv), t, mop, dtype, op, result, root=root)
        return self._then_divide(call, result, op, native)

    def allgather(self, send, recv, dtype):
        t = self._type(dtype)
        src = self._MPI.IN_PLACE if send is None else [send, t]
        native = self.compiled.bind("allgather", send, recv, len(recv) // self.size, t)
        return Bound(_bind(self.comm.Allgather, src, [recv, t]), recv, native)

    def reduce_scatter(self, send, recv, dtype, op):
        t, mop = self._type(dtype), self._op(op)
        if send is None:
            # MPI_IN_PLACE: the input is the whole buffer, the result lands in block 0.
            block = len(recv) // self.size
            call = _bind(self.comm.Reduce_scatter_block, self._MPI.IN_PLACE, [recv, t], mop)
            native = self.compiled.bind("reduce_scatter", None, recv, block, t, mop, dtype, op, recv[:block])
            return self._then_divide(call, recv[:block], op, native)
        call = _bind(self.comm.Reduce_scatter_block, [send, t], [recv, t], mop)
        native = self.compiled.bind("reduce_scatter", send, recv, len(recv), t, mop, dtype, op, recv)
        return self._then_divide(call, recv, op, native)

    def alltoall(self, send, recv, dtype):
        t = self._type(dtype)
        src = self._MPI.IN_PLACE if send is None else [send, t]
        native = self.compiled.bind("alltoall", send, recv, len(recv) // self.size, t)
        return Bound(_bind(self.comm.Alltoall, src, [recv, t]), recv, native)

    def sendrecv(self, send, recv, dtype, dest, source):
        t = self._type(dtype)
        if send is None:
            native = self.compiled.bind("sendrecv_replace", None, recv, len(recv), t, peer=dest, source=source)
            return Bound(_bind(self.comm.Sendrecv_replace, [recv, t], dest, 0, source, 0), recv, native)
        native = self.compiled.bind("sendrecv", send, recv, len(recv), t, peer=dest, source=source)
        return Bound(_bind(self.comm.Sendrecv, [send, t], dest, 0, [recv, t], source, 0), recv, native)

    def pingpong(self, send, recv, dtype, peer):
        t = self._type(dtype)
        if send is None:
            raise Unsupported("pingpong uses separate send and receive buffers (as OSU)")
        send_spec, recv_spec = [send, t], [recv, t]
        comm_send, comm_recv = self.comm.Send, self.comm.Recv
        if self.rank == 0:

            def run():
                comm_send(send_spec, peer, 1)
                comm_recv(recv_spec, peer, 1)

        else:

            def run():
                comm_recv(recv_spec, peer, 1)
                comm_send(send_spec, peer, 1)

        native = self.compiled.bind("ping" if self.rank == 0 else "pong", send, recv, len(recv), t, peer=peer)
        return Bound(run, recv, native)

    def barrier(self):
        return Bound(self.comm.Barrier, None, self.compiled.bind("barrier", None, None, 0))

    def p2p(self, sends, recvs, dtype):
        t = self._type(dtype)
        comm, waitall = self.comm, self._MPI.Request.Waitall
        isend = [([b, t], peer) for b, peer in sends]
        irecv = [([b, t], peer) for b, peer in recvs]
        if not isend and not irecv:
            return lambda: None

        def run():
            waitall([comm.Irecv(b, peer, 7) for b, peer in irecv] + [comm.Isend(b, peer, 7) for b, peer in isend])
        return run

    # -- the rest ------------------------------------------------------------
    def describe(self) -> Dict[str, Any]:
        import mpi4py

        MPI = self._MPI
        library = MPI.Get_library_version().replace("\x00", " ").strip().splitlines()[0].replace("Version:", "").strip()
        levels = {
            MPI.THREAD_SINGLE: "single",
            MPI.THREAD_FUNNELED: "funneled",
            MPI.THREAD_SERIALIZED: "serialized",
            MPI.THREAD_MULTIPLE: "multiple",
        }
        from ground import comm as ground_comm

        settings = {"MPI": "%d.%d" % MPI.Get_version(), "thread level": levels.get(MPI.Query_thread(), "?"),
                    "loop": self.compiled.loop}
        if ground_comm.COLLECTIVE_TUNING:
            settings["collective selection"] = ground_comm.COLLECTIVE_TUNING
        return {
            "transport": self.name,
            "transport_version": " ".join(library.split()),
            "mpi4py_version": mpi4py.__version__,
            "mpi_standard": "%d.%d" % MPI.Get_version(),
            "thread_level": levels.get(MPI.Query_thread(), "?"),
            "settings": settings,
            "loop": self.compiled.loop,
            "notes": [self.compiled.note],
            "op_impl": {"avg": "MPI_SUM then a local division by the rank count (MPI has no MPI_AVG)"},
        }

    def close(self) -> None:
        comm, self.comm = self.comm, None
        if comm is not None and not self._MPI.Is_finalized():
            comm.Free()


def _bind(fn, *args):
    """A zero-argument call with everything resolved: the cheapest thing to time."""
    from functools import partial

    return partial(fn, *args)
