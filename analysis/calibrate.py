"""Fit the step model's terms to ``collectives.replicate`` records, and test the model against them (pure).

From each record of the interleaved rounds (N > 1):

- sharing = the no-sync forward+backward (mean over ranks) over the alone
  one, each summed over the records, - 1 (sharing_opt: the same of the
  optimizer step): pooled, so that a model's records weigh by their time;
  skew = median of (S - M) / M (slowest no-sync over the mean);
- comm = the in-step allreduce time (from the later of a bucket's ready
  time and the previous bucket's end, to its done time) of the buckets
  that ran wholly after the backward computation (which ends when the last
  bucket is ready), summed, over the network model's time for them;
  overlap = comm x the model's time over the in-step time of the buckets
  that ran wholly inside it, summed; both only with a network model, and
  only from buckets of at least ev.MIN_COMM_S (10 ms) by it (else they stay
  assumed);
- interference: where a record's ranks fill its host's cores (CPU), the
  estimate 1 (:func:`analysis.step_evidence.record_estimates`); else the one value, in [0, 20],
  that minimises the squared relative error of the predicted DDP step over
  the records, the other terms fixed (without a network model, each
  record's buckets take the time they took inside its step);
- readiness: per model, the median share of the backward pass at which each
  bucket became ready (its hook's ready time over the backward time of the
  same step);
- copies and wake (for curves with no record of their own, and only with a
  network of the runs' transport): the medians of the records' comm-only
  phases (DDP's copies per byte of gradients; the wake probe's delay).

The network model (``allreduce(bytes, n)`` seconds) is either one given for
every record (a microbenchmark fit: ``network="sweep"``) or each record's
own comm-only phase (``network="job"``, :func:`analysis.step_evidence.job_network`: the gradient
allreduce timed alone, bucket by bucket, in the same job's rounds), which
removes the drift between a separate sweep and the job, as
the alone phase does for compute.

:func:`predict_record` always puts a record's own estimates in place of
skew (from the spread of its alone steps) and interference (from its
host's cores; sharing too where its ranks oversubscribe the cores), and
its own measurements of DDP's copies and of the wake delay (the comm-only
phase), calibrated or not: they come from the same job's one-rank
measurements and its comm-only phase, as the compute and the job network do.

:func:`evaluate` predicts every record twice: uncalibrated (every term
assumed but the record's own estimates, bucket readiness estimated from
layer FLOPs) and calibrated
leave-one-model-out (the terms fitted on the records of the other models,
so the model predicted contributes nothing to its own prediction).
"""

from __future__ import annotations

import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from analysis import step_evidence as ev
from analysis.step_model import (ASSUMED, CALIBRATED, ESTIMATED, MEASURED, TERM_NAMES, Compute, Prediction, Term,
                                 Terms, predict)

__all__ = ["fit_terms", "NETWORKS", "predict_record", "evaluate", "predicted_parts", "carrier",
           "compute_from_records", "curve_readiness", "terms_lines", "networks"]

NETWORKS = ("sweep", "job", "each")


def networks(recs: Sequence[Dict], allreduce, network: str) -> List[Optional[ev.Allreduce]]:
    """Each record's network model: ``sweep``: ``allreduce`` for all; ``job``: the record's comm-only phase
    (else ``allreduce``); ``each``: ``allreduce(record)``, a network per record (runs over different links,
    each with a sweep of its own)."""
    if network not in NETWORKS:
        raise ValueError(f"network {network!r}: one of {', '.join(NETWORKS)}")
    if network == "job":
        return [ev.job_network(r) or allreduce for r in recs]
    if network == "each":
        return [allreduce(r) for r in recs]
    return [allreduce for _ in recs]


def predict_record(rec: Dict, terms: Terms, allreduce: ev.Allreduce,
                   estimate: Optional[ev.Estimate] = None) -> Tuple[Prediction, str]:
    """The record's step predicted with ``terms``, its own estimates (skew, interference, copies, wake) in
    their place."""
    buckets, how = ev.record_buckets(rec, terms, estimate)
    return predict(ev.phases_of(rec), buckets, int(rec["nranks"]), allreduce, ev.with_estimates(rec, terms)), how


def predicted_parts(rec: Dict, terms: Terms, pred: Prediction) -> Dict[str, float]:
    """The prediction's loss split as replicate measures it (ms): sharing = M' - A, skew = S' - M',
    exposed = D' - S' (M', S', D': predicted no-sync mean, slowest no-sync, DDP step)."""
    ph = ev.phases_of(rec)
    terms = ev.with_estimates(rec, terms)
    m = ((ph.forward + ph.backward) * (1 + terms.sharing.value) + ph.optimizer * (1 + terms.sharing_opt.value))
    s = m * (1 + terms.skew.value) if int(rec["nranks"]) > 1 else m
    return {"sharing": (m - ph.total) * 1e3, "skew": (s - m) * 1e3, "exposed": (pred.step_s - s) * 1e3}


def carrier(measured: Dict[str, float], predicted: Dict[str, float]) -> str:
    """The part whose predicted size is furthest from the measured one, with both (ms)."""
    name = max(measured, key=lambda k: abs(predicted[k] - measured[k]))
    return f"{name} (predicted {predicted[name]:.1f} ms, measured {measured[name]:.1f} ms)"


def _rel(pred: float, real: float) -> float:
    return pred / real - 1.0


def fit_terms(recs: Sequence[Dict], allreduce: Optional[ev.Allreduce] = None,
              estimate: Optional[ev.Estimate] = None, network: str = "sweep") -> Terms:
    """Terms calibrated on ``recs`` (replicate records with E(N), N > 1); see the module docstring."""
    recs = [r for r in recs if int(r["nranks"]) > 1]
    given = networks(recs, allreduce, network)
    if not recs:
        raise ValueError("no replicate record at 2 ranks or more to calibrate from")
    what = f"{len(recs)} replicate record(s) of {', '.join(sorted({r['model'] for r in recs}))}"
    phased = [r for r in recs if isinstance(r.get("nosync_optimizer_ms"), (int, float))]
    # Pooled over the records (their extra time over their alone time, each summed): a rate, in which a
    # model of 13 ms steps, whose sharing moves by +-10 % from job to job, weighs by its time, not as much
    # as one of 2 s steps.
    if phased:
        sharing = _pooled(phased, ("nosync_forward_ms", "nosync_backward_ms"),
                          ("alone_forward_ms", "alone_backward_ms"))
        sharing_opt = _pooled(phased, ("nosync_optimizer_ms",), ("alone_optimizer_ms",))
        how_sh = "summed no-sync (mean over ranks) / summed alone forward+backward - 1"
    else:  # records without the no-sync phases: the whole step for both
        sharing = sharing_opt = _pooled(recs, ("nosync_ms",), ("alone_ms",))
        how_sh = "summed no-sync mean / summed alone step - 1"
    skew = statistics.median((r["nosync_max_ms"] - r["nosync_ms"]) / r["nosync_ms"] for r in recs)
    terms = Terms(sharing=Term(sharing, CALIBRATED, f"{how_sh} over {what}"),
                  sharing_opt=Term(sharing_opt, CALIBRATED, f"the same of the optimizer step over {what}"),
                  skew=Term(skew, CALIBRATED, f"median slowest / mean no-sync step - 1 over {what}"))
    readiness: Dict[str, Tuple[float, ...]] = {}
    for model in sorted({r["model"] for r in recs}):
        rows = [s for s in (ev.measured_shares(r) for r in recs if r["model"] == model) if s]
        counts = {len(s) for s in rows}
        if rows and len(counts) == 1:
            readiness[model] = tuple(statistics.median(col) for col in zip(*rows))
    terms = terms.with_(readiness=readiness)
    # Copies and wake are the runs' host and transport: for curves of the same (a network of the runs' own
    # transport), with no record of their own (a record's own measurement goes first).
    own_net = all(g is not None for g in given)
    copies = [c for c in (ev.copies_per_byte(r) for r in recs) if c is not None]
    wakes = [w for w in (ev.wake_s(r) for r in recs) if w is not None]
    if copies and own_net:
        terms = terms.with_(copies=Term(statistics.median(copies), CALIBRATED, "median over the comm-only phases "
                                        f"of {what}: DDP's copies into and out of its buckets, per byte"))
    if wakes and own_net:
        terms = terms.with_(wake=Term(statistics.median(wakes), CALIBRATED, f"median over the wake probes of {what}"))
    if own_net:
        samples = [ev.comm_samples(r, g) for r, g in zip(recs, given)]
        after = [sum(a[0][i] for a in samples) for i in (0, 1)]
        inside = [sum(a[1][i] for a in samples) for i in (0, 1)]
        # Summed over buckets (weighted by their time), so that small buckets, whose in-step time is
        # mostly the wait for the other ranks' gradients, do not outvote the large ones.
        if after[1] > 0:
            terms = terms.with_(comm=Term(after[0] / after[1], CALIBRATED, "in-step / network model time of the "
                                          f"buckets that ran after the backward pass, summed, {what}"))
        else:
            terms = terms.with_(comm=Term(1.0, ASSUMED, f"{what} ran no bucket of {ev.MIN_COMM_S * 1e3:.0f} ms or more "
                                          "after the backward pass to fit it on: as fast as the network model"))
        if inside[0] == 0:
            terms = terms.with_(overlap=Term(1.0, ASSUMED, f"{what} ran no bucket of {ev.MIN_COMM_S * 1e3:.0f} ms or "
                                             "more inside the backward pass to fit it on: full speed"))
        else:
            overlap = min(1.0, inside[1] * terms.comm.value / inside[0])
            terms = terms.with_(overlap=Term(overlap, CALIBRATED, "speed of the buckets that ran inside the "
                                             f"backward pass over the comm-scaled model, summed, {what}"))
    # Without a network model, each record's own in-step allreduce times stand in for one (comm = 1).
    nets = [g or ev.instep_network(r) for r, g in zip(recs, given)]
    estimated = [ev.record_estimates(r).get("interference") for r in recs]
    if all(estimated):  # every record's own host says it (predict_record uses each record's): nothing to fit
        return terms.with_(interference=Term(1.0, ESTIMATED, f"the hosts of {what} had no core to spare (CPU): "
                                             "the backend's threads took their time from compute"))

    def cost(kappa: float) -> float:
        t = terms.with_(interference=Term(kappa))
        return sum(_rel(predict_record(r, t, net, estimate)[0].step_s, r["ddp_ms"] * 1e-3) ** 2
                   for r, net in zip(recs, nets))
    grid = [i * 0.02 for i in range(1001)]  # 0 .. 20
    best = min(grid, key=cost)
    lo, hi = max(0.0, best - 0.02), best + 0.02
    for _ in range(30):  # golden-section refinement around the grid's best
        a, b = lo + (hi - lo) * 0.382, lo + (hi - lo) * 0.618
        lo, hi = (lo, b) if cost(a) <= cost(b) else (a, hi)
    kappa = (lo + hi) / 2
    return terms.with_(interference=Term(kappa, CALIBRATED, f"fitted to the DDP steps of {what}"))


def _pooled(recs: Sequence[Dict], slow: Tuple[str, ...], base: Tuple[str, ...]) -> float:
    """sum(slow) / sum(base) - 1 over the records (0 when the base sums to nothing)."""
    total = sum(r[k] for r in recs for k in base)
    return sum(r[k] for r in recs for k in slow) / total - 1.0 if total > 0 else 0.0


def evaluate(recs: Sequence[Dict], allreduce: ev.Allreduce, estimate: Optional[ev.Estimate] = None,
             network: str = "sweep", fitted: Optional[Dict[Tuple[str, int], Terms]] = None) -> List[Dict]:
    """Per record: measured step and E(N); uncalibrated and leave-one-model-out calibrated predictions,
    with ``allreduce`` for every record (``network="sweep"``) or each record's comm-only phase where it
    has one (``"job"``).  ``fitted``: terms already fitted on the other models, by (model, ranks)."""
    recs = [r for r in recs if int(r["nranks"]) > 1]
    out = []
    fitted = {} if fitted is None else fitted  # (held-out model, ranks) -> its terms, fitted once
    for r, allreduce_r in zip(recs, networks(recs, allreduce, network)):
        real_step, real_e = r["ddp_ms"] * 1e-3, r["efficiency"]
        row = {"network": network if network == "each" else "job" if allreduce_r is not allreduce else "sweep",
               "model": r["model"],
               "batch": r.get("batch"), "nranks": int(r["nranks"]), "step_ms": r["ddp_ms"],
               "efficiency": real_e, "run_id": r.get("run_id")}
        unc, how = predict_record(r, Terms(), allreduce_r, estimate)
        meas = ev.measured_parts(r)
        row["measured_parts_ms"] = meas
        row["uncal_carrier"] = carrier(meas, predicted_parts(r, Terms(), unc))
        row.update(uncal_step_ms=unc.step_s * 1e3, uncal_err=_rel(unc.step_s, real_step),
                   uncal_eff=unc.efficiency, uncal_eff_pts=100 * (unc.efficiency - real_e), uncal_ready=how,
                   uncal_comm_ms=unc.comm_s * 1e3, uncal_exposed_ms=unc.exposed_s * 1e3)
        others = [o for o in recs if o["model"] != r["model"] and o["nranks"] == r["nranks"]]
        if others:
            key = (r["model"], int(r["nranks"]))  # the same held-out model: the same fit
            if key not in fitted:
                fitted[key] = fit_terms(others, allreduce, estimate, network)
            terms = fitted[key]
            cal, how = predict_record(r, terms, allreduce_r, estimate)
            row.update(cal_step_ms=cal.step_s * 1e3, cal_err=_rel(cal.step_s, real_step), cal_eff=cal.efficiency,
                       cal_eff_pts=100 * (cal.efficiency - real_e), cal_ready=how,
                       terms={n: getattr(ev.with_estimates(r, terms), n).value for n in TERM_NAMES},
                       cal_carrier=carrier(meas, predicted_parts(r, terms, cal)))
        got = ev.instep_comm(r)
        row["instep_comm_ms"] = sum(got) * 1e3 if got else None
        out.append(row)
    return out


# -- for analysis.scaling's curves ----------------------------------------------------------

def compute_from_records(recs: Sequence[Dict], model: str):
    """The compute of ``model`` from replicate's alone phase, or None: per sample the median over its
    records; with records at two or more per-rank batches (``--batch 1,4,16``), t(b) = per-step + b x
    per-sample fitted to the medians at each batch (:func:`analysis.step_model.fit_per_step`), each term
    saying how it is known."""
    from analysis.step_model import fit_per_step

    mine = [r for r in recs if r.get("model") == model and r.get("batch")]
    if not mine:
        return None
    fb = {}
    for r in mine:
        fb.setdefault(int(r["batch"]), []).append((r["alone_forward_ms"] + r["alone_backward_ms"]) * 1e-3)
    per = statistics.median((r["alone_forward_ms"] + r["alone_backward_ms"]) * 1e-3 / r["batch"] for r in mine)
    per_step, per_step_how = 0.0, Compute.per_step_how
    if len(fb) >= 2:
        bs = sorted(fb)
        per_step, per = fit_per_step(bs, [statistics.median(fb[b]) for b in bs])
        per_step_how = (f"fitted with the per-sample time to replicate's alone phase at batches "
                        f"{', '.join(map(str, bs))} (t(b) = per-step + b x per-sample, least squares"
                        + (", the intercept clipped at 0" if per_step == 0 else "") + ")")
    bf = statistics.median(r["alone_backward_ms"] / (r["alone_forward_ms"] + r["alone_backward_ms"]) for r in mine)
    opt = statistics.median(r["alone_optimizer_ms"] * 1e-3 for r in mine)
    threads = sorted({r.get("threads") for r in mine if r.get("threads")})
    return Compute(per, f"measured by collectives.replicate: {model} alone on one rank "
                        f"({'/'.join(map(str, threads)) or '?'} thread(s)), median of {len(mine)} record(s): "
                        f"{1 / per:.3g} samples/s, per-step {per_step * 1e3:.3g} ms, optimizer step "
                        f"{opt * 1e3:.3g} ms", "measured",
                   backward_fraction=bf, optimizer_s=opt, optimizer_how=MEASURED, per_step_s=per_step,
                   per_step_how=per_step_how)


def curve_readiness(workload, grad_bytes: int, terms: Terms, seq: Optional[int] = None,
                    estimate: Optional[ev.Estimate] = None) -> Tuple[List[float], str]:
    """Each DDP bucket's ready share for a scaling curve: measured (calibration records of this model,
    same bucket count), else estimated from layer FLOPs, else even over bytes (assumed)."""
    buckets, how = ev.model_buckets(workload.name, seq, grad_bytes, estimate)
    shares = terms.readiness.get(workload.name)
    if shares and len(shares) == len(buckets):
        return list(shares), MEASURED
    return [s for _, s in buckets], how


def terms_lines(terms: Terms, compute, ready_how: str) -> List[str]:
    """The table header's account of every term: its value and how it is known."""
    ready = {MEASURED: "measured by collectives.replicate for this model",
             ESTIMATED: "estimated from the FLOPs of the layers in each bucket (analysis.ready_from_flops)",
             ASSUMED: "assumed: gradients spread evenly over the backward pass by bytes"}[ready_how]
    out = [f"# term sharing {100 * terms.sharing.value:+.1f} % ({terms.sharing.how}: {terms.sharing.source})",
           f"# term sharing_opt {100 * terms.sharing_opt.value:+.1f} % ({terms.sharing_opt.how}: "
           f"{terms.sharing_opt.source})",
           f"# term skew {100 * terms.skew.value:+.1f} % ({terms.skew.how}: {terms.skew.source})",
           f"# term interference {terms.interference.value:.3g} s of compute per s of allreduce "
           f"({terms.interference.how}: {terms.interference.source})",
           f"# term comm x{terms.comm.value:.3g} ({terms.comm.how}: {terms.comm.source})",
           f"# term overlap {terms.overlap.value:.3g} of full allreduce speed during the backward pass "
           f"({terms.overlap.how}: {terms.overlap.source})",
           f"# term copies {terms.copies.value * 1e9:.3g} ms per MB of gradients, in and out of DDP's buckets "
           f"({terms.copies.how}: {terms.copies.source})",
           f"# term wake {terms.wake.value * 1e3:.3g} ms per step, the first allreduce after compute "
           f"({terms.wake.how}: {terms.wake.source})",
           f"# term optimizer {compute.optimizer_s * 1e3:.3g} ms per step ({compute.optimizer_how}"
           + (": folded into the given rate" if compute.optimizer_how == ASSUMED else "") + ")",
           f"# term bucket readiness: {ready}"]
    return out
