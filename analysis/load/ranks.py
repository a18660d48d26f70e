"""Records -> the ranks frame: one row per (measured point, rank), from the records' per-rank fields.

The points frame (:mod:`analysis.load.points`) keeps one row per point, its
nested per-rank fields as JSON text; this frame unfolds them
(:mod:`facts.per_rank`): the point's key (run, transport, collective, ranks,
dtype, op, placement, algo, size), ``rank``, ``host``, ``time_us`` (that
rank's mean per iteration), ``slowest`` (the point's slowest rank) and, where
the run kept ``--iter-times``, the rank's ``iter_n``, ``iter_p50``,
``iter_p95``, ``iter_p99``, ``iter_stdev`` and ``iter_cv``.  A record of more
ranks than it lists (``rank_time_us`` left out above
:data:`facts.per_rank.RANK_LIST_MAX`) gives one row per host: its slowest rank.
"""

from __future__ import annotations

import json
from array import array
from typing import Dict, Iterable, List, Optional, Union
from pathlib import Path

from analysis.load import points, reader

__all__ = ["POINT", "frame", "load", "decode", "summary"]

POINT = ("run_id", "split_round", "group", "transport", "collective", "nranks", "dtype", "op", "placement", "algo",
         "size_bytes")
_ITER = ("n", "p50", "p95", "p99", "stdev", "cv")


def decode(value):
    """A nested field as the loader keeps it (JSON text) back as lists and dicts; None if unusable."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, (list, dict)) else None


def _pairs(rec: Dict) -> List[tuple]:
    """(rank, host, time_us) of each rank a record lists (damaged entries left out)."""
    times, hosts = decode(rec.get("rank_time_us")), decode(rec.get("rank_host"))
    group = [int(x) for x in str(rec.get("group_ranks") or "").split(",") if x.strip().isdigit()]
    if isinstance(times, list):  # indexed by position: in a group of --split, group_ranks names the ranks
        world = group if len(group) == len(times) else list(range(len(times)))
        pairs = [(world[i], (hosts[i] if isinstance(hosts, list) and i < len(hosts) else None), t)
                 for i, t in enumerate(times)]
    else:
        per_host = decode(rec.get("host_time_us")) or {}
        pairs = [(v[0], h, v[1]) for h, v in per_host.items() if isinstance(v, list) and len(v) == 2]
    # a damaged entry ([null, null]) is left out, the rest kept
    return [(r, host, t) for r, host, t in pairs
            if isinstance(r, int) and not isinstance(r, bool) and isinstance(t, (int, float))]


def _rows(rec: Dict) -> List[Dict]:
    key = {k: rec.get(k) for k in POINT}
    key["placement"] = points.placement(rec)
    slowest = rec.get("slowest_rank")
    stats = decode(rec.get("iter_stats")) or {}
    out = []
    for r, host, t in _pairs(rec):
        row = dict(key, rank=int(r), host=host, time_us=t, slowest=(r == slowest))
        s = stats.get(str(r)) if isinstance(stats, dict) else None  # keyed by the job's rank
        for k in _ITER:
            row[f"iter_{k}"] = s.get(k) if isinstance(s, dict) else None
        out.append(row)
    return out


def summary(rec: Dict):
    """One measured point's ranks in brief, for :func:`analysis.stragglers.series_table` without a row per
    rank: (its slowest ranks as (rank, host) pairs, the largest and the median time_us over its ranks,
    every rank's time packed as doubles), or None (not a measured point, or no rank listed).  A
    :func:`analysis.load.reader.read_table` hook."""
    if rec.get("status") not in reader.MEASURED or rec.get("kind", "measured") != "measured" \
            or rec.get("collective") in (reader.REPLICATE, "cpu_probe"):
        return None
    pairs = _pairs(rec)
    if not pairs:
        return None
    slowest = rec.get("slowest_rank")
    ts = sorted(float(t) for _, _, t in pairs)
    n = len(ts)
    median = ts[n // 2] if n % 2 else (ts[n // 2 - 1] + ts[n // 2]) / 2
    return (tuple((int(r), host) for r, host, _ in pairs if r == slowest), ts[-1], median, array("d", ts).tobytes())


def _summary_columns(tab, fields) -> Optional[list]:
    """:func:`summary` of every row of a block read by :mod:`analysis.load.arrow_blocks` (a pyarrow table
    and the block's fields), or None: the block goes to the line reader (per-host times only, ``kind``
    written as null)."""
    import numpy as np
    import pyarrow as pa

    n = tab.num_rows
    out: list = [None] * n
    names = set(tab.column_names)

    if "rank_time_us" not in names:
        return None if "host_time_us" in fields else out
    if "kind" in names and tab.column("kind").null_count:
        return None  # kind: null is not measured, a missing kind is: arrow does not tell them apart
    eligible = (_flags(tab, "status", reader.MEASURED.__contains__)
                & _flags(tab, "kind", lambda k: k is None or k == "measured")
                & _flags(tab, "collective", lambda c: c not in (reader.REPLICATE, "cpu_probe")))
    times = tab.column("rank_time_us").combine_chunks()
    top_type = tab.column("slowest_rank").type if "slowest_rank" in names else pa.null()
    if not pa.types.is_list(times.type) or not (pa.types.is_integer(top_type) or pa.types.is_floating(top_type)
                                                or pa.types.is_null(top_type)):
        return None  # lists of another shape, a slowest rank written as text or true: per record
    if times.null_count and "host_time_us" in fields and \
            (eligible & times.is_null().to_numpy(zero_copy_only=False)).any():
        return None
    offsets = times.offsets.to_numpy()
    values = times.values
    vals = values.to_numpy(zero_copy_only=False) if not values.null_count else None
    if vals is not None and not np.isfinite(vals).all():
        vals = None  # NaN sorts as Python's sort leaves it: per record
    lengths = np.diff(offsets)
    hosts = tab.column("rank_host").combine_chunks() if "rank_host" in names else None
    h_off = h_values = h_valid = None
    if hosts is not None:
        if not pa.types.is_list(hosts.type):
            if not pa.types.is_null(hosts.type):
                return None  # rank_host written as text: per record
            hosts = None
        else:
            h_off, h_values, h_valid = hosts.offsets.to_numpy(), hosts.values, hosts.is_valid().to_numpy(
                zero_copy_only=False)
    top_col = tab.column("slowest_rank").combine_chunks() if "slowest_rank" in names else None
    with np.errstate(invalid="ignore"):  # each row's slowest rank as a double (NaN where null)
        top_at = np.full(n, np.nan) if top_col is None or pa.types.is_null(top_col.type) else \
            np.asarray(top_col.to_numpy(zero_copy_only=False), np.float64)
    valid = ~times.is_null().to_numpy(zero_copy_only=False)
    no_group = tab.column("group_ranks").is_null().to_numpy(zero_copy_only=False) if "group_ranks" in names \
        else np.ones(n, bool)
    plain = eligible & valid & (lengths > 0) & no_group
    if vals is None:
        plain[:] = False

    def cell(name, i):
        return tab.column(name)[i].as_py() if name in names else None

    for i in np.flatnonzero(eligible & valid & ~plain).tolist():  # a group's ranks, gaps
        rec = {k: cell(k, i) for k in ("status", "collective", "group_ranks", "slowest_rank")}
        rec.update(rank_time_us=times[i].as_py(), rank_host=hosts[i].as_py() if hosts is not None else None)
        if "kind" in names:  # absent, it is measured; null, it is not (summary's rule)
            rec["kind"] = cell("kind", i)
        out[i] = summary(rec)
    for size in np.unique(lengths[plain]).tolist():
        rows = np.flatnonzero(plain & (lengths == size))
        ts = np.sort(vals[offsets[rows][:, None] + np.arange(size)], axis=1)
        top = ts[:, -1].tolist()
        mid = (ts[:, size // 2] if size % 2 else (ts[:, size // 2 - 1] + ts[:, size // 2]) / 2).tolist()
        r = top_at[rows]
        with np.errstate(invalid="ignore"):  # a whole number of a rank listed: its index, else -1
            at = np.where(np.isfinite(r) & (r == np.floor(r)) & (r >= 0) & (r < size), r, -1).astype(np.int64)
        named = None
        if hosts is not None:  # each row's slowest rank's host, where rank_host names it
            first = h_off[rows]
            ok = (at >= 0) & h_valid[rows] & (first + at < h_off[rows + 1])
            named = [None] * len(rows)
            pick = np.flatnonzero(ok)
            for k, host in zip(pick.tolist(), h_values.take(pa.array(first[pick] + at[pick])).to_pylist()):
                named[k] = host
        whole = ts.tobytes()
        width = 8 * size
        packed = [whole[k:k + width] for k in range(0, len(whole), width)]  # each row's doubles
        pairs = [() if r < 0 else ((r, h),) for r, h in zip(at.tolist(), named or [None] * len(rows))]
        for i, value in zip(rows.tolist(), zip(pairs, top, mid, packed)):
            out[i] = value
    return out


def _flags(tab, name: str, keep):
    """A bool array: ``keep`` of each row's value of text column ``name`` (None where null or absent),
    asked once per distinct value."""
    import numpy as np
    import pyarrow as pa

    n = tab.num_rows
    if name not in tab.column_names:
        return np.full(n, bool(keep(None)))
    col = tab.column(name).combine_chunks()
    try:
        codes = col.dictionary_encode()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):  # a type it does not encode
        return np.array([bool(keep(v)) for v in col.to_pylist()], bool)
    answers = np.array([bool(keep(v)) for v in codes.dictionary.to_pylist()] + [bool(keep(None))], bool)
    return answers[codes.indices.fill_null(len(codes.dictionary)).to_numpy(zero_copy_only=False)]


summary.columns = _summary_columns
summary.fields = ("status", "kind", "collective", "group_ranks", "slowest_rank", "rank_time_us", "rank_host")


def frame(records: List[Dict]):
    """The ranks frame of :func:`analysis.load.reader.read_records`' records (measured points, status ok or
    wrong; replicate's training steps are not points)."""
    import pandas as pd

    rows = [row for rec in points.split_replicate(records)[0]
            if rec.get("status") in reader.MEASURED and rec.get("kind", "measured") == "measured"
            for row in _rows(rec)]
    cols = list(POINT) + ["rank", "host", "time_us", "slowest"] + [f"iter_{k}" for k in _ITER]
    df = pd.DataFrame(rows, columns=cols)
    for c in ("nranks", "size_bytes", "rank", "time_us") + tuple(f"iter_{k}" for k in _ITER):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def load(paths: Union[str, Path, Iterable[Union[str, Path]]], strict: bool = False,
         warn: Optional[reader.Warn] = None):
    """The ranks frame of the records in ``paths``."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return frame(reader.read_records(list(paths), strict, warn))
