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
