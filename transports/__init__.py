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

# (name, module, description): the modules that may register a transport.
_MODULES = (
    ("mpi", "transports.mpi", "the MPI library's own collectives, through mpi4py"),
)


def register(name: str, create: Callable, probe: Callable[[], Optional[str]] = lambda: None,
             description: str = "") -> None:
    _REGISTRY[name] = Entry(name, create, probe, description)


def _load() -> None:
    for name, module, description in _MODULES:
        if name in _REGISTRY or name in _IMPORT_ERRORS:
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            _IMPORT_ERRORS[name] = f"cannot import {module}: {exc}"
            continue
        register(name, mod.create, getattr(mod, "probe", lambda: None), description)


def available() -> Dict[str, Optional[str]]:
    """Every known transport: None when usable here, else the reason it is not."""
    _load()
    out: Dict[str, Optional[str]] = {}
    for name, _, _ in _MODULES:
        if name in _IMPORT_ERRORS:
            out[name] = _IMPORT_ERRORS[name]
        else:
            out[name] = _REGISTRY[name].probe()
    return out


def describe_all():
    """Rows (name, status, detail) for ``python -m transports``."""
    status = available()
    rows = []
    for name, _, description in _MODULES:
        reason = status[name]
        rows.append((name, "available" if reason is None else "unavailable", reason or description))
    return rows


def resolve(name: str, comm=None) -> str:
    """Turn ``auto`` into a concrete transport; check that a named one exists here."""
    status = available()
    if name == "auto":
        if status.get("mpi") is None:
            return "mpi"
        usable = [n for n, reason in status.items() if reason is None]
        if not usable:
            raise ConfigError("no transport is usable here:\n" + _explain(status))
        return usable[0]
    if name not in status:
        raise ConfigError(f"unknown transport '{name}'; known here:\n" + _explain(status))
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
