"""Graphcore IPU-Link through popxl's replicated collectives (``--transport poplar``).

UNTESTED ON HARDWARE: no IPU was available to the developers; the tests
exercise this control path with a stand-in popxl module only.

popxl compiles collectives into a graph: there is no call that moves a
buffer now.  Each bound collective is therefore a compiled program, one
replica per rank::

    ir = popxl.Ir(replication="popdist")           # under poprun (or 1 replica)
    with ir.main_graph:
        x = ops.host_load(popxl.h2d_stream(shape, dtype))
        y = ops.collectives.replicated_all_reduce(x, op="add")
        ops.host_store(popxl.d2h_stream(y.shape, y.dtype), y)
    session = popxl.Session(ir, "ipu_hw")

and a timed call is one ``session.run``: the input streams to the IPU, the
collective runs over IPU-Link, the result streams back.  The host streams
are part of every figure (the records say ``buffer: host-streamed``); the
fabric alone is what ``facts.fabrics`` models from Graphcore's figures.

Ranks are poprun instances, one replica each (``poprun --num-instances N
--num-replicas N``); the harness's control messages go over MPI, which
poprun starts.  allreduce, allgather and reduce_scatter map to popxl's
replicated collectives; the others have no popxl equivalent and are
reported unsupported.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Dict, Optional

import numpy as np

from ground.dtypes import DType
from transports.base import Bound, TransportBase, TransportOptions, Unsupported

__all__ = ["PoplarTransport", "probe", "create"]

_OPS = {"sum": "add", "prod": "mul", "min": "min", "max": "max", "avg": "mean"}
_DTYPES = ("float16", "float32", "int32", "uint32", "int8", "uint8")


def probe() -> Optional[str]:
    if importlib.util.find_spec("popxl") is None:
        return "popxl is not installed (Graphcore Poplar SDK; untested here: no IPU)"
    return None


class PoplarTransport(TransportBase):
    name = "poplar"

    def __init__(self, comm, options: TransportOptions):
        import popxl

        self.popxl = popxl
        super().__init__(comm.rank, comm.size)
        replicas, local = 1, 1
        self.popdist = None
        if importlib.util.find_spec("popdist") is not None:
            import popdist

            if popdist.isPopdistEnvSet():
                self.popdist = popdist
                replicas = popdist.getNumTotalReplicas()
                local = popdist.getNumLocalReplicas()
        if local != 1 or replicas != comm.size:
            raise Unsupported(f"poplar needs one IPU replica per rank (poprun --num-instances {comm.size} "
                              f"--num-replicas {comm.size}); this job has {replicas} replicas, {local} per "
                              "instance")
        self.replicas = replicas
        self._sessions = []

    def _dtype(self, dtype: DType):
        if dtype.name not in _DTYPES:
            raise Unsupported(f"popxl collectives have no {dtype.name}")
        return getattr(self.popxl, dtype.name)

    def _compile(self, send, recv, dtype: DType, collective):
        """A session that streams ``send`` in, applies ``collective``, streams into ``recv``."""
        popxl = self.popxl
        ops = popxl.ops
        pdt = self._dtype(dtype)
        ir = popxl.Ir(replication="popdist" if self.popdist else 1)
        with ir.main_graph:
            h2d = popxl.h2d_stream(send.shape, pdt, "collscale_in")
            out = collective(ops.collectives, ops.host_load(h2d))
            out = ops.reshape(out, recv.shape)
            d2h = popxl.d2h_stream(out.shape, out.dtype, "collscale_out")
            ops.host_store(d2h, out)
        ir.num_host_transfers = 1
        self.close()  # one attached session at a time: earlier bindings are done with
        session = popxl.Session(ir, "ipu_hw")
        session.__enter__()  # attach to the IPUs once; closed with the transport
        self._sessions.append(session)
        run_session = session.run

        def run():
            recv[...] = np.asarray(run_session({h2d: send})[d2h]).reshape(recv.shape)
        return Bound(run, recv)

    def allreduce(self, send, recv, dtype, op):
        src = recv.copy() if send is None else send
        if send is None:
            def collective(c, x):
                return c.replicated_all_reduce(x, op=_OPS[op])
            bound = self._compile(src, recv, dtype, collective)
            refresh = src.__setitem__

            def run():
                refresh(Ellipsis, recv)  # in place: the current contents are the input
                bound.run()
            return Bound(run, recv)
        return self._compile(send, recv, dtype, lambda c, x: c.replicated_all_reduce(x, op=_OPS[op]))

    def allgather(self, send, recv, dtype):
        if send is None:
            block = len(recv) // self.size
            send = recv[self.rank * block:(self.rank + 1) * block].copy()
            bound = self._compile(send, recv, dtype, lambda c, x: c.replicated_all_gather(x))
            mine = recv[self.rank * block:(self.rank + 1) * block]

            def run():
                send[...] = mine
                bound.run()
            return Bound(run, recv)
        return self._compile(send, recv, dtype, lambda c, x: c.replicated_all_gather(x))

    def reduce_scatter(self, send, recv, dtype, op):
        if send is None:
            raise Unsupported("popxl's replicated_reduce_scatter is out of place")
        return self._compile(send, recv, dtype,
                             lambda c, x: c.replicated_reduce_scatter(x, op=_OPS[op]))

    def broadcast(self, send, recv, dtype, root):
        raise Unsupported("popxl has no replicated broadcast")

    def reduce(self, send, recv, dtype, op, root):
        raise Unsupported("popxl has no replicated reduce to one replica")

    def alltoall(self, send, recv, dtype):
        raise Unsupported("popxl has no replicated all-to-all")

    def sendrecv(self, send, recv, dtype, dest, source):
        raise Unsupported("popxl has no point-to-point between replicas")

    def pingpong(self, send, recv, dtype, peer):
        raise Unsupported("popxl has no point-to-point between replicas")

    def barrier(self):
        raise Unsupported("popxl has no barrier between replicas")

    def describe(self) -> Dict[str, Any]:
        version = getattr(self.popxl, "__version__", "?")
        return {
            "transport": self.name,
            "transport_version": f"popxl {version} (UNTESTED on IPU hardware)",
            "buffer": "host-streamed",
            "notes": ["poplar: each timed call is one popxl Session.run: host-to-IPU stream, the "
                      "replicated collective over IPU-Link, IPU-to-host stream"],
        }

    def close(self) -> None:
        for session in self._sessions:
            session.__exit__(None, None, None)
        self._sessions.clear()


def create(comm, options: TransportOptions) -> PoplarTransport:
    return PoplarTransport(comm, options)
