"""Latency-bandwidth (alpha-beta-gamma) cost of every collective and algorithm.

Every formula has the form

    t(n, p) = c_a(p) * alpha  +  (c_b(p) / beta  +  c_g(p) * gamma) * n

with p ranks, n = S bytes as the harness reports it (the vector for
allreduce, broadcast and reduce; the gathered total for allgather; the total
input for reduce_scatter; one rank's send buffer for alltoall), alpha the
latency of one step (s), beta the bandwidth of one link per direction
(bytes/s) and gamma the reduction cost (s/byte).  So each algorithm is just
its three coefficients, which also makes fitting a linear problem.

Sources.  Thakur, Rabenseifner & Gropp, "Optimization of Collective
Communication Operations in MPICH", IJHPCA 19(1), 2005 (T05), §2-4 and
Table 1; Chan, Heimlich, Purkayastha & van de Geijn, "Collective
communication: theory, practice, and experience", CCPE 19(13), 2007 (C07);
nccl-tests doc/PERFORMANCE.md for the bus-bandwidth factors.  Where p is not
a power of two, lg p is rounded up (T05 adds a step for the remainder).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Tuple

__all__ = ["ALGORITHMS", "DEFAULT", "coefficients", "time", "lg"]

Coeffs = Tuple[float, float, float]


def lg(p: int) -> int:
    """ceil(log2 p), 0 for p = 1."""
    return 0 if p <= 1 else math.ceil(math.log2(p))


def _frac(p: int) -> float:
    return (p - 1) / p


# Each entry: p -> (c_a, c_b, c_g).  Docstring-style source next to each.
ALGORITHMS: Dict[str, Dict[str, Callable[[int], Coeffs]]] = {
    "allreduce": {
        # T05 §4.4: reduce-scatter then allgather around a ring: 2(p-1) steps, each rank sends 2(p-1)/p n.
        "ring": lambda p: (2 * (p - 1), 2 * _frac(p), _frac(p)),
        # T05 §4.4: recursive doubling, lg p steps exchanging the whole vector.
        "recursive_doubling": lambda p: (lg(p), lg(p), lg(p)),
        # T05 §4.4: Rabenseifner, recursive-halving reduce-scatter + recursive-doubling allgather.
        "rabenseifner": lambda p: (2 * lg(p), 2 * _frac(p), _frac(p)),
        # T05 §4.4: binomial-tree reduce to a root, then binomial broadcast.
        "binomial": lambda p: (2 * lg(p), 2 * lg(p), lg(p)),
        # Direct (all peers at once, as shm and switched fabrics allow): every rank reduces its 1/p
        # slice reading all peers in one step, then gathers the other slices in one step.
        "direct": lambda p: (2 if p > 1 else 0, 2 * _frac(p), _frac(p)),
        # Full mesh with one link per peer (Gaudi's on-chip RoCE ports, a GroqNode's C2C links): the
        # direct algorithm with the p-1 slices of each phase on p-1 links at once; beta is one link's.
        "mesh": lambda p: (2 if p > 1 else 0, 2 / p if p > 1 else 0, _frac(p)),
        # Pipelined k-ary tree (Cerebras SwarmX): reduce up and broadcast down the tree, each byte
        # crossing a link once per direction, latency growing with the depth (fan-out 2 here).
        "pipelined_tree": lambda p: (2 * lg(p), 2.0 if p > 1 else 0.0, 1.0 if p > 1 else 0.0),
    },
    "reduce_scatter": {
        "ring": lambda p: (p - 1, _frac(p), _frac(p)),  # C07 §6: ring (bucket) reduce-scatter
        "recursive_halving": lambda p: (lg(p), _frac(p), _frac(p)),  # T05 §4.3
        "direct": lambda p: (1 if p > 1 else 0, _frac(p), _frac(p)),
        "binomial": lambda p: (2 * lg(p), lg(p) + _frac(p), lg(p)),  # binomial reduce + scatter (C07 §5)
        "mesh": lambda p: (1 if p > 1 else 0, 1 / p if p > 1 else 0, _frac(p)),  # one link per peer
    },
    "allgather": {
        "ring": lambda p: (p - 1, _frac(p), 0.0),  # T05 §4.1
        "recursive_doubling": lambda p: (lg(p), _frac(p), 0.0),  # T05 §4.1
        "direct": lambda p: (1 if p > 1 else 0, _frac(p), 0.0),
        "binomial": lambda p: (2 * lg(p), _frac(p) + lg(p), 0.0),  # binomial gather + broadcast (C07 §5)
        "mesh": lambda p: (1 if p > 1 else 0, 1 / p if p > 1 else 0, 0.0),  # one link per peer
    },
    "broadcast": {
        "binomial": lambda p: (lg(p), lg(p), 0.0),  # T05 §4.2
        "scatter_allgather": lambda p: (lg(p) + p - 1, 2 * _frac(p), 0.0),  # van de Geijn, T05 §4.2
        "pipelined_ring": lambda p: (p - 1, 1.0 if p > 1 else 0.0, 0.0),  # C07 §7: chain, long messages
        "direct": lambda p: (1 if p > 1 else 0, p - 1, 0.0),  # the root sends to every rank over one link
        "mesh": lambda p: (1 if p > 1 else 0, 1.0 if p > 1 else 0.0, 0.0),  # the root uses p-1 links at once
    },
    "reduce": {
        "binomial": lambda p: (lg(p), lg(p), lg(p)),  # T05 §4.5
        "rabenseifner": lambda p: (2 * lg(p), 2 * _frac(p), _frac(p)),  # reduce-scatter + gather, T05 §4.5
        "ring": lambda p: (2 * (p - 1), 2 * _frac(p), _frac(p)),  # ring reduce-scatter + gather
        "direct": lambda p: (1 if p > 1 else 0, p - 1, p - 1),  # the root receives and adds every vector
    },
    "alltoall": {
        "pairwise": lambda p: (p - 1, _frac(p), 0.0),  # T05 §4.6: p-1 pairwise exchanges
        "bruck": lambda p: (lg(p), lg(p) / 2, 0.0),  # T05 §4.6: Bruck, lg p steps of n/2
        "mesh": lambda p: (1 if p > 1 else 0, 1 / p if p > 1 else 0, 0.0),  # one link per peer
    },
    "barrier": {
        "dissemination": lambda p: (lg(p), 0.0, 0.0),  # Hensgen, Finkel & Manber 1988
    },
    "sendrecv": {"direct": lambda p: (1.0, 1.0, 0.0)},  # one message each way, concurrently
    "pingpong": {"direct": lambda p: (1.0, 1.0, 0.0)},  # one-way time, as OSU reports it
}

DEFAULT = {
    "allreduce": "ring", "reduce_scatter": "ring", "allgather": "ring", "broadcast": "binomial",
    "reduce": "binomial", "alltoall": "pairwise", "barrier": "dissemination", "sendrecv": "direct",
    "pingpong": "direct",
}


def coefficients(collective: str, algorithm: str, p: int) -> Coeffs:
    """(c_a, c_b, c_g) of ``algorithm`` for ``collective`` at p ranks."""
    try:
        return ALGORITHMS[collective][algorithm](p)
    except KeyError:
        known = ", ".join(f"{c}: {'/'.join(a)}" for c, a in ALGORITHMS.items())
        raise ValueError(f"no cost model for {collective} with {algorithm} (known: {known})") from None


def time(collective: str, algorithm: str, n: float, p: int, alpha: float, beta: float,
         gamma: float = 0.0) -> float:
    """Seconds for one collective of n bytes (S) on p ranks."""
    ca, cb, cg = coefficients(collective, algorithm, p)
    return ca * alpha + (cb / beta + cg * gamma) * n
