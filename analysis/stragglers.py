"""Which rank and host is slow, per series: the report's view of the records' per-rank truth (pure).

From the ranks frame (:mod:`analysis.load.ranks`), per series (transport,
collective, rank count) over its points: the rank that was slowest most
often (and its host), how often, and how far the slowest rank sat above the
median rank (the median over points of slowest / median - 1); and per host,
how often one of its ranks was the slowest.  A rank that is slowest at one
point in three of a 3-rank series is chance; one that is slowest everywhere
by 20 % is a suspect.
"""

from __future__ import annotations

from typing import List

__all__ = ["series_table", "points_table", "section"]

_SERIES = ["transport", "collective", "nranks"]


_POINT = ["run_id", "split_round", "group", "transport", "collective", "nranks", "dtype", "op", "placement", "algo",
          "size_bytes"]  # one point of one group (--split) of one run
_COLS = _SERIES + ["points", "rank", "host", "share", "host_share", "excess_pct"]


def _row(key, n: int, slow, excess) -> dict:
    """The table's row of one series: ``slow`` the (rank, host) rows of its slowest ranks, in order."""
    top = slow["rank"].value_counts()
    hosts = slow["host"].fillna("?").value_counts()
    r = int(top.index[0])
    host = slow.loc[slow["rank"] == r, "host"].dropna()
    return dict(zip(_SERIES, key), points=n, rank=r, host=host.iloc[0] if len(host) else None,
                share=top.iloc[0] / n, host_share=hosts.get(host.iloc[0], 0) / n if len(host) else None,
                excess_pct=100 * float(excess.median()))


def series_table(ranks):
    """One row per series with per-rank data: points, the most often slowest rank and host, their share of the
    points, and the median excess of the slowest rank over the median rank (%)."""
    import pandas as pd

    df = ranks[ranks["nranks"] > 1] if len(ranks) else ranks
    if df.empty:
        return pd.DataFrame(columns=_COLS)
    rows = []
    for key, g in df.groupby(_SERIES, sort=True, dropna=False):
        per_point = g.groupby(_POINT, dropna=False, sort=False)["time_us"]
        top, mid = per_point.max(), per_point.median()
        excess = (top / mid - 1).where(mid > 0)
        slow = g[g["slowest"]]
        if not slow.empty:
            rows.append(_row(key, per_point.ngroups, slow, excess))
    return pd.DataFrame(rows, columns=_COLS)


def points_table(points, column: str = "ranks"):
    """:func:`series_table` from one row per record, ``points[column]`` holding
    :func:`analysis.load.ranks.summary` (None where the record lists no rank): the same table without a
    row per rank.  Records of one point (the same key twice) are pooled, as in the ranks frame."""
    import numpy as np
    import pandas as pd

    df = points[points[column].notna() & (points["nranks"] > 1)] if len(points) and column in points else points
    if df.empty or column not in df:
        return pd.DataFrame(columns=_COLS)
    rows = []
    df = df[list(dict.fromkeys((*_SERIES, *_POINT, column)))]  # grouping splits every column a frame holds
    point = df.groupby(_POINT, dropna=False, sort=False).ngroup()  # once: a point lies in one series
    for key, g in df.groupby(_SERIES, sort=True, dropna=False):
        summ = g[column].tolist()
        top = pd.Series([s[1] for s in summ], index=g.index)
        mid = pd.Series([s[2] for s in summ], index=g.index)
        ids, firsts = pd.factorize(point.loc[g.index].to_numpy())  # the series' points, numbered as they come
        n = len(firsts)
        if n < len(g):  # a point in several records: its ranks pooled
            pooled = {}
            for i, s in zip(ids.tolist(), summ):
                pooled.setdefault(i, []).append(np.frombuffer(s[3]))
            times = [np.concatenate(v) for _, v in sorted(pooled.items())]
            top = pd.Series([t.max() for t in times])
            mid = pd.Series([float(np.median(t)) for t in times])
        excess = (top / mid - 1).where(mid > 0)
        slow = pd.DataFrame([pair for s in summ for pair in s[0]], columns=["rank", "host"])
        if not slow.empty:
            rows.append(_row(key, n, slow, excess))
    return pd.DataFrame(rows, columns=_COLS)


def section(ranks) -> List[str]:
    """The report's "Slowest ranks and hosts" section (Markdown lines) of a ranks frame or of
    :func:`points_table`'s table; [] without per-rank data."""
    from analysis.report_text import table

    t = ranks if "excess_pct" in ranks else series_table(ranks)
    if t.empty:
        return []
    out = ["## Slowest ranks and hosts", "",
           "Per series, the rank whose loop took longest most often (each record's `slowest_rank`), its host, "
           "and how far the slowest rank sat above the median rank (median over the series' points). "
           "`python -m analysis.compare` and the ranks frame (`analysis.load.ranks`) give the details.", ""]
    out += table(["transport", "collective", "ranks", "points", "slowest most often", "of the points",
                  "its host's share", "slowest over median rank"],
                 [[r.transport, r.collective, int(r.nranks), int(r.points), f"rank {int(r.rank)} ({r.host or '?'})",
                   f"{100 * r.share:.0f} %", "-" if r.host_share is None else f"{100 * r.host_share:.0f} %",
                   f"{r.excess_pct:+.1f} %"] for r in t.itertuples()])
    return out + [""]
