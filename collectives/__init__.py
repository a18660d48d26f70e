"""collscale's harness: one shared sweep, one tiny module per collective.

Run a collective with ``mpirun -n N python -m collectives.allreduce``; list
them with ``python -m collectives``.  The facts of each collective live in
:mod:`facts.spec`; the timed loop in :mod:`collectives.timed_loop`.
"""

import importlib.abc
import importlib.machinery
import sys

from ground.version import __version__

__all__ = ["__version__"]


class _UnknownCollective(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``python -m collectives.allreduse``: one clear line from rank 0, exit 2.

    Consulted only after the normal finders failed, and only while ``-m``
    is resolving its module, so ordinary imports still fail as usual.
    """

    def find_spec(self, fullname, path=None, target=None):
        parts = fullname.split(".")
        if len(parts) != 2 or parts[0] != __name__ or sys.argv[:1] != ["-m"]:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return None

    def is_package(self, fullname):
        return False

    def get_code(self, fullname):  # runpy asks for the code before running it
        from facts.spec import names
        from ground.env import detect

        if (detect().rank or 0) == 0:
            name = fullname.split(".", 1)[1]
            print(f"collscale: error: unknown collective '{name}' (choose from: {', '.join(names())})",
                  file=sys.stderr)
        raise SystemExit(2)

    exec_module = get_code


sys.meta_path.append(_UnknownCollective())
