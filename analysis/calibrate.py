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
  only from buckets of at least MIN_COMM_S (10 ms) by it (else they stay
  assumed);
- interference: where a record's ranks fill its host's cores (CPU), the
  estimate 1 (:func:`record_estimates`); else the one value, in [0, 20],
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
own comm-only phase (``network="job"``, :func:`job_network`: the gradient
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
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from analysis.step_model import (ASSUMED, CALIBRATED, ESTIMATED, MEASURED, TERM_NAMES, Compute, Phases,
                                 Prediction, Term, Terms, buckets_with_readiness, even_readiness,
                                 interference_estimate, oversubscription_estimate, predict, skew_estimate)

__all__ = ["phases_of", "record_estimates", "with_estimates", "measured_shares", "instep_comm",
           "model_buckets", "record_buckets", "copies_per_byte", "fit_terms", "job_network", "NETWORKS",
           "MIN_COMM_S", "predict_record", "evaluate", "predicted_parts", "measured_parts", "carrier",
           "compute_from_records", "curve_readiness", "terms_lines"]

Allreduce = Callable[[float, int], float]
Estimate = Callable[[str, Optional[int]], Dict[str, float]]
NETWORKS = ("sweep", "job")


def job_network(rec: Dict) -> Optional[Allreduce]:
    """allreduce(bytes, n) from the record's comm-only phase: each bucket size's own median time, other
    sizes by the phase's time per byte; None for records without that phase."""
    total_ms = rec.get("comm_alone_ms")
    own = rec.get("comm_alone_buckets") or []
    sizes = [b["bytes"] for b in own or rec.get("bucket_timeline") or []]
    if not isinstance(total_ms, (int, float)) or total_ms <= 0 or not sizes:
        return None
    per_byte = total_ms * 1e-3 / float(sum(sizes))
    by_size: Dict[int, List[float]] = {}
    for b in own:
        by_size.setdefault(b["bytes"], []).append(b["ms"] * 1e-3)
    med = {k: statistics.median(v) for k, v in by_size.items()}
    return lambda b, n: med.get(b, b * per_byte)


def _networks(recs: Sequence[Dict], allreduce: Optional[Allreduce], network: str) -> List[Optional[Allreduce]]:
    if network not in NETWORKS:
        raise ValueError(f"network {network!r}: one of {', '.join(NETWORKS)}")
    if network == "job":
        return [job_network(r) or allreduce for r in recs]
    return [allreduce for _ in recs]


def _default_estimate(model: str, seq: Optional[int]) -> Dict[str, float]:
    from analysis import ready_from_flops

    return ready_from_flops.layer_ready_fractions(model, seq)


def phases_of(rec: Dict) -> Phases:
    """Rank 0 alone, from the record's median alone step (seconds)."""
    return Phases(rec["alone_forward_ms"] * 1e-3, rec["alone_backward_ms"] * 1e-3,
                  rec["alone_optimizer_ms"] * 1e-3)


def measured_shares(rec: Dict) -> Optional[Tuple[float, ...]]:
    """Each bucket's ready time as a share of the same step's backward computation, which ends when the
    last bucket becomes ready (DDP's backward then waits for the allreduce), or None."""
    tl = rec.get("bucket_timeline")
    if not tl:
        return None
    end = max(b["ready_ms"] for b in tl)
    if end <= 0:
        return None
    return tuple(min(1.0, max(0.0, b["ready_ms"] / end)) for b in tl)


MIN_COMM_S = 0.01  # buckets the network model gives less time than this tell comm and overlap nothing


def comm_samples(rec: Dict, allreduce: Allreduce) -> Tuple[Tuple[float, float], Tuple[float, float]]:
    """((in-step, model) seconds summed over buckets that ran wholly after the backward computation,
    (in-step, model) summed over those that ran wholly inside it), of buckets the network model gives at
    least MIN_COMM_S: a shorter bucket's in-step time is mostly a fixed delay (the backend's thread
    waking on a core that computes), which as a ratio would wrongly scale every bucket of another model
    (docs/results/2026-12.md has the figures).  The record's wake delay, a term of its own, is taken off
    the first bucket after the backward pass."""
    tl = rec.get("bucket_timeline") or []
    got = instep_comm(rec) or []
    after, inside = [0.0, 0.0], [0.0, 0.0]
    if not tl:
        return (0.0, 0.0), (0.0, 0.0)
    end = max(_ready(b) for b in tl)
    wake = max(0.0, _wake_s(rec) or 0.0)
    for b, dur in zip(tl, got):
        nominal = allreduce(b["bytes"], int(rec["nranks"]))
        start = b["done_ms"] - dur * 1e3
        is_after = start >= end - 1e-9
        if is_after:  # the first after the backward pass carries the wake delay, a term of its own
            dur, wake = max(0.0, dur - wake), 0.0
        if dur <= 0 or nominal < MIN_COMM_S:
            continue
        into = after if is_after else inside if b["done_ms"] <= end else None
        if into is not None:
            into[0] += dur
            into[1] += nominal
    return (after[0], after[1]), (inside[0], inside[1])


def _ready(b: Dict) -> float:
    """When every rank had the bucket ready (records before peers_ready_ms: this rank's time)."""
    return max(b["ready_ms"], b.get("peers_ready_ms") or 0.0)


def instep_comm(rec: Dict) -> Optional[List[float]]:
    """Each bucket's own allreduce time inside the step (s): from the later of the moment every rank
    had it ready and the previous bucket's end, to its done time."""
    tl = rec.get("bucket_timeline")
    if not tl:
        return None
    out, prev = [], float("-inf")
    for b in tl:
        start = max(_ready(b), prev)
        out.append(max(0.0, b["done_ms"] - start) * 1e-3)
        prev = b["done_ms"]
    return out


def _bytes_per_element(rec: Dict) -> int:
    return 2 if rec.get("dtype") == "bfloat16" else 4


def model_buckets(model: str, seq: Optional[int], bytes_per_element: int = 4,
                  estimate: Optional[Estimate] = None) -> Tuple[List[Tuple[int, float]], str]:
    """DDP's buckets of ``model`` with ready shares estimated from layer FLOPs, and how they are known
    (``estimated``; ``assumed`` = spread evenly over bytes where the estimate cannot be made)."""
    from facts import workloads

    w = workloads.get(model)
    try:
        ready = (estimate or _default_estimate)(model, seq)
        return buckets_with_readiness(w.layers, ready, bytes_per_element), ESTIMATED
    except (ImportError, ValueError, RuntimeError):
        sizes = workloads.gradient_buckets(w, bytes_per_element=bytes_per_element)
        return list(zip(sizes, even_readiness(sizes))), ASSUMED


def record_buckets(rec: Dict, terms: Terms, estimate: Optional[Estimate] = None) -> Tuple[List[Tuple[int, float]], str]:
    """The buckets to predict ``rec`` with: the shares measured for its model when the terms hold them
    (and the bucket count agrees), else the model's FLOPs estimate."""
    buckets, how = model_buckets(rec["model"], rec.get("seq"), _bytes_per_element(rec), estimate)
    shares = terms.readiness.get(rec["model"])
    if shares and len(shares) == len(buckets):
        return [(b, s) for (b, _), s in zip(buckets, shares)], MEASURED
    return buckets, how


def record_estimates(rec: Dict, nranks: Optional[int] = None) -> Dict[str, Term]:
    """The terms a record's own one-rank measurements and host give (step_model's estimates): skew from
    the spread of its alone steps (each step's own time where a phase was a group), interference 1 where
    the ranks' threads fill the cores, sharing (both) as threads / cores - 1 where they oversubscribe
    them; DDP's copies as its comm-only phase timed them and the wake delay as its wake probe did.
    ``nranks``: the rank count to estimate for (a curve's), default the record's."""
    out: Dict[str, Term] = {}
    alone = []  # every alone step's own time where a phase was a group of steps, else each phase's
    for x in rec.get("rounds") or []:
        if isinstance(x.get("alone_each_ms"), list) and x["alone_each_ms"]:
            alone += x["alone_each_ms"]
        elif isinstance(x.get("alone_ms"), (int, float)):
            alone.append(x["alone_ms"])
    n = int(nranks or rec["nranks"])
    skew = skew_estimate(alone, n)
    if skew is not None:
        out["skew"] = Term(skew, ESTIMATED, f"the spread of {len(alone)} alone steps (robust sigma over their "
                           f"median) x the expected maximum of {n} normal draws")
    wake = _wake_s(rec)
    if wake is not None:
        out["wake"] = Term(wake, MEASURED, f"the same job's wake probe: an allreduce right after compute "
                           f"took {wake * 1e3:.2f} ms longer than back to back")
    copies = copies_per_byte(rec)
    if copies is not None:
        out["copies"] = Term(copies, MEASURED, f"the same job's comm-only phase: DDP's copies of the gradients "
                             f"into its buckets and back out, {rec['copy_alone_ms']:.1f} ms a step")
    ranks_here = rec.get("ranks_per_host") or rec.get("nranks")
    if nranks and int(ranks_here or 0) == int(rec["nranks"]):  # one host: a curve's N ranks all on it
        ranks_here = n
    over = oversubscription_estimate(rec.get("device"), rec.get("host_cores"), ranks_here, rec.get("threads"))
    if over is not None:
        why = (f"{ranks_here} ranks x {rec.get('threads')} threads on {rec.get('host_cores')} cores: "
               "time-sliced, threads / cores - 1")
        out["sharing"] = Term(over, ESTIMATED, why)
        out["sharing_opt"] = Term(over, ESTIMATED, why)
    inter = interference_estimate(rec.get("device"), rec.get("host_cores"), ranks_here, rec.get("threads"))
    if inter is not None:
        out["interference"] = Term(inter, ESTIMATED, f"{ranks_here} ranks x {rec.get('threads')} threads fill the "
                                   f"host's {rec.get('host_cores')} cores: the backend's threads take their time "
                                   "from compute")
    return out


def _wake_s(rec: Dict) -> Optional[float]:
    """The record's wake probe delay (s), or None (no probe: an older record, or off the CPU)."""
    ms = rec.get("wake_alone_ms")
    return ms * 1e-3 if isinstance(ms, (int, float)) and ms == ms else None


def copies_per_byte(rec: Dict) -> Optional[float]:
    """DDP's copies into and out of its buckets, seconds per byte of gradients, from the record's comm-only
    phase (None for records without one)."""
    ms = rec.get("copy_alone_ms")
    sizes = [b["bytes"] for b in rec.get("comm_alone_buckets") or rec.get("bucket_timeline") or []]
    if not isinstance(ms, (int, float)) or not ms >= 0 or not sum(sizes):  # (not >= 0: NaN too)
        return None
    return ms * 1e-3 / float(sum(sizes))


def with_estimates(rec: Dict, terms: Terms) -> Terms:
    """``terms`` with the record's own estimates and measurements in place of skew, interference, copies
    and wake, and of sharing on an oversubscribed host (see record_estimates)."""
    return terms.with_(**record_estimates(rec))


def predict_record(rec: Dict, terms: Terms, allreduce: Allreduce,
                   estimate: Optional[Estimate] = None) -> Tuple[Prediction, str]:
    """The record's step predicted with ``terms``, its own estimates (skew, interference, copies, wake) in
    their place."""
    buckets, how = record_buckets(rec, terms, estimate)
    return predict(phases_of(rec), buckets, int(rec["nranks"]), allreduce, with_estimates(rec, terms)), how


def predicted_parts(rec: Dict, terms: Terms, pred: Prediction) -> Dict[str, float]:
    """The prediction's loss split as replicate measures it (ms): sharing = M' - A, skew = S' - M',
    exposed = D' - S' (M', S', D': predicted no-sync mean, slowest no-sync, DDP step)."""
    ph = phases_of(rec)
    terms = with_estimates(rec, terms)
    m = ((ph.forward + ph.backward) * (1 + terms.sharing.value) + ph.optimizer * (1 + terms.sharing_opt.value))
    s = m * (1 + terms.skew.value) if int(rec["nranks"]) > 1 else m
    return {"sharing": (m - ph.total) * 1e3, "skew": (s - m) * 1e3, "exposed": (pred.step_s - s) * 1e3}


def measured_parts(rec: Dict) -> Dict[str, float]:
    """The run's loss split (ms): sharing = M - A, skew = S - M, exposed = D - S."""
    return {"sharing": rec["nosync_ms"] - rec["alone_ms"], "skew": rec["nosync_max_ms"] - rec["nosync_ms"],
            "exposed": rec["ddp_ms"] - rec["nosync_max_ms"]}


def carrier(measured: Dict[str, float], predicted: Dict[str, float]) -> str:
    """The part whose predicted size is furthest from the measured one, with both (ms)."""
    name = max(measured, key=lambda k: abs(predicted[k] - measured[k]))
    return f"{name} (predicted {predicted[name]:.1f} ms, measured {measured[name]:.1f} ms)"


def _rel(pred: float, real: float) -> float:
    return pred / real - 1.0


def _instep_network(rec: Dict) -> Allreduce:
    """allreduce(bytes, n) as this record's buckets took inside its step: a bucket's own time by its size,
    else the record's in-step time per byte (0 when it has no timeline)."""
    got = instep_comm(rec) or []
    tl = rec.get("bucket_timeline") or []
    by_size = {b["bytes"]: t for b, t in zip(tl, got)}
    total = sum(b["bytes"] for b in tl)
    per_byte = sum(got) / total if total else 0.0
    return lambda b, n: by_size.get(b, b * per_byte)


def fit_terms(recs: Sequence[Dict], allreduce: Optional[Allreduce] = None,
              estimate: Optional[Estimate] = None, network: str = "sweep") -> Terms:
    """Terms calibrated on ``recs`` (replicate records with E(N), N > 1); see the module docstring."""
    recs = [r for r in recs if int(r["nranks"]) > 1]
    given = _networks(recs, allreduce, network)
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
        rows = [s for s in (measured_shares(r) for r in recs if r["model"] == model) if s]
        counts = {len(s) for s in rows}
        if rows and len(counts) == 1:
            readiness[model] = tuple(statistics.median(col) for col in zip(*rows))
    terms = terms.with_(readiness=readiness)
    # Copies and wake are the runs' host and transport: for curves of the same (a network of the runs' own
    # transport), with no record of their own (a record's own measurement goes first).
    own_net = all(g is not None for g in given)
    copies = [c for c in (copies_per_byte(r) for r in recs) if c is not None]
    wakes = [w for w in (_wake_s(r) for r in recs) if w is not None]
    if copies and own_net:
        terms = terms.with_(copies=Term(statistics.median(copies), CALIBRATED, "median over the comm-only phases "
                                        f"of {what}: DDP's copies into and out of its buckets, per byte"))
    if wakes and own_net:
        terms = terms.with_(wake=Term(statistics.median(wakes), CALIBRATED, f"median over the wake probes of {what}"))
    if own_net:
        samples = [comm_samples(r, g) for r, g in zip(recs, given)]
        after = [sum(a[0][i] for a in samples) for i in (0, 1)]
        inside = [sum(a[1][i] for a in samples) for i in (0, 1)]
        # Summed over buckets (weighted by their time), so that small buckets, whose in-step time is
        # mostly the wait for the other ranks' gradients, do not outvote the large ones.
        if after[1] > 0:
            terms = terms.with_(comm=Term(after[0] / after[1], CALIBRATED, "in-step / network model time of the "
                                          f"buckets that ran after the backward pass, summed, {what}"))
        else:
            terms = terms.with_(comm=Term(1.0, ASSUMED, f"{what} ran no bucket of {MIN_COMM_S * 1e3:.0f} ms or more "
                                          "after the backward pass to fit it on: as fast as the network model"))
        if inside[0] == 0:
            terms = terms.with_(overlap=Term(1.0, ASSUMED, f"{what} ran no bucket of {MIN_COMM_S * 1e3:.0f} ms or "
                                             "more inside the backward pass to fit it on: full speed"))
        else:
            overlap = min(1.0, inside[1] * terms.comm.value / inside[0])
            terms = terms.with_(overlap=Term(overlap, CALIBRATED, "speed of the buckets that ran inside the "
                                             f"backward pass over the comm-scaled model, summed, {what}"))
    # Without a network model, each record's own in-step allreduce times stand in for one (comm = 1).
    nets = [g or _instep_network(r) for r, g in zip(recs, given)]
    estimated = [record_estimates(r).get("interference") for r in recs]
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


def evaluate(recs: Sequence[Dict], allreduce: Allreduce, estimate: Optional[Estimate] = None,
             network: str = "sweep") -> List[Dict]:
    """Per record: measured step and E(N); uncalibrated and leave-one-model-out calibrated predictions,
    with ``allreduce`` for every record (``network="sweep"``) or each record's comm-only phase where it
    has one (``"job"``)."""
    recs = [r for r in recs if int(r["nranks"]) > 1]
    out = []
    fitted: Dict[Tuple[str, int], Terms] = {}
    for r, allreduce_r in zip(recs, _networks(recs, allreduce, network)):
        real_step, real_e = r["ddp_ms"] * 1e-3, r["efficiency"]
        row = {"network": "job" if allreduce_r is not allreduce else "sweep", "model": r["model"],
               "batch": r.get("batch"), "nranks": int(r["nranks"]), "step_ms": r["ddp_ms"],
               "efficiency": real_e, "run_id": r.get("run_id")}
        unc, how = predict_record(r, Terms(), allreduce_r, estimate)
        meas = measured_parts(r)
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
                       terms={n: getattr(with_estimates(r, terms), n).value for n in TERM_NAMES},
                       cal_carrier=carrier(meas, predicted_parts(r, terms, cal)))
        got = instep_comm(r)
        row["instep_comm_ms"] = sum(got) * 1e3 if got else None
        out.append(row)
    return out


# -- for analysis.scaling's curves ----------------------------------------------------------

def compute_from_records(recs: Sequence[Dict], model: str):
    """The compute of ``model`` from replicate's alone phase (median over its records), or None."""
    mine = [r for r in recs if r.get("model") == model and r.get("batch")]
    if not mine:
        return None
    per = statistics.median((r["alone_forward_ms"] + r["alone_backward_ms"]) * 1e-3 / r["batch"] for r in mine)
    bf = statistics.median(r["alone_backward_ms"] / (r["alone_forward_ms"] + r["alone_backward_ms"]) for r in mine)
    opt = statistics.median(r["alone_optimizer_ms"] * 1e-3 for r in mine)
    threads = sorted({r.get("threads") for r in mine if r.get("threads")})
    return Compute(per, f"measured by collectives.replicate: {model} alone on one rank "
                        f"({'/'.join(map(str, threads)) or '?'} thread(s)), median of {len(mine)} record(s): "
                        f"{1 / per:.3g} samples/s, optimizer step {opt * 1e3:.3g} ms", "measured",
                   backward_fraction=bf, optimizer_s=opt, optimizer_how=MEASURED)


def curve_readiness(workload, grad_bytes: int, terms: Terms, seq: Optional[int] = None,
                    estimate: Optional[Estimate] = None) -> Tuple[List[float], str]:
    """Each DDP bucket's ready share for a scaling curve: measured (calibration records of this model,
    same bucket count), else estimated from layer FLOPs, else even over bytes (assumed)."""
    buckets, how = model_buckets(workload.name, seq, grad_bytes, estimate)
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
