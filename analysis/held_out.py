"""Held-out predictions of replicate runs with intervals, weak and strong scaling (pure: no torch, no MPI).

Every prediction here is of a run whose model contributed nothing to it:
the step model's terms are fitted on the records of the *other* models
(:func:`analysis.calibrate.fit_terms`), and the interval
(:mod:`analysis.intervals`) on the log errors those other models' records
show when each is predicted by terms fitted on the rest of them (leave one
model out inside the calibration set; with one other model only, that
model's in-sample errors, and the row says so).

- :func:`weak`: each record (N > 1) predicted from its own alone phase (its
  1-rank compute at the same batch), E(N) = alone / step.
- :func:`strong`: for each pair of a job's records at per-rank batches b and
  N b (``collectives.replicate --batch b,Nb``): the DDP step at b predicted
  from compute t(b) = per-step + b x per-sample fitted to the job's alone
  phase at its *other* batches (leave the batch out: with one other batch
  the per-step cost is 0 and says so), and strong E = alone(N b) /
  (N x step(b)).

``network``/``allreduce`` as for :func:`analysis.calibrate.evaluate`
(``"each"``: ``allreduce(record)`` gives each record's own network, e.g. a
sweep over the same shaped link).
"""

from __future__ import annotations

import math
import statistics
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from analysis import calibrate, intervals
from analysis import step_evidence as ev
from analysis.step_model import fit_per_step
from collectives.replicate_summary import strong_pairs

__all__ = ["residuals", "Calibration", "calibration", "weak", "strong", "compute_from_batches", "with_compute"]


def _log_err(pred_s: float, real_s: float) -> float:
    return math.log(pred_s / real_s)


def residuals(recs: Sequence[Dict], allreduce, network: str = "sweep",
              estimate: Optional[ev.Estimate] = None) -> Tuple[List[float], str]:
    """ln(predicted / measured DDP step) of every record (N > 1), each predicted by terms fitted on the
    records of the other models in ``recs``, and how (with one model only: fitted on all, in-sample)."""
    recs = [r for r in recs if int(r["nranks"]) > 1]
    models = sorted({r["model"] for r in recs})
    if not recs:
        return [], "no calibration record"
    # Without a network model, each record's own in-step allreduce times stand in for one (as in the fit).
    nets = [g or ev.instep_network(r) for r, g in zip(recs, calibrate.networks(recs, allreduce, network))]
    out: List[float] = []
    if len(models) == 1:
        terms = calibrate.fit_terms(recs, allreduce, estimate, network)
        for r, net in zip(recs, nets):
            out.append(_log_err(calibrate.predict_record(r, terms, net, estimate)[0].step_s, r["ddp_ms"] * 1e-3))
        return out, f"in-sample errors of {models[0]} ({len(out)} records: one calibration model)"
    fits = {}
    for m in models:
        others = [o for o in recs if o["model"] != m]
        fits[m] = calibrate.fit_terms(others, allreduce, estimate, network)
    for r, net in zip(recs, nets):
        out.append(_log_err(calibrate.predict_record(r, fits[r["model"]], net, estimate)[0].step_s,
                            r["ddp_ms"] * 1e-3))
    return out, (f"leave-one-model-out errors of {len(out)} records of {', '.join(models)}")


class Calibration:
    """Terms fitted on ``recs`` and the spread of their own leave-one-model-out errors."""

    def __init__(self, recs: Sequence[Dict], allreduce, network: str = "sweep",
                 estimate: Optional[ev.Estimate] = None):
        self.terms = calibrate.fit_terms(recs, allreduce, estimate, network)
        self.errors, self.errors_how = residuals(recs, allreduce, network, estimate)
        self.s_model = intervals.rms(self.errors) if self.errors else 0.0
        self.df = max(1, len(self.errors))

    def interval(self, step_s: float, s_input: Optional[float], level: float) -> intervals.Interval:
        return intervals.step_interval(step_s, self.s_model, self.df, s_input or 0.0, level,
                                       f"{self.errors_how}: rms {100 * self.s_model:.1f} %, input "
                                       f"{100 * (s_input or 0.0):.1f} %")


def calibration(recs: Sequence[Dict], held_model: str, nranks: int, allreduce, network: str = "sweep",
                estimate: Optional[ev.Estimate] = None,
                cache: Optional[Dict] = None) -> Optional[Calibration]:
    """The calibration for predicting ``held_model`` at ``nranks``: the other models' records at the same
    rank count (None when there are none)."""
    key = (held_model, nranks)
    if cache is not None and key in cache:
        return cache[key]
    others = [o for o in recs if o["model"] != held_model and int(o["nranks"]) == nranks]
    cal = Calibration(others, allreduce, network, estimate) if others else None
    if cache is not None:
        cache[key] = cal
    return cal


def weak(recs: Sequence[Dict], allreduce, network: str = "sweep", estimate: Optional[ev.Estimate] = None,
         level: float = intervals.LEVEL, cache: Optional[Dict] = None) -> List[Dict]:
    """Per record (N > 1): measured and predicted step and E(N) with intervals, calibrated on the other
    models only; measured exposed share = (DDP - slowest no-sync) / DDP."""
    recs = [r for r in recs if int(r["nranks"]) > 1]
    cache = {} if cache is None else cache
    out = []
    for r, net in zip(recs, calibrate.networks(recs, allreduce, network)):
        cal = calibration(recs, r["model"], int(r["nranks"]), allreduce, network, estimate, cache)
        if cal is None:
            continue
        pred = calibrate.predict_record(r, cal.terms, net, estimate)[0]
        iv = cal.interval(pred.step_s, intervals.rounds_se(r), level)
        alone = r["alone_ms"] * 1e-3
        out.append({"case": "weak", "model": r["model"], "batch": int(r["batch"]), "nranks": int(r["nranks"]),
                    "run_id": r.get("run_id"), "link_gbs": r.get("emulated_link_gbs"),
                    "measured": r["ddp_ms"] * 1e-3, "predicted": pred.step_s, "interval": iv,
                    "efficiency": r["efficiency"], "pred_efficiency": alone / pred.step_s,
                    "eff_interval": intervals.efficiency_interval(alone, iv),
                    "exposed_share": (r["ddp_ms"] - r["nosync_max_ms"]) / r["ddp_ms"],
                    "pred_exposed_share": pred.exposed_s / pred.step_s})
    return out


def compute_from_batches(recs: Sequence[Dict]) -> Tuple[Callable[[float], float], float, float, str]:
    """(t(b) forward+backward seconds, backward share, optimizer seconds, how) from records of one job at
    different per-rank batches: t(b) = per-step + b x per-sample fitted with two or more batches, else
    b x per-sample with the per-step cost assumed 0."""
    if not recs:
        raise ValueError("no record to take the compute from")
    fb: Dict[int, List[float]] = {}
    for r in recs:
        fb.setdefault(int(r["batch"]), []).append((r["alone_forward_ms"] + r["alone_backward_ms"]) * 1e-3)
    bs = sorted(fb)
    med = [statistics.median(fb[b]) for b in bs]
    if len(bs) >= 2:
        c, s = fit_per_step(bs, med)
        how = f"per-step {c * 1e3:.1f} ms + b x {s * 1e3:.2f} ms fitted at batches {', '.join(map(str, bs))}"
    else:
        c, s = 0.0, med[0] / bs[0]
        how = f"b x {s * 1e3:.2f} ms from batch {bs[0]} alone (per-step cost assumed 0)"
    bf = statistics.median(r["alone_backward_ms"] / (r["alone_forward_ms"] + r["alone_backward_ms"]) for r in recs)
    opt = statistics.median(r["alone_optimizer_ms"] * 1e-3 for r in recs)
    return (lambda b: c + b * s), bf, opt, how


def with_compute(rec: Dict, fwd_bwd_s: float, backward_share: float, optimizer_s: float,
                 spread_from: Dict) -> Dict:
    """A copy of ``rec`` whose alone phase is the given compute (nothing of its own alone phase is left):
    its per-round alone times are those of ``spread_from`` scaled to the new alone step (the skew estimate
    reads their spread)."""
    out = dict(rec)
    alone_ms = (fwd_bwd_s + optimizer_s) * 1e3
    out.update(alone_forward_ms=fwd_bwd_s * (1 - backward_share) * 1e3,
               alone_backward_ms=fwd_bwd_s * backward_share * 1e3, alone_optimizer_ms=optimizer_s * 1e3,
               alone_ms=alone_ms)
    scale = alone_ms / spread_from["alone_ms"]
    rounds = []
    for x in spread_from.get("rounds") or []:
        y = dict(x)
        if isinstance(y.get("alone_ms"), (int, float)):
            y["alone_ms"] = y["alone_ms"] * scale
        if isinstance(y.get("alone_each_ms"), list):
            y["alone_each_ms"] = [v * scale for v in y["alone_each_ms"]]
        rounds.append(y)
    out["rounds"] = rounds
    return out


def strong(recs: Sequence[Dict], allreduce, network: str = "sweep", estimate: Optional[ev.Estimate] = None,
           level: float = intervals.LEVEL, cache: Optional[Dict] = None) -> List[Dict]:
    """Per strong pair of a job (see the module docstring): measured and predicted strong E and DDP step at
    the per-rank batch, with intervals."""
    recs = [r for r in recs if int(r["nranks"]) > 1]
    cache = {} if cache is None else cache
    out = []
    for pair in strong_pairs(recs):
        n, b = pair["nranks"], pair["batch_per_rank"]
        job = [r for r in recs if r.get("run_id") == pair["run_id"] and r["model"] == pair["model"]
               and int(r["nranks"]) == n]
        small = next(r for r in job if int(r["batch"]) == b)
        big = next(r for r in job if int(r["batch"]) == b * n)
        rest = [r for r in job if int(r["batch"]) != b]
        t_of, bf, opt, how = compute_from_batches(rest)
        held = with_compute(small, t_of(b), bf, opt, big)
        cal = calibration(recs, pair["model"], n, allreduce, network, estimate, cache)
        if cal is None:
            continue
        net = calibrate.networks([small], allreduce, network)[0]
        pred = calibrate.predict_record(held, cal.terms, net, estimate)[0]
        iv = cal.interval(pred.step_s, intervals.rounds_se(big), level)
        alone_big = big["alone_ms"] * 1e-3
        out.append({"case": "strong", "model": pair["model"], "batch": b, "global_batch": b * n, "nranks": n,
                    "run_id": pair["run_id"], "compute": how,
                    "measured": small["ddp_ms"] * 1e-3, "predicted": pred.step_s, "interval": iv,
                    "efficiency": pair["efficiency"], "pred_efficiency": alone_big / (n * pred.step_s),
                    "eff_interval": intervals.efficiency_interval(alone_big, iv, n),
                    "pred_alone_ms": held["alone_ms"], "alone_ms": small["alone_ms"]})
    return out
