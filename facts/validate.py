"""Seeded inputs whose collective results are known exactly, in closed form.

Every value is a function of ``(seed, iteration, rank, global element index)``
and of the reduction (or ``"move"`` for collectives that only move data).
The expected result never needs the other ranks' inputs: it is a closed
form, so checking a 64 MiB allreduce costs two array fills and a compare,
whatever the rank count.

Exactness, whatever order a transport reduces in (D = ``dtype.data_max``,
A = number of ranks with non-zero contributions, A = p unless p > D):

* sum / avg: rank r < A holds ``M + C_r - C_{(r+1) mod A}``: every rank's
  input differs, the C terms telescope to zero, so the sum is exactly
  ``A*M`` and the average ``M``; dropping, doubling or swapping any rank's
  contribution changes the sum.  Any subset of ranks sums to at most
  ``A*(|M| + C)`` (``A*3C`` unsigned), kept <= D, so every partial sum is
  an exactly representable integer.
* min / max: rank r holds ``B + ((r + K) mod q)``, q = min(p, D): the minimum
  is ``B`` and the maximum ``B + q - 1``.
* prod: per element, E ranks (E random in [0, min(p, pow2_max)]) hold
  magnitude 2 and the rest 1, and S ranks (S in {0, 1}, 0 when unsigned)
  are negative: the product is (-1)**S * 2**E, and every partial product
  is a power of two no larger.
* move: values are arbitrary integers in [-D, D].

Values repeat with a prime period (4099 elements) so tables are cheap to
build and a block landing at a power-of-two offset is still detected.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ground.dtypes import DType

__all__ = ["PERIOD", "Key", "rank_input", "reduced", "moved", "count_wrong"]

PERIOD = 4099

_SALTS = {"move": 1, "sum": 2, "avg": 2, "prod": 3, "min": 4, "max": 4}


class Key(tuple):
    """(seed, iteration): identifies one validated run of a collective."""

    def __new__(cls, seed: int, iteration: int):
        return super().__new__(cls, (int(seed), int(iteration)))

    @property
    def seed(self) -> int:
        return self[0]

    @property
    def iteration(self) -> int:
        return self[1]


def _rng(key: Key, salt: int, who: int) -> np.random.Generator:
    return np.random.default_rng([key[0] & 0xFFFFFFFF, key[1], salt, who + 1])


def _sum_bounds(dtype: DType, p: int):
    """(active ranks A, |M| bound, C bound, M lower bound) keeping sums exact."""
    d = dtype.data_max
    active = min(p, d)
    if active == 1:
        return 1, (d // 2 if dtype.signed else d), 0, (-(d // 2) if dtype.signed else 0)
    if dtype.signed:
        # A*km + A*kc <= D: each input is within km + kc of zero.
        km = d // (2 * active) if active == p else 0
        kc = max(1, d // (2 * active))
        return active, km, kc, -km
    if active < p:
        return active, 0, 0, 0  # more ranks than exact values: all zeros, still exact
    # Unsigned: M in [kc, 2kc] keeps M - C >= 0; partial sums <= A*3kc.
    kc = d // (3 * active)
    return active, kc, kc, kc


@lru_cache(maxsize=256)
def _tables(kind: str, dtype: DType, p: int, key: Key):
    """Rank-independent tables of one period for reduction ``kind``."""
    rng = _rng(key, _SALTS[kind], -1)
    n = PERIOD
    if kind in ("sum", "avg"):
        active, km, kc, m_lo = _sum_bounds(dtype, p)
        span = 2 * km if dtype.signed else km
        return rng.integers(m_lo, m_lo + span + 1, n)
    if kind in ("min", "max"):
        q = min(p, dtype.data_max)
        lo = -dtype.data_max if dtype.signed else 0
        base = rng.integers(lo, dtype.data_max - (q - 1) + 1, n)
        shift = rng.integers(0, q, n)
        return base, shift, q
    if kind == "prod":
        twos = rng.integers(0, min(p, dtype.pow2_max) + 1, n)
        mag_shift = rng.integers(0, p, n)
        neg_shift = rng.integers(0, p, n)
        negatives = rng.integers(0, 2, n) if dtype.signed else np.zeros(n, np.int64)
        return twos, mag_shift, neg_shift, negatives
    raise ValueError(kind)


@lru_cache(maxsize=1024)
def _c_table(dtype: DType, p: int, key: Key, rank: int) -> np.ndarray:
    """C_rank of the telescoping sum inputs."""
    _, _, kc, _ = _sum_bounds(dtype, p)
    return _rng(key, _SALTS["sum"], 1000 + rank).integers(0, kc + 1, PERIOD)


@lru_cache(maxsize=1024)
def _period(kind: str, dtype: DType, p: int, rank: int, key: Key) -> np.ndarray:
    """One period of rank ``rank``'s input, in the dtype's host storage."""
    if kind == "move":
        lo = -dtype.data_max if dtype.signed else 0
        vals = _rng(key, _SALTS[kind], rank).integers(lo, dtype.data_max + 1, PERIOD)
    elif kind in ("sum", "avg"):
        active = _sum_bounds(dtype, p)[0]
        m = _tables(kind, dtype, p, key)
        if rank >= active:
            vals = np.zeros(PERIOD, np.int64)
        elif active == 1:
            vals = m
        else:
            vals = m + _c_table(dtype, p, key, rank) - _c_table(dtype, p, key, (rank + 1) % active)
    elif kind in ("min", "max"):
        base, shift, q = _tables(kind, dtype, p, key)
        vals = base + (rank + shift) % q
    elif kind == "prod":
        twos, mag_shift, neg_shift, negatives = _tables(kind, dtype, p, key)
        mag = np.where((rank + mag_shift) % p < twos, 2, 1)
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
        m = _tables(kind, dtype, p, key)
        vals = m if kind == "avg" else active * m
    elif kind == "min":
        base, _, _ = _tables(kind, dtype, p, key)
        vals = base
    elif kind == "max":
        base, _, q = _tables(kind, dtype, p, key)
        vals = base + q - 1
    elif kind == "prod":
        twos, _, _, negatives = _tables(kind, dtype, p, key)
        vals = np.where(negatives == 1, -(2 ** twos), 2 ** twos)
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
