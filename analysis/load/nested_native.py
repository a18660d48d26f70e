"""Nested (per-rank) values' texts of a block's lines in C (``nested_json.c``), for
:mod:`analysis.load.nested_texts`.

The C reads each line once and writes each wanted nested value as the
loader keeps it (compact JSON, keys sorted), copying it where its text can
be told from its bytes alone, and marks every other line unsure: those
the caller parses in Python as before.  The object is built on first use
with the plain C compiler (``$CC``, else ``cc``) into collscale's private
cache and loaded from its verified bytes (:mod:`ground.native_build`);
where it cannot be built, :func:`library` is None and the loader parses
every line in Python (slower, the same texts).
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ground.native_build import BuildError, build, c_compiler, load

try:  # optional (the analysis extra); the block reader that calls this needs it
    import pyarrow as pa
except ImportError:  # pragma: no cover - depends on the environment
    pa = None

__all__ = ["library", "scan", "Scan", "SOURCE"]

SOURCE = Path(__file__).with_name("nested_json.c")
_state: dict = {}
_lock = threading.Lock()
_spare: List[np.ndarray] = []  # output buffers given back: their pages are not faulted in again
SPARE = 3


def library():
    """The loaded C function, built once per process; None where it cannot be built (with the reason in
    ``library.why``)."""
    with _lock:
        if "fn" not in _state:
            fn = None
            try:
                lib = load(build("nested_json", str(SOURCE), c_compiler()))
                fn = lib.nested_texts
                fn.restype = ctypes.c_int64
                fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_char_p,
                               ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                               ctypes.c_void_p, ctypes.c_void_p]
                library.why = ""
            except (BuildError, OSError, AttributeError) as exc:
                library.why = str(exc)
            _state["fn"] = fn
        return _state["fn"]


library.why = ""


class Scan(NamedTuple):
    """What the C wrote for one block: key ``j``'s texts in ``out[j * cap:]``, their offsets in
    ``offs[j * (n + 1):]``, ``valid`` (1 text, 0 null or absent), and ``unsure``: the rows left to Python."""

    keys: Tuple[str, ...]
    n: int
    cap: int
    out: np.ndarray
    offs: np.ndarray
    valid: np.ndarray
    unsure: np.ndarray

    def columns(self) -> Dict[str, List[Optional[str]]]:
        """Key -> each row's text, None where null or absent (and in the unsure rows).  Once only: the
        output buffer then serves another block."""
        n, cap = self.n, self.cap
        columns = {}
        for j, key in enumerate(self.keys):
            offs = self.offs[j * (n + 1):(j + 1) * (n + 1)]
            valid = np.packbits(self.valid[j * n:(j + 1) * n], bitorder="little")
            arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offs), pa.py_buffer(self.out[j * cap:(j + 1) * cap]),
                                                   pa.py_buffer(valid))
            columns[key] = arr.to_pylist()  # ASCII only: the C writes no other byte
        with _lock:  # copied out: the buffer serves another block
            if len(_spare) < SPARE and not any(b is self.out for b in _spare):
                _spare.append(self.out)
        return columns


def scan(buf, starts: np.ndarray, ends: np.ndarray, keys: Sequence[str]) -> Optional[Scan]:
    """The C's pass over the lines ``buf[starts[i]:ends[i]]`` (``buf`` bytes or a bytearray, read in
    place; the GIL is let go meanwhile); None where the C function cannot be had or ran out of memory."""
    if pa is None or not keys or not len(starts):
        return None
    fn = library()
    if fn is None:
        return None
    if len(set(keys)) != len(keys):
        raise ValueError(f"keys named twice: {list(keys)}")
    names = [k.encode() for k in keys]
    n, m = len(starts), len(keys)
    lo, hi = int(starts[0]), int(ends[-1])
    first, last = np.asarray(starts, np.int64) - lo, np.asarray(ends, np.int64) - lo  # held: the C reads them
    if not (lo >= 0 and hi <= len(buf) and (first <= last).all() and (last[:-1] < first[1:]).all()):
        raise ValueError("lines must be in order, apart, and inside the buffer")
    cap = hi - lo + 1
    with _lock:
        fits = [i for i, b in enumerate(_spare) if len(b) >= m * cap]
        out = _spare.pop(fits[0]) if fits else np.empty(m * cap, np.uint8)  # pages only where written
    offs = np.empty(m * (n + 1), np.int64)
    valid = np.empty(m * n, np.uint8)
    unsure = np.empty(n, np.uint8)
    view = np.frombuffer(buf, np.uint8, hi - lo, lo)
    lengths = np.array([len(x) for x in names], np.int32)
    got = fn(view.ctypes.data, first.ctypes.data, last.ctypes.data, n, b"".join(names), lengths.ctypes.data, m,
             out.ctypes.data, cap, offs.ctypes.data, valid.ctypes.data, unsure.ctypes.data)
    if got < 0:
        return None
    return Scan(tuple(keys), n, cap, out, offs, valid, np.flatnonzero(unsure))
