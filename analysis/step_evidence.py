"""What one ``collectives.replicate`` record measured, in the step model's terms (pure).

The evidence :mod:`analysis.calibrate` fits the terms to and predicts each
record with: its alone phases (:func:`phases_of`), when each bucket became
ready (:func:`measured_shares`) and how long its allreduce took inside the
step (:func:`instep_comm`, :func:`comm_samples`), the job's own network from
its comm-only phase (:func:`job_network`), DDP's copies and the wake delay
(:func:`copies_per_byte`, :func:`wake_s`), the estimates its host and alone
steps give (:func:`record_estimates`), the buckets to predict it with
(:func:`record_buckets`) and its measured loss split (:func:`measured_parts`).
"""

from __future__ import annotations

import statistics
from typing import Callable, Dict, List, Optional, Tuple

from analysis.step_model import (ASSUMED, ESTIMATED, MEASURED, Phases, Term, Terms, buckets_with_readiness,
                                 even_readiness, interference_estimate, oversubscription_estimate, skew_estimate)

__all__ = ["Allreduce", "Estimate", "job_network", "default_estimate", "phases_of", "measured_shares", "MIN_COMM_S",
           "comm_samples", "instep_comm", "bytes_per_element", "model_buckets", "record_buckets",
           "record_estimates", "wake_s", "copies_per_byte", "with_estimates", "measured_parts", "instep_network"]

Allreduce = Callable[[float, int], float]
Estimate = Callable[[str, Optional[int]], Dict[str, float]]


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


def default_estimate(model: str, seq: Optional[int]) -> Dict[str, float]:
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
    wake = max(0.0, wake_s(rec) or 0.0)
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


def bytes_per_element(rec: Dict) -> int:
    return 2 if rec.get("dtype") == "bfloat16" else 4


def model_buckets(model: str, seq: Optional[int], bytes_per_element: int = 4,
                  estimate: Optional[Estimate] = None) -> Tuple[List[Tuple[int, float]], str]:
    """DDP's buckets of ``model`` with ready shares estimated from layer FLOPs, and how they are known
    (``estimated``; ``assumed`` = spread evenly over bytes where the estimate cannot be made)."""
    from facts import workloads

    w = workloads.get(model)
    try:
        ready = (estimate or default_estimate)(model, seq)
        return buckets_with_readiness(w.layers, ready, bytes_per_element), ESTIMATED
    except (ImportError, ValueError, RuntimeError):
        sizes = workloads.gradient_buckets(w, bytes_per_element=bytes_per_element)
        return list(zip(sizes, even_readiness(sizes))), ASSUMED


def record_buckets(rec: Dict, terms: Terms, estimate: Optional[Estimate] = None) -> Tuple[List[Tuple[int, float]], str]:
    """The buckets to predict ``rec`` with: the shares measured for its model when the terms hold them
    (and the bucket count agrees), else the model's FLOPs estimate."""
    buckets, how = model_buckets(rec["model"], rec.get("seq"), bytes_per_element(rec), estimate)
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
    wake = wake_s(rec)
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


def wake_s(rec: Dict) -> Optional[float]:
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


def measured_parts(rec: Dict) -> Dict[str, float]:
    """The run's loss split (ms): sharing = M - A, skew = S - M, exposed = D - S."""
    return {"sharing": rec["nosync_ms"] - rec["alone_ms"], "skew": rec["nosync_max_ms"] - rec["nosync_ms"],
            "exposed": rec["ddp_ms"] - rec["nosync_max_ms"]}


def instep_network(rec: Dict) -> Allreduce:
    """allreduce(bytes, n) as this record's buckets took inside its step: a bucket's own time by its size,
    else the record's in-step time per byte (0 when it has no timeline)."""
    got = instep_comm(rec) or []
    tl = rec.get("bucket_timeline") or []
    by_size = {b["bytes"]: t for b, t in zip(tl, got)}
    total = sum(b["bytes"] for b in tl)
    per_byte = sum(got) / total if total else 0.0
    return lambda b, n: by_size.get(b, b * per_byte)
