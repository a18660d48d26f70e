"""Transport registry: register / probe / available() / resolve / create(name) / "auto".

The catalogue below names every transport and the module that implements
it; nothing is imported at start.  A transport's module is imported only
when that transport is probed or created (:func:`probe`, :func:`create`),
and a module's ``probe`` says why it cannot be used here (library missing,
no device) without initialising MPI or touching a device; modules keep
heavy libraries (torch, CuPy, popxl) out of their top-level imports, and
probe for them with ``importlib.util.find_spec`` where they can.  So a run
over mpi or shm never imports torch; :func:`available` (the listing of
``python -m transports``, and the error for an unknown name) probes every
transport and may.  :func:`register` adds a transport from outside the
catalogue (tests register single-process fakes this way).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, Mapping, Optional, Union

from ground.dtypes import ConfigError
from transports.base import Bound, Transport, TransportBase, TransportOptions, Unsupported

__all__ = [
    "Bound",
    "Transport",
    "TransportBase",
    "Unsupported",
    "TransportOptions",
    "register",
    "probe",
    "known",
    "available",
    "description",
    "create",
    "resolve",
    "describe_all",
]


@dataclass(frozen=True)
class Entry:
    """A catalogued transport: its module is imported on first use only."""

    name: str
    module: str
    variant: Optional[str]  # modules with variants (torch_dist) take it in create() and probe()
    description: str

    def load(self) -> "Loaded":
        mod = importlib.import_module(self.module)
        if self.variant is None:
            return Loaded(mod.create, getattr(mod, "probe", lambda: None))
        return Loaded(mod.create(self.variant), partial(mod.probe, self.variant))


@dataclass(frozen=True)
class Loaded:
    create: Callable
    probe: Callable[[], Optional[str]]


_CATALOG: Dict[str, Entry] = {e.name: e for e in (
    Entry("shm", "transports.shm", None, "collscale's own shared-memory collectives (one host; zero-copy)"),
    Entry("mpi", "transports.mpi", None, "the MPI library's own collectives, through mpi4py"),
    Entry("gloo", "transports.torch_dist", "gloo", "torch.distributed gloo over TCP (the Ethernet path)"),
    Entry("nccl", "transports.torch_dist", "nccl",
          "torch.distributed NCCL on NVIDIA GPUs (NVLink, InfiniBand); on a ROCm build of torch this backend is "
          "RCCL, on AMD Instinct GPUs (Infinity Fabric); untested on hardware"),
    Entry("hccl", "transports.torch_dist", "hccl",
          "torch.distributed HCCL on Habana Gaudi (RoCE v2); untested on hardware"),
    Entry("torch-mpi", "transports.torch_dist", "torch-mpi", "torch.distributed's MPI backend"),
    Entry("poplar", "transports.poplar", None,
          "Graphcore IPU-Link through popxl replicated collectives; untested on hardware"),
)}
# Fabrics with no public collective API: listed, never usable; analysis models them.
NO_PUBLIC_API = {
    "groq": "Groq RealScale has no public collective API (modelled by facts.fabrics)",
    "cerebras": "Cerebras MemoryX/SwarmX has no public collective API (the pattern runs as "
                "collectives.weight_stream; the fabric is modelled by facts.fabrics)",
}

_LOADED: Dict[str, Loaded] = {}  # catalogued transports imported so far, and registered ones
_DESCRIPTIONS: Dict[str, str] = {}
_IMPORT_ERRORS: Dict[str, str] = {}


def register(name: str, create: Callable, probe: Callable[[], Optional[str]] = lambda: None,
             description: str = "") -> None:
    """Add (or replace) a transport: ``create(comm, TransportOptions)`` and ``probe()``."""
    _LOADED[name] = Loaded(create, probe)
    _DESCRIPTIONS[name] = description
    _IMPORT_ERRORS.pop(name, None)


def _loaded(name: str) -> Optional[Loaded]:
    """The transport's functions, importing its module the first time; None if it cannot import."""
    if name not in _LOADED and name not in _IMPORT_ERRORS and name in _CATALOG:
        entry = _CATALOG[name]
        try:
            _LOADED[name] = entry.load()
        except ImportError as exc:
            _IMPORT_ERRORS[name] = f"cannot import {entry.module}: {exc}"
    return _LOADED.get(name)


def probe(name: str) -> Optional[str]:
    """None when transport ``name`` is usable here, else why not (imports that transport only)."""
    if name in NO_PUBLIC_API:
        return NO_PUBLIC_API[name]
    loaded = _loaded(name)
    if loaded is None:
        return _IMPORT_ERRORS.get(name, f"unknown transport '{name}'")
    return loaded.probe()


def known() -> list:
    """Every transport name, catalogued, registered and model-only, in listing order."""
    names = list(_CATALOG) + [n for n in _LOADED if n not in _CATALOG] + list(NO_PUBLIC_API)
    return sorted(set(names), key=_order)


def available() -> Dict[str, Optional[str]]:
    """Every known transport: None when usable here, else the reason it is not (probes them all)."""
    return {name: probe(name) for name in known()}


def _order(name: str):
    listed = list(_CATALOG) + list(NO_PUBLIC_API)
    return (listed.index(name) if name in listed else len(listed), name)


def description(name: str) -> str:
    """What the catalogue says transport ``name`` is ('' for a name it lacks)."""
    entry = _CATALOG.get(name)
    return entry.description if entry else _DESCRIPTIONS.get(name, "") or ""


def describe_all():
    """Rows (name, status, detail) for ``python -m transports``."""
    descriptions = {name: e.description for name, e in _CATALOG.items()}
    descriptions.update({name: d for name, d in _DESCRIPTIONS.items() if d})
    return [
        (name, "available" if reason is None else "unavailable",
         descriptions.get(name, "") if reason is None else reason)
        for name, reason in available().items()
    ]


def resolve(name: str, comm=None) -> str:
    """Turn ``auto`` into a concrete transport; check that a named one exists here.

    Only the transports that decide the answer are probed (imported).
    """
    if name == "auto":
        # One host and no accelerator transport: our shared memory; else MPI.
        import socket

        hosts = set(comm.allgather(socket.gethostname())) if comm is not None else {None}
        if len(hosts) == 1 and probe("shm") is None:
            return "shm"
        if getattr(comm, "mpi", None) is not None and probe("mpi") is None:
            return "mpi"
        if probe("gloo") is None:
            return "gloo"
        status = available()
        usable = [n for n, reason in status.items() if reason is None]
        if not usable:
            raise ConfigError("no transport is usable here:\n" + _explain(status))
        return usable[0]
    if name in NO_PUBLIC_API:
        raise ConfigError(f"transport '{name}' cannot be measured: {NO_PUBLIC_API[name]}")
    if name not in _CATALOG and name not in _LOADED:
        raise ConfigError(f"unknown transport '{name}'; known here:\n" + _explain(available()))
    reason = probe(name)
    if reason is not None:
        raise ConfigError(f"transport '{name}' is not available here: {reason}")
    return name


def _explain(status: Dict[str, Optional[str]]) -> str:
    return "\n".join(
        f"  {n:<10} {'available' if r is None else 'unavailable: ' + r}" for n, r in status.items()
    )


def create(name: str, comm, options: Union[TransportOptions, Mapping[str, Any], None] = None) -> Transport:
    """A ready transport for ``comm``'s ranks (``name`` may be ``auto``)."""
    concrete = resolve(name, comm)
    return _LOADED[concrete].create(comm, TransportOptions.coerce(options))
