"""How well the step model predicts real data-parallel training (issues 12 and 24).

    python benchmarks/replicate_fidelity.py [--cases strong,link] [--budget 30] [--rounds 5] [--out DIR] [--reuse DIR]
    python benchmarks/replicate_fidelity.py --cases weak [--ranks 2,3] [--rounds 7] [--repeat 1]

``--cases``: ``strong`` (strong scaling at 2 ranks, per-step compute fitted
at other batches), ``link`` (2 emulated hosts over shaped links, root
only) and the interval coverage over every point of both
(:mod:`benchmarks.replicate_cases` has the method and targets; the
default, about 25 minutes here); ``weak``, the original case below.

The weak case.  For each rank count: a gloo allreduce sweep (``collectives.allreduce
--transport gloo``, 64 KiB .. 64 MiB) and its alpha-beta fit; then
``collectives.replicate`` of UNet-2D (32 filters, batch 2), GPT-2 small
(128 tokens, batch 1) and BraggNN (batch 32) over gloo on this CPU, E(N)
from interleaved rounds in each job.  Each run is predicted by
``analysis.step_model`` from the fit and the same job's alone phase (its
1-rank rate): uncalibrated (every term assumed, bucket readiness from layer
FLOPs) and calibrated leave-one-model-out (terms fitted to the two other
models' runs).  Targets at 2 ranks, median over the three models:
calibrated step-time error <= 5 % and efficiency within 3 points;
uncalibrated step-time error <= 15 %.  Both with the network model taken
from the job's own comm-only phase (the gradient allreduce timed alone in
the same rounds: the drift between a separate sweep and the job is larger
than the targets on a shared machine) and from the separate sweep's fit.  ``--allocator
keep`` (default) runs the training jobs with glibc keeping freed memory
(printed): with the defaults, the step of a large model pays for page
faults on fresh gradient and optimizer buffers every step, which the
ranks contend for and which makes a large model's steps vary widely.  Where a target is missed, the
column "error carried by" names the part of the loss (sharing, skew,
exposed communication) whose predicted size is furthest from the measured
one.  ``--repeat N`` runs each model's job N times, interleaved, and prints
how far E(N) and the step move between jobs: the floor under any model
error.  3 ranks on 2 cores are oversubscribed and flagged so.  Prints;
asserts nothing.  The runs are timing measurements: run nothing else.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = (("unet", ["--batch", "2"]), ("gpt2-small", ["--batch", "1", "--seq", "128"]),
          ("braggnn", ["--batch", "32"]))
TARGET_CAL, TARGET_EFF_PTS, TARGET_UNCAL = 0.05, 3.0, 0.15
# --allocator keep: glibc keeps freed memory for reuse instead of handing large buffers back to the system
# every step (which the kernel then zeroes again on first touch): measured here, GPT-2 small's step of one
# rank alone fell from 2.1-2.4 s to 1.8 s and its sharing from +11-17 % to +0-2 %.
KEEP = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "68719476736",
        "MALLOC_TOP_PAD_": "1073741824"}


def _mpirun() -> str:
    here = Path(sys.executable).with_name("mpirun")
    return str(here) if here.exists() else "mpirun"


def _run(cmd, timeout: int, env=None) -> None:
    t0 = time.perf_counter()
    print(f"# running: {' '.join(cmd[3:])}", flush=True)
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                             env=dict(os.environ, **(env or {})))
    except FileNotFoundError:
        raise SystemExit(f"{cmd[0]}: not found; install an MPI (pip install mpich) or put its mpirun on PATH")
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()[-800:]}")
    print(f"#   {time.perf_counter() - t0:.0f} s", flush=True)


def measure(out: Path, ranks, rounds: int, repeat: int = 1, env=None) -> None:
    for n in ranks:
        base = [_mpirun(), "-n", str(n), sys.executable, "-m"]
        _run(base + ["collectives.allreduce", "--transport", "gloo", "-b", "64K", "-e", "64M", "-f", "2",
                     "--json", str(out / f"allreduce_{n}.jsonl")], 900)
        for _ in range(repeat):  # the models interleaved, so drift spreads over all of them
            for model, args in MODELS:
                _run(base + ["collectives.replicate", "--model", model, *args, "-n", str(rounds), "-w", "1",
                             "--json", str(out / f"replicate_{n}.jsonl")], 1800, env)


def _pct(v, signed=True):
    return "-" if v is None else (f"{100 * v:+6.1f}%" if signed else f"{100 * v:5.1f}%")


NETWORK_LABEL = {"job": "network = the job's own comm-only phase (gradient allreduce alone, interleaved)",
                 "sweep": "network = the separate gloo allreduce sweep's alpha-beta fit"}


def _table(rows, n: int) -> None:
    for r in rows:
        print(f"  {r['model']:<11} {n:2d} {r['step_ms']:9.1f}  {_pct(r['efficiency'], False)}  | "
              f"{r['uncal_step_ms']:9.1f} {_pct(r['uncal_err'])} {_pct(r['uncal_eff'], False)} | "
              f"{r.get('cal_step_ms', float('nan')):9.1f} {_pct(r.get('cal_err'))} "
              f"{_pct(r.get('cal_eff'), False)} | {r.get('cal_carrier', '-')}")
        m = r["measured_parts_ms"]
        print(f"  {'':<11}    measured loss (ms): sharing {m['sharing']:.1f}, skew {m['skew']:.1f}, "
              f"exposed {m['exposed']:.1f}; in-step allreduce {r['instep_comm_ms'] or 0:.1f} ms vs "
              f"uncalibrated model {r['uncal_comm_ms']:.1f} ms; calibrated terms used (the record's own skew, "
              "interference, copies and wake, the others fitted on the other models): "
              + ", ".join(f"{k} {v:.3g}" for k, v in (r.get("terms") or {}).items()))


def _spread_lines(rows, n: int) -> None:
    """How far the measurement itself moves between repeated jobs of a model."""
    for m in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == m]
        if len(mine) < 2:
            continue
        es = [100 * r["efficiency"] for r in mine]
        steps = [r["step_ms"] for r in mine]
        print(f"# {n} ranks, {m}: {len(mine)} jobs, E(N) {min(es):.1f}-{max(es):.1f} %, step "
              f"{min(steps):.1f}-{max(steps):.1f} ms (spread {100 * (max(steps) / min(steps) - 1):.0f} %)")


def _verdict(rows, n: int, label: str) -> None:
    models = sorted({r["model"] for r in rows})

    def per_model(key):  # the median over a model's jobs, then (below) over the models
        return [statistics.median(abs(r[key]) for r in rows if r["model"] == m and key in r) for m in models
                if any(key in r for r in rows if r["model"] == m)]
    cal, eff, unc = per_model("cal_err"), per_model("cal_eff_pts"), per_model("uncal_err")
    if not cal:
        return
    med_cal, med_eff, med_unc = statistics.median(cal), statistics.median(eff), statistics.median(unc)
    tag = "target" if n == 2 else "for information (oversubscribed)" if n > 2 else ""
    print(f"# {n} ranks, {label}, median over {len(models)} models, {len(rows)} jobs ({tag}): calibrated step "
          f"error {100 * med_cal:.1f} % (<= {100 * TARGET_CAL:.0f} %: {'MET' if med_cal <= TARGET_CAL else 'MISSED'}),"
          f" efficiency {med_eff:.1f} points (<= {TARGET_EFF_PTS:.0f}: "
          f"{'MET' if med_eff <= TARGET_EFF_PTS else 'MISSED'}); uncalibrated step error {100 * med_unc:.1f} % "
          f"(<= {100 * TARGET_UNCAL:.0f} %: {'MET' if med_unc <= TARGET_UNCAL else 'MISSED'})")


def _comm_alone(r) -> str:
    """A record's gradient allreduce alone, with DDP's copies and the wake delay where it timed them."""
    extra = all(isinstance(r.get(k), (int, float)) for k in ("copy_alone_ms", "wake_alone_ms"))
    return f"{r['model']} {r['comm_alone_ms']:.1f} ms" + (
        f" (+ DDP's copies {r['copy_alone_ms']:.1f} ms, wake {r['wake_alone_ms']:.1f} ms)" if extra else "")


def report(out: Path, ranks) -> None:
    from analysis import calibrate, fit, scaling, step_evidence
    from analysis.load import points, replicate_runs

    verdicts = []
    for n in ranks:
        df = points.load([out / f"allreduce_{n}.jsonl"])
        fits = [f for f in fit.fit_transport(df, "gloo") if f.collective == "allreduce"]
        if not fits:
            raise SystemExit(f"no gloo allreduce fit at {n} ranks")
        net = scaling.network_from_fit(fits[0])
        recs = [r for r in replicate_runs.records(out / f"replicate_{n}.jsonl") if replicate_runs.has_efficiency(r)]
        over = " (oversubscribed)" if any(r.get("oversubscribed") for r in recs) else ""
        print(f"# {n} ranks{over}: gloo allreduce fit {fits[0].algorithm}, alpha {fits[0].alpha * 1e6:.0f} us, "
              f"beta {fits[0].beta / 1e9:.2f} GB/s; gradient allreduce alone in the jobs: "
              + ", ".join(_comm_alone(r) for r in recs if isinstance(r.get("comm_alone_ms"), (int, float))))
        networks = ["job", "sweep"] if any(step_evidence.job_network(r) for r in recs) else ["sweep"]
        for network in networks:
            rows = calibrate.evaluate(recs, net.allreduce, network=network)
            print(f"# {NETWORK_LABEL[network]}")
            print("# model        N   step(ms)    E(N)  | uncal: step err   E    | cal (leave-one-model-out): "
                  "step err   E    | error carried by (calibrated)")
            _table(rows, n)
            verdicts.append((rows, n, NETWORK_LABEL[network].split(" (")[0]))
        _spread_lines(rows, n)
    for rows, n, label in verdicts:
        _verdict(rows, n, label)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="strong,link", help="comma list of strong, link (their interval coverage "
                    "comes with them) and weak (default strong,link)")
    ap.add_argument("--budget", type=float, default=30.0, help="strong/link: minutes of jobs; none is started "
                    "after (default 30)")
    ap.add_argument("--ranks", default="2,3", help="weak: rank counts")
    ap.add_argument("--rounds", type=int, default=None, help="replicate's timed rounds (default 5; weak 7)")
    ap.add_argument("--repeat", type=int, default=1, help="jobs per model (interleaved): the spread between them "
                    "is printed, and the errors are medians over a model's jobs")
    ap.add_argument("--out", default=None, help="keep the JSON Lines here (default: a new directory)")
    ap.add_argument("--reuse", default=None, help="report on the JSON Lines of an earlier --out, measure nothing")
    ap.add_argument("--allocator", choices=("keep", "system"), default="keep",
                    help="keep (default): glibc keeps freed memory for reuse (MALLOC_* settings, printed); "
                    "system: the C library's defaults, as a plain run gets them")
    a = ap.parse_args(argv)
    cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in ("strong", "link", "weak")]
    if bad or not cases or ("weak" in cases and len(cases) > 1):
        ap.error(f"--cases {a.cases!r}: a comma list of strong and link, or weak on its own")
    if cases != ["weak"]:
        return _issue24(a, [c for c in cases if c != "weak"])
    a.rounds = a.rounds or 7
    ranks = [int(x) for x in a.ranks.split(",")]
    if a.reuse:
        out = Path(a.reuse)
    else:
        out = Path(a.out or f"replicate_fidelity_{time.strftime('%Y%m%dT%H%M%S')}")
        out.mkdir(parents=True, exist_ok=True)
        env = KEEP if a.allocator == "keep" else {}
        print("# host memory allocator for the training jobs: "
              + (", ".join(f"{k}={v}" for k, v in env.items()) or "the C library's defaults"), flush=True)
        measure(out, ranks, a.rounds, a.repeat, env)
    report(out, ranks)
    print(f"# data: {out}/")
    return 0


def _issue24(a, cases) -> int:
    from benchmarks import replicate_cases as rc
    from launch import netns

    out = Path(a.reuse or a.out or f"replicate_cases_{time.strftime('%Y%m%dT%H%M%S')}")
    if "link" in cases and not a.reuse and netns.requirements_missing():
        print(f"# link: cannot run here: {netns.requirements_missing()}; running the other cases")
        cases = [c for c in cases if c != "link"]
    if not a.reuse:
        out.mkdir(parents=True, exist_ok=True)
        env = KEEP if a.allocator == "keep" else {}
        print("# host memory allocator for the training jobs: "
              + (", ".join(f"{k}={v}" for k, v in env.items()) or "the C library's defaults"), flush=True)
        budget = rc.Budget(a.budget)
        t0 = time.monotonic()
        if "strong" in cases:
            rc.measure_strong(out, a.rounds or 5, budget, env)
        if "link" in cases:
            rc.measure_link(out, a.rounds or 5, budget, env)
        print(f"# measured in {(time.monotonic() - t0) / 60:.1f} min"
              + (f"; not run (budget): {', '.join(budget.skipped)}" if budget.skipped else ""), flush=True)
    points = []
    if "strong" in cases:
        points += rc.report_strong(out)
    if "link" in cases:
        points += rc.report_link(out)
    rc.report_coverage(points)
    print(f"# data: {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
