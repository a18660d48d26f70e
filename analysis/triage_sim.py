"""The triage on paper: the pairs schedule and the detector at cluster sizes, with planted faults (pure).

:func:`simulate` draws what one triage would measure on ``hosts`` hosts:
every host pair's large-message bandwidth and small-message time, and every
host's CPU probe, each a clean value times lognormal noise of coefficient of
variation ``cv``, with faults planted:

* a slow host: its CPU probe takes ``cpu_factor`` (2x: half its share) and its
  pairs' small-message time 1.5x;
* a slow host link: every pair it is in gets ``bw_factor`` (0.2x) bandwidth;
* a slow link: that one pair gets ``bw_factor``.

:func:`trial` runs :func:`analysis.triage_detect.detect` on it and scores the
verdicts against the truth: recall (planted faults named with the right
kind) and false suspects.  The schedule is :func:`collectives.split.pair_rounds`'s:
H-1 rounds (H for odd H) of H/2 pairs, two messages sizes per pair.
``python -m analysis.triage_sim`` prints the table docs/triage.md holds.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from analysis.triage_detect import Evidence, detect

__all__ = ["Planted", "simulate", "trial", "Score", "table", "main"]


@dataclass(frozen=True)
class Planted:
    slow_hosts: Tuple[int, ...] = ()
    slow_host_links: Tuple[int, ...] = ()
    slow_links: Tuple[Tuple[int, int], ...] = ()

    def truth(self, names: Sequence[str]) -> Dict[str, str]:
        out = {names[h]: "slow host" for h in self.slow_hosts}
        out.update({names[h]: "slow host link" for h in self.slow_host_links})
        out.update({f"{names[min(a, b)]}-{names[max(a, b)]}": "slow link" for a, b in self.slow_links})
        return out


def _noise(rng, cv: float, size) -> np.ndarray:
    sigma = math.sqrt(math.log1p(cv * cv))
    return rng.lognormal(-sigma * sigma / 2, sigma, size)


def simulate(hosts: int, planted: Planted, cv: float, seed: int, bw_factor: float = 0.2,
             cpu_factor: float = 2.0) -> Evidence:
    """One triage's evidence (see the module docstring); host names h0..h{H-1}."""
    rng = np.random.default_rng(seed)
    names = [f"h{i}" for i in range(hosts)]
    a, b = np.triu_indices(hosts, 1)
    bw = 1.0 * _noise(rng, cv, a.size)
    lat = 10.0 * _noise(rng, cv, a.size)
    for h in planted.slow_host_links:
        bw[(a == h) | (b == h)] *= bw_factor
    for h in planted.slow_hosts:
        lat[(a == h) | (b == h)] *= 1.5
    for x, y in planted.slow_links:
        bw[(a == min(x, y)) & (b == max(x, y))] *= bw_factor
    cpu = _noise(rng, cv, hosts)
    for h in planted.slow_hosts:
        cpu[h] *= cpu_factor
    keys = list(zip(a.tolist(), b.tolist()))
    return Evidence(names, dict(enumerate(cpu.tolist())), dict(zip(keys, bw.tolist())),
                    dict(zip(keys, lat.tolist())))


@dataclass(frozen=True)
class Score:
    planted: int
    found: int  # planted faults named with the right verdict
    false: int  # suspects that are no planted fault


def trial(hosts: int, planted: Planted, cv: float, seed: int) -> Score:
    ev = simulate(hosts, planted, cv, seed)
    truth = planted.truth(ev.hosts)
    named = {s.who: s.kind for s in detect(ev).suspects}
    found = sum(1 for who, kind in truth.items() if named.get(who) == kind)
    return Score(len(truth), found, sum(1 for who in named if who not in truth))


def _plant(hosts: int, rng) -> Planted:
    """Two slow hosts, two slow host links and two slow links on distinct hosts."""
    pick = rng.choice(hosts, size=8, replace=False).tolist()
    return Planted(tuple(pick[:2]), tuple(pick[2:4]), ((pick[4], pick[5]), (pick[6], pick[7])))


def table(sizes: Sequence[int] = (64, 512, 4096), cvs: Sequence[float] = (0.05, 0.15), trials: int = 20,
          seed: int = 1, out=None) -> List[Dict]:
    """Per (hosts, cv): rounds, messages, and over ``trials`` draws recall and false suspects, with faults
    planted and clean."""
    rows = []
    for hosts in sizes:
        rounds = hosts - 1 if hosts % 2 == 0 else hosts
        pairs = hosts * (hosts - 1) // 2
        n = trials if hosts <= 512 else max(1, trials // 5)  # 4,096 hosts: 8.4 million pairs a draw
        for cv in cvs:
            rng = np.random.default_rng(seed + hosts)
            planted = [trial(hosts, _plant(hosts, rng), cv, seed + t) for t in range(n)]
            clean = [trial(hosts, Planted(), cv, seed + 1000 + t) for t in range(n)]
            row = dict(hosts=hosts, cv=cv, rounds=rounds, pairs=pairs, messages=2 * 2 * pairs,
                       recall=sum(s.found for s in planted) / sum(s.planted for s in planted),
                       false_planted=sum(s.false for s in planted), false_clean=sum(s.false for s in clean),
                       trials=n)
            rows.append(row)
            if out is not None:
                print(f"| {hosts} | {cv:.2f} | {rounds} | {pairs:,} | {row['messages']:,} | {row['recall']:.3f} | "
                      f"{row['false_planted']} | {row['false_clean']} | {n} |", file=out, flush=True)
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m analysis.triage_sim [CV ...]``: the table of docs/triage.md (cv defaults 0.05 and 0.15)."""
    args = list(sys.argv[1:] if argv is None else argv)
    cvs = [float(a) for a in args] or [0.05, 0.15]
    print("# SIMULATED (analysis.triage_sim): lognormal noise, planted faults; no measurement")
    print("| hosts | CV | rounds | pairs | messages | recall | false suspects (planted draws) | "
          "false suspects (clean draws) | draws |")
    print("|---|---|---|---|---|---|---|---|---|")
    table(cvs=cvs, out=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
