"""The report's appendix: what a reader opens when the summary and plots raised a question.

Every part is a collapsible section (:func:`analysis.report_text.details`):
busbw and time at every measured size per series (with % of the fabric's
model where there is one), how well the fits predict sizes they did not
see, point-to-point link rates, the scaling tables behind the scaling plots
(with every compute assumption written out, not cut), every fabric figure
with its kind and source, and the run's bookkeeping (sweeps, rows without a
time).
"""

from __future__ import annotations

from typing import Dict, List, Optional

from analysis import link_table
from facts import fabrics, workloads
from analysis.model_share import Choices
from analysis.report_plots import short_compute
from analysis.report_summary import per_size
from analysis.report_text import details, fmt, table
from ground.sizes import human_size

__all__ = ["appendix", "scaling_tables"]


def _by_size(meas, fabric: Optional[str], chosen: Optional[Choices] = None) -> List[str]:
    md: List[str] = []
    for (transport, collective, p), headers, rows in per_size(meas, fabric, chosen):
        md += [f"**{transport} {collective}, {int(p)} rank{'s' if p != 1 else ''}** (measured; the median where a "
               "size was measured more than once)", ""] + table(headers, rows) + [""]
    return md


def _accuracy(accuracy: List[Dict]) -> List[str]:
    if not accuracy:
        return []
    return ["Piecewise latency-bandwidth fit (one latency and bandwidth per size regime: protocol switches, "
            "cache limits; the regimes chosen by cross-validation) on every other size of the per-iteration "
            "median time, errors on the other sizes >= 64 KiB. The largest test size can lie beyond the "
            "training range: its error is shown apart.", ""] + table(
        ["transport", "collective", "ranks", "fitted regimes (training sizes)", "median err", "worst err",
         "beyond range"],
        [[a["transport"], a["collective"], a["nranks"], a["model"], fmt(a["median_rel_err"], True),
          fmt(a["max_rel_err"], True), fmt(a["extrapolated_rel_err"], True)] for a in accuracy])


def _links(meas) -> List[str]:
    rows = link_table.link_table(meas)
    if not rows:
        return []
    return ["Bandwidth of the largest-size regime of a piecewise fit to the one-way time (1/slope, free of "
            "latency), and the median algbw of sizes >= 1 MiB; on emulated links, both beside the rate the "
            f"links were shaped to. TCP/Ethernet framing leaves about {link_table.TCP_PAYLOAD_FRACTION:.1%} of "
            "a link's rate for payload (headers of 66 in every 1514 bytes); the bucket's burst can add a little.",
            ""] + table(["transport", "collective", "hosts", "configured (GB/s)", "fitted (GB/s)", "fit from",
                         "latency (us)", "algbw >= 1 MiB (GB/s)", "fitted / configured"],
                        [[r["transport"], r["collective"], r["nhosts"], fmt(r["configured_gbs"]),
                          fmt(r["fitted_gbs"]), human_size(r["fit_from_bytes"]), f"{r['latency_us']:.1f}",
                          fmt(r["large_algbw_gbs"]), fmt(r["fitted_ratio"], True)] for r in rows])


def scaling_tables(scaling_rows: Dict[str, List[Dict]]) -> List[str]:
    md: List[str] = []
    computes: Dict[str, str] = {}
    for model, rows in scaling_rows.items():
        w = workloads.get(model)
        md += [f"**{w.title}: {w.params:,} parameters, {w.flops_per_sample / 1e9:.1f} GFLOP per sample**", ""]
        pick = [r for r in rows if r["devices"] in (8, 64, 1024)]
        for r in pick:
            computes.setdefault(short_compute(r["compute"]), r["compute"])
        md += table(["network", "batch", "devices", "step (ms)", "exposed allreduce (ms)", "efficiency", "compute"],
                    [[r["network"], r["batch"], r["devices"], f"{r['step_ms']:.2f}", f"{r['exposed_ms']:.2f}",
                      fmt(r["efficiency"], True) + (" (extrapolated)" if r["note"] else ""),
                      short_compute(r["compute"])] for r in pick]) + [""]
    if computes:
        md += ["Compute per device, in full:", ""] + [f"- {short}: {full}" for short, full in computes.items()] + [""]
    return md


def _fabric_sources() -> List[str]:
    md = ["Every figure is marked datasheet, measured, derived or assumed, with its source (facts/fabrics.py).",
          ""]
    for name in fabrics.names():
        fab = fabrics.get(name)
        md.append(f"- **{name}** — {fab.title}: " + "; ".join(fab.figures()) + (f". {fab.notes}" if fab.notes else ""))
    return md + [""]


def _bookkeeping(allrec) -> List[str]:
    md: List[str] = []
    if "sweep_id" in allrec and allrec["sweep_id"].notna().any():
        for sid, g in allrec[allrec["sweep_id"].notna()].groupby("sweep_id"):
            points = g["sweep_point"].dropna()
            failed = sorted(set(g.loc[g["status"] == "failed", "sweep_point"].dropna().astype(str)))
            md += [f"Sweep {sid}: {points.nunique()} points"
                   + (f", failed: {', '.join(failed)}" if failed else ", none failed") + ".", ""]
    skipped = allrec[~allrec["status"].isin(["ok", "wrong"])]
    if len(skipped):
        reasons = skipped.assign(reason=skipped["reason"].fillna("-")).groupby(["status", "reason"]).size() \
            .reset_index(name="rows")
        md += ["Rows without a time (not plotted):", ""] + table(["status", "reason", "rows"], reasons.values.tolist())
    return md


def appendix(meas, allrec, accuracy: List[Dict], scaling_rows: Dict[str, List[Dict]],
             fabric: Optional[str], chosen: Optional[Choices] = None) -> List[str]:
    """The appendix's lines: a heading and one collapsible section per part that has something to show
    (``chosen``: each series' fabric, chosen once by the report)."""
    md = ["## Appendix", "", "Click a heading to open it.", ""]
    md += details("Measured: time and bus bandwidth at every size, per series", _by_size(meas, fabric, chosen))
    md += details("How well a fit predicts sizes it did not see", _accuracy(accuracy))
    md += details("Point-to-point links (measured)", _links(meas))
    md += details("Data-parallel scaling tables (MODELLED) behind the scaling plots", scaling_tables(scaling_rows))
    md += details("Fabric models (MODELLED, from published figures): every figure and its source", _fabric_sources())
    md += details("Runs: sweeps and rows without a time", _bookkeeping(allrec))
    return md
