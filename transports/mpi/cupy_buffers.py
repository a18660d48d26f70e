"""CuPy (GPU) buffers through the MPI transport: ``--transport mpi --buffer cupy``.

Buffers are CuPy arrays on the GPU picked by local rank.  When the MPI
library is CUDA-aware, device arrays go to MPI directly (after the device
is synchronised, as mpi4py requires).  Otherwise every call stages through
host memory, *inside the timed call*: device-to-host copy of the input, the
MPI collective on host buffers, host-to-device copy of the result; the
header and each record say ``cupy-staged`` so a staged figure is never
mistaken for a direct one.

CUDA-awareness: ``COLLSCALE_CUDA_AWARE_MPI=1|0`` if set; otherwise the
library is asked (Open MPI's ``MPIX_Query_cuda_support``, MPICH's
``MPIX_GPU_query_support``); anything else counts as not CUDA-aware.

Only a small part of CuPy is used (``zeros``, ``asnumpy``, ``ndarray.set``,
``ndarray.view``, ``cuda.runtime.getDeviceCount``, ``cuda.Device``), which
lets the tests run this code with a numpy-backed stand-in where no GPU is.
"""

from __future__ import annotations

import ctypes
import os
from typing import Optional

import numpy as np

from ground.dtypes import DType
from transports.base import Bound, Unsupported
from transports.mpi.host import MPITransport

__all__ = ["MPICupyTransport", "cuda_aware_mpi"]


def _libmpi() -> Optional[ctypes.CDLL]:
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "/libmpi" in path and ".so" in path:
                    return ctypes.CDLL(path)
    except OSError:
        pass
    return None


def cuda_aware_mpi() -> bool:
    """Whether MPI can take CUDA device pointers (see the module docstring)."""
    forced = os.environ.get("COLLSCALE_CUDA_AWARE_MPI")
    if forced in ("0", "1"):
        return forced == "1"
    lib = _libmpi()
    if lib is None:
        return False
    query = getattr(lib, "MPIX_Query_cuda_support", None)  # Open MPI
    if query is not None:
        return bool(query())
    query = getattr(lib, "MPIX_GPU_query_support", None)  # MPICH
    if query is not None:
        flag = ctypes.c_int(0)
        if query(0, ctypes.byref(flag)) == 0:  # MPIX_GPU_SUPPORT_CUDA
            return bool(flag.value)
    return False


class MPICupyTransport(MPITransport):
    def __init__(self, mpi_comm):
        try:
            import cupy
        except ImportError as exc:
            raise Unsupported(f"--buffer cupy: CuPy is not installed ({exc}); pip install collscale[cupy]")
        super().__init__(mpi_comm)
        self.cupy = cupy
        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            raise Unsupported("--buffer cupy: no CUDA device is visible")
        from ground.env import detect

        local = detect().local_rank
        self.device = cupy.cuda.Device((self.rank if local is None else local) % count)
        self.device.use()
        self.direct = cuda_aware_mpi()

    # -- buffers on the GPU -------------------------------------------------------------
    def alloc(self, count: int, dtype: DType):
        return self.cupy.zeros(max(count, 0), dtype=dtype.storage)

    def view(self, buf, dtype: DType):
        return buf.view(dtype.storage)

    def to_host(self, buf) -> np.ndarray:
        return self.cupy.asnumpy(buf)

    def from_host(self, buf, values) -> None:
        buf.set(np.ascontiguousarray(values))

    def fill(self, buf, value) -> None:
        buf.fill(value)

    def synchronize(self) -> None:
        self.device.synchronize()

    # -- every collective: direct, or staged through host memory -------------------------------
    def _through(self, bind, send, recv, *args, needs_input: bool = True) -> Bound:
        if self.direct:
            bound = bind(send, recv, *args)
            sync, run = self.device.synchronize, bound.run

            def direct():
                sync()  # kernels writing the inputs must be done before MPI reads them
                run()
            return Bound(direct, bound.result)
        h_send = None if send is None else np.empty(send.shape, send.dtype)
        h_recv = np.empty(recv.shape, recv.dtype)
        bound = bind(h_send, h_recv, *args)
        source, staging = (send, h_send) if send is not None else (recv, h_recv)
        asnumpy = self.cupy.asnumpy
        result = None
        copy_out = None
        if bound.result is not None:
            start = (bound.result.__array_interface__["data"][0]
                     - h_recv.__array_interface__["data"][0]) // h_recv.itemsize
            result = recv[start: start + len(bound.result)]
            host_result = bound.result
            copy_out = result.set
        run = bound.run

        def staged():
            if needs_input:
                asnumpy(source, out=staging)  # device -> host, inside the timed call
            run()
            if copy_out is not None:
                copy_out(host_result)  # host -> device
        return Bound(staged, result)

    def allreduce(self, send, recv, dtype, op):
        return self._through(super().allreduce, send, recv, dtype, op)

    def broadcast(self, send, recv, dtype, root):
        return self._through(super().broadcast, send, recv, dtype, root, needs_input=self.rank == root)

    def reduce(self, send, recv, dtype, op, root):
        return self._through(super().reduce, send, recv, dtype, op, root)

    def allgather(self, send, recv, dtype):
        return self._through(super().allgather, send, recv, dtype)

    def reduce_scatter(self, send, recv, dtype, op):
        return self._through(super().reduce_scatter, send, recv, dtype, op)

    def alltoall(self, send, recv, dtype):
        return self._through(super().alltoall, send, recv, dtype)

    def sendrecv(self, send, recv, dtype, dest, source):
        return self._through(super().sendrecv, send, recv, dtype, dest, source)

    def pingpong(self, send, recv, dtype, peer):
        return self._through(super().pingpong, send, recv, dtype, peer)

    def p2p(self, sends, recvs, dtype):
        if not self.direct:
            raise Unsupported("point-to-point with staged cupy buffers (this MPI is not CUDA-aware)")
        run, sync = super().p2p(sends, recvs, dtype), self.device.synchronize

        def direct():
            sync()
            run()
        return direct

    def describe(self):
        info = super().describe()
        info["buffer"] = "cupy-direct" if self.direct else "cupy-staged"
        info["settings"] = dict(info.get("settings", {}), gpu=str(self.device.id))
        info.setdefault("notes", []).append(
            "cupy buffers go to MPI directly (CUDA-aware MPI)" if self.direct else
            "cupy buffers are STAGED through host memory: device-to-host and host-to-device copies are "
            "inside every timed call (this MPI is not CUDA-aware)")
        return info
