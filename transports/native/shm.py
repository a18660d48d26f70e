"""The shm transport's compiled loop: ``shm_loop.c`` built with the C compiler, loaded with ctypes.

No MPI is involved: the object is built with ``$CC`` (default ``cc``),
cached and verified like the MPI loop (:mod:`ground.native_build`), and
loaded from its verified bytes, never from the cached file.  What it runs
(each call's steps) is written by :mod:`transports.shm.compiled`; this
module only knows the codes the C side reads.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Optional

from ground.native_build import Built, build, c_compiler, load as load_built

__all__ = ["ShmLoops", "load", "OPCODES", "TYPES", "REDUCE_OPS", "POLICIES", "CONFIG", "STEP"]

SOURCE = Path(__file__).with_name("shm_loop.c")

OPCODES = {"post": 1, "wait": 2, "arrive": 3, "copy": 4, "reduce": 5}
TYPES = {name: k for k, name in enumerate(
    ("int8", "uint8", "int32", "uint32", "int64", "uint64", "float16", "bfloat16", "float32", "float64"),
    start=1)}
REDUCE_OPS = {"sum": 1, "prod": 2, "min": 3, "max": 4, "avg": 5}
POLICIES = {"futex": 0, "yield": 1, "spin": 2}
CONFIG = ("base", "p", "me", "oversubscribed", "policy", "spin_ns", "yields", "timeout_ns")
STEP = 8  # int64 words per step
STATE = 4  # epoch, eager-call count, peer and step description of a timeout


class ShmLoops:
    """The loaded object: ``run(...)`` (see ``cs_shm_run``) and which types it reduces."""

    def __init__(self, built: Built):
        self.built = built
        lib = load_built(built)  # the verified bytes, from a sealed memfd
        self.run = lib.cs_shm_run
        self.run.restype = ctypes.c_int
        self.run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                             ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
        reduces = lib.cs_shm_reduces
        reduces.restype = ctypes.c_int
        reduces.argtypes = [ctypes.c_int64]
        self._reduces = {name: bool(reduces(code)) for name, code in TYPES.items()}

    def reduces(self, dtype_name: str) -> bool:
        return self._reduces.get(dtype_name, False)


def load(token: Optional[str] = None) -> ShmLoops:
    """Build (or find in the cache) the shm loop; :class:`~ground.native_build.BuildError` if not."""
    return ShmLoops(build("shm_loop", str(SOURCE), c_compiler(), token=token))
