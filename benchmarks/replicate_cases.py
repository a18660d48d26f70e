"""The step model against replicate where users plan with it (issue 24): strong scaling, shaped links, intervals.

Run through ``python benchmarks/replicate_fidelity.py --cases strong,link``
(the default); this module holds the two cases and the coverage count.

- **strong** (loopback, 2 ranks over gloo): one replicate job per model at
  three per-rank batches (UNet-2D 1,2,4; GPT-2 small 1,2,4 at 128 tokens;
  BraggNN 16,32,64), so each job measures strong E(2) at global batch 2b =
  alone(2b) / (2 x DDP(b)) for two b.  Predicted: the DDP step at b from
  compute t(b) = per-step + b x per-sample fitted to the job's alone phase at
  its *other* two batches, the terms calibrated on the other models only,
  the network a gloo allreduce sweep's fit.  Targets, median over the
  models: step error <= 5 %, strong E within 3 points.
- **link** (2 emulated hosts, root only): each model over links shaped to
  two rates chosen so that exposed communication is 20-60 % of the step
  (printed per run), two batches each; each rate's network is a gloo
  allreduce sweep over the same shaped link; the terms calibrated on the
  other models' link runs only.  Targets, medians per rate level (each
  model's faster and slower link): step error <= 10 %, E within 5 points.
- **coverage**: every record of both cases is a held-out point (model x
  batch x rate x job, listed): its 80 % interval (analysis.intervals,
  built from the other models' errors and its own alone noise) holds the
  measured step in at least 75 % of at least 20 points, with a median
  half-width at most 10 % of the step.

``--budget`` (minutes) stops starting jobs once spent; what was measured is
reported, and the jobs not run are named.  The runs are timing
measurements: run nothing else meanwhile.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STRONG_JOBS = (("unet", ["--batch", "1,2,4"]), ("gpt2-small", ["--batch", "1,2,4", "--seq", "128"]),
               ("braggnn", ["--batch", "16,32,64"]))
# (model, [(rate level, rate)], flags): rates chosen so that the exposed allreduce is 20-60 % of the step
# (pilot runs, one round each: UNet at 150 Mbit/s 63 % and 46 %, GPT-2 at 1.2 Gbit/s 60 % and 56 %, BraggNN at
# 75 Mbit/s about 50 % and 40 %, at the two batches).
LINK_JOBS = (("unet", (("fast", "300mbit"), ("slow", "200mbit")), ["--batch", "1,2"]),
             ("gpt2-small", (("fast", "3gbit"), ("slow", "1500mbit")), ["--batch", "1,2", "--seq", "128"]),
             ("braggnn", (("fast", "150mbit"), ("slow", "75mbit")), ["--batch", "32,64"]))
SWEEP_MAX = {"75mbit": "2M", "150mbit": "2M"}  # a link sweep's largest size (default 32M: GPT-2's buckets);
# BraggNN's one bucket is 133 KB
TARGET_STRONG_STEP, TARGET_STRONG_PTS = 0.05, 3.0
TARGET_LINK_STEP, TARGET_LINK_PTS = 0.10, 5.0
TARGET_COVER, TARGET_POINTS, TARGET_HALF = 0.75, 20, 0.10
SHARE_LO, SHARE_HI = 0.20, 0.60


class Budget:
    """Minutes to spend on jobs; a job not started in time is listed as skipped."""

    def __init__(self, minutes: float):
        self.end = time.monotonic() + 60 * minutes
        self.skipped: List[str] = []

    def allows(self, what: str) -> bool:
        if time.monotonic() < self.end:
            return True
        self.skipped.append(what)
        print(f"# budget spent: not running {what}", flush=True)
        return False


def _run(cmd: Sequence[str], timeout: int, env=None) -> bool:
    import os

    t0 = time.perf_counter()
    print(f"# running: {' '.join(c for c in cmd if not c.startswith('/'))}", flush=True)
    try:
        res = subprocess.run(list(cmd), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                             env=dict(os.environ, **(env or {})))
    except subprocess.TimeoutExpired:
        print(f"#   timed out after {timeout} s", flush=True)
        return False
    if res.returncode != 0:
        print(f"#   failed ({res.returncode}): {res.stderr.strip()[-600:]}", flush=True)
        return False
    print(f"#   {time.perf_counter() - t0:.0f} s", flush=True)
    return True


def _mpirun() -> str:
    here = Path(sys.executable).with_name("mpirun")
    return str(here) if here.exists() else "mpirun"


def _emulate(rate: str) -> List[str]:
    return [sys.executable, "-m", "launch.emulate", "--hosts", "2", "--rate", rate, "--timeout", "1500", "--",
            _mpirun(), "-n", "2", sys.executable, "-m"]


def measure_strong(out: Path, rounds: int, budget: Budget, env=None) -> None:
    base = [_mpirun(), "-n", "2", sys.executable, "-m"]
    if budget.allows("the loopback gloo sweep"):
        _run(base + ["collectives.allreduce", "--transport", "gloo", "-b", "64K", "-e", "64M", "-f", "2",
                     "--json", str(out / "strong_allreduce.jsonl")], 900)
    for model, args in STRONG_JOBS:
        if budget.allows(f"strong {model}"):
            _run(base + ["collectives.replicate", "--model", model, *args, "--threads", "1", "-n", str(rounds),
                         "-w", "1", "--json", str(out / "strong_replicate.jsonl")], 1800, env)


def measure_link(out: Path, rounds: int, budget: Budget, env=None) -> None:
    rates = sorted({rate for _, levels, _ in LINK_JOBS for _, rate in levels})
    for rate in rates:
        if budget.allows(f"the gloo sweep at {rate}"):
            _run(_emulate(rate) + ["collectives.allreduce", "--transport", "gloo", "-b", "64K", "-e",
                                   SWEEP_MAX.get(rate, "32M"), "-f", "2", "-n", "5", "-w", "1",
                                   "--json", str(out / f"link_allreduce_{rate}.jsonl")], 900)
    for model, levels, args in LINK_JOBS:
        for level, rate in levels:
            if budget.allows(f"link {model} at {rate}"):
                _run(_emulate(rate) + ["collectives.replicate", "--model", model, *args, "--threads", "1",
                                       "-n", str(rounds), "-w", "1",
                                       "--json", str(out / "link_replicate.jsonl")], 1800, env)


# -- the analysis ---------------------------------------------------------------------------

def _fit_network(path: Path):
    from analysis import fit, scaling
    from analysis.load import points

    if not path.exists():
        return None
    fits = [f for f in fit.fit_transport(points.load([path]), "gloo") if f.collective == "allreduce"]
    return scaling.network_from_fit(fits[0]) if fits else None


def _records(path: Path) -> List[Dict]:
    from analysis.load import replicate_runs

    if not path.exists():
        return []
    return [r for r in replicate_runs.records(path) if replicate_runs.has_efficiency(r) and int(r["nranks"]) > 1]


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def _row_line(r: Dict, extra: str = "") -> str:
    iv, e_iv = r["interval"], r["eff_interval"]
    inside = "in " if iv.contains(r["measured"]) else "OUT"
    return (f"  {r['model']:<11} {r.get('label', ''):<16} {r['batch']:>4} {1e3 * r['measured']:9.1f} "
            f"{1e3 * r['predicted']:9.1f} {_pct(r['predicted'] / r['measured'] - 1):>7} "
            f"[{1e3 * iv.lo:8.1f}, {1e3 * iv.hi:8.1f}] {inside}  {100 * r['efficiency']:5.1f} "
            f"{100 * r['pred_efficiency']:5.1f} [{100 * e_iv.lo:5.1f}, {100 * e_iv.hi:5.1f}]{extra}")


HEAD = ("  model       case/rate        batch  step(ms)  pred(ms)   error  80% interval (ms)     in?   E(%)  pred  "
        "E 80% interval")


def _medians(rows: Sequence[Dict]) -> Tuple[float, float]:
    """(median over models of each model's median |step error|, the same of |E error| in points)."""
    models = sorted({r["model"] for r in rows})
    step = [statistics.median(abs(r["predicted"] / r["measured"] - 1) for r in rows if r["model"] == m)
            for m in models]
    eff = [statistics.median(100 * abs(r["pred_efficiency"] - r["efficiency"]) for r in rows if r["model"] == m)
           for m in models]
    return statistics.median(step), statistics.median(eff)


def _verdict(name: str, rows: Sequence[Dict], step_target: float, pts_target: float) -> None:
    if not rows:
        print(f"# {name}: nothing measured")
        return
    step, pts = _medians(rows)
    print(f"# {name}, median over {len({r['model'] for r in rows})} models of {len(rows)} points: step error "
          f"{100 * step:.1f} % (<= {100 * step_target:.0f} %: {'MET' if step <= step_target else 'MISSED'}), "
          f"efficiency {pts:.1f} points (<= {pts_target:.0f}: {'MET' if pts <= pts_target else 'MISSED'})")


def report_strong(out: Path) -> List[Dict]:
    from analysis import held_out

    net = _fit_network(out / "strong_allreduce.jsonl")
    recs = _records(out / "strong_replicate.jsonl")
    if net is None or not recs:
        print("# strong: no sweep or no replicate record to report on")
        return []
    print("\n# STRONG SCALING at 2 ranks, loopback gloo: the DDP step at batch b per rank predicted from compute "
          "fitted at the job's other batches, terms calibrated on the other models; strong E(2) at global 2b "
          "= alone(2b) / (2 DDP(b))")
    strong = held_out.strong(recs, net.allreduce)
    print(HEAD)
    for r in strong:
        r["label"] = f"strong, global {r['global_batch']}"
        print(_row_line(r, f"  compute: {r['compute']}"))
    weak = held_out.weak(recs, net.allreduce)
    for r in weak:
        r["label"] = "loopback"
    _verdict("strong scaling (target)", strong, TARGET_STRONG_STEP, TARGET_STRONG_PTS)
    return weak


def report_link(out: Path) -> List[Dict]:
    from analysis import held_out

    nets = {}
    for _, levels, _ in LINK_JOBS:
        for _, rate in levels:
            nets[rate] = _fit_network(out / f"link_allreduce_{rate}.jsonl")
    recs = _records(out / "link_replicate.jsonl")
    rate_of = {}
    for r in recs:  # the record's link, from its emulated rate
        gbs = r.get("emulated_link_gbs")
        rate_of[id(r)] = next((rate for rate in nets if gbs and abs(_gbs(rate) / gbs - 1) < 1e-6), None)
    recs = [r for r in recs if nets.get(rate_of[id(r)]) is not None]
    if not recs:
        print("# link: no replicate record with a sweep of its link to report on")
        return []
    level_of = {(m, rate): lvl for m, levels, _ in LINK_JOBS for lvl, rate in levels}
    print("\n# SHAPED LINKS, 2 emulated hosts over gloo: each run predicted from its own alone phase and an allreduce "
          "sweep over the same link, terms calibrated on the other models' link runs only")
    for rate, net in nets.items():
        if net is not None:
            print(f"#   {rate}: {net.label}")
    rows = held_out.weak(recs, lambda r: nets[rate_of[id(r)]].allreduce, network="each")
    by_run = {(r["run_id"], r["batch"]): rec for rec in recs for r in rows
              if rec.get("run_id") == r["run_id"] and int(rec["batch"]) == r["batch"]}
    print(HEAD + "  exposed share measured / predicted")
    for r in rows:
        rec = by_run[(r["run_id"], r["batch"])]
        rate = rate_of[id(rec)]
        r["label"] = f"{rate} ({level_of.get((r['model'], rate), '?')})"
        r["level"] = level_of.get((r["model"], rate), "?")
        share = r["exposed_share"]
        flag = "" if SHARE_LO <= share <= SHARE_HI else f"  (outside {100 * SHARE_LO:.0f}-{100 * SHARE_HI:.0f} %)"
        print(_row_line(r, f"  {100 * share:5.1f} / {100 * r['pred_exposed_share']:5.1f} %{flag}"))
    for level in ("fast", "slow"):
        _verdict(f"shaped links, the {level}er link of each model (target)", [r for r in rows if r["level"] == level],
                 TARGET_LINK_STEP, TARGET_LINK_PTS)
    return rows


def _gbs(rate: str) -> float:
    from launch import netns

    return netns.parse_rate(rate) / 8e9


def report_coverage(points: Sequence[Dict]) -> None:
    from analysis import intervals

    c = intervals.coverage(points)
    print(f"\n# INTERVAL COVERAGE over {c.points} held-out points (listed above: every record of the cases, each "
          "predicted with terms and errors of the other models only): "
          f"{c.inside} inside their 80 % interval = {100 * c.share:.0f} % (>= {100 * TARGET_COVER:.0f} % of >= "
          f"{TARGET_POINTS}: {'MET' if c.share >= TARGET_COVER and c.points >= TARGET_POINTS else 'MISSED'}), "
          f"median half-width {100 * c.median_half_width:.1f} % of the step (<= {100 * TARGET_HALF:.0f} %: "
          f"{'MET' if c.median_half_width <= TARGET_HALF else 'MISSED'})")
    print(HEAD)
    for r in points:
        print(_row_line(r))
