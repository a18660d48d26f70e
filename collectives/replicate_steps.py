"""One training step, timed by phase, and the communication hook that times DDP's buckets.

Used by :mod:`collectives.replicate`.  A step is ``zero_grad``, forward, a
scalar loss, backward, ``optimizer.step()``.  The phases are timed on the
host clock (on Gaudi after ``mark_step`` and a wait for the device, which
the lazy mode needs to run the graph at all; untested without a Gaudi); on
a CUDA device by CUDA events recorded on the current stream between the
phases (the host waits for the device after the backward pass,
so that the exposed communication is measured against the host-side times
at which buckets became ready, and at the end of the step).

:func:`comm_fn` times the gradient allreduce alone, no compute: every
bucket DDP hands over, in its order, one after another, with DDP's copies
of the gradients into each bucket and back out timed apart; then the wake
probe (CPU only): after a barrier the ranks compute for WAKE_SPIN_S with
their torch threads, as at the end of a backward pass, and an allreduce of
the smallest bucket's size is timed right after and again back to back (on
a host whose cores all compute, the first waits for the CPU to come back to
the backend's threads).  :func:`repeat` runs a step
function several times and returns the mean step (short steps are timed in
groups, so that a phase outlasts the clock's and the scheduler's noise).

The same step function serves the three phases of a round: rank 0 alone and
every rank without gradient sync (both call the bare module, so DDP's
reducer stays idle: it acts only after a forward through DDP), and every
rank under DDP (the wrapped module, with the bucket hook).
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, List, Optional, Tuple

__all__ = ["BucketLog", "step_fn", "comm_fn", "spin", "repeat", "allocator", "page_kib", "PHASES", "ALLOCATOR_ENV",
           "WAKE_SPIN_S"]

WAKE_SPIN_S = 0.02  # the wake probe's compute: past where the delay saturates (docs/results/2026-12.md)

PHASES = ("forward", "backward", "optimizer", "step")


def _faults() -> int:
    """This process's minor page faults so far (fresh pages the kernel had to find and zero)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def page_kib() -> int:
    """The system's page size in KiB (4 where it cannot be read)."""
    try:
        import resource

        return max(1, resource.getpagesize() // 1024)
    except (ImportError, ValueError):
        return 4


ALLOCATOR_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX",
                 "GLIBC_TUNABLES", "LD_PRELOAD")


def allocator() -> str:
    """How host memory is allocated in this process: the C library's defaults, or the settings that change
    them (glibc's MALLOC_* variables and tunables, a preloaded allocator such as jemalloc or tcmalloc)."""
    set_ = [f"{k}={os.environ[k]}" for k in ALLOCATOR_ENV if os.environ.get(k)]
    return ", ".join(set_) if set_ else "the C library's malloc, default settings"


class BucketLog:
    """A DDP communication hook: the default allreduce (average), with each bucket's times recorded.

    ``events``: (bytes, ready, done) per bucket in the order DDP hands them
    over, host clock; ``hook_s``: the time spent inside the hook itself
    (reading the bucket, dividing, launching the allreduce, chaining the
    callback), which the default hook would spend too, minus the clock reads.
    """

    def __init__(self, dist, group, world: int):
        self.dist, self.group, self.world = dist, group, world
        self.events: List[Tuple[int, float, float]] = []
        self.hook_s = 0.0

    def reset(self) -> None:
        self.events = []
        self.hook_s = 0.0

    def hook(self, state, bucket):
        t0 = time.perf_counter()
        buf = bucket.buffer()
        nbytes = buf.numel() * buf.element_size()
        buf.div_(self.world)
        fut = self.dist.all_reduce(buf, group=self.group, async_op=True).get_future()
        events = self.events
        slot = len(events)
        events.append((nbytes, t0, float("nan")))

        def done(f):
            events[slot] = (nbytes, t0, time.perf_counter())
            return f.value()[0]
        chained = fut.then(done)
        self.hook_s += time.perf_counter() - t0
        return chained


def _lazy_settle(torch, kind: str) -> Callable[[], None]:
    """Gaudi's lazy mode runs the graph at mark_step, and the host then waits for it; elsewhere nothing."""
    if kind != "hpu":
        return lambda: None
    import habana_frameworks.torch.core as htcore  # untested here: no Gaudi

    def settle() -> None:
        htcore.mark_step()
        torch.hpu.synchronize()
    return settle


def _loss(out):
    out = out[0] if isinstance(out, (tuple, list)) else getattr(out, "logits", out)
    return out.float().pow(2).mean()


def step_fn(torch, model, opt, data, device, log: Optional[BucketLog] = None) -> Callable[[], Dict]:
    """A function that runs one step of ``model`` on ``data`` and returns its phases in seconds.

    With ``log`` (the DDP phase), also: ``exposed`` (backward's return minus
    the moment the last bucket became ready), ``allreduce`` (the buckets'
    ready-to-done times, summed), ``hook`` and ``buckets`` ((bytes, ready,
    done) relative to the start of the backward pass).
    """
    kind = getattr(device, "type", "cpu")
    cuda = kind == "cuda"
    settle = _lazy_settle(torch, kind)
    if cuda:
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]

        def mark(i):
            events[i].record()
    else:
        def mark(i):
            pass

    def close(i: int) -> float:
        """End a phase that the host waits for: the device's work done, then the host's clock."""
        settle()
        mark(i)
        if cuda:
            events[i].synchronize()
        return time.perf_counter()

    def step() -> Dict:
        if log is not None:
            log.reset()
        mark(0)
        f0 = _faults()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = _loss(model(data))
        mark(1)
        t1 = time.perf_counter()
        loss.backward()
        t2 = close(2)
        opt.step()
        t3 = close(3)
        if cuda:  # the device's own times per phase (ms -> s)
            fwd, bwd, optim = (events[i].elapsed_time(events[i + 1]) * 1e-3 for i in range(3))
        else:
            fwd, bwd, optim = t1 - t0, t2 - t1, t3 - t2
        out = {"forward": fwd, "backward": bwd, "optimizer": optim, "step": fwd + bwd + optim,
               "faults": _faults() - f0}
        if log is not None:
            evs = log.events
            last_ready = max((e[1] for e in evs), default=t2)
            out.update(exposed=max(0.0, t2 - last_ready), hook=log.hook_s,
                       allreduce=sum(d - r for _, r, d in evs if d == d),
                       buckets=[(b, r - t1, d - t1) for b, r, d in evs])
        return out
    return step


def comm_fn(torch, dist, group, sizes, dtype, device, world: int) -> Callable[[], Dict]:
    """A function that reduces the gradients as DDP does, bucket by bucket in DDP's order with no compute
    running: copy the bucket's gradients in, average them (divide, allreduce), copy them back out.  It
    returns ``step`` (the allreduces' own times summed, s), ``buckets`` ((bytes, start, done) of each
    allreduce from the first start), ``copies`` (the copies in and out, summed, s) and ``wake`` (the wake
    probe's allreduce right after WAKE_SPIN_S of compute minus the same back to back, s; None off the
    CPU).  One bucket at a time, as the step model's single stream runs them: launched all at once, the
    backend runs two or more together and each bucket's own time is lost."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    bufs = [torch.ones(max(1, b // itemsize), dtype=dtype, device=device) for b in sizes]
    grads = [torch.ones_like(b) for b in bufs]  # DDP's model gradients, apart from its buckets
    probe = torch.zeros_like(min(bufs, key=lambda b: b.numel()))  # zeros: sums that never overflow
    kind = getattr(device, "type", "cpu")
    # The wake probe computes on the host with the rank's torch threads; on an accelerator the host's cores
    # are not what the backward pass keeps busy, so there it is not run (wake None).
    work = (torch.ones(256, 256), torch.empty(256, 256)) if kind == "cpu" else None
    lazy = _lazy_settle(torch, kind)

    def settle() -> None:
        """Wait for the device: the allreduce returns once it is queued there, not done."""
        lazy()
        if kind == "cuda":
            torch.cuda.synchronize()

    def step() -> Dict:
        t0 = time.perf_counter()
        marks: List[Tuple[int, float, float]] = []
        reduce_s = copies_s = 0.0
        for buf, grad in zip(bufs, grads):
            c0 = time.perf_counter()
            buf.copy_(grad)
            settle()
            start = time.perf_counter()
            buf.div_(world)
            dist.all_reduce(buf, group=group)
            settle()
            done = time.perf_counter()
            grad.copy_(buf)
            settle()
            copies_s += (start - c0) + (time.perf_counter() - done)
            reduce_s += done - start
            marks.append((buf.numel() * itemsize, start - t0, done - t0))
        out = {"step": reduce_s, "buckets": marks, "copies": copies_s, "wake": None}
        if work is not None:
            dist.barrier(group=group)  # the ranks compute together, so none waits in the probe for another
            spin(torch, work, WAKE_SPIN_S)
            w0 = time.perf_counter()
            dist.all_reduce(probe, group=group)
            w1 = time.perf_counter()
            dist.all_reduce(probe, group=group)
            out["wake"] = (w1 - w0) - (time.perf_counter() - w1)
        return out
    return step


def spin(torch, work, seconds: float) -> None:
    """Keep this rank's cores busy for ``seconds`` (the host's clock) with matrix products on its torch
    threads, as a training step's compute does; ``work``: (a square matrix, an output of its shape)."""
    a, out = work
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        torch.mm(a, a, out=out)


def _mean_steps(steps: List[Dict]) -> Dict:
    """The mean of several steps' phases; bucket times averaged when every step had the same buckets;
    ``each``: every step's own time (s), in order, so that the slowest rank can be found step by step."""
    out = {k: sum(s[k] for s in steps) / len(steps) for k, v in steps[0].items() if isinstance(v, (int, float))}
    out["each"] = [s["step"] for s in steps]
    if "buckets" in steps[0]:
        shapes = {tuple(b for b, _, _ in s["buckets"]) for s in steps}
        if len(shapes) == 1:
            out["buckets"] = [(b, sum(s["buckets"][j][1] for s in steps) / len(steps),
                               sum(s["buckets"][j][2] for s in steps) / len(steps))
                              for j, (b, _, _) in enumerate(steps[0]["buckets"])]
        else:
            out["buckets"] = steps[-1]["buckets"]
    return out


def repeat(fn: Callable[[], Dict], times: int) -> Callable[[], Dict]:
    """``fn`` run ``times`` times back to back, returning the mean step with every step's own time in
    ``each`` (``fn`` itself when once)."""
    if times <= 1:
        return fn
    return lambda: _mean_steps([fn() for _ in range(times)])
