"""torch.distributed transports: ``gloo`` (TCP, the Ethernet path), ``nccl``,
``torch-mpi`` and ``hccl`` (Habana Gaudi, RoCE).

Start-up (the backends, the device, the rendezvous under torchrun or an MPI
launcher, ``--iface``): :mod:`transports.torch_start`.

What torch.distributed cannot do is reported, never emulated:
``all_reduce``, ``broadcast`` and ``reduce`` work in place only,
``all_to_all_single`` out of place only (in place, gloo returned wrong
blocks), and gloo has no uint32/uint64.  ``avg`` is the
backend's own where it is exact (gloo on floats); elsewhere it is SUM then a
division inside the timed call (NCCL's ncclAvg pre-multiplies floats by 1/n,
which is not exact), and the records say so (``op_impl``).

Timing on CUDA uses events recorded after every iteration on the current
stream, so each iteration's time is the GPU's; on HPU every iteration is
synchronised.  ``--cuda-graph`` (CUDA only) captures the timed iterations as
CUDA graphs and replays them (:mod:`transports.nccl_graphs`; untested on
hardware).
"""

from __future__ import annotations

import os
import time
from functools import partial
from typing import Any, Dict

import numpy as np

from ground.dtypes import ConfigError, DType
from transports.base import Bound, HostTimer, TransportBase, TransportOptions, Unsupported
from transports.torch_start import BACKENDS, SOCKET_ENV, pick_device, probe, rendezvous

__all__ = ["TorchDistTransport", "probe", "create"]

_NO_UNSIGNED_WIDE = {"gloo", "nccl", "mpi", "hccl"}


def _torch_dtype(torch, dtype: DType):
    return {
        "int8": torch.int8, "uint8": torch.uint8, "int32": torch.int32, "int64": torch.int64,
        "uint32": getattr(torch, "uint32", None), "uint64": getattr(torch, "uint64", None),
        "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
        "float64": torch.float64,
    }[dtype.name]


class _CudaTimer(HostTimer):
    """CUDA events after every iteration; host stamps still show progress to the watchdog."""

    def __init__(self, torch):
        super().__init__()
        self.torch = torch

    def _loop(self, run, iters, synchronize, before=None):
        if before is not None:
            return super()._loop(run, iters, synchronize, before)
        cuda = self.torch.cuda
        events = [cuda.Event(enable_timing=True) for _ in range(iters + 1)]
        stamps = [0.0] * (iters + 1)
        self.stamps = stamps
        clock = time.perf_counter
        events[0].record()
        stamps[0] = clock()
        for i in range(1, iters + 1):
            run()
            events[i].record()
            stamps[i] = clock()
        synchronize()
        # Replace enqueue times by the GPU's own, as cumulative seconds.
        t = stamps[0]
        for i in range(1, iters + 1):
            t += events[i - 1].elapsed_time(events[i]) * 1e-3
            stamps[i] = t
        return stamps


class _SyncTimer(HostTimer):
    """Synchronise the device after every iteration (HPU)."""

    def _loop(self, run, iters, synchronize, before=None):
        def run_synced():
            run()
            synchronize()
        return super()._loop(run_synced, iters, lambda: None, before)


class TorchDistTransport(TransportBase):
    """One torch.distributed backend as a transport.

    Beyond :class:`~transports.base.Transport` it provides
    :class:`~transports.base.TorchTransport` (``torch``, ``dist``, ``group``,
    ``device``, set in ``__init__``), which replicate's DDP runs over.
    """

    torch: Any  # the torch module
    dist: Any  # torch.distributed
    group: Any  # the process group this transport's collectives run in
    device: Any  # the torch.device its tensors live on

    def __init__(self, comm, options: TransportOptions, name: str):
        import torch
        import torch.distributed as dist

        self.torch, self.dist, self.name = torch, dist, name
        # torch 2.13 renamed these; older releases have only the first names.
        self._all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        self._reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        backend, default_device = BACKENDS[name]
        self.backend = backend
        super().__init__(comm.rank, comm.size)
        if name == "hccl":
            # The documented Gaudi path: importing this registers backend "hccl".
            import habana_frameworks.torch.distributed.hccl  # noqa: F401
        iface = options.iface
        if iface and backend in SOCKET_ENV:
            os.environ.setdefault(SOCKET_ENV[backend], iface)
        self.device = pick_device(torch, backend, options.device or default_device, comm)
        timeout = float(options.timeout or 0) or 1800.0
        self.cuda_graph = bool(options.cuda_graph)
        if self.cuda_graph and self.device.type != "cuda":
            raise ConfigError(f"--cuda-graph captures CUDA graphs: it needs --device cuda ({name} runs on "
                              f"{self.device.type} here)")
        self._graphs: dict = {}
        self.group, self._own_default, self._store = rendezvous(dist, backend, comm, iface, timeout)
        self._closed = False

    # -- buffers -----------------------------------------------------------------------------
    def _dtype(self, dtype: DType):
        tdt = _torch_dtype(self.torch, dtype)
        if tdt is None or (dtype.name in ("uint32", "uint64") and self.backend in _NO_UNSIGNED_WIDE):
            raise Unsupported(f"torch.distributed ({self.backend}) has no {dtype.name}")
        return tdt

    def alloc(self, count: int, dtype: DType):
        return self.torch.zeros(max(count, 0), dtype=_torch_dtype(self.torch, dtype) or self.torch.uint8,
                                device=self.device)

    def view(self, buf, dtype: DType):
        tdt = _torch_dtype(self.torch, dtype)
        if tdt is None:  # no such torch dtype: keep bytes, the collectives will say unsupported
            return buf
        return buf.view(tdt)

    def to_host(self, buf) -> np.ndarray:
        torch = self.torch
        if buf.dtype == torch.bfloat16:
            return buf.detach().view(torch.int16).cpu().numpy().view(np.uint16)
        return buf.detach().cpu().numpy()

    def from_host(self, buf, values) -> None:
        torch = self.torch
        if buf.dtype == torch.bfloat16:
            buf.view(torch.int16).copy_(torch.from_numpy(np.ascontiguousarray(values).view(np.int16)))
        else:
            buf.copy_(torch.from_numpy(np.ascontiguousarray(values)))

    def fill(self, buf, value) -> None:
        torch = self.torch
        if buf.dtype == torch.bfloat16:
            buf.view(torch.int16).fill_(int(np.array(value, np.uint16).view(np.int16)))
        else:
            buf.fill_(value.item() if hasattr(value, "item") else value)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)
        elif self.device.type == "hpu":
            self.torch.hpu.synchronize()

    def timer(self) -> HostTimer:
        if self.cuda_graph:
            from transports.nccl_graphs import GraphTimer

            return GraphTimer(self.torch, self._graphs)
        if self.device.type == "cuda":
            return _CudaTimer(self.torch)
        if self.device.type == "hpu":
            return _SyncTimer()
        return HostTimer()

    # -- ops --------------------------------------------------------------------------------
    def _reduce_op(self, op: str, dtype: DType):
        """(torch ReduceOp, divide afterwards?) for ``op`` on ``dtype``."""
        R = self.dist.ReduceOp
        if op == "avg":
            if self.backend == "gloo" and dtype.is_float:
                return R.AVG, False
            return R.SUM, True
        return {"sum": R.SUM, "prod": R.PRODUCT, "min": R.MIN, "max": R.MAX}[op], False

    def _with_divide(self, call, result, divide: bool) -> Bound:
        if not divide:
            return Bound(call, result)
        p = self.size
        floor = not result.is_floating_point()

        def run():
            call()
            if floor:
                result.floor_divide_(p)
            else:
                result.div_(p)
        return Bound(run, result)

    def _in_place_only(self, send, what):
        if send is not None:
            raise Unsupported(f"torch.distributed.{what} works in place only")

    def allreduce(self, send, recv, dtype, op):
        self._in_place_only(send, "all_reduce")
        self._dtype(dtype)
        rop, divide = self._reduce_op(op, dtype)
        return self._with_divide(partial(self.dist.all_reduce, recv, rop, self.group), recv, divide)

    def broadcast(self, send, recv, dtype, root):
        self._in_place_only(send, "broadcast")
        self._dtype(dtype)
        return Bound(partial(self.dist.broadcast, recv, root, self.group), recv)

    def reduce(self, send, recv, dtype, op, root):
        self._in_place_only(send, "reduce")
        self._dtype(dtype)
        rop, divide = self._reduce_op(op, dtype)
        call = partial(self.dist.reduce, recv, root, rop, self.group)
        if self.rank != root:
            return Bound(call, None)
        return self._with_divide(call, recv, divide)

    def allgather(self, send, recv, dtype):
        self._dtype(dtype)
        if send is None:
            block = len(recv) // self.size
            send = recv[self.rank * block:(self.rank + 1) * block]
        return Bound(partial(self._all_gather, recv, send, self.group), recv)

    def reduce_scatter(self, send, recv, dtype, op):
        self._dtype(dtype)
        rop, divide = self._reduce_op(op, dtype)
        if send is None:  # in place: this rank's block of the input receives the result
            block = len(recv) // self.size
            out = recv[self.rank * block:(self.rank + 1) * block]
            return self._with_divide(partial(self._reduce_scatter, out, recv, rop, self.group), out, divide)
        return self._with_divide(partial(self._reduce_scatter, recv, send, rop, self.group), recv, divide)

    def alltoall(self, send, recv, dtype):
        self._dtype(dtype)
        if send is None:
            # all_to_all_single promises nothing for aliased buffers; with gloo
            # collscale's validation found wrong blocks from 2 elements per peer.
            raise Unsupported("torch.distributed.all_to_all_single has no in-place form")
        return Bound(partial(self.dist.all_to_all_single, recv, send, group=self.group), recv)

    def sendrecv(self, send, recv, dtype, dest, source):
        self._dtype(dtype)
        if send is None:
            raise Unsupported("torch.distributed has no in-place send/receive")
        if self.size == 1:
            raise Unsupported("torch.distributed cannot send to its own rank")
        dist, group = self.dist, self.group
        ops = [dist.P2POp(dist.isend, send, dest, group), dist.P2POp(dist.irecv, recv, source, group)]
        batch = dist.batch_isend_irecv

        def run():
            for work in batch(ops):
                work.wait()
        return Bound(run, recv)

    def pingpong(self, send, recv, dtype, peer):
        self._dtype(dtype)
        if send is None:
            raise Unsupported("pingpong uses separate send and receive buffers (as OSU)")
        dsend, drecv, group = self.dist.send, self.dist.recv, self.group
        if self.rank == 0:
            def run():
                dsend(send, peer, group)
                drecv(recv, peer, group)
        else:
            def run():
                drecv(recv, peer, group)
                dsend(send, peer, group)
        return Bound(run, recv)

    def barrier(self):
        return Bound(partial(self.dist.barrier, self.group), None)

    def p2p(self, sends, recvs, dtype=None):
        """Run the given (buffer, peer) sends and receives together and wait for them all."""
        dist, group = self.dist, self.group
        ops = [dist.P2POp(dist.isend, b, peer, group) for b, peer in sends] + \
              [dist.P2POp(dist.irecv, b, peer, group) for b, peer in recvs]
        if not ops:
            return lambda: None
        batch = dist.batch_isend_irecv

        def run():
            for work in batch(ops):
                work.wait()
        return run

    # -- the rest ----------------------------------------------------------------------------
    def describe(self) -> Dict[str, Any]:
        torch = self.torch
        # On a ROCm build (torch.version.hip) the "nccl" backend is AMD's RCCL, and so is its version.
        library = "rccl" if self.backend == "nccl" and getattr(torch.version, "hip", None) else self.backend
        version = f"torch {torch.__version__} {library}"
        if self.backend == "nccl":
            try:
                version += " %d.%d.%d" % torch.cuda.nccl.version()
            except Exception:
                pass
        settings = {"device": str(self.device)}
        if self.device.type == "cuda":
            settings["gpu"] = torch.cuda.get_device_name(self.device)
        for key in SOCKET_ENV.values():
            if os.environ.get(key):
                settings[key] = os.environ[key]
        impl = {}
        if self.backend != "gloo":
            impl["avg"] = "SUM then a division by the rank count inside the timed call"
        else:
            impl["avg"] = "gloo's AVG on floats; SUM then a floor division on integers"
        notes = ["timed loop: iterations captured as CUDA graphs and replayed (--cuda-graph, nccl-tests' -G; "
                 "UNTESTED on hardware); validation runs the call eagerly"] if self.cuda_graph else []
        return {
            "transport": self.name,
            "transport_version": version,
            "buffer": self.device.type,
            "settings": settings,
            "op_impl": impl,
            "loop": "cuda-graph" if self.cuda_graph else "python",
            "notes": notes,
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        dist = self.dist
        if not dist.is_initialized():
            return
        if self._own_default:
            dist.destroy_process_group()
        elif self.group is not dist.group.WORLD:
            dist.destroy_process_group(self.group)


def create(name: str):
    def make(comm, options: TransportOptions) -> TorchDistTransport:
        return TorchDistTransport(comm, options, name)
    return make
