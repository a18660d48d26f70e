"""A results frame's share of its fabric models: each series' fabric chosen once, every row annotated.

The per-row figures (:func:`facts.percent_of_model.share`) and the choice of
a fabric for a log (:func:`facts.percent_of_model.choose`) are facts; this
module applies them to a frame of :mod:`analysis.results`: :func:`choices`
chooses one fabric per measured series (transport, collective, rank count),
:func:`annotate` adds :data:`~facts.percent_of_model.COLUMNS` to every row,
:func:`headlines` sums each series up at its headline size, and
:func:`shown` adds the printed columns to a table.  A report chooses once and
passes the choices on.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from analysis import fit
from facts import percent_of_model as pom

__all__ = ["Choices", "choices", "annotate", "headlines", "shown"]

_KEY = ("transport", "collective", "nranks")


def _first(g, col):
    if col not in g:
        return None
    vals = g[col].dropna()
    return vals.mode().iloc[0] if len(vals) else None


Choices = Dict[Tuple, Optional[pom.Choice]]  # per measured series (transport, collective, nranks): its fabric


def _series_key(key) -> Tuple:
    """A series key with NaN as None, so that a series of unknown rank count can be looked up."""
    return tuple(None if isinstance(v, float) and v != v else v for v in key)


def _timed(df):
    """The measured rows with a time (ok or wrong), the rows a fabric is chosen for."""
    import pandas as pd

    measured = df["kind"].eq("measured") if "kind" in df else pd.Series(True, index=df.index)
    timed = df["status"].isin(["ok", "wrong"]) if "status" in df else measured
    return df[measured & timed]


def choices(df, arg: Optional[str]) -> Tuple[Choices, List[str]]:
    """Each measured series' fabric choice (:func:`choose`), made once, and the notes of ``auto``: each
    guess (or why none was made) with the series it holds for.  Pass the choices to :func:`annotate`
    and :func:`headlines` so that a report chooses (and guesses) once."""
    out: Choices = {}
    said: Dict[str, List[str]] = {}
    for key, g in fit.columns(_timed(df), *_KEY, "fabric", "gpu", "nhosts", "ranks_per_host").groupby(
            list(_KEY), dropna=False, sort=True):
        choice, note = pom.choose(_first(g, "fabric"), arg, _first(g, "gpu"), _first(g, "nhosts"),
                              _first(g, "ranks_per_host"), key[2])
        if note:
            said.setdefault(note, []).append(f"{key[0]} {key[1]} at {_ranks(key[2])}")
        out[_series_key(key)] = choice
    return out, [f"{'; '.join(series)}: {note}" for note, series in said.items()]


def _chosen(chosen: Optional[Choices], key, g, arg: Optional[str]) -> Optional[pom.Choice]:
    """The series' choice from ``chosen``, else made here (a series ``chosen`` lacks)."""
    k = _series_key(key)
    if chosen is not None and k in chosen:
        return chosen[k]
    return pom.choose(_first(g, "fabric"), arg, _first(g, "gpu"), _first(g, "nhosts"), _first(g, "ranks_per_host"),
                  key[2])[0]


def annotate(df, arg: Optional[str], chosen: Optional[Choices] = None) -> Tuple[object, List[str]]:
    """``df`` with :data:`~facts.percent_of_model.COLUMNS` for every measured row that has a model (others None), and the
    notes of ``auto`` (:func:`choices`; none when ``chosen``, the choices already made, is given).
    Modelled rows are left alone."""
    import pandas as pd

    out = df.copy()
    values = {c: [None] * len(out) for c in pom.COLUMNS}
    notes: List[str] = []
    if chosen is None:
        chosen, notes = choices(out, arg)
    measured = out["kind"].eq("measured") if "kind" in out else pd.Series(True, index=out.index)
    pos = {ix: i for i, ix in enumerate(out.index)}
    for key, g in _timed(out).groupby(list(_KEY), dropna=False, sort=True):
        choice = _chosen(chosen, key, g, arg)
        if choice is None:
            continue
        for ix, r in g.iterrows():
            s = pom.share(choice.fabric, r["collective"], r["size_bytes"], r["nranks"], r["busbw_gbs"])
            i = pos[ix]
            values["fabric"][i] = choice.fabric.name
            if s is not None:
                values["model_busbw_gbs"][i] = s.model_busbw_gbs
                values["pct_model"][i] = s.pct_model
                values["link_peak_gbs"][i] = s.link_peak_gbs
                values["pct_link_peak"][i] = s.pct_link_peak
                values["model_latency_assumed"][i] = s.latency_assumed
    for c in pom.COLUMNS:
        keep = out[c] if c in out else pd.Series([None] * len(out), index=out.index)
        out[c] = [v if v is not None else (k if c == "fabric" and not m else None)
                  for v, k, m in zip(values[c], keep, measured)]
    return out, notes


def _ranks(p) -> str:
    return f"{int(p)} ranks" if pom.finite(p) else "an unknown rank count"


def headlines(df, arg: Optional[str], chosen: Optional[Choices] = None
              ) -> Dict[Tuple, Tuple[Optional[pom.Choice], Optional[pom.Share], int]]:
    """Per measured series (transport, collective, nranks): (its fabric choice, from ``chosen`` where
    given (:func:`choices`), the share at its headline size, that size).  Uses out-of-place rows of op
    sum where there are any, median per size."""
    out: Dict[Tuple, Tuple[Optional[pom.Choice], Optional[pom.Share], int]] = {}
    for key, g in fit.columns(df, *_KEY, "fabric", "gpu", "nhosts", "ranks_per_host").groupby(list(_KEY), sort=True):
        rows = fit.fit_rows(g, min_ranks=1)
        if rows.empty:
            continue
        per = rows.groupby("size_bytes")["busbw_gbs"].median()
        i = pom.headline(list(per.index), list(per.to_numpy()))
        if i is None:
            continue
        size = int(per.index[i])
        choice = _chosen(chosen, key, g, arg)
        s = pom.share(choice.fabric, key[1], size, key[2], float(per.iloc[i])) if choice else None
        out[key] = (choice, s, size)
    return out


def shown(table, annotated):
    """``table`` (rows of ``annotated``) with the fabric, %model and %peak columns for printing."""
    def pct(col, mark):
        return [("-" if v is None or v != v else f"{v:.1f}" + ("*" if mark and a is True else ""))
                for v, a in zip(annotated[col], annotated["model_latency_assumed"])]

    out = table.copy()
    out["fabric"] = [v if isinstance(v, str) else "-" for v in annotated["fabric"]]
    out["%model"] = pct("pct_model", True)
    out["%peak"] = pct("pct_link_peak", False)  # the link peak has no latency in it
    return out
