"""The per-step compute cost (issue 24's first term): t(b) = per-step + b x per-sample, pure."""

import dataclasses

import pytest

from analysis import compute_cost, scaling, step_model
from facts import fabrics, workloads


def test_fit_recovers_both_terms():
    c, s = step_model.fit_per_step([1, 4, 16], [0.050 + b * 0.002 for b in (1, 4, 16)])
    assert c == pytest.approx(0.050) and s == pytest.approx(0.002)


def test_a_negative_intercept_is_noise_fit_through_the_origin():
    c, s = step_model.fit_per_step([2, 4], [0.0039, 0.0081])
    assert c == 0.0 and s == pytest.approx((2 * 0.0039 + 4 * 0.0081) / 20)


def test_a_larger_batch_costing_less_is_noise_fit_through_the_origin():
    c, s = step_model.fit_per_step([16, 32], [0.020, 0.018])
    assert c == 0.0 and s == pytest.approx((16 * 0.020 + 32 * 0.018) / (16 ** 2 + 32 ** 2)) and s > 0


def test_one_batch_cannot_tell_the_terms_apart():
    with pytest.raises(ValueError, match="two or more batch sizes"):
        step_model.fit_per_step([8, 8], [0.1, 0.11])


def test_micro_batch_time_and_what_it_says():
    compute = step_model.Compute(0.001, "given", "given")
    assert compute.micro_s(32) == pytest.approx(0.032) and "assumed 0" in compute.per_step_how
    assert dataclasses.replace(compute, per_step_s=0.05).micro_s(32) == pytest.approx(0.082)


def test_strong_scaling_with_a_per_step_cost_has_the_seed_studys_shape():
    # A per-step cost of 50 sample-times: 18.8 % measured at global batch 32 on 8 A100s implies ~46 % at 256.
    w = workloads.get("unet")
    compute = dataclasses.replace(compute_cost.from_rate(1000.0), per_step_s=0.050)
    network = scaling.network_from_fabric(fabrics.get("nvlink3"))
    rows = scaling.curve(w, [32, 256], [1, 8], compute, network, strong=True)
    eff = {r["batch"]: r["efficiency"] for r in rows if r["devices"] == 8}
    assert eff[32] == pytest.approx(82 / 432, abs=0.005) and eff[256] == pytest.approx(306 / 656, abs=0.005)
    assert all(r["per_step_ms"] == pytest.approx(50.0) for r in rows)
    plain = scaling.curve(w, [32], [8], compute_cost.from_rate(1000.0), network, strong=True)
    assert plain[0]["efficiency"] > 0.95  # without the term, shrinking the batch costs nothing


def test_the_per_step_cost_that_reproduces_a_figure_and_what_it_predicts():
    w = workloads.get("unet")
    fab = fabrics.get("nvlink3")
    net = scaling.network_from_fabric(fab)
    comp = compute_cost.from_peak(w, fab.peak_tflops.value)
    c = scaling.per_step_matching(w, comp, net, 32, 8, 0.188)
    assert 40 < c / comp.seconds_per_sample < 60  # about 50 sample-times
    e = scaling.curve(w, [32], [8], dataclasses.replace(comp, per_step_s=c), net, strong=True)[0]["efficiency"]
    assert e == pytest.approx(0.188, abs=1e-4)
    assert scaling.per_step_matching(w, comp, net, 32, 8, 0.999999) is None  # above what no cost gives


def test_the_seed_table_fits_or_takes_the_per_step_cost_and_says_which():
    from analysis import report_seed

    fitted = report_seed.strong_row("nvlink3")
    assert fitted["32"] == pytest.approx(0.188, abs=1e-3) and 0.40 < fitted["256"] < 0.55
    assert "fitted so that batch 32 gives the seed's figure" in fitted["how"]
    given = report_seed.strong_row("nvlink3", per_step_ms=0.0)
    assert given["32"] > 0.95 and "given" in given["how"]
    assert report_seed.strong_row("gaudi2-roce")["32"] is None  # no seed figure, no cost given
