"""The top of the report: what was measured, the headline of every series, and how it compares.

One paragraph says what the inputs hold; the at-a-glance table gives, per
measured series (transport, collective, rank count), its sizes, the time at
its smallest size (the latency a user sees), its peak busbw and, where the
series names a fabric or one is given (``--fabric NAME|auto``), that busbw
as a percentage of the fabric's model and of its link peak
(:mod:`facts.percent_of_model`).  A series below half of its model is said so in
a sentence of its own; a percentage that rests on an assumed latency says
so in its cell.  Warnings that change how to read the numbers
(oversubscription, emulated hosts, wrong results, 1-rank runs) follow.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from analysis import fit, model_share
from facts import percent_of_model
from analysis.report_text import size_range, table
from ground.sizes import human_size

__all__ = ["summary", "GLANCE_HEADERS"]

GLANCE_HEADERS = ["transport", "collective", "ranks", "sizes", "smallest-size time", "peak busbw (GB/s)", "fabric",
                  "% of model", "% of link peak", "verdict"]


_SERIES_COLUMNS = ("transport", "collective", "nranks", "size_bytes", "time_us", "algbw_gbs", "busbw_gbs", "status",
                   "placement", "op", "fabric", "pct_model", "pct_link_peak", "model_latency_assumed")


def _series(meas):
    """(key, usable rows) per measured series, as the tables and fits use them (the columns they read:
    a group of every column costs a second a million rows)."""
    meas = meas[[c for c in _SERIES_COLUMNS if c in meas]]
    for key, g in meas.groupby(["transport", "collective", "nranks"]):
        g = fit.fit_rows(g, min_ranks=1)
        if not g.empty:
            yield key, g


def _what(paths: Sequence[str], df, allrec, meas) -> List[str]:
    runs = sorted(set(map(str, allrec["run_id"].dropna()))) if "run_id" in allrec else []
    parts = []
    for (transport, collective, p), g in _series(meas):
        parts.append(f"{transport} {collective} on {int(p)} rank{'s' if p != 1 else ''} "
                     f"({size_range(g['size_bytes'].tolist())})")
    shown = ", ".join(map(str, paths[:4])) + (f" and {len(paths) - 4} more" if len(paths) > 4 else "")
    return [f"**What was measured.** {len(meas)} measured points from {len(runs)} run(s) in {shown}: "
            + ("; ".join(parts) if parts else "no measured series") + ". "
            f"{(df['kind'] == 'modelled').sum()} modelled points read from files."]


def _glance(meas, fabric: Optional[str], chosen: Optional[model_share.Choices] = None
            ) -> Tuple[List[List], List[str], bool, bool]:
    """Table rows, the sentences about series below half of their model, whether any series was
    compared, and whether any percentage rests on an assumed latency."""
    heads = model_share.headlines(meas, fabric, chosen)
    rows, below, compared, assumed = [], [], False, False
    for (transport, collective, p), g in _series(meas):
        piv = g.groupby("size_bytes")[["time_us", "busbw_gbs"]].median()
        small = piv.index.min()
        choice, share, size = heads.get((transport, collective, p), (None, None, None))
        peak = piv["busbw_gbs"].max()
        name, pct, pct_peak, word = "-", "-", "-", ""
        if choice is not None:
            name = choice.fabric.name + (" (guessed)" if choice.how == "guessed" else "")
        if share is not None:
            compared = True
            assumed |= share.latency_assumed
            pct, pct_peak = share.label(), f"{share.pct_link_peak:.1f} %"  # the peak has no latency in it
            word = percent_of_model.verdict(share)
            if share.pct_model < percent_of_model.BELOW_HALF:
                below.append(f"**{transport} {collective} on {int(p)} ranks reaches {share.pct_model:.1f} % of the "
                             f"{share.fabric} model at {human_size(size)} ({share.busbw_gbs:.3g} of "
                             f"{share.model_busbw_gbs:.3g} GB/s busbw): below half of its model.**")
        rows.append([transport, collective, int(p), size_range(piv.index.tolist()),
                     f"{piv.loc[small, 'time_us']:.2f} us at {human_size(small)}",
                     f"{peak:.3g} at {human_size(piv['busbw_gbs'].idxmax())}", name, pct, pct_peak, word])
    return rows, below, compared, assumed


def _warnings(meas) -> List[str]:
    out: List[str] = []
    ones = meas[meas["nranks"] == 1]
    if len(ones):
        out += [f"{len(ones)} measured points ran on 1 rank ("
                + ", ".join(sorted(set(ones["transport"] + " " + ones["collective"]))) + "): one rank moves "
                "nothing between ranks, so their bus bandwidth is 0 and no fit uses them; their times are in "
                "the tables and the time plots.", ""]
    if "oversubscribed" in meas and meas["oversubscribed"].fillna(False).astype(bool).any():
        out += ["**Some measurements ran oversubscribed (more ranks than cores): their times describe "
                "the scheduler as much as the transport.**", ""]
    if "emulated" in meas and meas["emulated"].notna().any():
        out += ["**Some runs were on emulated hosts** (python -m launch.emulate: network namespaces on one "
                "machine, links shaped with tc tbf): " + "; ".join(sorted(set(meas["emulated"].dropna().astype(str))))
                + ".", ""]
    wrong = meas[meas["wrong"].fillna(0) > 0] if "wrong" in meas else meas.iloc[0:0]
    if len(wrong):
        out += [f"**{len(wrong)} measured rows had wrong results (#wrong > 0).**", ""]
    return out


def summary(paths: Sequence[str], df, allrec, meas, fabric: Optional[str], guesses: Sequence[str],
            chosen: Optional[model_share.Choices] = None) -> List[str]:
    """The report's first lines: title, what was measured, the at-a-glance table and its verdicts.
    ``chosen``: each series' fabric, chosen once by the report (:func:`analysis.model_share.choices`)."""
    md = ["# collscale report", ""] + _what(paths, df, allrec, meas) + [""]
    md += ["## At a glance (measured)", ""]
    rows, below, compared, assumed = _glance(meas, fabric, chosen)
    md += table(GLANCE_HEADERS, rows) + [""]
    md += below + ([""] if below else [])
    if compared:
        md += ["% of model: the peak busbw beside what the fabric's model (facts.fabrics; sources in the "
               "appendix) predicts for the same collective, size and rank count; % of link peak: beside the "
               "same model without latency, the most its links give at that rank count."
               + (" \"(assumed latency)\": at that size the model's time rests on a latency no vendor publishes "
                  f"(at least {percent_of_model.LATENCY_SHARE:.0%} of it): a rough guide." if assumed else ""), ""]
    else:
        md += ["No fabric model compared: `--fabric NAME` compares every series with a published fabric's model "
               "(`--fabric auto` guesses one for logs that name their GPU), as do records measured with "
               "`--fabric`.", ""]
    if guesses:
        md += ["Fabrics guessed (`--fabric auto`):", ""] + [f"- {g}" for g in guesses] + [""]
    return md + _warnings(meas)


def per_size(meas, fabric: Optional[str], chosen: Optional[model_share.Choices] = None
             ) -> List[Tuple[Tuple, List[str], List[List]]]:
    """Per series: (key, headers, rows) of the by-size table, with % of model where there is one
    (``chosen`` as in :func:`summary`)."""
    annotated, _ = model_share.annotate(meas, fabric, chosen) if fabric or "fabric" in meas else (meas, [])
    out = []
    for key, g in _series(annotated):
        cols = ["time_us", "busbw_gbs"] + [c for c in ("pct_model", "pct_link_peak") if c in g
                                            and g[c].notna().any()]
        agg: Dict[str, str] = {c: "median" for c in cols}
        if "pct_model" in cols:
            g = g.assign(model_latency_assumed=g["model_latency_assumed"].fillna(False).astype(bool))
            agg["model_latency_assumed"] = "any"
        piv = g.groupby("size_bytes").agg(agg)
        headers = ["size", "time (us)", "busbw (GB/s)"]
        if "pct_model" in cols:
            headers += [f"% of {g['fabric'].dropna().iloc[0]} model", "% of link peak"]
        rows = []
        for s, r in piv.iterrows():
            row = [human_size(s), f"{r.time_us:.2f}", f"{r.busbw_gbs:.3g}"]
            if "pct_model" in cols:
                mark = " (assumed latency)" if r.model_latency_assumed else ""
                row += [f"{r.pct_model:.1f} %{mark}" if r.pct_model == r.pct_model else "-",
                        f"{r.pct_link_peak:.1f} %" if r.pct_link_peak == r.pct_link_peak else "-"]
            rows.append(row)
        out.append((key, headers, rows))
    return out
