"""Replicate records made by the step model itself (for the calibration, interval and held-out tests)."""

from analysis import step_evidence
from analysis.step_model import Phases, predict
from facts import workloads


def net(bw=1e9, lat=1e-4):
    return lambda b, n: lat * (n - 1) + 2 * (n - 1) / n * b / bw


def estimate(model, seq):
    w = workloads.get(model)
    return {n: (i + 1) / len(w.layers) for i, (n, _) in enumerate(reversed(w.layers))}


def record(model, terms, allreduce, alone=(0.1, 0.2, 0.05), batch=2, run_id="job", rounds=None):
    """A replicate record that the model with ``terms`` predicts exactly; ``rounds``: per-round alone
    steps (ms) to put in it."""
    ph = Phases(*alone)
    rec = {"model": model, "nranks": 2, "batch": batch, "seq": None, "dtype": "float32", "run_id": run_id,
           "alone_forward_ms": ph.forward * 1e3, "alone_backward_ms": ph.backward * 1e3,
           "alone_optimizer_ms": ph.optimizer * 1e3, "alone_ms": ph.total * 1e3}
    buckets, _ = step_evidence.record_buckets(rec, terms, estimate)
    p = predict(ph, buckets, 2, allreduce, terms)
    fb, o = (ph.forward + ph.backward) * (1 + terms.sharing.value), ph.optimizer * (1 + terms.sharing_opt.value)
    m = fb + o
    ends, end = [], 0.0
    bwd, rate = p.backward_s, terms.overlap.value
    for b, share in buckets:
        work = allreduce(b, 2) * terms.comm.value
        start = max(share * bwd, end)
        if start < bwd and work <= (bwd - start) * rate:
            end = start + work / rate
        elif start < bwd:
            end = bwd + work - (bwd - start) * rate
        else:
            end = start + work
        ends.append((b, share * bwd * 1e3, end * 1e3))
    rec.update(nosync_ms=m * 1e3, nosync_forward_ms=ph.forward * (1 + terms.sharing.value) * 1e3,
               nosync_backward_ms=ph.backward * (1 + terms.sharing.value) * 1e3, nosync_optimizer_ms=o * 1e3,
               nosync_max_ms=m * (1 + terms.skew.value) * 1e3, ddp_ms=p.step_s * 1e3,
               efficiency=ph.total / p.step_s, backward_ms=p.backward_s * 1e3,
               bucket_timeline=[{"bytes": b, "ready_ms": r, "done_ms": d} for b, r, d in ends])
    if terms.copies.value:  # as replicate's comm-only phase times them
        rec["copy_alone_ms"] = terms.copies.value * sum(b for b, _ in buckets) * 1e3
    if rounds is not None:
        rec["rounds"] = [{"alone_ms": a} for a in rounds]
    return rec
