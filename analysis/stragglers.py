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

__all__ = ["series_table", "section"]

_SERIES = ["transport", "collective", "nranks"]


def series_table(ranks):
    """One row per series with per-rank data: points, the most often slowest rank and host, their share of the
    points, and the median excess of the slowest rank over the median rank (%)."""
    import pandas as pd

    cols = _SERIES + ["points", "rank", "host", "share", "host_share", "excess_pct"]
    df = ranks[ranks["nranks"] > 1] if len(ranks) else ranks
    if df.empty:
        return pd.DataFrame(columns=cols)
    point = ["run_id", "split_round", "group", "transport", "collective", "nranks", "dtype", "op", "placement", "algo",
             "size_bytes"]  # one point of one group (--split) of one run
    rows = []
    for key, g in df.groupby(_SERIES, sort=True, dropna=False):
        per_point = g.groupby(point, dropna=False, sort=False)
        excess = per_point["time_us"].agg(lambda t: t.max() / t.median() - 1 if t.median() > 0 else float("nan"))
        slow = g[g["slowest"]]
        n = per_point.ngroups
        if slow.empty:
            continue
        top = slow["rank"].value_counts()
        hosts = slow["host"].fillna("?").value_counts()
        r = int(top.index[0])
        host = slow.loc[slow["rank"] == r, "host"].dropna()
        rows.append(dict(zip(_SERIES, key), points=n, rank=r, host=host.iloc[0] if len(host) else None,
                         share=top.iloc[0] / n, host_share=hosts.get(host.iloc[0], 0) / n if len(host) else None,
                         excess_pct=100 * float(excess.median())))
    return pd.DataFrame(rows, columns=cols)


def section(ranks) -> List[str]:
    """The report's "Slowest ranks and hosts" section (Markdown lines); [] without per-rank data."""
    from analysis.report_text import table

    t = series_table(ranks)
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
