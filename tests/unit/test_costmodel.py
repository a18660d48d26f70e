"""Every cost formula against hand-computed values (docs/reference.md, "Cost formulas")."""

import math

import pytest

from facts import costmodel

A, B, G = 2e-6, 10e9, 0.1e-9  # alpha 2 us, beta 10 GB/s, gamma 0.1 ns/B
N = 8 * 2 ** 20


def t(coll, algo, p, n=N):
    return costmodel.time(coll, algo, n, p, A, B, G)


@pytest.mark.parametrize("p", [2, 3, 4, 8, 16])
def test_allreduce_formulas(p):
    L = math.ceil(math.log2(p))
    f = (p - 1) / p
    assert t("allreduce", "ring", p) == pytest.approx(2 * (p - 1) * A + 2 * f * N / B + f * N * G)
    assert t("allreduce", "recursive_doubling", p) == pytest.approx(L * (A + N / B + N * G))
    assert t("allreduce", "rabenseifner", p) == pytest.approx(2 * L * A + 2 * f * N / B + f * N * G)
    assert t("allreduce", "binomial", p) == pytest.approx(2 * L * (A + N / B) + L * N * G)
    assert t("allreduce", "direct", p) == pytest.approx(2 * A + 2 * f * N / B + f * N * G)
    assert t("allreduce", "mesh", p) == pytest.approx(2 * A + 2 * (N / p) / B + f * N * G)
    assert t("allreduce", "pipelined_tree", p) == pytest.approx(2 * L * A + 2 * N / B + N * G)


@pytest.mark.parametrize("p", [2, 5, 8])
def test_gather_scatter_broadcast_formulas(p):
    L = math.ceil(math.log2(p))
    f = (p - 1) / p
    assert t("allgather", "ring", p) == pytest.approx((p - 1) * A + f * N / B)
    assert t("allgather", "recursive_doubling", p) == pytest.approx(L * A + f * N / B)
    assert t("reduce_scatter", "ring", p) == pytest.approx((p - 1) * A + f * N / B + f * N * G)
    assert t("reduce_scatter", "recursive_halving", p) == pytest.approx(L * A + f * N / B + f * N * G)
    assert t("broadcast", "binomial", p) == pytest.approx(L * (A + N / B))
    assert t("broadcast", "scatter_allgather", p) == pytest.approx((L + p - 1) * A + 2 * f * N / B)
    assert t("reduce", "binomial", p) == pytest.approx(L * (A + N / B + N * G))
    assert t("alltoall", "pairwise", p) == pytest.approx((p - 1) * A + f * N / B)
    assert t("barrier", "dissemination", p, 0) == pytest.approx(L * A)


def test_one_rank_costs_nothing():
    for coll, algos in costmodel.ALGORITHMS.items():
        for algo in algos:
            if coll in ("sendrecv", "pingpong"):
                continue
            assert costmodel.time(coll, algo, N, 1, A, B, G) == 0.0, (coll, algo)


@pytest.mark.parametrize("collective", ["allreduce", "allgather", "reduce_scatter"])
@pytest.mark.parametrize("p", [2, 3, 8])
def test_ring_bus_bandwidth_is_the_link_bandwidth(collective, p):
    # nccl-tests: busbw = algbw * factor (facts.spec) tends to beta for a
    # bandwidth-bound ring, whatever the collective: the cost model and the
    # spec's factors must agree.
    from facts.spec import SPECS

    n = 1 << 34
    busbw = n / costmodel.time(collective, "ring", n, p, 0.0, B) * SPECS[collective].busbw_factor(p)
    assert busbw == pytest.approx(B)


def test_unknown_algorithm_lists_the_known():
    with pytest.raises(ValueError, match="allreduce: ring"):
        costmodel.coefficients("allreduce", "magic", 4)
