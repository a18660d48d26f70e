"""Fits recover known parameters exactly from synthetic data, and say what they cannot know."""

import numpy as np
import pytest

from analysis import fit
from facts import costmodel

SIZES = [2 ** k for k in range(3, 27)]


def _synth(coll, algo, ranks, alpha, beta, gamma=0.0):
    n, p, t = [], [], []
    for q in ranks:
        for s in SIZES:
            n.append(s)
            p.append(q)
            t.append(costmodel.time(coll, algo, s, q, alpha, beta, gamma))
    return n, p, t


def test_affine_fit_is_exact_on_exact_data():
    n = np.array(SIZES, float)
    f = fit.fit_affine(n, 3e-6 + n / 5e9)
    assert f.latency_s == pytest.approx(3e-6, rel=1e-9)
    assert f.bandwidth == pytest.approx(5e9, rel=1e-9)
    assert f.median_rel_err < 1e-9 and f.r2 == pytest.approx(1.0)


def test_affine_fit_never_returns_a_negative_latency():
    n = np.array(SIZES, float)
    f = fit.fit_affine(n, n / 5e9 * (1 + 0.01 * np.sin(n)))
    assert f.latency_s >= 0.0


@pytest.mark.parametrize("algo", ["ring", "recursive_doubling", "rabenseifner", "binomial"])
def test_model_fit_recovers_alpha_beta_and_the_algorithm(algo):
    n, p, t = _synth("allreduce", algo, [2, 3, 4, 8], 2e-6, 20e9)
    m = fit.fit_model("allreduce", n, p, t, transport="synthetic")
    if algo == "binomial":
        # 2 lg p (alpha + n/beta) is recursive doubling with 2 alpha, beta/2: timing cannot tell them apart.
        assert m.algorithm == "recursive_doubling" and "equally good: binomial" in m.gamma_note
        assert m.predict(1 << 20, 16) == pytest.approx(costmodel.time("allreduce", algo, 1 << 20, 16, 2e-6, 20e9))
        return
    assert m.algorithm == algo and m.distinguishable
    assert m.alpha == pytest.approx(2e-6, rel=1e-6) and m.beta == pytest.approx(20e9, rel=1e-6)
    assert m.median_rel_err < 1e-9
    assert m.predict(1 << 20, 16) == pytest.approx(costmodel.time("allreduce", algo, 1 << 20, 16, 2e-6, 20e9))


def test_gamma_is_separated_with_a_non_reducing_reference():
    alpha, beta, gamma = 1e-6, 10e9, 0.2e-9
    ag = _synth("allgather", "ring", [2, 4, 8], alpha, beta)
    ar = _synth("allreduce", "ring", [2, 4, 8], alpha, beta, gamma)
    ref = fit.fit_model("allgather", *ag)
    assert ref.beta == pytest.approx(beta, rel=1e-6) and ref.gamma_note == "no reduction"
    m = fit.fit_model("allreduce", *ar, beta_ref=ref.beta)
    assert m.algorithm == "ring"
    assert m.beta == pytest.approx(beta, rel=1e-6) and m.gamma == pytest.approx(gamma, rel=1e-5)
    # Without a reference, gamma is folded into beta and said so.
    m2 = fit.fit_model("allreduce", *ar)
    assert m2.gamma is None and "folded" in m2.gamma_note
    assert 1 / m2.beta == pytest.approx(1 / beta + gamma / 2, rel=1e-6)


def test_one_rank_count_cannot_choose_an_algorithm_and_says_so():
    n, p, t = _synth("allreduce", "recursive_doubling", [4], 2e-6, 20e9)
    m = fit.fit_model("allreduce", n, p, t)
    assert not m.distinguishable and "indistinguishable" in m.gamma_note
    assert m.algorithm == "ring"  # the default; the points are fitted exactly anyway
    assert m.median_rel_err < 1e-9


def test_fit_frame_from_records():
    pd = pytest.importorskip("pandas")
    rows = []
    for coll, algo in (("allgather", "ring"), ("allreduce", "ring")):
        n, p, t = _synth(coll, algo, [2, 4], 1e-6, 8e9, 0.1e-9 if coll == "allreduce" else 0.0)
        rows += [dict(transport="x", collective=coll, nranks=q, size_bytes=s, time_us=tt * 1e6,
                      kind="measured", placement="out-of-place", op="sum") for s, q, tt in zip(n, p, t)]
    fits = fit.fit_frame(pd.DataFrame(rows))
    assert [f.collective for f in fits] == ["allgather", "allreduce"]
    assert fits[1].gamma == pytest.approx(0.1e-9, rel=1e-4)


# -- piecewise (regime) fits ---------------------------------------------------------------

def _two_regimes(n):
    """Eager below 16 KiB (1 us + n / 2 GB/s), rendezvous above (8 us + n / 10 GB/s)."""
    n = np.asarray(n, float)
    return np.where(n <= 16384, 1e-6 + n / 2e9, 8e-6 + n / 10e9)


def test_segmented_fit_finds_a_protocol_switch_exactly():
    n = np.array(SIZES, float)
    f = fit.fit_segmented(n, _two_regimes(n))
    assert len(f.segments) == 2
    assert f.breaks == [(16384.0, 32768.0)]
    lo, hi = f.segments
    assert lo.fit.latency_s == pytest.approx(1e-6, rel=1e-9) and lo.fit.bandwidth == pytest.approx(2e9, rel=1e-9)
    assert hi.fit.latency_s == pytest.approx(8e-6, rel=1e-9) and hi.fit.bandwidth == pytest.approx(10e9, rel=1e-9)
    assert f.median_rel_err < 1e-9 and f.cv_rel_err < 1e-9
    assert f.predict([1 << 30])[0] == pytest.approx(8e-6 + (1 << 30) / 10e9)
    assert "16K" in f.describe() and "32K" in f.describe()


def test_segmented_fit_keeps_one_regime_for_a_straight_line():
    n = np.array(SIZES, float)
    t = 3e-6 + n / 5e9
    f = fit.fit_segmented(n, t)
    assert len(f.segments) == 1 and f.breaks == []
    assert f.segments[0].fit.bandwidth == pytest.approx(5e9, rel=1e-9)


def test_segmented_fit_predicts_held_out_sizes_of_a_two_regime_transport():
    n = np.array(SIZES, float)
    t = _two_regimes(n)
    train = slice(0, None, 2)
    f = fit.fit_segmented(n[train], t[train])
    test = n[1::2]
    rel = np.abs(f.predict(test) - _two_regimes(test)) / _two_regimes(test)
    assert np.median(rel) < 1e-9  # every test size but the one in the gap is exact
    gap = test[(test > f.breaks[0][0]) & (test < f.breaks[0][1])]
    assert len(gap) == 1
    lo, hi = float(f.predict(f.breaks[0][0])), float(f.predict(f.breaks[0][1]))
    assert lo < float(f.predict(gap[0])) < hi  # interpolated between the two regimes


def test_segmented_fit_needs_two_sizes_and_positive_times():
    with pytest.raises(ValueError):
        fit.fit_segmented([8, 8, 8], [1e-6, 1e-6, 1e-6])
    with pytest.raises(ValueError):
        fit.fit_segmented([8, 16, 32], [1e-6, 0.0, 1e-6])


def test_a_fit_over_oversubscribed_points_says_so():
    pd = pytest.importorskip("pandas")
    n, p, t = _synth("allreduce", "ring", [2, 4], 2e-6, 10e9)
    df = pd.DataFrame({"transport": "shm", "collective": "allreduce", "nranks": p, "size_bytes": n,
                       "time_us": np.array(t) * 1e6, "kind": "measured", "placement": "out-of-place",
                       "op": "sum", "oversubscribed": [q > 2 for q in p]})
    (m,) = fit.fit_transport(df, "shm")
    assert "p=[4] ran oversubscribed" in m.gamma_note
    df["oversubscribed"] = False
    (m,) = fit.fit_transport(df, "shm")
    assert "oversubscribed" not in m.gamma_note
