"""The summary of interleaved replicate rounds: E(N) and the parts of its loss (pure, no torch).

A round is three phases, each started together after a barrier: rank 0
alone (the others asleep in the barrier), every rank without gradient sync,
every rank under DDP.  With, per round, ``a`` = rank 0's step alone, ``m``
= the mean and ``s`` = the slowest of the no-sync steps, ``d`` = the
slowest DDP step, and the medians over rounds written ``A``, ``M``, ``S``,
``D``:

    X(1) = batch / A          X(N) = N batch / D          E(N) = X(N) / (N X(1)) = A / D
    1 - E = (M - A)/D  +  (S - M)/D  +  (D - S)/D
            sharing       skew           exposed communication

sharing: what running N ranks at once costs each (memory bandwidth, caches,
cores), skew: the wait for the slowest rank, exposed: what DDP adds to the
slowest no-sync step (allreduce not hidden behind the backward pass, and
compute slowed while communication runs).  The three parts add up to 1 - E
exactly; each one's spread is that of its per-round value.  At one rank
there is no no-sync phase (it would be the alone phase) and only the DDP
overhead remains.

A phase may be a group of steps (``--steps``): its times are the group's
means, except that the slowest no-sync rank is found step by step (``s``
is the mean over the group of the slowest rank's time at each step), as a
DDP step waits for the slowest rank at every step.

At N > 1 a fourth phase times the gradient allreduce alone (every bucket of
the DDP step, one after another, no compute): ``comm_alone_ms``, the
median over rounds of the fastest rank's time (the last to leave the
barrier, so little of its time is waiting for the others: only for a
peer's slower copy between two buckets), and per bucket its own time
(from the later of its launch and the previous bucket's end to its end),
the network the step model is given from the same minutes; ``copy_alone_ms``,
DDP's copies of the gradients into its buckets and back out, timed apart;
``wake_alone_ms``, how much longer an allreduce takes right after the cores
computed than back to back (the wake probe of ``replicate_steps.comm_fn``).
"""

from __future__ import annotations

import statistics
from typing import Dict, List, Optional, Sequence

__all__ = ["summarize", "SUMMARY_FIELDS", "efficiency_line", "strong_pairs", "strong_line"]

# The scalar summary fields (the --csv columns a replicate record adds).
SUMMARY_FIELDS = (
    "model", "batch", "seq", "optimizer", "device", "threads", "host_cores", "params",
    "step_ms", "forward_ms", "backward_ms", "optimizer_ms", "exposed_ms", "allreduce_ms", "hook_ms", "buckets",
    "samples_per_s", "alone_ms", "alone_forward_ms", "alone_backward_ms", "alone_optimizer_ms",
    "nosync_ms", "nosync_max_ms", "nosync_forward_ms", "nosync_backward_ms", "nosync_optimizer_ms",
    "x1_samples_per_s", "xn_samples_per_s", "efficiency",
    "loss_sharing", "loss_skew", "loss_exposed", "wait_cpu_ms", "rounds_timed", "steps_per_phase", "comm_alone_ms",
    "copy_alone_ms", "wake_alone_ms",
    "alone_faults_per_step", "ddp_faults_per_step",
)


def _spread(values: Sequence[float], scale: float = 1.0) -> List[float]:
    return [min(values) * scale, max(values) * scale]


def _median_step(steps: Sequence[Dict]) -> Dict:
    """The median step by step time (the lower one of an even count), whole."""
    order = sorted(range(len(steps)), key=lambda i: steps[i]["step"])
    return steps[order[(len(order) - 1) // 2]]


def _timeline(med: Dict, peers: Sequence[Dict]) -> List[Dict]:
    """The median step's buckets (ms from the start of its backward pass), each with the moment the
    last rank had it ready (``peers_ready_ms``): every rank's ready time from the start of its step
    (the phase starts after a barrier), moved onto this step's backward clock."""
    out = []
    for j, (b, r, dn) in enumerate(med["buckets"]):
        others = [p["buckets"][j][1] + p["forward"] for p in peers if len(p.get("buckets", ())) > j]
        peers_ready = max(others) - med["forward"] if others else r
        out.append({"bytes": b, "ready_ms": r * 1e3, "done_ms": dn * 1e3, "peers_ready_ms": max(r, peers_ready) * 1e3})
    return out


def _own_times(buckets: Sequence) -> List[float]:
    """Each bucket's own time (s): from the later of its launch and the previous bucket's end to its end."""
    out, prev = [], float("-inf")
    for _, start, end in buckets:
        out.append(max(0.0, end - max(start, prev)))
        prev = end
    return out


def _slowest(row: Sequence[Dict]) -> float:
    """The slowest rank's step in one round's no-sync phase: for a group of steps, the mean over steps of
    the slowest rank's time at each step (a DDP step waits for the slowest rank at every step, not for the
    slowest group); for single steps, the slowest."""
    each = [x.get("each") for x in row]
    if all(each) and len({len(e) for e in each}) == 1:
        return statistics.fmean(max(col) for col in zip(*each))
    return max(x["step"] for x in row)


def _median_of(steps: Sequence[Dict], key: str) -> Optional[float]:
    got = [s[key] for s in steps if isinstance(s.get(key), (int, float))]
    return statistics.median(got) if got else None


def _comm_alone(per_rank: Sequence[Sequence[Dict]], rounds: int, nranks: int) -> Dict:
    """The comm-only phase: per round the fastest rank's time (median, spread) and per-bucket own times.
    The fastest is the last to leave the barrier: the others wait for it inside the first allreduce, so
    its time is the collectives' own.  ``copy_alone_ms``: DDP's copies into and out of the buckets, the
    mean over ranks (local work: nobody waits in it), median over rounds; ``wake_alone_ms``: the wake
    probe's delay (the allreduce right after compute minus the same back to back), the same way."""
    slow = []
    for i in range(rounds):
        got = [per_rank[r][i].get("comm") for r in range(nranks)]
        if all(g is not None for g in got):
            slow.append(min(got, key=lambda g: g["step"]))
    local = {"copy_alone_ms": _local_median(per_rank, rounds, nranks, "copies"),
             "wake_alone_ms": _local_median(per_rank, rounds, nranks, "wake")}
    if not slow:
        return {"comm_alone_ms": None, "comm_alone_ms_spread": None, "comm_alone_buckets": None, **local}
    shapes = {tuple(b for b, _, _ in g["buckets"]) for g in slow}
    buckets = None
    if len(shapes) == 1:
        own = [_own_times(g["buckets"]) for g in slow]
        buckets = [{"bytes": b, "ms": statistics.median(o[j] for o in own) * 1e3}
                   for j, (b, _, _) in enumerate(slow[0]["buckets"])]
    times = [g["step"] for g in slow]
    return {"comm_alone_ms": statistics.median(times) * 1e3, "comm_alone_ms_spread": _spread(times, 1e3),
            "comm_alone_buckets": buckets, **local}


def _local_median(per_rank: Sequence[Sequence[Dict]], rounds: int, nranks: int, key: str) -> Optional[float]:
    """The comm-only phase's ``key`` (s) in ms: the mean over ranks, median over rounds (None without)."""
    got = [statistics.mean(per_rank[r][i]["comm"][key] for r in range(nranks)) for i in range(rounds)
           if all(isinstance((per_rank[r][i].get("comm") or {}).get(key), (int, float)) for r in range(nranks))]
    return statistics.median(got) * 1e3 if got else None


def summarize(per_rank: Sequence[Sequence[Dict]], batch: int, nranks: int) -> Dict:
    """Summary fields of one (model, batch, ranks) from every rank's rounds.

    ``per_rank[r][i]``: rank r's round i: ``{"alone": step or None,
    "nosync": step or None, "ddp": step, "wait_cpu": seconds or None}``
    (a step: the phases in seconds, see :mod:`collectives.replicate_steps`).
    """
    rounds = len(per_rank[0])
    if rounds == 0 or any(len(r) != rounds for r in per_rank):
        raise ValueError("every rank must report the same number of rounds, at least one")
    ddp = [[per_rank[r][i]["ddp"] for r in range(nranks)] for i in range(rounds)]
    slowest = [max(steps, key=lambda s: s["step"]) for steps in ddp]
    alone = [per_rank[0][i]["alone"] for i in range(rounds)]
    if any(a is None for a in alone):
        raise ValueError("rank 0 must time the alone phase in every round")
    a = [s["step"] for s in alone]
    if nranks > 1:
        steps = [[per_rank[r][i]["nosync"] for r in range(nranks)] for i in range(rounds)]
    else:
        steps = [[x] for x in alone]
    nosync = [[x["step"] for x in row] for row in steps]
    m = [statistics.fmean(x) for x in nosync]
    s = [_slowest(row) for row in steps]
    # Each phase of the no-sync steps: mean over ranks, median over rounds.
    nosync_phase = {k: statistics.median(statistics.fmean(x[k] for x in row) for row in steps)
                    for k in ("forward", "backward", "optimizer")}
    d = [x["step"] for x in slowest]
    A, M, S, D = (statistics.median(x) for x in (a, m, s, d))
    order = sorted(range(rounds), key=lambda i: slowest[i]["step"])
    at = order[(rounds - 1) // 2]  # the round of the median step of the slowest rank, reported whole
    med = slowest[at]
    med_alone = _median_step(alone)
    waits = [per_rank[r][i]["wait_cpu"] for r in range(1, nranks) for i in range(rounds)
             if per_rank[r][i].get("wait_cpu") is not None]
    parts = {
        "loss_sharing": ((M - A) / D, [(mi - ai) / di for mi, ai, di in zip(m, a, d)]),
        "loss_skew": ((S - M) / D, [(si - mi) / di for si, mi, di in zip(s, m, d)]),
        "loss_exposed": ((D - S) / D, [(di - si) / di for si, di in zip(s, d)]),
    }
    out: Dict = {
        "step_ms": med["step"] * 1e3, "forward_ms": med["forward"] * 1e3, "backward_ms": med["backward"] * 1e3,
        "optimizer_ms": med["optimizer"] * 1e3, "exposed_ms": med["exposed"] * 1e3,
        "allreduce_ms": med["allreduce"] * 1e3, "hook_ms": med["hook"] * 1e3, "buckets": len(med["buckets"]),
        "step_ms_spread": _spread(d, 1e3),
        "bucket_timeline": _timeline(med, ddp[at]),
        "samples_per_s": nranks * batch / med["step"],
        "alone_ms": A * 1e3, "alone_ms_spread": _spread(a, 1e3),
        "alone_forward_ms": med_alone["forward"] * 1e3, "alone_backward_ms": med_alone["backward"] * 1e3,
        "alone_optimizer_ms": med_alone["optimizer"] * 1e3,
        "nosync_ms": M * 1e3, "nosync_ms_spread": _spread(m, 1e3),
        "nosync_max_ms": S * 1e3, "nosync_max_ms_spread": _spread(s, 1e3),
        "nosync_forward_ms": nosync_phase["forward"] * 1e3, "nosync_backward_ms": nosync_phase["backward"] * 1e3,
        "nosync_optimizer_ms": nosync_phase["optimizer"] * 1e3,
        "ddp_ms": D * 1e3,
        "x1_samples_per_s": batch / A, "xn_samples_per_s": nranks * batch / D, "efficiency": A / D,
        "wait_cpu_ms": statistics.median(waits) * 1e3 if waits else None,
        "rounds_timed": rounds,
        # Minor page faults a step (fresh pages the kernel finds and zeroes): rank 0 alone, the slowest DDP.
        "alone_faults_per_step": _median_of(alone, "faults"),
        "ddp_faults_per_step": _median_of(slowest, "faults"),
        **_comm_alone(per_rank, rounds, nranks),
        "rounds": [{"alone_ms": a[i] * 1e3,
                    "alone_each_ms": [x * 1e3 for x in alone[i]["each"]] if alone[i].get("each") else None,
                    "nosync_ms": ([per_rank[r][i]["nosync"]["step"] * 1e3 for r in range(nranks)]
                                  if nranks > 1 else None),
                    "ddp_ms": [x["step"] * 1e3 for x in ddp[i]],
                    "comm_ms": ([per_rank[r][i]["comm"]["step"] * 1e3 for r in range(nranks)]
                                if all(per_rank[r][i].get("comm") for r in range(nranks)) else None)}
                   for i in range(rounds)],
    }
    for name, (value, per_round) in parts.items():
        out[name] = value
        out[name + "_spread"] = _spread(per_round)
    return out


def efficiency_line(rec: Dict) -> Optional[str]:
    """``E(N) = 93.1 %: sharing 2.0, skew 1.5, exposed 3.4 points`` for a summary, or None."""
    if rec.get("efficiency") is None:
        return None
    return ("E(%d) = %.1f %%: sharing %.1f, skew %.1f, exposed communication %.1f points" % (
        rec.get("nranks") or 0, 100 * rec["efficiency"], 100 * rec["loss_sharing"], 100 * rec["loss_skew"],
        100 * rec["loss_exposed"]))


def strong_pairs(records: Sequence[Dict]) -> List[Dict]:
    """Strong scaling measured in one job: for every pair of a job's records (same run, model and rank
    count N > 1) at per-rank batches b and N x b, the efficiency at global batch B = N b

        E = alone(B) / (N x DDP(b))

    (one rank alone takes the whole global batch; N ranks under DDP take b each).  One dict per pair:
    model, run_id, nranks, global_batch, batch_per_rank, alone_ms (at B), ddp_ms (at b), efficiency."""
    out = []
    by_key: Dict[tuple, Dict[int, Dict]] = {}
    for r in records:
        n, b = r.get("nranks"), r.get("batch")
        if not n or int(n) < 2 or not b or not isinstance(r.get("ddp_ms"), (int, float)) \
                or not isinstance(r.get("alone_ms"), (int, float)):
            continue
        by_key.setdefault((r.get("run_id"), r.get("model"), r.get("seq"), int(n)), {})[int(b)] = r
    for (run, model, _, n), at in by_key.items():
        for b in sorted(at):
            big = at.get(b * n)
            if big is None or at[b]["ddp_ms"] <= 0:
                continue
            out.append({"model": model, "run_id": run, "nranks": n, "global_batch": b * n, "batch_per_rank": b,
                        "alone_ms": big["alone_ms"], "ddp_ms": at[b]["ddp_ms"],
                        "efficiency": big["alone_ms"] / (n * at[b]["ddp_ms"])})
    return out


def strong_line(pair: Dict) -> str:
    """``strong E(2) at global batch 4 = 91.2 %: ...`` for one of :func:`strong_pairs`."""
    n, big, b = pair["nranks"], pair["global_batch"], pair["batch_per_rank"]
    return (f"strong scaling: E({n}) at global batch {big} = {100 * pair['efficiency']:.1f} %: one rank alone at "
            f"batch {big} {pair['alone_ms']:.1f} ms a step over {n} x the DDP step at batch {b} per rank "
            f"({pair['ddp_ms']:.1f} ms)")
