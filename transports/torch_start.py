"""How a torch.distributed transport starts: the backends, whether one is usable, the device, the rendezvous.

Rendezvous.  Under torchrun, torchrun's variables are used: the harness's
control communicator already owns the default (gloo) group, and the
transport creates its own group with the measured backend.  Under mpirun
(or any MPI launcher) rank 0 opens a TCPStore on a free port (or on
``MASTER_PORT`` if set) at its address (``MASTER_ADDR``, the address of
``--iface``, or its host name; 127.0.0.1 when every rank shares the host),
and sends address and port to the others over MPI.

``--iface`` sets GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME / HCCL_SOCKET_IFNAME
(unless already set) so the data goes over that interface.  ``--device``
chooses where tensors live (cpu, cuda, hpu; default by backend); the GPU is
picked by local rank.

:mod:`transports.torch_dist` is the transport these start.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import socket
import struct
from datetime import timedelta
from typing import Optional

from ground.dtypes import ConfigError
from transports.base import Unsupported

__all__ = ["BACKENDS", "SOCKET_ENV", "probe", "torch_reason", "interface_address", "pick_device", "rendezvous",
           "address"]

# collscale name -> (torch backend name, default device)
BACKENDS = {
    "gloo": ("gloo", "cpu"),
    "nccl": ("nccl", "cuda"),
    "torch-mpi": ("mpi", "cpu"),
    "hccl": ("hccl", "hpu"),
}
SOCKET_ENV = {"gloo": "GLOO_SOCKET_IFNAME", "nccl": "NCCL_SOCKET_IFNAME", "hccl": "HCCL_SOCKET_IFNAME"}


def torch_reason() -> Optional[str]:
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed (pip install torch==2.13.0, or collscale[torch])"
    return None


def probe(name: str) -> Optional[str]:
    """None when backend ``name`` is usable here, else why not (no device is touched)."""
    reason = torch_reason()
    if reason:
        return reason
    import torch.distributed as dist

    if not dist.is_available():
        return "this PyTorch build has no torch.distributed"
    if name == "gloo":
        return None if dist.is_gloo_available() else "this PyTorch build has no gloo"
    if name == "torch-mpi":
        return None if dist.is_mpi_available() else \
            "this PyTorch build has no MPI backend (torch must be built from source with MPI)"
    if name == "nccl":
        import torch

        if not dist.is_nccl_available():
            return "this PyTorch build has no NCCL/RCCL (a CPU build)"
        if not torch.cuda.is_available():  # ROCm builds answer for HIP devices here too
            return "no CUDA or ROCm device visible"
        return None
    if name == "hccl":
        if importlib.util.find_spec("habana_frameworks") is None:
            return "habana_frameworks is not installed (Intel Gaudi software stack; untested here)"
        return None
    return f"unknown torch backend {name}"


def interface_address(iface: str) -> str:
    """IPv4 address of network interface ``iface`` (Linux)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", iface[:15].encode()))
        except OSError as exc:
            raise ConfigError(f"--iface {iface}: no IPv4 address on that interface ({exc.strerror})") from None
    return socket.inet_ntoa(packed[20:24])


def pick_device(torch, backend: str, kind: str, comm):
    """The torch.device for ``--device kind`` (cpu, cuda, hpu); the GPU by local rank."""
    if kind not in ("cpu", "cuda", "hpu"):
        raise ConfigError(f"--device {kind}: choose cpu, cuda or hpu")
    if kind == "cpu":
        if backend == "nccl":
            raise ConfigError("--transport nccl needs --device cuda (NCCL moves GPU memory)")
        return torch.device("cpu")
    from ground.env import detect

    local = detect().local_rank
    local = comm.rank if local is None else local
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise Unsupported("--device cuda: no CUDA device is visible")
        index = local % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    try:
        import habana_frameworks.torch.core  # noqa: F401  (the documented way to get torch.hpu)
    except ImportError:
        pass
    if not hasattr(torch, "hpu"):
        raise Unsupported("--device hpu: habana_frameworks.torch is not installed (no Gaudi here)")
    return torch.device("hpu")

def rendezvous(dist, backend: str, comm, iface: Optional[str], timeout: float):
    """(group, whether we created the default group, the TCPStore or None): see the module docstring."""
    pg_timeout = timedelta(seconds=timeout)
    if dist.is_initialized():
        # torchrun (our control group) or the caller's own group: reuse it when
        # it runs the same backend (its connections are warm), else make ours.
        if dist.get_backend() == backend:
            return dist.group.WORLD, False, None
        return dist.new_group(backend=backend, timeout=pg_timeout), False, None
    store = None
    error = None
    one_host = len(set(comm.allgather(socket.gethostname()))) == 1
    if comm.rank == 0:
        host = address(one_host, iface)
        port = int(os.environ.get("MASTER_PORT") or 0)
        try:
            store = dist.TCPStore(host, port, comm.size, True, timeout=pg_timeout,
                                  wait_for_workers=False)
            where = (host, store.port)
        except Exception as exc:  # the port is taken, or the address is not ours
            where = None
            error = (f"rank 0 cannot listen on {host}:{port} for the torch.distributed rendezvous "
                     f"({str(exc).splitlines()[0]})"
                     + ("; unset MASTER_PORT to let collscale pick a free port" if port else ""))
    else:
        where = None
    where, error = comm.bcast((where, error))
    if error:
        raise Unsupported(error)
    if comm.rank != 0:
        store = dist.TCPStore(where[0], where[1], comm.size, False, timeout=pg_timeout)
    dist.init_process_group(backend, store=store, rank=comm.rank, world_size=comm.size,
                            timeout=pg_timeout)
    return dist.group.WORLD, True, store

def address(one_host: bool, iface: Optional[str]) -> str:
    """Where rank 0 listens for the rendezvous."""
    if iface:
        return interface_address(iface)
    if os.environ.get("MASTER_ADDR"):
        return os.environ["MASTER_ADDR"]
    if one_host:
        return "127.0.0.1"
    return socket.gethostbyname(socket.gethostname())
