"""Latency-bandwidth fits of measured collectives.

Three fits, all weighted least squares on *relative* error (every size counts
alike, from 8 B to 1 GiB):

* :func:`fit_affine`: at one rank count, t(n) = a + n * theta, the two
  numbers any alpha-beta model reduces to at fixed p.  Best for predicting
  other sizes at that p.
* :func:`fit_segmented`: the same line per size regime (eager/rendezvous
  protocols, algorithm switches, cache limits), the regimes chosen by
  leave-one-out cross-validation.  What the report and
  ``benchmarks/model_accuracy.py`` use to predict unseen sizes.
* :func:`fit_model`: across every rank count measured, each algorithm's
  formula from :mod:`facts.costmodel`, t = c_a(p)*alpha + c_b(p)*n/beta_eff,
  with alpha and beta_eff shared by all p.  The algorithm whose p-scaling
  fits best is chosen (and the others' errors kept).  With one rank count
  the algorithms cannot be told apart, and the fit says so.

gamma: within one algorithm c_g/c_b is the same at every p, so a
reduction's compute cost cannot be separated from its bandwidth by timing
that reduction alone.  It is separated when the same transport also measured
a collective that reduces nothing (allgather, broadcast, alltoall): that one
gives beta, and gamma = (1/beta_eff - 1/beta) * c_b/c_g.  Otherwise gamma is
reported as folded into beta_eff, never invented.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from analysis import physical
from facts import costmodel
from facts import spec as specs

__all__ = ["ROW_COLUMNS", "columns", "AffineFit", "SegmentedFit", "ModelFit", "fit_affine", "fit_segmented", "fit_model",
           "fit_transport", "fit_frame",
           "fit_rows"]


def _weighted_lstsq(A: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error for 1-3 unknowns."""
    w = 1.0 / t  # t within analysis.physical's bounds (_checked): nothing here overflows
    Aw, tw = A * w[:, None], t * w
    cols = list(range(A.shape[1]))
    while True:
        x = np.zeros(A.shape[1])
        if cols:
            sol, *_ = np.linalg.lstsq(Aw[:, cols], tw, rcond=None)
            x[cols] = sol
        negative = [c for c in cols if x[c] < 0]
        if not negative:
            return x
        cols.remove(min(negative, key=lambda c: x[c]))


def _errors(pred: np.ndarray, t: np.ndarray) -> Tuple[float, float, float]:
    with np.errstate(over="ignore", invalid="ignore"):  # squares of times near a float's limit: inf, not a warning
        rel = np.abs(pred - t) / t
        ss_res = float(np.sum((pred - t) ** 2))
        ss_tot = float(np.sum((t - t.mean()) ** 2)) or 1.0
        return float(np.median(rel)), float(rel.max()), 1.0 - ss_res / ss_tot


def _checked(sizes, times_s, ranks=None) -> Tuple[np.ndarray, ...]:
    """Sizes and times as float arrays of one length, else ValueError: within :mod:`analysis.physical`'s
    bounds (sizes 0 to 2^50 B, times 1 ns to 1e6 s: nothing a fit computes can overflow), ranks (where
    given) whole and >= 1."""
    n = np.asarray(sizes, dtype=float).ravel()
    t = np.asarray(times_s, dtype=float).ravel()
    if len(n) != len(t):
        raise ValueError(f"{len(n)} sizes but {len(t)} times")
    if not ((n >= 0) & (n <= physical.MAX_BYTES)).all():  # NaN fails every comparison
        raise ValueError("sizes must be finite, from 0 to 2^50 B")
    if not ((t >= physical.MIN_TIME_US * 1e-6) & (t <= physical.MAX_TIME_US * 1e-6)).all():
        raise ValueError("times must be finite and positive, from 1 ns to 1e6 s")
    if ranks is None:
        return n, t
    p = np.asarray(ranks, dtype=float).ravel()
    if len(p) != len(t) or not (np.isfinite(p).all() and (p >= 1).all() and (p == np.round(p)).all()):
        raise ValueError("ranks must be whole numbers >= 1, one per time")
    return n, t, p.astype(int)


@dataclass(frozen=True)
class AffineFit:
    """t(n) = latency + n * seconds_per_byte, at one rank count."""

    latency_s: float
    seconds_per_byte: float
    points: int
    median_rel_err: float
    max_rel_err: float
    r2: float

    def predict(self, n) -> np.ndarray:
        return self.latency_s + np.asarray(n, dtype=float) * self.seconds_per_byte

    @property
    def bandwidth(self) -> float:
        """1/theta in bytes/s (algorithm bandwidth for S, not per link)."""
        return 1.0 / self.seconds_per_byte if self.seconds_per_byte > 0 else float("inf")


def fit_affine(sizes: Sequence[float], times_s: Sequence[float]) -> AffineFit:
    n, t = _checked(sizes, times_s)
    if len(n) < 2 or len(set(n)) < 2:
        raise ValueError("an affine fit needs at least two distinct sizes")
    A = np.column_stack([np.ones_like(n), n])
    a, theta = _weighted_lstsq(A, t)
    med, mx, r2 = _errors(A @ np.array([a, theta]), t)
    return AffineFit(float(a), float(theta), len(n), med, mx, r2)


class _Line:
    """A regime's line alone, for a leave-one-out prediction: :func:`fit_affine`'s coefficients (the same
    arithmetic) without its error statistics, which nothing reads there."""

    __slots__ = ("latency_s", "seconds_per_byte")

    def __init__(self, latency_s: float, seconds_per_byte: float):
        self.latency_s, self.seconds_per_byte = latency_s, seconds_per_byte

    def predict(self, n) -> np.ndarray:
        return self.latency_s + np.asarray(n, dtype=float) * self.seconds_per_byte


def _line(n: np.ndarray, t: np.ndarray) -> _Line:
    """:func:`fit_affine`'s line of points already checked (fit_segmented checked them all): the same least
    squares on relative error, solved here in closed form (2 unknowns, columns scaled to unit length:
    within 1e-13 of lstsq's) where both coefficients come out >= 0, else by :func:`_weighted_lstsq`."""
    u = 1.0 / t
    v = n * u
    su, sv = math.sqrt(u @ u), math.sqrt(v @ v)
    if sv > 0:
        uu, vv = u / su, v / sv
        g, b1, b2 = float(uu @ vv), float(uu.sum()), float(vv.sum())
        det = 1.0 - g * g
        if det > 1e-9:
            a, theta = (b1 - b2 * g) / det / su, (b2 - b1 * g) / det / sv
            if a >= 0 and theta >= 0:
                return _Line(a, theta)
    a, theta = _weighted_lstsq(np.column_stack([np.ones_like(n), n]), t)
    return _Line(float(a), float(theta))


@dataclass(frozen=True)
class Segment:
    """One size regime of a :class:`SegmentedFit`: an affine fit over [lo, hi] bytes."""

    lo: float
    hi: float
    fit: AffineFit


@dataclass(frozen=True)
class SegmentedFit:
    """Piecewise latency-bandwidth model: one (latency, bandwidth) per size regime.

    Real transports are not one straight line from 8 B to 1 GiB: MPI switches
    from eager to rendezvous protocols, our shm transport from flat-eager to
    direct to ring, and bandwidth drops once the buffers no longer fit in the
    last-level cache.  Each regime is a Hockney/LogGP line t = a_i + n/B_i
    (the per-protocol parameters of LogGP).  The number of regimes is chosen
    by leave-one-out cross-validation, so a break is kept only when it
    predicts unseen sizes better, never just because it fits the seen ones.

    A size between two regimes (the boundary is only known to lie between the
    last size of one and the first of the next) is predicted by interpolating
    log t against log n between the two regimes' predictions at those sizes.
    """

    segments: Tuple[Segment, ...]
    points: int
    median_rel_err: float
    max_rel_err: float
    cv_rel_err: float  # median leave-one-out relative error of the chosen model

    def predict(self, n) -> np.ndarray:
        n = np.asarray(n, dtype=float)
        out = np.empty(n.shape)
        segs = self.segments
        for idx, x in np.ndenumerate(n):
            out[idx] = self._one(float(x), segs)
        return out

    @staticmethod
    def _one(x: float, segs) -> float:
        if x <= segs[0].hi:
            return float(segs[0].fit.predict(x))
        for lower, upper in zip(segs, segs[1:]):
            if x < upper.lo:  # in the gap between two regimes
                t0, t1 = float(lower.fit.predict(lower.hi)), float(upper.fit.predict(upper.lo))
                if t0 <= 0 or t1 <= 0:
                    return float(lower.fit.predict(x))
                w = math.log(x / lower.hi) / math.log(upper.lo / lower.hi)
                return math.exp((1 - w) * math.log(t0) + w * math.log(t1))
            if x <= upper.hi:
                return float(upper.fit.predict(x))
        return float(segs[-1].fit.predict(x))

    @property
    def breaks(self) -> List[Tuple[float, float]]:
        """(last size of a regime, first size of the next) for every break."""
        return [(a.hi, b.lo) for a, b in zip(self.segments, self.segments[1:])]

    def describe(self) -> str:
        parts = []
        for s in self.segments:
            bw = s.fit.bandwidth
            slope = f"n / {bw / 1e9:.3g} GB/s" if math.isfinite(bw) else "0 (flat: latency-bound)"
            parts.append(f"{_fmt_size(s.lo)}-{_fmt_size(s.hi)}: {s.fit.latency_s * 1e6:.2f} us + {slope}")
        return "; ".join(parts)


def _fmt_size(n: float) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            v = n / scale
            return (f"{v:.0f}" if v == int(v) else f"{v:.3g}") + unit
    return f"{n:.0f}"


def _segment_fits(n: np.ndarray, t: np.ndarray, cuts: Sequence[int], skip: Optional[int] = None,
                  memo: Optional[Dict] = None) -> Optional[List[Segment]]:
    """Each regime's fit of the points between ``cuts``, point ``skip`` left out (its regime one shorter).
    ``memo`` keeps each regime's fit by (first, end, point left out of it): the same points give the same
    fit, and leave-one-out asks for most regimes many times."""
    bounds = [0, *cuts, len(n)]
    segs = []
    for lo, hi in zip(bounds, bounds[1:]):
        left = skip if skip is not None and lo <= skip < hi else None
        key = (lo, hi, left)
        seg = memo.get(key, False) if memo is not None else False
        if seg is False:
            nn, tt = n[lo:hi], t[lo:hi]
            if left is not None:
                nn, tt = np.delete(nn, left - lo), np.delete(tt, left - lo)
            line = fit_affine if left is None else _line  # a left-out point's regime: its prediction alone
            seg = Segment(float(nn[0]), float(nn[-1]), line(nn, tt)) if len(set(nn.tolist())) >= 2 else None
            if memo is not None:
                memo[key] = seg
        if seg is None:
            return None
        segs.append(seg)
    return segs


def _candidate_cuts(m: int, max_breaks: int, min_points: int):
    from itertools import combinations

    yield ()
    for k in range(1, max_breaks + 1):
        for cuts in combinations(range(min_points, m - min_points + 1), k):
            if all(b - a >= min_points for a, b in zip((0, *cuts), (*cuts, m))):
                yield cuts


def fit_segmented(sizes: Sequence[float], times_s: Sequence[float], max_breaks: int = 2,
                  min_points: int = 3) -> SegmentedFit:
    """Piecewise affine fit; the breaks chosen by leave-one-out cross-validation.

    Each regime needs ``min_points`` distinct sizes.  Among models with 0 to
    ``max_breaks`` breaks, the one with the lowest median leave-one-out
    relative error wins; a tie goes to fewer breaks.
    """
    n, t = _checked(sizes, times_s)
    order = np.argsort(n, kind="stable")
    n, t = n[order], t[order]
    if len(set(n.tolist())) < 2:
        raise ValueError("a fit needs at least two distinct sizes")
    best = None
    memo: Dict = {}
    for cuts in _candidate_cuts(len(n), max_breaks, min_points):
        segs = _segment_fits(n, t, cuts, None, memo)
        if segs is None:
            continue
        errs = []
        for i in range(len(n)):
            shift = [c - (1 if c > i else 0) for c in cuts]
            if any(b - a < 2 for a, b in zip((0, *shift), (*shift, len(n) - 1))):
                continue  # leaving this point out empties a regime
            sub = _segment_fits(n, t, cuts, i, memo)  # the fit of the other points, regimes as cut
            if sub is None:
                continue
            pred = SegmentedFit._one(float(n[i]), sub)
            errs.append(abs(pred - t[i]) / t[i])
        if len(errs) < len(n) // 2:
            continue
        cv = float(np.median(errs))
        key = (round(cv, 9), len(cuts))
        if best is None or key < best[0]:
            best = (key, segs, cv)
    if best is None:
        f = fit_affine(n, t)
        return SegmentedFit((Segment(float(n[0]), float(n[-1]), f),), len(n), f.median_rel_err,
                            f.max_rel_err, float("nan"))
    _, segs, cv = best
    result = SegmentedFit(tuple(segs), len(n), 0.0, 0.0, cv)
    rel = np.abs(result.predict(n) - t) / t
    return SegmentedFit(tuple(segs), len(n), float(np.median(rel)), float(rel.max()), cv)


@dataclass(frozen=True)
class ModelFit:
    """An algorithm's formula fitted across rank counts for one transport and collective."""

    transport: str
    collective: str
    algorithm: str
    ranks: Tuple[int, ...]
    alpha: float  # s per step
    beta: float  # bytes/s per link per direction (effective: includes gamma unless separated)
    gamma: Optional[float]  # s/byte, when separated
    gamma_note: str
    points: int
    median_rel_err: float
    max_rel_err: float
    r2: float
    candidates: Dict[str, float] = field(default_factory=dict)  # algorithm -> median relative error
    distinguishable: bool = True

    def predict(self, n, p: int) -> np.ndarray:
        """Seconds for n bytes at p ranks (extrapolates in p beyond ``ranks``)."""
        ca, cb, cg = costmodel.coefficients(self.collective, self.algorithm, p)
        per_byte = cb / self.beta + (cg * self.gamma if self.gamma else 0.0)
        return ca * self.alpha + np.asarray(n, dtype=float) * per_byte

    def describe(self) -> str:
        g = f", gamma {self.gamma * 1e9:.3f} ns/B" if self.gamma is not None else ""
        return (f"{self.transport} {self.collective}: {self.algorithm}, alpha {self.alpha * 1e6:.2f} us, "
                f"beta {self.beta / 1e9:.2f} GB/s{g} ({self.gamma_note}); median error "
                f"{self.median_rel_err * 100:.1f} % over {self.points} points at p={list(self.ranks)}")


def _reduces(collective: str) -> bool:
    spec = specs.find(collective)
    return spec is not None and spec.reduces


def _fittable(collective: str) -> bool:
    """Has a cost formula and is defined at every rank count (not barrier, not pingpong)."""
    spec = specs.find(collective)
    return (collective in costmodel.ALGORITHMS and spec is not None and spec.sized
            and spec.exact_ranks is None)


def fit_model(collective: str, sizes: Sequence[float], ranks: Sequence[int], times_s: Sequence[float],
              transport: str = "?", algorithms: Optional[Sequence[str]] = None,
              beta_ref: Optional[float] = None) -> ModelFit:
    """Fit each candidate algorithm jointly over all points; return the best.

    ``beta_ref`` (bytes/s), from a non-reducing collective of the same
    transport, separates gamma for reductions.
    """
    n, t, p = _checked(sizes, times_s, ranks)
    if len(t) < 2:
        raise ValueError("a fit needs at least two points")
    names = list(algorithms or costmodel.ALGORITHMS[collective])
    fits = {}
    ps, where = np.unique(p, return_inverse=True)  # the coefficients are a function of p alone: once per rank count
    for algo in names:
        co = np.array([costmodel.coefficients(collective, algo, int(q)) for q in ps], float).reshape(-1, 3)[where]
        A = np.column_stack([co[:, 0], co[:, 1] * n])
        if not A[:, 0].any() and not A[:, 1].any():
            continue
        x = _weighted_lstsq(A, t)
        med, mx, r2 = _errors(A @ x, t)
        fits[algo] = (x, med, mx, r2, co)
    if not fits:
        raise ValueError(f"nothing to fit for {collective} at p={sorted(set(p))} (one rank moves nothing)")
    several_p = len(set(p.tolist())) > 1
    default = costmodel.DEFAULT.get(collective)
    if several_p:
        best = min(fits, key=lambda a: (round(fits[a][1], 6), a != default))
    else:
        best = default if default in fits else next(iter(fits))
    (alpha, inv_beta), med, mx, r2, co = fits[best]
    beta_eff = 1.0 / inv_beta if inv_beta > 0 else float("inf")
    gamma, note = None, "gamma folded into beta"
    if not _reduces(collective) or not co[:, 2].any():
        note = "no reduction"
    elif beta_ref:
        ratio = float(co[0, 1] / co[0, 2]) if co[0, 2] else 0.0
        g = (inv_beta - 1.0 / beta_ref) * ratio
        if g >= 0:
            gamma, beta_eff, note = g, beta_ref, "gamma from beta of a non-reducing collective"
        else:
            note = "gamma folded into beta (the reference bandwidth was lower)"
    ties = [a for a in fits if a != best and abs(fits[a][1] - med) <= max(1e-9, 1e-6 * med)]
    if not several_p:
        note += "; one rank count: algorithms indistinguishable"
    elif ties:
        note += "; equally good: " + ", ".join(ties) + " (their formulas differ by constant factors only)"
    return ModelFit(transport, collective, best, tuple(sorted(set(p.tolist()))), float(alpha), beta_eff, gamma,
                    note, len(t), med, mx, r2, {a: f[1] for a, f in fits.items()}, several_p)


ROW_COLUMNS = ("nranks", "size_bytes", "time_us", "algbw_gbs", "busbw_gbs", "status", "placement", "op")  # fit_rows'


def columns(df, *names: str):
    """``df`` with only the columns named (those it has) and :data:`ROW_COLUMNS`: grouping a frame of a
    million rows splits every column it holds."""
    keep = dict.fromkeys(names + ROW_COLUMNS)
    return df[[c for c in keep if c in df]]


def fit_rows(df, min_ranks: int = 2, **match):
    """Usable points: ``min_ranks`` or more ranks (a fit needs traffic between ranks), a size, a
    time, nothing non-physical (:mod:`analysis.physical`: the loader leaves such rows out with a warning,
    this keeps them out of frames made otherwise); out of place and op sum where present."""
    sub = df
    for k, v in match.items():
        sub = sub[sub[k] == v]
    sub = sub[(sub["nranks"] >= min_ranks) & (sub["size_bytes"] > 0) & (sub["time_us"] > 0)]
    sub = sub[physical.frame_mask(sub)]
    if "placement" in sub and (sub["placement"] == "out-of-place").any():
        sub = sub[sub["placement"] == "out-of-place"]
    if "op" in sub and (sub["op"] == "sum").any():
        sub = sub[sub["op"].isin(["sum"])]
    return sub


def fit_transport(df, transport: str) -> List[ModelFit]:
    """Model fits for every collective one transport measured (non-reducing ones first)."""
    sub = df[(df["transport"] == transport) & (df.get("kind", "measured") == "measured")]
    sub = columns(sub, "collective", "oversubscribed")  # what is read below: a million rows copied once less
    out: List[ModelFit] = []
    beta_ref = None
    order = sorted(set(sub["collective"]), key=lambda c: (_reduces(c), c))
    for collective in order:
        if not _fittable(collective):
            continue
        rows = fit_rows(sub, collective=collective)
        if len(rows) < 2 or rows["size_bytes"].nunique() < 2:
            continue
        m = fit_model(collective, rows["size_bytes"], rows["nranks"], rows["time_us"] * 1e-6,
                      transport=transport, beta_ref=beta_ref)
        if "oversubscribed" in rows and rows["oversubscribed"].fillna(False).astype(bool).any():
            over = sorted(set(rows.loc[rows["oversubscribed"].fillna(False).astype(bool), "nranks"].astype(int)))
            m = replace(m, gamma_note=m.gamma_note + f"; p={over} ran oversubscribed (ranks sharing cores): "
                        "the fit's dependence on p reflects core sharing, not the transport")
        if not _reduces(collective) and beta_ref is None and np.isfinite(m.beta):
            beta_ref = m.beta
        out.append(m)
    return out


def fit_frame(df) -> List[ModelFit]:
    """Model fits for every measured transport in a results frame."""
    fits: List[ModelFit] = []
    for transport in sorted(set(df["transport"])):
        fits.extend(fit_transport(df, transport))
    return fits


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")
