"""Reductions and copies over numpy views of shared memory.

A p-way reduction ``out = in_0 op in_1 op ... op in_{p-1}`` over n bytes
must read p*n bytes and write n.  Done naively (``out = in_0 op in_1``,
then ``out = out op in_2``, ...) it re-reads and re-writes ``out`` p-2 more
times: (3p-2)*n bytes of memory traffic instead of (p+1)*n.  Reducing in
chunks of :data:`CHUNK` bytes keeps the running chunk of ``out`` in the L2
cache, so only the p input streams and one output stream reach memory:
the minimum.  With two inputs one call already is minimal.

``avg`` divides each chunk while it is still in cache.  ``bfloat16``,
which numpy cannot add, is widened to float32 chunk by chunk, reduced in
float32 and rounded back to nearest-even once (a sum of exactly
representable values is exact either way).  ``float16`` uses numpy's own
half-precision arithmetic: correct, but much slower than float32 on CPUs
(numpy has no vectorised half path; docs/results/2026-11.md), which
docs/transports.md says.
"""

from __future__ import annotations

from typing import Callable, List, Sequence

import numpy as np

from ground.dtypes import DType

__all__ = ["CHUNK", "plan_reduce", "plan_reduce_rows", "plan_copy", "split"]

CHUNK = 512 * 1024

_UFUNC = {"sum": np.add, "avg": np.add, "prod": np.multiply, "min": np.minimum, "max": np.maximum}


def split(count: int, parts: int, itemsize: int) -> List[slice]:
    """``parts`` contiguous slices covering ``count`` elements, on 64-byte boundaries.

    Ranks writing neighbouring slices then never share a cache line.
    """
    align = max(1, 64 // itemsize)
    units = -(-count // align)  # ceil
    out, start = [], 0
    for k in range(parts):
        n_units = units // parts + (1 if k < units % parts else 0)
        stop = min(count, start + n_units * align)
        out.append(slice(start, stop))
        start = stop
    return out


def _divide(chunk: np.ndarray, p: int) -> None:
    if chunk.dtype.kind == "f":
        np.divide(chunk, np.float64(p), out=chunk, casting="unsafe")
    else:
        wide = np.uint64 if chunk.dtype.kind == "u" else np.int64
        np.floor_divide(chunk, wide(p), out=chunk, casting="unsafe")


def _chunks(n: int, itemsize: int) -> List[slice]:
    step = max(1, CHUNK // itemsize)
    return [slice(s, min(n, s + step)) for s in range(0, n, step)]


def plan_reduce(dtype: DType, op: str, nranks: int, out: np.ndarray,
                inputs: Sequence[np.ndarray]) -> Callable[[], None]:
    """A zero-argument function computing ``out = reduce(op, inputs)`` (avg: / nranks).

    ``out`` may alias ``inputs[0]`` (in place), never a later input.
    """
    if any(x is not None and np.shares_memory(out, x) for x in inputs[1:]):
        raise ValueError("the output may alias only the first input")
    if dtype.name == "bfloat16":
        return _plan_bf16(op, nranks, out, inputs)
    ufunc = _UFUNC[op]
    n = len(out)
    if n == 0:
        return lambda: None
    if len(inputs) == 1:
        src = inputs[0]

        def one():
            if src is not out:
                np.copyto(out, src)
            if op == "avg":
                _divide(out, nranks)
        return one
    if len(inputs) == 2 and op != "avg":
        a, b = inputs

        def two():
            ufunc(a, b, out=out)
        return two
    pieces = [(out[s], [x[s] for x in inputs]) for s in _chunks(n, out.itemsize)]
    average = op == "avg"

    def many():
        for o, xs in pieces:
            ufunc(xs[0], xs[1], out=o)
            for x in xs[2:]:
                ufunc(o, x, out=o)
            if average:
                _divide(o, nranks)
    return many


def plan_reduce_rows(dtype: DType, op: str, nranks: int, out: np.ndarray,
                     rows: np.ndarray) -> Callable[[], None]:
    """``out = reduce(op, rows)`` over the first axis of a (p, n) array: one ufunc call.

    For small messages, where a call costs more than its bytes: the rows are
    reduced in order, so every rank computing this gets the same bits.
    """
    if dtype.name == "bfloat16" or rows.shape[0] <= 3:
        # Up to three rows, chained ufunc calls cost less than one ufunc.reduce.
        return plan_reduce(dtype, op, nranks, out, list(rows))
    ufunc = _UFUNC[op]
    reduce = ufunc.reduce
    if op == "avg":
        def run_avg():
            reduce(rows, axis=0, out=out)
            _divide(out, nranks)
        return run_avg

    def run():
        reduce(rows, axis=0, out=out)
    return run


def _plan_bf16(op, nranks, out, inputs):
    ufunc = _UFUNC[op]
    step = max(1, CHUNK // 4)
    acc = np.empty(step, np.uint32)
    tmp = np.empty(step, np.uint32)
    rnd = np.empty(step, np.uint32)
    pieces = [(out[s], [x[s] for x in inputs]) for s in _chunks(len(out), 4)]

    def widen(dst, bits):
        np.copyto(dst, bits, casting="unsafe")
        np.left_shift(dst, 16, out=dst)
        return dst.view(np.float32)

    def run():
        for o, xs in pieces:
            k = len(o)
            a32 = widen(acc[:k], xs[0])
            for x in xs[1:]:
                ufunc(a32, widen(tmp[:k], x), out=a32)
            if op == "avg":
                np.divide(a32, np.float32(nranks), out=a32)
            bits = acc[:k]
            # Round to nearest even on the 16 bits dropped (NaN payloads aside).
            np.right_shift(bits, 16, out=rnd[:k])
            np.bitwise_and(rnd[:k], 1, out=rnd[:k])
            np.add(rnd[:k], 0x7FFF, out=rnd[:k])
            np.add(bits, rnd[:k], out=bits)
            np.right_shift(bits, 16, out=bits)
            np.copyto(o, bits, casting="unsafe")
    return run


def plan_copy(pairs: Sequence[tuple]) -> Callable[[], None]:
    """Copy each (dst, src) pair, in order."""
    pairs = [(d, s) for d, s in pairs if len(d)]
    copy = np.copyto

    def run():
        for d, s in pairs:
            copy(d, s)
    return run
