"""Seeded inputs whose collective results are known exactly, in closed form.

Every value is a function of ``(seed, iteration, rank, global element index)``
and of the reduction (or ``"move"`` for collectives that only move data).
The expected result never needs the other ranks' inputs: it is a closed
form, so checking a 64 MiB allreduce costs two array fills and a compare,
whatever the rank count.

Exactness, whatever order a transport reduces in (D = ``dtype.data_max``,
A = number of ranks with non-zero contributions, A = p unless p > D):

* sum / avg: rank r holds ``M + s_r*C`` with ``s_r`` = +1, -1 on pairs of
  ranks (0 for an unpaired last rank), so the sum is exactly ``A*M`` and the
  average ``M``.  Any subset of ranks sums to at most ``A*|M| + ceil(A/2)*C``,
  kept <= D, so every partial sum is an exactly representable integer.
* min / max: rank r holds ``B + ((r + K) mod q)``, q = min(p, D): the minimum
  is ``B`` and the maximum ``B + q - 1``.
* prod: E = min(p, pow2_max) ranks hold magnitude 2, the rest 1; S ranks
  (S in {0, 1}, 0 when unsigned) are negative: the product is (-1)**S * 2**E,
  and every partial product is a power of two no larger.
* move: values are arbitrary integers in [-D, D].

Values repeat with a prime period (4099 elements) so tables are cheap to
build and a block landing at a power-of-two offset is still detected.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from collectives.dtypes import DType

__all__ = ["PERIOD", "Key", "rank_input", "reduced", "moved", "count_wrong"]

PERIOD = 4099

_SALTS = {"move": 1, "sum": 2, "avg": 2, "prod": 3, "min": 4, "max": 4}


class Key(tuple):
    """(seed, iteration): identifies one validated run of a collective."""

    def __new__(cls, seed: int, iteration: int):
        return super().__new__(cls, (int(seed), int(iteration)))


def _rng(key: Key, salt: int, who: int) -> np.random.Generator:
    return np.random.default_rng([key[0] & 0xFFFFFFFF, key[1], salt, who + 1])


def _sum_bounds(dtype: DType, p: int):
    """(active ranks A, |M| bound, C bound, M lower bound) keeping sums exact."""
    d = dtype.data_max
    active = min(p, d)
    if dtype.signed:
        # A*km <= D/2 and ceil(A/2)*kc <= D/2.
        km = d // (2 * active) if active == p else 0
        kc = max(1, d // (2 * ((active + 1) // 2))) if active > 1 else 0
        return active, km, kc, -km
    # Unsigned: M in [kc, kc + km] keeps M - C >= 0; partial sums <= A*(M + C).
    if active == 1:
        return 1, d, 0, 0
    if active < p:
        return active, 0, 0, 0  # more ranks than exact values: all zeros, still exact
    kc = d // (3 * active)
    return active, kc, kc, kc


@lru_cache(maxsize=256)
def _tables(kind: str, dtype: DType, p: int, key: Key):
    """Rank-independent tables of one period for reduction ``kind``."""
    rng = _rng(key, _SALTS[kind], -1)
    n = PERIOD
    if kind in ("sum", "avg"):
        active, km, kc, m_lo = _sum_bounds(dtype, p)
        m = rng.integers(m_lo, m_lo + 2 * km + 1 if dtype.signed else m_lo + km + 1, n)
        c = rng.integers(0, kc + 1, n)
        return m, c
    if kind in ("min", "max"):
        q = min(p, dtype.data_max)
        lo = -dtype.data_max if dtype.signed else 0
        base = rng.integers(lo, dtype.data_max - (q - 1) + 1, n)
        shift = rng.integers(0, q, n)
        return base, shift, q
    if kind == "prod":
        e = min(p, dtype.pow2_max)
        mag_shift = rng.integers(0, p, n)
        neg_shift = rng.integers(0, p, n)
        negatives = rng.integers(0, 2, n) if dtype.signed else np.zeros(n, np.int64)
        return e, mag_shift, neg_shift, negatives
    raise ValueError(kind)


@lru_cache(maxsize=1024)
def _period(kind: str, dtype: DType, p: int, rank: int, key: Key) -> np.ndarray:
    """One period of rank ``rank``'s input, in the dtype's host storage."""
    if kind == "move":
        lo = -dtype.data_max if dtype.signed else 0
        vals = _rng(key, _SALTS[kind], rank).integers(lo, dtype.data_max + 1, PERIOD)
    elif kind in ("sum", "avg"):
        active = _sum_bounds(dtype, p)[0]
        m, c = _tables(kind, dtype, p, key)
        if rank >= active:
            vals = np.zeros(PERIOD, np.int64)
        else:
            paired = rank + 1 < active or rank % 2 == 1
            sign = (1 if rank % 2 == 0 else -1) if paired else 0
            vals = m + sign * c
    elif kind in ("min", "max"):
        base, shift, q = _tables(kind, dtype, p, key)
        vals = base + (rank + shift) % q
    elif kind == "prod":
        e, mag_shift, neg_shift, negatives = _tables(kind, dtype, p, key)
        mag = np.where((rank + mag_shift) % p < e, 2, 1)
        vals = np.where((rank + neg_shift) % p < negatives, -mag, mag)
    else:
        raise ValueError(kind)
    out = dtype.from_ints(vals)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=256)
def _expected_period(kind: str, dtype: DType, p: int, key: Key) -> np.ndarray:
    if kind in ("sum", "avg"):
        active = _sum_bounds(dtype, p)[0]
        m, _ = _tables(kind, dtype, p, key)
        vals = m if kind == "avg" else active * m
    elif kind == "min":
        base, _, _ = _tables(kind, dtype, p, key)
        vals = base
    elif kind == "max":
        base, _, q = _tables(kind, dtype, p, key)
        vals = base + q - 1
    elif kind == "prod":
        e, _, _, negatives = _tables(kind, dtype, p, key)
        vals = np.where(negatives == 1, -(2**e), 2**e)
    else:
        raise ValueError(kind)
    out = dtype.from_ints(vals)
    out.setflags(write=False)
    return out


def _tile(period: np.ndarray, start: int, n: int) -> np.ndarray:
    """Elements [start, start + n) of the infinite repetition of ``period``."""
    if n <= 0:
        return period[:0].copy()
    rolled = np.roll(period, -(start % PERIOD))
    return np.resize(rolled, n)


def rank_input(kind: str, dtype: DType, p: int, rank: int, key: Key, start: int, n: int) -> np.ndarray:
    """Rank ``rank``'s input, elements [start, start+n), for reduction ``kind``."""
    return _tile(_period(kind, dtype, p, rank, key), start, n)


def reduced(op: str, dtype: DType, p: int, key: Key, start: int, n: int) -> np.ndarray:
    """The exact reduction with ``op`` over all p ranks' inputs, elements [start, start+n)."""
    return _tile(_expected_period(op, dtype, p, key), start, n)


def moved(dtype: DType, p: int, source: int, key: Key, start: int, n: int) -> np.ndarray:
    """Rank ``source``'s data for data-movement collectives (no arithmetic)."""
    return rank_input("move", dtype, p, source, key, start, n)


def count_wrong(result: np.ndarray, expected: np.ndarray) -> int:
    """Elements of ``result`` that differ from ``expected``, compared bit for bit."""
    if result.shape != expected.shape:
        return int(max(result.size, expected.size))
    as_bits = np.dtype(f"u{result.dtype.itemsize}")
    a = np.ascontiguousarray(result).view(as_bits)
    b = np.ascontiguousarray(expected).view(as_bits)
    return int(np.count_nonzero(a != b))
