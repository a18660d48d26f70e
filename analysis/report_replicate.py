"""The report's data-parallel replication section: measured replicate runs beside the step model.

For every ``collectives.replicate`` record (E(N) from interleaved rounds)
in the report's inputs: the measured step and efficiency with the parts of
its loss, and the step model's prediction of the same run, uncalibrated
(every term assumed, bucket readiness estimated from FLOPs) and calibrated
leave-one-model-out (terms fitted to the other models' records, so a run
never predicts itself).  Both need the allreduce of the transport the run
used, fitted from ``collectives.allreduce`` results in the same inputs.
Per model, a plot of E(N): the measured points on the modelled curves.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from analysis import calibrate, held_out, intervals, scaling, step_evidence, step_model
from analysis.load import replicate_runs
from facts import workloads
from analysis.report_plots import save_with_legend
from analysis.sanitise import file_part, label

__all__ = ["section"]

DEVICES = (1, 2, 3, 4, 8, 16, 32)


def _fmt_pct(v: Optional[float], signed: bool = False) -> str:
    if v is None or v != v:
        return "-"
    return f"{100 * v:+.1f} %" if signed else f"{100 * v:.1f} %"


def _fmt_iv(iv, measured_ms: float) -> str:
    if iv is None:
        return "-"
    return f"{1e3 * iv.lo:.1f}-{1e3 * iv.hi:.1f} ({'in' if iv.contains(measured_ms * 1e-3) else 'out'})"


def _network(model_fits, transport: str) -> Optional[scaling.Network]:
    for f in model_fits:
        if f.collective == "allreduce" and f.transport == transport:
            return scaling.network_from_fit(f)
    return None


def _curves(model: str, recs: List[Dict], network: scaling.Network, all_recs: List[Dict]) -> List[Dict]:
    """Uncalibrated and calibrated (on every record of the other models) curves of ``model``; at every N
    with the terms the table's predictions take from the model's own run (skew for that N from its alone
    steps, interference from its host, DDP's copies and the wake delay from its comm-only phase), as the
    table does."""
    w = workloads.get(model)
    compute = calibrate.compute_from_records(recs, model)
    batches = sorted({int(r["batch"]) for r in recs})
    seq = next((r.get("seq") for r in recs if r.get("seq")), None)
    rows: List[Dict] = []
    others = [r for r in all_recs if r["model"] != model and int(r["nranks"]) > 1]
    variants = [("uncalibrated", step_model.Terms(), None)]
    if others:
        cal = held_out.Calibration(others, network.allreduce)
        noise = [x for x in (intervals.rounds_se(r) for r in recs) if x is not None]
        s_in = statistics.median(noise) if noise else 0.0
        variants.append(("calibrated on the other models", cal.terms,
                         lambda step_s, c=cal, s=s_in: c.interval(step_s, s, intervals.LEVEL)))
    # The run whose own terms the curves take: not oversubscribed where there is one, the fewest ranks, the
    # most rounds (one run for every batch of the model: the terms are the host's, not the batch's).
    own = min((r for r in recs if int(r["nranks"]) > 1), default=None,
              key=lambda r: (bool(r.get("oversubscribed")), int(r["nranks"]), -len(r.get("rounds") or [])))
    for name, terms, band in variants:
        ready = calibrate.curve_readiness(w, 4, terms, seq)
        net = scaling.Network(f"{network.label}, {name}", network.kind, network.allreduce,
                              valid_up_to=network.valid_up_to, short=f"{network.short}, {name}")
        at = (terms if own is None else
              (lambda n, t=terms: t.with_(**step_evidence.record_estimates(own, n)) if n > 1 else t))
        rows += scaling.curve(w, batches, DEVICES, compute, net, 4, 1, False, True, at, ready, band)
    return rows


def _plot(model: str, rows: List[Dict], recs: List[Dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = workloads.get(model)
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(5.0 * len(batches) + 3.0, 4.4), sharey=True, squeeze=False)
    try:
        for ax, b in zip(axes[0], batches):
            for i, network in enumerate(dict.fromkeys(r["network"] for r in rows)):
                pts = [r for r in rows if r["batch"] == b and r["network"] == network]
                line, = ax.plot([r["devices"] for r in pts], [100 * r["efficiency"] for r in pts], "--" if i else ":",
                                lw=1.5, label=label(f"MODELLED: {pts[0]['network_short']}"))
                band = [r for r in pts if r.get("eff_lo") is not None]
                if band:
                    ax.fill_between([r["devices"] for r in band], [100 * r["eff_lo"] for r in band],
                                    [100 * min(1.0, r["eff_hi"]) for r in band], color=line.get_color(), alpha=0.2,
                                    lw=0, label=f"{100 * band[0]['interval_level']:.0f} % interval (calibrated)")
            meas = [r for r in recs if int(r["batch"]) == b]
            ax.plot([int(r["nranks"]) for r in meas], [100 * r["efficiency"] for r in meas], "ko", ms=6,
                    label="measured (collectives.replicate)")
            ax.set_xscale("log", base=2)
            ax.set_ylim(0, 105)
            ax.set_xlabel("ranks N")
            ax.set_title(f"batch {b} per rank")
            ax.grid(True, alpha=0.3)
        axes[0][0].set_ylabel("scaling efficiency E(N) (%)")
        fig.suptitle(f"Data-parallel replication of {w.title}: measured points, modelled curves", fontsize=10)
        return save_with_legend(fig, axes[0][0], path, 3.0 / (5.0 * len(batches) + 3.0), 0.94)
    finally:
        plt.close(fig)


def section(records: Sequence[Dict], model_fits, outdir: Path, table) -> Tuple[List[str], List[Path]]:
    """Markdown lines and plots of the replication section ([] and [] when there is no replicate record)."""
    recs = [replicate_runs.decode(dict(r)) for r in records
            if r.get("collective") == "replicate" and r.get("status") == "ok"]
    recs = [r for r in recs if replicate_runs.has_efficiency(r)]
    if not recs:
        return [], []
    md = ["", "## Data-parallel replication, measured (collectives.replicate) beside the step model", "",
          "Each run trained the real model under DDP on synthetic inputs, in interleaved rounds (rank 0 alone, all "
          "ranks without gradient sync, all under DDP), so E(N) = X(N) / (N X(1)) comes from one job. Its loss "
          "in points: sharing (no-sync mean vs alone), skew (slowest vs mean), exposed communication (DDP vs the "
          "slowest no-sync step). Predicted: analysis.step_model from the same run's alone phase and the "
          "transport's allreduce fit, skew and interference estimated from the run's own alone steps and host, "
          "DDP's copies of the gradients and the wake delay as the run's comm-only phase timed them (the curves "
          "take the same, skew for each N); "
          "uncalibrated = every other term assumed (bucket readiness estimated from layer FLOPs), calibrated = "
          "those terms fitted to the other models' runs (leave-one-model-out).", ""]
    rows, plots, missing = [], [], set()
    by_key: Dict[Tuple[str, int], List[Dict]] = {}
    for r in recs:
        by_key.setdefault((r.get("transport"), int(r["nranks"])), []).append(r)
    strong_rows = []
    for (transport, n), group in sorted(by_key.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        network = _network(model_fits, transport)
        multi = [g for g in group if n > 1]
        if network is None:
            missing.add(transport)
        cache: Dict = {}  # the leave-one-model-out fits, made once for the intervals and the table
        bands = {(h["run_id"], h["model"], h["batch"]): h["interval"] for h in
                 (held_out.weak(group, network.allreduce, cache=cache) if network and n > 1 else [])}
        fitted = {k: c.terms for k, c in cache.items() if c is not None}
        evals = {id(r): e for r, e in zip(multi, calibrate.evaluate(group, network.allreduce, fitted=fitted)
                                          if network and n > 1 else [])}
        if network and n > 1:
            strong_rows += held_out.strong(group, network.allreduce, cache=cache)
        for r in group:
            e = evals.get(id(r), {})
            iv = bands.get((r.get("run_id"), r["model"], int(r["batch"])))
            rows.append([r["model"], r["batch"], n, f"{r['ddp_ms']:.1f}", _fmt_pct(r["efficiency"]),
                         f"{100 * r['loss_sharing']:.1f} / {100 * r['loss_skew']:.1f} / {100 * r['loss_exposed']:.1f}",
                         f"{e['uncal_step_ms']:.1f}" if e else "-", _fmt_pct(e.get("uncal_err"), True),
                         _fmt_pct(e.get("uncal_eff")),
                         f"{e['cal_step_ms']:.1f}" if e.get("cal_step_ms") else "-", _fmt_pct(e.get("cal_err"), True),
                         _fmt_pct(e.get("cal_eff")), _fmt_iv(iv, r["ddp_ms"]), "yes" if r.get("oversubscribed") else ""])
    md += table(["model", "batch/rank", "ranks", "step (ms)", "E(N)", "loss: sharing / skew / exposed (pts)",
                 "uncal. step (ms)", "error", "uncal. E", "cal. step (ms)", "error", "cal. E",
                 f"cal. {intervals.LEVEL:.0%} interval (ms)", "oversubscribed"], rows)
    md += ["", f"The {intervals.LEVEL:.0%} interval: from the errors of the other models' runs, each predicted by "
           "terms fitted on the rest of them, and the run's own alone-phase noise (analysis.intervals); `in` when "
           "the measured step falls inside it."]
    if strong_rows:
        md += ["", "### Strong scaling, measured in one job (`--batch b,Nb`) beside the model", "",
               "E(N) at global batch N b = one rank alone at N b over N x the DDP step at b per rank. Predicted: the "
               "DDP step at b from compute t(b) = per-step + b x per-sample fitted to the job's other batches "
               "(leave the batch out), terms calibrated on the other models.", ""]
        md += table(["model", "ranks", "global batch", "DDP step at b (ms)", "predicted (ms)",
                     f"{intervals.LEVEL:.0%} interval (ms)", "strong E", "predicted E", "E interval", "compute"],
                    [[h["model"], h["nranks"], h["global_batch"], f"{1e3 * h['measured']:.1f}",
                      f"{1e3 * h['predicted']:.1f}", _fmt_iv(h["interval"], 1e3 * h["measured"]),
                      _fmt_pct(h["efficiency"]), _fmt_pct(h["pred_efficiency"]),
                      f"{100 * h['eff_interval'].lo:.1f}-{100 * h['eff_interval'].hi:.1f} %", h["compute"]]
                     for h in strong_rows])
    if missing:
        md += ["", f"No allreduce fit of {', '.join(sorted(map(str, missing)))} in the inputs, so those runs are "
               "not predicted: add `collectives.allreduce --transport T` results of the same machine."]
    for model in sorted({r["model"] for r in recs}):
        mine = [r for r in recs if r["model"] == model]
        transport = mine[0].get("transport")
        network = _network(model_fits, transport)
        if network is None:
            continue
        curve_rows = _curves(model, mine, network, [r for r in recs if r.get("transport") == transport])
        plots.append(_plot(model, curve_rows, mine, outdir / f"replicate_{file_part(model)}.png"))
    return md, plots
