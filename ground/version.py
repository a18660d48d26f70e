"""collscale's version, from the installed package's metadata ("0+unknown" when run from a bare tree)."""

from __future__ import annotations

__all__ = ["__version__"]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("collscale")
    except Exception:
        return "0+unknown"


__version__ = _version()
