"""One data-parallel training step, modelled term by term (pure: no torch, no MPI).

    step(N) = (F (1 + sharing) + B' + O (1 + sharing_opt)) (1 + skew)  +  exposed(N)

F, B, O: forward, backward and optimizer time of one rank alone (measured
by ``collectives.replicate``'s alone phase, by ``analysis.scaling
--measure-cpu`` with the thread count a rank has, or assumed from a rate).
Each term, with where its figure comes from (every table line says whether
it is calibrated, measured or assumed):

- **sharing**: running N ranks at once slows each (memory bandwidth,
  caches and cores a host's ranks share): measured by replicate as the
  mean no-sync forward+backward over the alone one; assumed 0 without
  calibration.  On a CPU host with more compute threads than cores
  (oversubscribed) estimated as threads / cores - 1 (the cores are
  time-sliced: 3 ranks on 2 cores run at 2/3 speed, +50 %;
  :func:`oversubscription_estimate`).  **sharing_opt**, the same for the
  optimizer step, which
  streams every parameter and its state through memory and so shares
  memory bandwidth differently from the compute-bound passes.
- **skew**: the step waits for the slowest rank: the slowest no-sync step
  over the mean.  Estimated from one rank alone (:func:`skew_estimate`): if
  every rank's step varies as rank 0's alone steps do (each step's own time;
  robust spread sigma: 1.4826 x the median absolute deviation), the slowest
  of N exceeds the mean by about sigma x the expected maximum of N standard
  normal draws (0.56 at 2 ranks, 0.85 at 3, 1.03 at 4).  Calibration fits it
  as the median slowest / mean no-sync step - 1 (used for curves at other N).
- **interference**: compute slowed while communication runs (the
  backend's threads take CPU and memory bandwidth from the backward pass):
  B' = B (1 + sharing) + copy_in + interference x (the allreduce work done
  while the backward pass runs), copy_in being half the copies below.
  Estimated as 1 on a CPU whose cores the ranks' compute threads fill
  (:func:`interference_estimate`: no core is left for the backend's threads,
  so each second of their work is a second taken from compute); else
  fitted by calibration to replicate's DDP steps, assumed 0 without.
- **overlap**: the speed of an allreduce while the backward pass runs, as a
  share of its speed after it (a CPU whose cores all compute leaves the
  backend's threads little time): measured from replicate's bucket
  timelines (buckets that ran wholly inside the backward pass: the network
  model's time over theirs); assumed 1 without.
- **comm**: the allreduce inside a training step, once the backward pass
  is over, against the network model (a microbenchmark fit or a fabric's
  figures): the ratio of the in-step times of buckets that ran wholly after
  the backward pass (replicate's hook) to the model's; assumed 1 without.
- **copies**: DDP copies each gradient into its bucket as it becomes ready
  (on the thread that runs the backward pass, so the copy-in lengthens B')
  and, after the last allreduce, every bucket back into the gradients
  (copy_out, after the backward pass: exposed), unless the model uses
  ``gradient_as_bucket_view``; seconds per byte of gradients for both
  passes, half each.  Measured by replicate's comm-only phase, which copies
  as DDP does; assumed 0 without.
- **wake**: the first allreduce after the cores computed waits longer than
  one back to back (on a host whose cores all compute, the backend's
  threads wait for the CPU to come back to them): seconds once per step,
  exposed (it falls on the buckets after the backward pass).  Measured by
  replicate's wake probe (20 ms of compute, then an allreduce of the
  smallest bucket's size, minus the same back to back; a negative
  difference counts as 0); assumed 0 without.
- **optimizer** on its own, O, not folded into the samples/s rate.
- **bucket readiness**: bucket i's gradients are all computed at
  ``ready_i`` x B' (the shares measured by replicate for that model, else
  estimated from the FLOPs of the layers in the bucket,
  :mod:`analysis.ready_from_flops`, else spread evenly over bytes: assumed).

exposed(N): one communication stream runs the buckets in order, bucket i
from max(ready_i B', end of bucket i-1) for comm x allreduce(bytes_i, N) of
work, at overlap x full speed until B' ends (:func:`schedule`); what runs
past the end of the backward pass is exposed, and so are the copy back out
of the buckets and the wake delay.  At N = 1 there is no communication, no
copy and no sharing or skew.

Sources: the terms were found by timing DDP against this model with
``collectives.replicate``; the measurements that found them, and how well
the model predicts replicate's runs, are in docs/results/2026-12.md
("Data-parallel replication and the step model").
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["schedule", "expected_max", "skew_estimate", "interference_estimate", "oversubscription_estimate",
           "Compute", "fit_per_step",
           "BACKWARD_FRACTION", "Term", "Terms", "Phases", "Prediction", "predict", "buckets_with_readiness",
           "even_readiness", "ASSUMED", "CALIBRATED", "MEASURED", "ESTIMATED", "TERM_NAMES"]

ASSUMED, CALIBRATED, MEASURED, ESTIMATED = "assumed", "calibrated", "measured", "estimated"
BACKWARD_FRACTION = 2.0 / 3.0  # backward costs about twice the forward pass
TERM_NAMES = ("sharing", "sharing_opt", "skew", "interference", "comm", "overlap", "copies", "wake")


@dataclass(frozen=True)
class Compute:
    """Forward+backward time of a micro-batch on one device, t(b) = per_step_s + b x seconds_per_sample, and
    where the figures come from.  ``per_step_s`` is what does not shrink with the batch (launches, the
    framework, small kernels that do not fill the device); 0 unless given or fitted from two or more
    batches (:func:`fit_per_step`), and ``per_step_how`` says which."""

    seconds_per_sample: float
    source: str
    kind: str  # measured | given | assumed
    backward_fraction: float = BACKWARD_FRACTION
    optimizer_s: float = 0.0  # one optimizer step, on its own (not per sample)
    optimizer_how: str = "assumed"  # "assumed" (0: folded into the rate) | "measured"
    per_step_s: float = 0.0
    per_step_how: str = "assumed 0 (one batch size known: a per-step cost cannot be told from the per-sample one)"

    def micro_s(self, batch: float) -> float:
        """Forward+backward seconds of a micro-batch of ``batch`` samples."""
        return self.per_step_s + batch * self.seconds_per_sample


def fit_per_step(batches: Sequence[float], seconds: Sequence[float]) -> Tuple[float, float]:
    """(per-step seconds, per-sample seconds) of t(b) = c + b s by least squares over two or more distinct
    batches; a negative intercept or a slope <= 0 is noise (a larger batch cannot cost less), and then the
    line goes through the origin (c = 0).  ValueError with fewer than two."""
    pts = [(float(b), float(t)) for b, t in zip(batches, seconds) if b > 0 and t > 0]
    if len({b for b, _ in pts}) < 2:
        raise ValueError("a per-step cost needs compute times at two or more batch sizes")
    n = len(pts)
    mb = sum(b for b, _ in pts) / n
    mt = sum(t for _, t in pts) / n
    slope = sum((b - mb) * (t - mt) for b, t in pts) / sum((b - mb) ** 2 for b, _ in pts)
    intercept = mt - slope * mb
    if intercept < 0 or slope <= 0:  # through the origin instead
        return 0.0, sum(b * t for b, t in pts) / sum(b * b for b, _ in pts)
    return intercept, slope


@dataclass(frozen=True)
class Term:
    """A term's value and how it is known (calibrated | measured | estimated | assumed), with a source."""

    value: float
    how: str = ASSUMED
    source: str = ""


@dataclass(frozen=True)
class Terms:
    sharing: Term = Term(0.0, ASSUMED, "no calibration: ranks assumed not to slow each other")
    sharing_opt: Term = Term(0.0, ASSUMED, "no calibration: ranks assumed not to slow each other's optimizer")
    skew: Term = Term(0.0, ASSUMED, "no calibration: every rank assumed as fast as the others")
    interference: Term = Term(0.0, ASSUMED, "no calibration: communication assumed to take no compute")
    comm: Term = Term(1.0, ASSUMED, "no calibration: the allreduce inside a step as fast as the network model")
    overlap: Term = Term(1.0, ASSUMED, "no calibration: the allreduce as fast during the backward pass as after it")
    copies: Term = Term(0.0, ASSUMED, "not measured: DDP's copies into and out of its buckets assumed free")
    wake: Term = Term(0.0, ASSUMED, "not measured: the first allreduce after compute assumed as fast as the next")
    # Measured bucket-readiness shares per model (from replicate records), used before the estimate.
    readiness: Dict[str, Tuple[float, ...]] = field(default_factory=dict)

    def with_(self, **kw) -> "Terms":
        return replace(self, **kw)

    def code(self) -> str:
        """``sharing c, skew c, interference c`` with c/m/e/a = calibrated/measured/estimated/assumed."""
        return ", ".join(f"{n} {getattr(self, n).how[0]}" for n in TERM_NAMES)


@dataclass(frozen=True)
class Phases:
    """One rank alone: forward, backward, optimizer seconds, and how they are known."""

    forward: float
    backward: float
    optimizer: float
    how: str = MEASURED  # of the compute figures
    optimizer_how: str = MEASURED

    @property
    def total(self) -> float:
        return self.forward + self.backward + self.optimizer


@dataclass(frozen=True)
class Prediction:
    step_s: float
    compute_s: float  # forward + backward + optimizer as slowed by sharing, skew, interference and the copy-in
    comm_s: float  # every bucket's allreduce, serialised
    exposed_s: float
    backward_s: float  # B'
    efficiency: float  # alone step / step(N)


def even_readiness(sizes: Sequence[int]) -> List[float]:
    """Bucket ready shares if gradients came out at a steady rate in bytes (the old, assumed, model)."""
    total = float(sum(sizes)) or 1.0
    out, done = [], 0.0
    for s in sizes:
        done += s
        out.append(done / total)
    return out


def buckets_with_readiness(layers: Sequence[Tuple[str, int]], ready: Dict[str, float], bytes_per_element: int = 4,
                           bucket_cap_mb: float = 25, first_bucket_mb: float = 1) -> List[Tuple[int, float]]:
    """DDP's buckets of ``layers`` ((name, elements) in parameter order; the same rule as
    ``facts.workloads.gradient_buckets``) with each bucket's ready share: that of its
    last-ready parameter."""
    limits = [int(first_bucket_mb * 2 ** 20), int(bucket_cap_mb * 2 ** 20)]
    out: List[Tuple[int, float]] = []
    filled, share = 0, 0.0
    for name, numel in reversed(list(layers)):
        filled += numel * bytes_per_element
        share = max(share, float(ready.get(name, 1.0)))
        if filled >= limits[min(len(out), 1)]:
            out.append((filled, share))
            filled, share = 0, 0.0
    if filled:
        out.append((filled, share))
    # A bucket cannot be handed over before the one before it (DDP launches them in order).
    running = 0.0
    return [(b, (running := max(running, s))) for b, s in out]


def schedule(buckets: Sequence[Tuple[int, float]], works: Sequence[float], backward: float,
             overlap: float = 1.0) -> Tuple[float, float]:
    """(end of the last bucket, allreduce work done while the backward pass ran), one stream in order.

    Bucket i starts at max(ready_i x backward, end of bucket i-1) and needs
    ``works[i]`` seconds at full speed; before ``backward`` ends it advances
    at ``overlap`` x full speed (cores busy with compute), after it at full
    speed."""
    end = done_during = 0.0
    rate = max(overlap, 1e-6)
    for (_, ready), w in zip(buckets, works):
        start = max(ready * backward, end)
        if start < backward:
            room = (backward - start) * rate  # work the bucket can do before the backward pass ends
            if w <= room:
                end = start + w / rate
                done_during += w
                continue
            done_during += room
            end = backward + (w - room)
        else:
            end = start + w
    return end, done_during


def predict(phases: Phases, buckets: Sequence[Tuple[int, float]], n: int,
            allreduce: Callable[[float, int], float], terms: Terms = Terms()) -> Prediction:
    """The step time of one rank at ``n`` ranks (see the module docstring)."""
    alone = phases.total
    if n <= 1 or not buckets:
        return Prediction(alone, alone, 0.0, 0.0, phases.backward, 1.0)
    share = 1.0 + terms.sharing.value
    works = [allreduce(b, n) * terms.comm.value for b, _ in buckets]
    copy_each = 0.5 * terms.copies.value * float(sum(b for b, _ in buckets))  # one pass: in, or out
    base = phases.backward * share + copy_each
    backward = base
    for _ in range(50):  # interference lengthens the backward pass, which changes what overlaps it
        end, during = schedule(buckets, works, backward, terms.overlap.value)
        longer = base + terms.interference.value * during
        if abs(longer - backward) <= 1e-12 * max(1.0, longer):
            break
        backward = longer
    end, during = schedule(buckets, works, backward, terms.overlap.value)
    exposed = max(0.0, end - backward) + copy_each + max(0.0, terms.wake.value)
    compute = (phases.forward * share + backward + phases.optimizer * (1.0 + terms.sharing_opt.value)) * \
        (1.0 + terms.skew.value)
    step = compute + exposed
    return Prediction(step, compute, float(sum(works)), exposed, backward, alone / step if step > 0 else 0.0)


@functools.lru_cache(maxsize=None)
def expected_max(n: int) -> float:
    """The expected largest of ``n`` independent standard normal draws (0 for n <= 1), by quadrature."""
    if n <= 1:
        return 0.0
    h, total = 0.001, 0.0
    for i in range(-10000, 10001):  # x in [-10, 10]: n x phi(x) Phi(x)^(n-1)
        x = i * h
        phi = math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        total += x * n * phi * (0.5 * (1 + math.erf(x / math.sqrt(2)))) ** (n - 1)
    return total * h


def skew_estimate(alone_steps: Sequence[float], n: int) -> Optional[float]:
    """The slowest of ``n`` ranks over their mean, - 1, if each varies as these steps of one rank alone do
    (robust sigma = 1.4826 x MAD, over their median); None with fewer than three steps."""
    if n <= 1 or len(alone_steps) < 3:
        return None
    med = statistics.median(alone_steps)
    if med <= 0:
        return None
    sigma = 1.4826 * statistics.median(abs(x - med) for x in alone_steps)
    return expected_max(n) * sigma / med


def oversubscription_estimate(device: Optional[str], host_cores: Optional[int], ranks_on_host: Optional[int],
                              threads: Optional[int]) -> Optional[float]:
    """ranks x threads / cores - 1 where a CPU host's ranks have more compute threads than it has cores (the
    cores are time-sliced between them), else None."""
    if device != "cpu" or not host_cores or not ranks_on_host or not threads:
        return None
    busy = ranks_on_host * threads
    return busy / host_cores - 1.0 if busy > host_cores else None


def interference_estimate(device: Optional[str], host_cores: Optional[int], ranks_on_host: Optional[int],
                          threads: Optional[int]) -> Optional[float]:
    """1.0 when the ranks' compute threads fill a CPU host's cores (the backend's threads then take their
    time from compute), else None (not estimable: a spare core or an accelerator runs the allreduce)."""
    if device != "cpu" or not host_cores or not ranks_on_host or not threads:
        return None
    return 1.0 if ranks_on_host * threads >= host_cores else None
