"""``python -m analysis.report RESULTS... -o DIR``: fits, models, scaling curves and plots.

Writes ``DIR/report.md``, ``DIR/index.html`` (self-contained: plots
embedded, viewable offline) and the PNG plots it shows:

* ``busbw_<collective>.png``, ``time_<collective>.png``: bus bandwidth and
  time against size for every measured transport and rank count (solid
  lines, round markers), fitted curves over the time points, and modelled
  fabrics at the largest measured rank count (dashed, no markers, labelled
  MODELLED) — a modelled series is never drawn like a measured one;
* ``scaling_<model>.png``: scaling efficiency against devices for UNet and
  GPT-2 at two batches, per fabric model and per measured transport fit;
* ``replicate_<model>.png`` and a "measured vs predicted" table, when the
  inputs hold ``collectives.replicate`` runs: measured E(N) on the step
  model's curves, uncalibrated and calibrated (analysis.report_replicate);
* the page, in the order a reader wants it: what was measured and the
  headline of every series (time at the smallest size, peak busbw, and with
  ``--fabric NAME|auto`` that busbw as a % of the fabric's model and link
  peak, a series below half of its model said in words;
  :mod:`analysis.report_summary`), the plots, the fits (alpha, beta, gamma,
  the algorithm that fits best, the errors), UNet efficiency at 8 devices
  beside the seed study, the replication section when there are replicate
  runs, and an appendix of collapsible sections (every size of every
  series, how well the fits predict sizes they did not see, link rates, the
  scaling tables, every fabric figure with its source;
  :mod:`analysis.report_appendix`).  Sizes read as nccl-tests users read
  them (8 B ... 64 MiB).  The HTML (:mod:`analysis.report_html`) never
  scrolls sideways.

A run at one rank has a bus bandwidth of 0 (nothing moves between ranks):
its times are tabulated and plotted, its busbw plot is left out and the
report says so; no fit uses it.  A torn or bad line in a results file is
skipped with one warning naming ``file:line`` (``--strict``: an error), as
are non-physical rows (:mod:`analysis.physical`); a file that is not collscale
results, or lacks a column the report needs, is refused in one line (exit 2),
as is an ``-o`` that is an existing file (missing parents of ``-o`` are
created).  Record fields reach file names, Markdown and plot labels only
through :mod:`analysis.sanitise`: every file is written inside ``-o``.
"""

from __future__ import annotations

import importlib.util
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ground import errors
from analysis import (cli_common, compare, compute_cost, fit, model_share, physical, plot_worker, report_appendix,
                      report_html, report_replicate, report_seed, report_summary, sanitise, scaling, stragglers,
                      triage)
from analysis.load import points, ranks, reader
from facts import fabrics, per_rank, percent_of_model, workloads
from analysis.report_plots import REPORT_FABRICS
from analysis.report_text import fmt, table
from ground import progress

__all__ = ["build", "main", "holdout_accuracy", "read_whole"]

SCALING_MODELS = (("unet", (32, 256)), ("gpt2-small", (8, 32)))
DEVICES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
A100_TFLOPS = 312.0
PROG = "analysis.report"


# -- analysis -------------------------------------------------------------------------------

def _time_column(df) -> str:
    """The per-iteration median when the results have it (robust to a shared machine's hiccups)."""
    if "time_us_p50" in df and df["time_us_p50"].notna().any():
        return "time_us_p50"
    return "time_us"


def holdout_accuracy(df, min_size: int = 64 * 1024, column: Optional[str] = None) -> List[Dict]:
    """Fit every (transport, collective, nranks) on every other size, predict the rest.

    The fit is :func:`analysis.fit.fit_segmented` (one latency and bandwidth
    per size regime, regimes chosen by cross-validation on the training sizes
    alone).  Sizes alternate between training and test, so the largest test
    size may lie beyond the training range (an extrapolation, flagged).
    Returns one row per series with the median and worst relative error on
    the held-out sizes >= ``min_size``.
    """
    column = column or _time_column(df)
    out = []
    keys = ["transport", "collective", "nranks"]
    for (transport, collective, p), g in fit.columns(df, *keys, column).groupby(keys):
        g = fit.fit_rows(g)
        g = g[(g[column] >= physical.MIN_TIME_US) & (g[column] <= physical.MAX_TIME_US)]  # a p50 too
        g = g.groupby("size_bytes", as_index=False)[column].median().sort_values("size_bytes")
        if len(g) < 4:
            continue
        train, test = g.iloc[0::2], g.iloc[1::2]
        test = test[test["size_bytes"] >= min_size]
        if len(test) == 0 or train["size_bytes"].nunique() < 2:
            continue
        f = fit.fit_segmented(train["size_bytes"], train[column] * 1e-6)
        pred = f.predict(test["size_bytes"]) * 1e6
        rel = np.abs(pred - test[column].to_numpy()) / test[column].to_numpy()
        beyond = test["size_bytes"] > train["size_bytes"].max()
        out.append({"transport": transport, "collective": collective, "nranks": int(p), "column": column,
                    "train_points": len(train), "test_points": len(test),
                    "median_rel_err": float(np.median(rel)), "max_rel_err": float(rel.max()),
                    "extrapolated_rel_err": float(rel[beyond.to_numpy()].max()) if beyond.any() else None,
                    "regimes": len(f.segments), "model": f.describe()})
    return out


def _measured(df):
    return df[df["kind"] == "measured"]


def _scaling_rows(model_fits: List[fit.ModelFit], measure_cpu: bool) -> Dict[str, List[Dict]]:
    """Scaling curves per model: fabric models and measured allreduce fits."""
    networks = []
    for name in REPORT_FABRICS:
        fab = fabrics.get(name)
        peak = fab.peak_tflops
        networks.append((scaling.network_from_fabric(fab), peak.value if peak else A100_TFLOPS,
                         peak.source if peak else f"no published peak: A100-class {A100_TFLOPS:g} TFLOP/s "
                         "assumed, to compare fabrics alone"))
    for f in model_fits:
        if f.collective == "allreduce":
            networks.append((scaling.network_from_fit(f), A100_TFLOPS,
                             f"A100-class {A100_TFLOPS:g} TFLOP/s assumed (what if these devices computed "
                             "like A100s)"))
    out: Dict[str, List[Dict]] = {}
    for model, batches in SCALING_MODELS:
        w = workloads.get(model)
        rows: List[Dict] = []
        cpu = None
        for network, tflops, src in networks:
            compute = compute_cost.from_peak(w, tflops, compute_cost.DEFAULT_MFU, src)
            if measure_cpu and network.kind.endswith("fit") and model == "unet":
                cpu = cpu or compute_cost.measure_cpu(w, threads=compute_cost.default_threads(DEVICES))
                compute = cpu
            rows += scaling.curve(w, batches, DEVICES, compute, network)
        out[model] = rows
    return out


# -- writing ----------------------------------------------------------------------------------


def _fits_section(model_fits: List[fit.ModelFit]) -> List[str]:
    md = ["## Fits (from the measurements)", "",
          "Per transport and collective, each algorithm's formula (facts.costmodel) fitted across the "
          "rank counts measured; the one with the lowest median relative error is shown.", ""]
    return md + table(["transport", "collective", "algorithm", "ranks", "alpha (us)", "beta (GB/s)",
                       "gamma (ns/B)", "median err", "max err", "note"],
                      [[f.transport, f.collective, f.algorithm, ",".join(map(str, f.ranks)), f"{f.alpha * 1e6:.2f}",
                        f"{f.beta / 1e9:.3f}", fmt(f.gamma * 1e9 if f.gamma is not None else None),
                        fmt(f.median_rel_err, True), fmt(f.max_rel_err, True), f.gamma_note]
                       for f in model_fits]) + [""]


_RANKS = "ranks_summary"  # the column of analysis.load.ranks.summary
UNREAD = ("op_impl", "iters", "warmup", "fresh_inputs", "thread_level", "aggregation", "time_us_min", "time_us_p99",
          "time_us_max", "time_us_rank_min", "time_us_rank_max", "slowest_host", "transport_version",
          "collscale_version", "python_version", "numpy_version", "mpi4py_version")  # no section reads them: not kept


def read_whole(rec: dict) -> bool:
    """Records the report reads whole: replicate runs, the triage's CPU probes and host pairs."""
    return rec["collective"] in (reader.REPLICATE, "cpu_probe") or (rec["collective"] == "sendrecv"
                                                                     and rec.get("split") == "pairs")


read_whole.fields = ("collective", "split")  # what it reads: the block reader gives it just these


_PHASES = ("reading results", "fitting", "scaling curves", "plots", "replication", "writing")


def build(paths: Sequence[str], outdir: str, measure_cpu: bool = False, strict: bool = False,
          warn: Optional[reader.Warn] = None, fabric: Optional[str] = None,
          note: Optional[Callable[[str], None]] = None, baseline: Optional[str] = None,
          per_step_ms: Optional[float] = None) -> Dict[str, Path]:
    """Everything :func:`main` writes; returns the paths.

    The results are read first (``strict`` and ``warn`` as in
    :func:`analysis.load.reader.read_records`); then ``outdir`` is created with
    its parents (an existing file there is a :class:`~analysis.cli_common.UsageError`).
    ``fabric``: a fabric's name, or ``auto``, to compare every measured series with
    (:mod:`facts.percent_of_model`); ``note`` receives each guess ``auto`` made (default: stderr).
    ``baseline``: results to compare with, point by point (:func:`analysis.compare.section`).
    On a terminal, a progress bar on stderr names the phase (:mod:`ground.progress`).
    """
    fabric = percent_of_model.check_arg(fabric)
    with progress.bar(len(_PHASES), "report") as bar, reader.settled() as settle, ExitStack() as later:
        bar.step(_PHASES[0])
        # Columns, not a dict per record (results of a cluster's sweeps hold millions); whole records only for
        # the sections that read them (replication, triage), the per-rank fields in brief (stragglers).
        tab = reader.read_table(list(paths), strict, bar.say(warn or cli_common.warner(PROG)),
                                drop=() if baseline else per_rank.FIELDS_JSON + UNREAD, hooks={_RANKS: ranks.summary},
                                whole=read_whole)
        settle()  # what was read stays out of the cycle collector's walks
        records = tab.records
        out = cli_common.output_dir("-o", outdir)
        allrec = points.frame(tab, all_status=True)
        del tab
        df = allrec[allrec["status"].isin(reader.MEASURED)].reset_index(drop=True)
        base = points.frame(reader.read_records([baseline], strict, bar.say(warn or cli_common.warner(PROG)))
                            ) if baseline else None
        meas = _measured(df)
        chosen, notes = model_share.choices(meas, fabric)  # each series' fabric, chosen once per report
        guesses = notes if fabric == percent_of_model.AUTO else []
        for g in guesses:
            bar.say(note or (lambda text: print(f"{PROG}: fabric auto: {text}", file=sys.stderr)))(g)
        bar.done()
        drawing = later.enter_context(plot_worker.Drawing(df, out, apart=not measure_cpu))  # while tables are made
        bar.step(_PHASES[1])
        model_fits = fit.fit_frame(meas) if not meas.empty else []
        accuracy = holdout_accuracy(meas)
        bar.done()
        bar.step(_PHASES[2])
        scaling_rows = _scaling_rows(model_fits, measure_cpu)
        seed = report_seed.rows(scaling_rows, per_step_ms)
        bar.done()
        bar.step(_PHASES[3])
        drawing.scaling(scaling_rows)
        bar.done()
        bar.step(_PHASES[4])
        rep_md, rep_plots = report_replicate.section(records, model_fits, out, table)
        tri_md, tri_plots = triage.section(records, out, fabric if fabric != percent_of_model.AUTO else None)
        bar.done()
        bar.step(_PHASES[5])
        head = report_summary.summary(paths, df, allrec, meas, fabric, guesses, chosen)
        md = [""] + stragglers.section(stragglers.points_table(df, _RANKS))
        md += tri_md + [f"![{p.stem}]({p.name})" for p in tri_plots] + ([""] if tri_plots else [])
        if base is not None:
            md += [""] + compare.section(base, df, baseline)
        md += [""] + _fits_section(model_fits) + report_seed.section(seed)
        if rep_md:
            md += rep_md + [""] + [f"![{p.stem}]({p.name})" for p in rep_plots] + [""]
        md += report_appendix.appendix(meas, allrec, accuracy, scaling_rows, fabric, chosen)
        plots, plot_notes = drawing.result()  # waited for last
        shown = ["## Plots", "", "Measured series are solid lines with markers; anything MODELLED is dashed.", ""]
        shown += [f"![{p.stem}]({p.name})" for p in plots]
        if plot_notes:
            shown += ["", "Left out of the plots:", ""] + [f"- {n}" for n in plot_notes]
        md = [sanitise.text(line) for line in head + shown + md]  # a record's text never breaks a line or hides one
        md_path = out / "report.md"
        md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
        html_path = out / "index.html"
        html_path.write_text(report_html.page(md, out), encoding="utf-8")
        bar.done()
    return {"report.md": md_path, "index.html": html_path, **{p.name: p for p in plots + rep_plots + tri_plots}}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m analysis.report``: the exit status (0; 2 with one line on stderr for bad input)."""
    return errors.run_main(PROG, lambda: _main(argv), prints="the results")


def _main(argv: Optional[Sequence[str]]) -> int:
    ap = cli_common.Parser(prog="python -m analysis.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="JSON Lines or CSV files from the harness (or analysis.predict)")
    ap.add_argument("-o", "--output", default="report", help="directory to write (default: report/)")
    percent_of_model.add_fabric_flag(ap)
    ap.add_argument("--measure-cpu", action="store_true",
                    help="for measured networks, time UNet's forward+backward on this CPU instead of "
                    "assuming A100-class compute")
    ap.add_argument("--per-step-ms", type=cli_common.number(0, 1e6, lo_open=False), metavar="MS",
                    help="the seed table's strong-scaling columns: this per-step compute cost (default: fitted so "
                    "that batch 32 gives the seed's own figure)")
    ap.add_argument("--baseline", metavar="FILE", help="results to compare with, point by point (a section "
                    "of NEW/BASE times with intervals; python -m analysis.compare judges them, exit 4)")
    cli_common.add_strict(ap)
    a = ap.parse_args(argv)
    cli_common.output_dir("-o", a.output, create=False)  # before the slow part
    if a.measure_cpu and importlib.util.find_spec("torch") is None:
        raise cli_common.UsageError("--measure-cpu needs torch (pip install torch)")
    written = build(a.results, a.output, a.measure_cpu, a.strict, cli_common.warner(PROG), a.fabric,
                    baseline=a.baseline, per_step_ms=a.per_step_ms)
    print(f"wrote {len(written)} files to {a.output}/: " + ", ".join(sorted(written)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
