"""How well the latency-bandwidth fit predicts sizes it did not see.

    python benchmarks/model_accuracy.py                      # measures, then fits
    python benchmarks/model_accuracy.py --results r.jsonl    # fits existing results

Measures allreduce over every transport available here (shm, mpi, gloo) at
2 and 4 ranks (one mpirun job each, 8 B to 64 MiB), fits each series on every
other size and predicts the other sizes.  The fit is
analysis.fit.fit_segmented: latency + size / bandwidth per size regime
(protocol switches, cache limits), regimes chosen by leave-one-out
cross-validation on the training sizes, weighted by relative error.

Prints the median and worst relative error on the held-out sizes >= 64 KiB,
for the per-iteration median time (p50, the default the report uses) and for
the mean time, and apart the error of a test size beyond the training range
(64 MiB lies above the largest training size, 32 MiB: an extrapolation).
Target (issue 5): median <= 15 %.  Prints; asserts nothing.

At 4 ranks on a 2-core machine the ranks are oversubscribed: the
scheduler's noise is in those times, and no model of the transport removes it.
Figures: docs/results/2026-11.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import report
from analysis.load import points


def measure(out: Path, ranks, transports, budget: float) -> None:
    import transports as registry

    mpirun = Path(sys.executable).parent / "mpirun"
    mpirun = str(mpirun) if mpirun.exists() else "mpirun"
    status = registry.available()
    for transport in transports:
        if status.get(transport) is not None:
            print(f"# {transport}: not available here ({status[transport]}), skipped")
            continue
        for n in ranks:
            cmd = [mpirun, "-n", str(n), sys.executable, "-m", "collectives.allreduce", "--transport", transport,
                   "-b", "8", "-e", "64M", "--out-of-place" if transport != "gloo" else "--in-place",
                   "--time-budget", str(budget), "--json", str(out), "-c", "0"]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                                 env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
            print(f"# measured {transport} at {n} ranks: exit {res.returncode}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", nargs="+", help="use these results instead of measuring")
    ap.add_argument("--ranks", default="2,4")
    ap.add_argument("--transports", default="shm,mpi,gloo")
    ap.add_argument("--time-budget", type=float, default=0.1)
    args = ap.parse_args(argv)
    if args.results:
        paths = args.results
    else:
        tmp = Path(tempfile.mkdtemp()) / "model_accuracy.jsonl"
        measure(tmp, [int(x) for x in args.ranks.split(",")], args.transports.split(","), args.time_budget)
        paths = [str(tmp)]
    df = points.load(paths)
    df = df[(df["kind"] == "measured") & (df["collective"] == "allreduce")]
    for column, label in (("time_us_p50", "per-iteration median (p50)"), ("time_us", "mean")):
        rows = report.holdout_accuracy(df, column=column)
        print(f"# model_accuracy.py: {label} time; fit on every other size, predict the others; errors on "
              "held-out sizes >= 64 KiB (measured data, modelled predictions)")
        print("# transport  ranks  train  test  regimes  median err  worst err  beyond-range err  target (<= 15 %)")
        for r in rows:
            ok = "met" if r["median_rel_err"] <= 0.15 else "MISSED"
            ext = "%.1f%%" % (100 * r["extrapolated_rel_err"]) if r["extrapolated_rel_err"] is not None else "-"
            print("%-11s %6d %6d %5d %8d %10.1f%% %9.1f%% %17s  %s" % (
                r["transport"], r["nranks"], r["train_points"], r["test_points"], r["regimes"],
                100 * r["median_rel_err"], 100 * r["max_rel_err"], ext, ok))
        for r in rows:
            print(f"#   {r['transport']} {r['nranks']} ranks: {r['model']}")
        if rows:
            med = statistics.median(r["median_rel_err"] for r in rows)
            worst = max(r["max_rel_err"] for r in rows)
            print(f"# over all series ({label}): median of medians {100 * med:.1f} %, worst {100 * worst:.1f} %")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
