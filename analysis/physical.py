"""What a measured row can be: bounds that keep absurd rows out of every table, fit and prediction.

A row of collscale's results or of an imported log is *non-physical* when

* it carries a time (status ``ok`` or ``wrong``) and ``time_us`` is not a
  finite number in [:data:`MIN_TIME_US`, :data:`MAX_TIME_US`]: below 1 ns no
  call returns (one clock cycle of a 1 GHz core; MPI and NCCL calls take
  hundreds of nanoseconds at the least), and above 1e6 s (11.6 days) no single
  call can have been timed: that is longer than any batch system lets a job
  run, and the square of a time stays far from a float's range in the fits;
* ``size_bytes`` is above :data:`MAX_BYTES` = 2**50 (1 PiB): the most the
  harness and ``analysis.predict`` sweep (:data:`analysis.cli_common.MAX_BYTES`),
  sizes stay exact in a float, and the largest device memory (about 2**37.5 B)
  is 5,000 times smaller;
* ``algbw_gbs`` or ``busbw_gbs`` is below 0 or above :data:`MAX_GBS` = 1e5 GB/s
  (100 TB/s), and so is the algbw its size and time imply (S / t, so that a
  row with plausible bandwidths but an absurd size or time is caught too).
  100 TB/s is nearly two orders of magnitude above the fastest link any fabric
  ships (NVLink 5: 1.8 TB/s per GPU, both directions together; an 800 Gb/s
  InfiniBand XDR port: 0.1 TB/s) and above any device's memory bandwidth
  (HBM3e: about 8 TB/s), so no bus or algorithm bandwidth can reach it.  At one
  rank nothing crosses a link and an in-place call may do nothing at all, so
  the algbw bounds are not applied there (nccl-tests reports such rows; their
  busbw is 0).

:func:`screen` checks one file's records at once with numpy (one pass per
field, no per-row Python beyond reading the values), leaves the non-physical
ones out and says so in ONE warning naming the first ``file:line``, the
reason and the count (with ``strict``: an error naming that line).
:func:`frame_mask` is the same test on a DataFrame, for :func:`analysis.fit.fit_rows`,
so that a frame built without the loader cannot bring such a row into a fit.
"""

from __future__ import annotations

import math
from operator import itemgetter
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Type

import numpy as np

__all__ = ["MIN_TIME_US", "MAX_TIME_US", "MAX_BYTES", "MAX_GBS", "TIMED", "check", "check_columns", "screen",
           "screen_columns", "frame_mask", "line_of"]

MIN_TIME_US = 1e-3  # 1 ns
MAX_TIME_US = 1e12  # 1e6 s, 11.6 days
MAX_BYTES = 1 << 50  # 1 PiB
MAX_GBS = 1e5  # 100 TB/s
TIMED = ("ok", "wrong")  # statuses whose rows carry a time


def _num(v) -> float:
    """A number as a float (10**400 -> inf), None, bools and text as NaN (missing)."""
    if v is None or isinstance(v, (bool, str)):
        return math.nan
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf
    except (TypeError, ValueError):
        return math.nan


_PLAIN = {float, int, type(None)}


def _values(records: Sequence[dict], key: str) -> list:
    try:
        return list(map(itemgetter(key), records))  # every record has the key: the fast way
    except KeyError:
        return [r.get(key) for r in records]


def _col(values) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":  # numbers without a gap (the block reader's)
        return values.astype(float)
    if set(map(type, values)) <= _PLAIN:  # the usual case, converted in C (None -> NaN)
        try:
            return np.array(values, dtype=float)
        except OverflowError:  # an int beyond any float
            pass
    return np.fromiter(map(_num, values), float, len(values))


def _masks(timed, t, s, algbw, busbw, nranks) -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """(what, rows out of bounds, the values) per bound; NaN bandwidths and sizes are missing, not bad."""
    with np.errstate(all="ignore"):
        implied = s / t / 1e3  # GB/s from bytes and microseconds
        links = nranks != 1
        return [
            ("time_us", timed & ~((t >= MIN_TIME_US) & (t <= MAX_TIME_US)), t),
            ("size_bytes", s > MAX_BYTES, s),
            ("busbw_gbs", timed & ((busbw < 0) | (busbw > MAX_GBS)), busbw),
            ("algbw_gbs", timed & links & ((algbw < 0) | (algbw > MAX_GBS)), algbw),
            ("size_bytes / time_us", timed & links & (implied > MAX_GBS), implied),
        ]


def _why(what: str, v: float) -> str:
    if what == "time_us":
        return (f"time_us {v:.3g} not in [{MIN_TIME_US:g}, {MAX_TIME_US:g}] us (1 ns to 11.6 days)" if v == v
                else "time_us not a number")
    if what == "size_bytes":
        return f"size_bytes {v:.4g} > 2^50 (1 PiB)"
    if what == "size_bytes / time_us":
        return f"size_bytes / time_us = {v:.3g} GB/s > {MAX_GBS:g} GB/s (100 TB/s)"
    return f"{what} {v:.3g} {'< 0' if v < 0 else f'> {MAX_GBS:g} GB/s (100 TB/s)'}"


def check(records: Sequence[dict]) -> Tuple[np.ndarray, Dict[str, int], Optional[Tuple[int, str]]]:
    """(True for each record within the bounds, rows out of each bound, (index, why) of the first bad one)."""
    return check_columns(lambda key: _values(records, key), len(records))


def check_columns(column: Callable[[str], list], n: int
                  ) -> Tuple[np.ndarray, Dict[str, int], Optional[Tuple[int, str]]]:
    """:func:`check` of ``n`` rows held as columns: ``column(key)`` is the list of that field's values."""
    timed = np.fromiter(map(TIMED.__contains__, column("status")), bool, n)
    masks = _masks(timed, _col(column("time_us")), _col(column("size_bytes")), _col(column("algbw_gbs")),
                   _col(column("busbw_gbs")), _col(column("nranks")))
    bad = np.zeros(n, bool)
    counts: Dict[str, int] = {}
    for what, mask, _ in masks:
        bad |= mask
        if mask.any():
            counts[what] = int(mask.sum())
    if not bad.any():
        return ~bad, counts, None
    first = int(np.flatnonzero(bad)[0])
    what, _, values = next(m for m in masks if m[1][first])
    return ~bad, counts, (first, _why(what, float(values[first])))


def line_of(rec: dict) -> int:
    """The line number of an imported record's ``source_line`` (``file:line``), else 0."""
    tail = str(rec.get("source_line") or "").rpartition(":")[2]
    return int(tail) if tail.isdigit() else 0


def screen(path, records: List[dict], lines: Optional[Sequence[int]], strict: bool, warn: Callable[[str], None],
           error: Type[Exception] = ValueError) -> List[dict]:
    """``records`` of one file without the non-physical ones, and one warning (``strict``: ``error``)
    naming the first one's ``file:line`` (``lines[i]`` is record i's line; None: its ``source_line``)."""
    if not records:
        return records
    keep = screen_columns(path, lambda key: _values(records, key), len(records),
                          lines if lines is not None else [line_of(r) for r in records], strict, warn, error)
    return records if keep is None else [r for r, k in zip(records, keep.tolist()) if k]


def screen_columns(path, column: Callable[[str], list], n: int, lines: Sequence[int], strict: bool,
                   warn: Callable[[str], None], error: Type[Exception] = ValueError) -> Optional[np.ndarray]:
    """:func:`screen` of ``n`` rows held as columns (``column`` as in :func:`check_columns`, ``lines[i]``
    row i's line): None when every row is within the bounds, else True for each row to keep (after the
    one warning; ``strict``: ``error``)."""
    if not n:
        return None
    keep, counts, first = check_columns(column, n)
    if first is None:
        return None
    bad = np.flatnonzero(~keep)
    numbers = [lines[i] for i in bad[:6]]
    index, why = first
    if strict:
        raise error(f"{path}:{numbers[0]}: non-physical row: {why} (--strict)")
    also = ", ".join(map(str, numbers[1:])) + (", ..." if len(bad) > 6 else "")
    more = ""
    if len(bad) > 1:
        more = f", first at line {numbers[0]}; also line{'s' if len(bad) > 2 else ''} {also}"
        more += "; out of bounds: " + ", ".join(f"{k} {c}" for k, c in counts.items()) if len(counts) > 1 else ""
    warn(f"{path}:{numbers[0]}: {len(bad)} non-physical row{'s' if len(bad) > 1 else ''} left out ({why}{more}); "
         f"{n - len(bad)} records kept (--strict refuses such files)")
    return keep


def frame_mask(df) -> np.ndarray:
    """True for each row of a results DataFrame within the bounds (columns it lacks count as missing)."""
    import pandas as pd

    def col(name):
        if name not in df:
            return np.full(len(df), np.nan)
        return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)

    timed = df["status"].isin(TIMED).to_numpy() if "status" in df else np.ones(len(df), bool)
    bad = np.zeros(len(df), bool)
    for _, mask, _ in _masks(timed, col("time_us"), col("size_bytes"), col("algbw_gbs"), col("busbw_gbs"),
                             col("nranks")):
        bad |= mask
    return ~bad
