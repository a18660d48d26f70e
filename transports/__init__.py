"""Transport registry: register / available() / create(name) / "auto".

Each transport lives in its own module, which calls :func:`register` when
it is imported.  A module whose import fails is recorded with the reason,
and each registered transport may also carry a ``probe`` that says at run
time why it cannot be used here (no device, library missing).  Nothing here
initialises MPI or touches a device.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, Optional

from collectives.dtypes import ConfigError
from transports.base import Bound, Transport, TransportBase, Unsupported

__all__ = [
    "Bound",
    "Transport",
    "TransportBase",
    "Unsupported",
    "register",
    "available",
    "create",
    "resolve",
    "describe_all",
]


@dataclass(frozen=True)
class Entry:
    name: str
    create: Callable
    probe: Callable[[], Optional[str]]
    description: str


_REGISTRY: Dict[str, Entry] = {}
_IMPORT_ERRORS: Dict[str, str] = {}

# (name, module, variant, description): the modules that may provide a transport.
# A module with variants (torch_dist) exposes create(variant) and probe(variant).
_CATALOG = (
    ("shm", "transports.shm", None, "collscale's own shared-memory collectives (one host; zero-copy)"),
    ("mpi", "transports.mpi", None, "the MPI library's own collectives, through mpi4py"),
    ("gloo", "transports.torch_dist", "gloo", "torch.distributed gloo over TCP (the Ethernet path)"),
    ("nccl", "transports.torch_dist", "nccl", "torch.distributed NCCL on NVIDIA GPUs (NVLink, InfiniBand)"),
    ("hccl", "transports.torch_dist", "hccl",
     "torch.distributed HCCL on Habana Gaudi (RoCE v2); untested on hardware"),
    ("torch-mpi", "transports.torch_dist", "torch-mpi", "torch.distributed's MPI backend"),
    ("poplar", "transports.poplar", None,
     "Graphcore IPU-Link through popxl replicated collectives; untested on hardware"),
)
# Fabrics with no public collective API: listed, never usable; analysis models them.
NO_PUBLIC_API = {
    "groq": "Groq RealScale has no public collective API (modelled by analysis.fabrics)",
    "cerebras": "Cerebras MemoryX/SwarmX has no public collective API (the pattern runs as "
                "collectives.weight_stream; the fabric is modelled by analysis.fabrics)",
}


def register(name: str, create: Callable, probe: Callable[[], Optional[str]] = lambda: None,
             description: str = "") -> None:
    _REGISTRY[name] = Entry(name, create, probe, description)


def _load() -> None:
    for name, module, variant, description in _CATALOG:
        if name in _REGISTRY or name in _IMPORT_ERRORS:
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            _IMPORT_ERRORS[name] = f"cannot import {module}: {exc}"
            continue
        if variant is None:
            register(name, mod.create, getattr(mod, "probe", lambda: None), description)
        else:
            register(name, mod.create(variant), partial(mod.probe, variant), description)


def available() -> Dict[str, Optional[str]]:
    """Every known transport: None when usable here, else the reason it is not."""
    _load()
    out: Dict[str, Optional[str]] = dict(_IMPORT_ERRORS)
    for name, entry in _REGISTRY.items():
        out[name] = entry.probe()
    out.update(NO_PUBLIC_API)
    return {name: out[name] for name in sorted(out, key=_order)}


def _order(name: str):
    known = [m[0] for m in _CATALOG] + list(NO_PUBLIC_API)
    return (known.index(name) if name in known else len(known), name)


def describe_all():
    """Rows (name, status, detail) for ``python -m transports``."""
    descriptions = {name: desc for name, _, _, desc in _CATALOG}
    descriptions.update({name: e.description for name, e in _REGISTRY.items() if e.description})
    return [
        (name, "available" if reason is None else "unavailable",
         descriptions.get(name, "") if reason is None else reason)
        for name, reason in available().items()
    ]


def resolve(name: str, comm=None) -> str:
    """Turn ``auto`` into a concrete transport; check that a named one exists here."""
    status = available()
    if name == "auto":
        # One host and no accelerator transport: our shared memory; else MPI.
        import socket

        hosts = set(comm.allgather(socket.gethostname())) if comm is not None else {None}
        if len(hosts) == 1 and status.get("shm") is None:
            return "shm"
        if status.get("mpi") is None and getattr(comm, "mpi", None) is not None:
            return "mpi"
        if status.get("gloo") is None:
            return "gloo"
        usable = [n for n, reason in status.items() if reason is None]
        if not usable:
            raise ConfigError("no transport is usable here:\n" + _explain(status))
        return usable[0]
    if name not in status:
        raise ConfigError(f"unknown transport '{name}'; known here:\n" + _explain(status))
    if name in NO_PUBLIC_API:
        raise ConfigError(f"transport '{name}' cannot be measured: {NO_PUBLIC_API[name]}")
    if status[name] is not None:
        raise ConfigError(f"transport '{name}' is not available here: {status[name]}")
    return name


def _explain(status: Dict[str, Optional[str]]) -> str:
    return "\n".join(
        f"  {n:<10} {'available' if r is None else 'unavailable: ' + r}" for n, r in status.items()
    )


def create(name: str, comm, options: Optional[dict] = None) -> Transport:
    """A ready transport for ``comm``'s ranks (``name`` may be ``auto``)."""
    concrete = resolve(name, comm)
    return _REGISTRY[concrete].create(comm, dict(options or {}))
