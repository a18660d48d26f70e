"""The timed loop of the runner core: warm-up, iteration count, one stamp per iteration, statistics.

:class:`Timing` times one call: ``-w`` warm-up iterations, the iteration
count (``-n``, or from ``--time-budget`` by timing a doubling number of
iterations until a probe lasts 1/8 of the budget; every rank uses the
slowest rank's probe), a barrier, then the loop with one clock stamp per
iteration, the clock stopped only after the transport's device work is
synchronised.  The clock is the transport's (:meth:`timer`), or the compiled
loop's (:class:`~transports.native.timer.NativeTimer`, iterations in C) when
the call has a compiled form.  The watchdog (-T) watches every phase.
:func:`iteration_stats` turns one rank's stamps into its statistics and
:func:`aggregate` combines the ranks' as nccl-tests' ``-a`` does.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from collectives.config import MAX_ITERS, MIN_ITERS, Config
from collectives.watchdog import Watchdog
from facts import per_rank
from transports.native.timer import NativeTimer

__all__ = ["Timing", "iteration_stats", "aggregate"]


# -- statistics ----------------------------------------------------------------

def iteration_stats(stamps: Sequence[float], divisor: float = 1.0) -> Dict[str, float]:
    """This rank's loop statistics in microseconds, from ``iters + 1`` stamps."""
    arr = np.asarray(stamps, dtype=np.float64)
    per = np.diff(arr) * (1e6 / divisor)
    total = (arr[-1] - arr[0]) * 1e6 / divisor / max(1, len(per))
    return {
        "mean": float(total),
        "min": float(per.min()),
        "p50": float(np.percentile(per, 50)),
        "p99": float(np.percentile(per, 99)),
        "max": float(per.max()),
    }


def aggregate(per_rank: Sequence[Dict[str, float]], average: int) -> Dict[str, float]:
    """Combine ranks' statistics as nccl-tests' ``-a``: 0 rank 0, 1 avg, 2 min, 3 max."""
    if average == 0:
        out = dict(per_rank[0])
    else:
        fn = {1: np.mean, 2: np.min, 3: np.max}[average]
        out = {k: float(fn([s[k] for s in per_rank])) for k in per_rank[0]}
    means = [s["mean"] for s in per_rank]
    out["rank_min"], out["rank_max"] = float(min(means)), float(max(means))
    return out


# -- the timed loop --------------------------------------------------------------

class Timing:
    """Warm-up, iteration count, timed loop and cross-rank statistics for one call.

    Every runner that times a repeated call times through it (the collective
    sweep of :mod:`collectives.harness`, weight streaming; replication's
    interleaved rounds are no repeated call: see :mod:`collectives.replicate`):
    give it a zero-argument ``run`` and it returns the iteration count and the
    aggregated statistics (microseconds).
    """

    def __init__(self, comm, transport, cfg: Config, watchdog: Watchdog):
        self.comm, self.t, self.cfg, self.watchdog = comm, transport, cfg, watchdog

    def loop(self, run, iters: int, what: str, before=None, native=None):
        """``native``: a compiled form of ``run`` (:class:`~transports.native.timer.NativeLoop`)."""
        timer = self.t.timer() if native is None else NativeTimer(native)
        with self.watchdog.watch(what, timer):
            return timer.loop(run, iters, self.t.synchronize, before)

    def calibrate(self, run, what: str, before=None, native=None) -> int:
        budget = self.cfg.time_budget
        k = 1
        while True:
            stamps = self.loop(run, k, what, before, native)
            with self.watchdog.watch(f"agreeing on the iteration count for {what}"):
                elapsed = self.comm.allreduce(stamps[-1] - stamps[0], "max")
            if elapsed >= budget / 8 or k >= MAX_ITERS:
                break
            grow = 2 if elapsed <= 0 else min(16, max(2, int(budget / 8 / elapsed) + 1))
            k = min(MAX_ITERS, k * grow)
        per_iter = max(elapsed / k, 1e-9)
        return int(min(MAX_ITERS, max(MIN_ITERS, round(budget / per_iter))))

    def time(self, run, what: str, divisor: float = 1.0, before=None, native=None):
        """(iterations, statistics aggregated across ranks as -a says).

        The statistics also hold the per-rank truth (:mod:`facts.per_rank`): ``rank_means``, every rank's
        mean (us, by rank), and with ``--iter-times`` ``iterations``, every rank's summary and sample of
        its iteration times (None without)."""
        cfg = self.cfg
        if cfg.warmup:
            self.loop(run, cfg.warmup, what, before, native)
        iters = cfg.iters or self.calibrate(run, what, before, native)
        with self.watchdog.watch(f"the barrier before timing {what}"):
            self.comm.barrier()
        stamps = self.loop(run, iters, what, before, native)
        mine = iteration_stats(stamps, divisor)
        cap = getattr(cfg, "iter_times", None)
        its = None
        if cap:
            per = np.diff(np.asarray(stamps, dtype=np.float64)) * (1e6 / divisor)
            its = per_rank.rank_iterations(per.tolist(), getattr(cfg, "iter_skip", 0), cap,
                                           cfg.seed * 100003 + self.t.rank)
        with self.watchdog.watch(f"gathering the times of {what}"):
            every = self.comm.allgather((mine, its))
        stats = aggregate([m for m, _ in every], cfg.average)
        stats["rank_means"] = [m["mean"] for m, _ in every]
        stats["iterations"] = [i for _, i in every] if cap else None
        return iters, stats
