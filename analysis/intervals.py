"""Prediction intervals for the step model, built from what was measured (pure: no torch, no MPI).

A predicted step carries an interval at ``level`` (default 80 %):

    s^2  = s_model^2 + s_input^2
    step x exp(-k), step x exp(+k),   k = t(df, (1 + level) / 2) x s

- **s_model**: the root mean square of the log errors, ln(predicted /
  measured), of the calibration records, each predicted by terms fitted
  on the calibration records of the *other* models (leave one model out
  inside the calibration set, :func:`analysis.held_out.residuals`), so the
  error of carrying terms from one model to another is in it, with the
  round-to-round and job-to-job noise of those records' own measurements;
  taken about 0, not about their mean, so a bias widens it.  ``df`` is the
  number of those errors: the Student t quantile widens the interval when
  they are few.
- **s_input**: the noise of the prediction's own input, the alone step it
  starts from: the standard error of a median of R rounds, 1.2533 x the
  robust spread of the rounds (1.4826 x their median absolute deviation,
  over the median) / sqrt(R).

Efficiency E = alone / step maps the step's interval onto E's (a longer
step is a lower E).  No constant here was chosen by looking at held-out
runs: the level is the user's, the quantile is Student's, and every spread
is measured.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

__all__ = ["LEVEL", "t_quantile", "Interval", "rms", "median_se", "rounds_se", "step_interval", "efficiency_interval",
           "Coverage", "coverage"]

LEVEL = 0.8


def _t_pdf(x: float, df: float) -> float:
    c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(c - (df + 1) / 2 * math.log1p(x * x / df))


def _t_cdf_above_half(x: float, df: float, steps: int = 400) -> float:
    """P(T <= x) for x >= 0, by Simpson's rule on the density from 0 to x."""
    if x <= 0:
        return 0.5
    h = x / steps
    s = _t_pdf(0.0, df) + _t_pdf(x, df)
    for i in range(1, steps):
        s += (4 if i % 2 else 2) * _t_pdf(i * h, df)
    return 0.5 + s * h / 3


@functools.lru_cache(maxsize=256)
def t_quantile(df: float, p: float) -> float:
    """The p quantile (p in [0.5, 1)) of Student's t with ``df`` degrees of freedom; the normal's for df
    of 1000 or more.  ValueError outside those ranges."""
    if not 0.5 <= p < 1:
        raise ValueError(f"quantile {p}: give p in [0.5, 1)")
    if df < 1:
        raise ValueError(f"{df} degrees of freedom: at least 1")
    if df >= 1000:
        return statistics.NormalDist().inv_cdf(p)
    lo, hi = 0.0, 1.0
    while _t_cdf_above_half(hi, df) < p:
        hi *= 2
        if hi > 1e6:
            raise ValueError(f"t quantile {p} at {df} degrees of freedom beyond 1e6")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _t_cdf_above_half(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float
    level: float = LEVEL
    how: str = ""

    def contains(self, x: float) -> bool:
        return self.lo <= x <= self.hi

    def half_width(self, centre: float) -> float:
        """Half the width as a share of ``centre``."""
        return 0.5 * (self.hi - self.lo) / centre if centre else float("nan")


def rms(values: Iterable[float]) -> float:
    """Root mean square (about 0); ValueError when empty."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("no values")
    return math.sqrt(sum(x * x for x in v) / len(v))


def median_se(values: Sequence[float]) -> Optional[float]:
    """The relative standard error of the median of ``values``: 1.2533 x 1.4826 x MAD / median / sqrt(n);
    None with fewer than three values or a median <= 0."""
    v = [float(x) for x in values if isinstance(x, (int, float)) and x == x]
    if len(v) < 3:
        return None
    med = statistics.median(v)
    if med <= 0:
        return None
    mad = statistics.median(abs(x - med) for x in v)
    return 1.2533 * 1.4826 * mad / med / math.sqrt(len(v))


def rounds_se(rec: dict, key: str = "alone_ms") -> Optional[float]:
    """:func:`median_se` of a replicate record's per-round ``key`` (``alone_ms``: rank 0 alone)."""
    vals = [r.get(key) for r in rec.get("rounds") or [] if isinstance(r, dict)]
    return median_se([x for x in vals if isinstance(x, (int, float))])


def step_interval(step: float, s_model: float, df: int, s_input: float = 0.0, level: float = LEVEL,
                  how: str = "") -> Interval:
    """[step e^-k, step e^k], k = t(df, (1 + level)/2) sqrt(s_model^2 + s_input^2)."""
    if not 0 < level < 1:
        raise ValueError(f"interval level {level}: give a share in (0, 1), e.g. 0.8")
    k = t_quantile(max(1, int(df)), 0.5 * (1 + level)) * math.sqrt(s_model ** 2 + (s_input or 0.0) ** 2)
    return Interval(step * math.exp(-k), step * math.exp(k), level, how)


def efficiency_interval(alone: float, step: Interval, n: int = 1) -> Interval:
    """E = alone / (n x step): a step's interval as one of E (the ends swap).  ``n`` > 1 for strong
    scaling (alone at the global batch over n ranks' steps at batch / n)."""
    return Interval(alone / (n * step.hi), alone / (n * step.lo), step.level, step.how)


@dataclass(frozen=True)
class Coverage:
    points: int
    inside: int
    median_half_width: float  # share of the predicted step

    @property
    def share(self) -> float:
        return self.inside / self.points if self.points else float("nan")


def coverage(rows: Sequence[dict]) -> Coverage:
    """Of rows with ``measured``, ``predicted`` and ``interval`` (an :class:`Interval`): how many measured
    values fall inside their interval, and the median half-width over the predicted values."""
    rows = [r for r in rows if r.get("interval") is not None]
    inside = sum(1 for r in rows if r["interval"].contains(r["measured"]))
    halves: List[float] = [r["interval"].half_width(r["predicted"]) for r in rows]
    return Coverage(len(rows), inside, statistics.median(halves) if halves else float("nan"))
