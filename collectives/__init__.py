"""collscale's harness: one shared sweep, one tiny module per collective.

Run a collective with ``mpirun -n N python -m collectives.allreduce``; list
them with ``python -m collectives``.  The facts of each collective live in
:mod:`collectives.spec`; the timing loop in :mod:`collectives.harness`.
"""

__all__ = ["__version__"]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("collscale")
    except Exception:
        return "0+unknown"


__version__ = _version()
