"""Triage: name the slow host, host link or link from pairwise rounds, with evidence and one verdict each (pure).

Evidence (:class:`Evidence`): per host its CPU probe time, and per pair of
hosts the large-message bandwidth and small-message latency between them
(the ``--split pairs`` rounds of :mod:`collectives.triage`).  Each figure is
judged against the median of its peers, on a log scale, with a robust noise
scale (1.4826 x the median absolute deviation):

* **slow host**: its CPU probe is out of line (slower than its peers' median
  by more than both the statistical bar and :data:`MIN_RATIO`); its pairs'
  latency is shown as evidence.  Its slow pairs are explained by it.
* **slow host link**: every pair it is in is slow in bandwidth (the median of
  its pairs' bandwidth out of line) while its CPU probe is normal.
* **slow link X-Y**: that one pair is slow in bandwidth, and neither host is
  slow in its other pairs.
* A cluster whose links are all slow is said as such, with ``model_gbs``
  (a fabric's link peak): "all links at 31 % of the model"; it is never
  blamed on a host.

The statistical bar is Bonferroni's: a figure is out of line when its
deviation exceeds ``z`` robust standard deviations with ``z`` the normal
quantile of 1 - :data:`ALPHA` / (number of figures judged), so the chance of
any false suspect in a clean cluster stays near ALPHA whatever its size;
:data:`MIN_RATIO` (1.5x) keeps a statistically clear but small difference
from being a suspect.  Both come from the simulation (:mod:`analysis.triage_sim`,
docs/triage.md), not from the benchmark's runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Dict, List, Optional, Tuple

import numpy as np

__all__ = ["ALPHA", "MIN_RATIO", "MIN_SIGMA", "Evidence", "Suspect", "Finding", "detect", "z_bar", "robust_sigma"]

ALPHA = 0.01  # family-wise chance of a false suspect in a clean cluster
MIN_RATIO = 1.5  # a suspect is at least this much slower than its peers' median
MIN_SIGMA = 0.01  # the noise scale never counts as below 1 % (identical figures)


@dataclass
class Evidence:
    """What the triage measured: host names, and per host / per pair (index pairs a < b) its figures."""

    hosts: List[str]
    cpu_s: Dict[int, float] = field(default_factory=dict)  # host -> CPU probe time (s)
    bw_gbs: Dict[Tuple[int, int], float] = field(default_factory=dict)  # pair -> large-message bandwidth
    lat_us: Dict[Tuple[int, int], float] = field(default_factory=dict)  # pair -> small-message time
    model_gbs: Optional[float] = None  # a fabric model's bandwidth for one pair, when given


@dataclass(frozen=True)
class Suspect:
    kind: str  # "slow host", "slow host link", "slow link"
    who: str  # "emu3" or "emu2-emu5"
    ratio: float  # how many times slower than its peers' median
    evidence: str


@dataclass
class Finding:
    suspects: List[Suspect]
    notes: List[str]

    @property
    def clean(self) -> bool:
        return not self.suspects


def robust_sigma(values) -> float:
    """1.4826 x the median absolute deviation from the median (the standard deviation of normal noise)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return MIN_SIGMA
    return max(MIN_SIGMA, 1.4826 * float(np.median(np.abs(v - np.median(v)))))


def z_bar(tests: int, alpha: float = ALPHA) -> float:
    """The one-sided normal quantile a deviation must pass so that ``tests`` clean figures give a false
    suspect with chance ``alpha`` at most (Bonferroni)."""
    return NormalDist().inv_cdf(1 - alpha / max(1, tests))


def _matrix(n: int, pairs: Dict[Tuple[int, int], float]) -> np.ndarray:
    m = np.full((n, n), np.nan, dtype=np.float64)
    if pairs:
        ab = np.array(list(pairs.keys()), dtype=np.int64)
        v = np.array(list(pairs.values()), dtype=np.float64)
        v = np.where(v > 0, v, np.nan)
        m[ab[:, 0], ab[:, 1]] = v
        m[ab[:, 1], ab[:, 0]] = v
    return m


def detect(ev: Evidence, alpha: float = ALPHA, min_ratio: float = MIN_RATIO) -> Finding:
    """Suspects with evidence (see the module docstring), worst first, and notes about the cluster."""
    n = len(ev.hosts)
    names = ev.hosts
    floor = math.log(min_ratio)
    suspects: List[Suspect] = []
    notes: List[str] = []
    # -- CPU probe: slow hosts
    slow_cpu = set()
    if ev.cpu_s:
        idx = sorted(ev.cpu_s)
        logs = np.log(np.array([ev.cpu_s[i] for i in idx], dtype=np.float64))
        med = float(np.median(logs))
        sigma = robust_sigma(logs)
        bar = max(z_bar(len(idx), alpha) * sigma, floor)
        lat = _matrix(n, ev.lat_us)
        lat_med = float(np.nanmedian(lat)) if np.isfinite(lat).any() else None
        for i, v in zip(idx, logs):
            if v - med > bar:
                slow_cpu.add(i)
                mine = lat[i][np.isfinite(lat[i])]
                lat_text = (f"; its pairs' small-message time {float(np.median(mine)) / lat_med:.2f}x the median"
                            if lat_med and mine.size else "")
                suspects.append(Suspect("slow host", names[i], math.exp(v - med),
                                        f"CPU probe {math.exp(v - med):.2f}x its peers' median "
                                        f"(bar {math.exp(bar):.2f}x){lat_text}"))
    # -- pair bandwidth: slow host links, then slow links
    bw = _matrix(n, ev.bw_gbs)
    if np.isfinite(bw).sum() >= 2:
        upper = bw[np.triu_indices(n, 1)]
        upper = upper[np.isfinite(upper)]
        med_bw = float(np.median(upper))
        d = np.log(bw) - math.log(med_bw)
        sigma = robust_sigma(np.log(upper) - math.log(med_bw))
        counts = np.isfinite(d).sum(axis=1)
        host_score = np.full(n, np.nan)
        has = counts > 0
        host_score[has] = np.nanmedian(d[has], axis=1)
        # The median of k pairs varies as 1.2533 sigma / sqrt(k) (k: a host's usual pair count).
        k = int(np.median(counts[has])) if has.any() else 1
        host_bar = max(z_bar(n, alpha) * 1.2533 * sigma / math.sqrt(max(1, k)), floor)
        slow_link_host = set()
        for i in range(n):
            s = host_score[i]
            if np.isfinite(s) and -s > host_bar and i not in slow_cpu and counts[i] >= 2:
                slow_link_host.add(i)
                suspects.append(Suspect("slow host link", names[i], math.exp(-s),
                                        f"all {int(counts[i])} of its pairs slow: median bandwidth "
                                        f"{math.exp(s) * 100:.0f} % of the cluster's median "
                                        f"({med_bw:.3g} GB/s); CPU probe normal"))
        pair_bar = max(z_bar(len(upper), alpha) * sigma, floor)
        explained = slow_cpu | slow_link_host
        a, b = np.where(np.triu(np.isfinite(d) & (-d > pair_bar), 1))
        for i, j in zip(a.tolist(), b.tolist()):
            if i in explained or j in explained:
                continue
            suspects.append(Suspect("slow link", f"{names[i]}-{names[j]}", math.exp(-d[i, j]),
                                    f"{bw[i, j]:.3g} GB/s, {math.exp(d[i, j]) * 100:.0f} % of the median "
                                    f"({med_bw:.3g} GB/s); both hosts normal in their other pairs"))
        if ev.model_gbs:
            share = med_bw / ev.model_gbs
            notes.append(f"all links at {share * 100:.0f} % of the model ({med_bw:.3g} of {ev.model_gbs:.3g} GB/s, "
                         "median over pairs)" + ("" if share >= 0.5 else ": the whole cluster is slow, "
                                                  "no host is to blame"))
            if share < 0.5:
                suspects.append(Suspect("slow cluster", "all links", 1 / share,
                                        f"median pair bandwidth {share * 100:.0f} % of the model"))
        notes.append(f"{len(upper)} pairs of {n} hosts: median bandwidth {med_bw:.3g} GB/s, noise "
                     f"{sigma * 100:.1f} % (robust); a pair is out of line below {math.exp(-pair_bar) * 100:.0f} % "
                     f"of the median, a host's median below {math.exp(-host_bar) * 100:.0f} %")
    suspects.sort(key=lambda s: -s.ratio)
    return Finding(suspects, notes)
