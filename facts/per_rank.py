"""Per-rank truth in a record: which rank (and host) was slowest, every rank's time, per-iteration samples.

Every measured record of a timed loop carries, beside the aggregate of
``-a``:

* ``slowest_rank``, ``slowest_host``: the rank whose loop took longest on
  average, and its host (also in the CSV);
* ``rank_time_us``: each rank's mean time per iteration (us), indexed by rank
  (JSON only; left out above :data:`RANK_LIST_MAX` ranks, where
  ``host_time_us`` is the compact view);
* ``rank_host``: each rank's host, indexed by rank (JSON; left out with
  ``rank_time_us``);
* ``host_time_us``: per host, ``[its slowest rank, that rank's time]`` (JSON).

With ``--iter-times[=CAP]`` (JSON only):

* ``iter_us``: per rank (keys are rank numbers as text), its per-iteration
  times (us) after the first ``--iter-skip`` K, at most CAP of them: beyond
  CAP an order-keeping uniform sample (:func:`reservoir`, seeded);
* ``iter_stats``: per rank, over all its iterations after the skip (not the
  sample): ``n``, ``mean``, ``p50``, ``p95``, ``p99``, ``stdev`` and ``cv``
  (stdev over mean).

Pure: no MPI.  The runner core gathers the numbers
(:class:`collectives.timed_loop.Timing`); :func:`fields` shapes them.
"""

from __future__ import annotations

import random
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = ["RANK_LIST_MAX", "DEFAULT_CAP", "FIELDS_JSON", "reservoir", "iteration_summary", "rank_iterations",
           "fields", "host_of_rank"]

RANK_LIST_MAX = 1024
DEFAULT_CAP = 1000  # --iter-times without a number
FIELDS_JSON = ("rank_time_us", "rank_host", "host_time_us", "iter_us", "iter_stats")  # nested: JSON Lines only


def reservoir(values: Sequence[float], cap: int, seed: int) -> List[float]:
    """At most ``cap`` of ``values``, each kept with the same chance, in their order (all if fewer)."""
    if len(values) <= cap:
        return list(values)
    keep = sorted(random.Random(seed).sample(range(len(values)), cap))
    return [values[i] for i in keep]


def iteration_summary(per_us: Sequence[float]) -> Dict[str, float]:
    """n, mean, p50, p95, p99, stdev (sample) and cv of one rank's iteration times (us)."""
    a = np.asarray(per_us, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    mean = float(a.mean())
    stdev = float(a.std(ddof=1)) if a.size > 1 else 0.0
    p50, p95, p99 = (float(v) for v in np.percentile(a, [50, 95, 99]))
    return {"n": int(a.size), "mean": mean, "p50": p50, "p95": p95, "p99": p99, "stdev": stdev,
            "cv": stdev / mean if mean > 0 else None}


def rank_iterations(per_us: Sequence[float], skip: int, cap: int, seed: int) -> Dict:
    """One rank's share of ``--iter-times``: its summary over all iterations after ``skip``, and a sample."""
    kept = [float(v) for v in per_us[skip:]]
    return {"stats": iteration_summary(kept), "samples": [round(v, 4) for v in reservoir(kept, cap, seed)]}


def host_of_rank(hosts: Mapping[str, Sequence[int]]) -> Dict[int, str]:
    """{rank: host} from a context's ``{host: [ranks]}``."""
    return {int(r): h for h, ranks in hosts.items() for r in ranks}


def fields(rank_means: Sequence[float], hosts: Mapping[int, str],
           iterations: Optional[Sequence[Dict]] = None, ranks: Optional[Sequence[int]] = None) -> Dict:
    """The per-rank fields of a record from every rank's mean time (us, indexed by rank), ``{rank: host}``
    and, with ``--iter-times``, every rank's :func:`rank_iterations`.  ``ranks``: the job's rank of each
    position when the measurement ran in a group of the job (``--split``; the lists stay indexed by
    position, ``group_ranks`` names them); rank numbers in the other fields are the job's."""
    means = [float(t) for t in rank_means]
    world = list(ranks) if ranks is not None else list(range(len(means)))
    top = int(np.argmax(means)) if means else None
    per_host: Dict[str, List] = {}
    for i, t in enumerate(means):
        h = hosts.get(i, "?")
        if h not in per_host or t > per_host[h][1]:
            per_host[h] = [world[i], round(t, 4)]
    out = {"slowest_rank": world[top] if top is not None else None,
           "slowest_host": hosts.get(top) if top is not None else None,
           "host_time_us": per_host,
           "rank_time_us": [round(t, 4) for t in means] if len(means) <= RANK_LIST_MAX else None,
           "rank_host": [hosts.get(r, "?") for r in range(len(means))] if len(means) <= RANK_LIST_MAX else None}
    if iterations is not None:
        out["iter_us"] = {str(world[i]): it["samples"] for i, it in enumerate(iterations)}
        out["iter_stats"] = {str(world[i]): it["stats"] for i, it in enumerate(iterations)}
    return out
