"""Intervals, strong-scaling pairs and held-out predictions (pure functions, synthetic records)."""

import math

import pytest

from analysis import calibrate, held_out, intervals
from analysis.step_model import Term, Terms
from collectives.replicate_summary import strong_pairs, strong_line
from tests.unit.synthetic_replicate import estimate, net, record

# Interference 1: the records' ranks fill their host's 2 cores, so each record's own estimate (1) is the truth,
# and skew 0: their alone rounds do not vary, so the skew each estimates is 0 too.
TRUTH = Terms(sharing=Term(0.05), sharing_opt=Term(0.1), skew=Term(0.0), interference=Term(1.0))
HOST = {"device": "cpu", "host_cores": 2, "threads": 1}
MODELS = {"unet": (0.02, 0.3), "gpt2-small": (0.05, 0.25), "braggnn": (0.001, 0.004)}  # per-step s, per-sample s


def test_t_quantiles_are_students():
    assert intervals.t_quantile(1, 0.9) == pytest.approx(3.0777, abs=1e-3)
    assert intervals.t_quantile(5, 0.9) == pytest.approx(1.4759, abs=1e-3)
    assert intervals.t_quantile(3, 0.975) == pytest.approx(3.1824, abs=1e-3)
    assert intervals.t_quantile(5000, 0.9) == pytest.approx(1.2816, abs=1e-3)
    assert intervals.t_quantile(2, 0.5) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        intervals.t_quantile(3, 1.0)
    with pytest.raises(ValueError):
        intervals.t_quantile(0, 0.9)


def test_step_interval_is_symmetric_in_log_and_widens_with_few_errors():
    iv = intervals.step_interval(2.0, 0.1, 1000, 0.0, 0.8)
    k = 1.2816 * 0.1
    assert iv.lo == pytest.approx(2.0 * math.exp(-k), rel=1e-3) and iv.hi == pytest.approx(2.0 * math.exp(k), rel=1e-3)
    assert math.log(iv.hi / 2.0) == pytest.approx(-math.log(iv.lo / 2.0))
    few = intervals.step_interval(2.0, 0.1, 2, 0.0, 0.8)
    assert few.hi > iv.hi and few.lo < iv.lo
    both = intervals.step_interval(2.0, 0.03, 1000, 0.04, 0.8)  # the spreads add in quadrature
    assert math.log(both.hi / 2.0) == pytest.approx(1.2816 * 0.05, rel=1e-3)
    wider = intervals.step_interval(2.0, 0.1, 1000, 0.0, 0.95)
    assert wider.hi > iv.hi
    with pytest.raises(ValueError):
        intervals.step_interval(2.0, 0.1, 5, 0.0, 1.0)


def test_efficiency_interval_swaps_the_ends():
    iv = intervals.Interval(1.0, 2.0)
    e = intervals.efficiency_interval(1.5, iv)
    assert (e.lo, e.hi) == (0.75, 1.5)
    e2 = intervals.efficiency_interval(3.0, iv, n=2)
    assert (e2.lo, e2.hi) == (0.75, 1.5)


def test_median_se_and_rms():
    assert intervals.median_se([1.0, 1.0]) is None
    assert intervals.median_se([10.0, 10.0, 10.0, 10.0]) == 0.0
    got = intervals.median_se([9.0, 10.0, 11.0, 10.0])  # MAD 0.5 over median 10, 4 values
    assert got == pytest.approx(1.2533 * 1.4826 * 0.05 / 2)
    assert intervals.rounds_se({"rounds": [{"alone_ms": 9.0}, {"alone_ms": 10.0}, {"alone_ms": 11.0},
                                           {"alone_ms": 10.0}]}) == pytest.approx(got)
    assert intervals.rms([3.0, -4.0]) == pytest.approx(math.sqrt(12.5))
    with pytest.raises(ValueError):
        intervals.rms([])


def test_coverage_counts_the_measured_inside():
    rows = [{"measured": 1.0, "predicted": 1.0, "interval": intervals.Interval(0.9, 1.1)},
            {"measured": 1.3, "predicted": 1.0, "interval": intervals.Interval(0.8, 1.2)},
            {"measured": 1.0, "predicted": 1.0, "interval": None}]
    c = intervals.coverage(rows)
    assert (c.points, c.inside) == (2, 1) and c.share == 0.5
    assert c.median_half_width == pytest.approx(0.15)


def _rec(n, b, run="j", alone=10.0, ddp=12.0, model="unet"):
    return {"nranks": n, "batch": b, "run_id": run, "model": model, "alone_ms": alone * b, "ddp_ms": ddp * b}


def test_strong_pairs_pair_b_with_n_b_in_one_job():
    recs = [_rec(2, 1), _rec(2, 2), _rec(2, 4), _rec(2, 3, run="other"), _rec(1, 2), _rec(2, 6, run="other")]
    pairs = strong_pairs(recs)
    got = sorted((p["run_id"], p["batch_per_rank"], p["global_batch"]) for p in pairs)
    assert got == [("j", 1, 2), ("j", 2, 4), ("other", 3, 6)]
    p = next(p for p in pairs if p["batch_per_rank"] == 2 and p["run_id"] == "j")
    assert p["efficiency"] == pytest.approx(40.0 / (2 * 24.0))
    assert "E(2) at global batch 4" in strong_line(p)
    assert strong_pairs([_rec(3, 1), _rec(3, 2)]) == []  # at 3 ranks batch 1 pairs with 3, not 2


def _job(model, batches=(1, 2, 4), run="j1", terms=TRUTH, allreduce=None):
    c, s = MODELS[model]
    out = []
    for b in batches:
        fb = c + b * s
        alone = (fb / 3, 2 * fb / 3, 0.01)
        rounds = [1e3 * sum(alone)] * 5
        out.append(dict(record(model, terms, allreduce or net(bw=5e8), alone, batch=b, run_id=f"{model}-{run}",
                               rounds=rounds), **HOST))
    return out


def test_held_out_weak_and_strong_recover_records_the_model_made():
    allreduce = net(bw=5e8)
    recs = [r for m in MODELS for r in _job(m, allreduce=allreduce)]
    weak = held_out.weak(recs, allreduce, estimate=estimate)
    assert len(weak) == 9
    for row in weak:
        assert row["predicted"] == pytest.approx(row["measured"], rel=0.02), row["model"]
        assert row["interval"].lo * (1 - 1e-9) <= row["measured"] <= row["interval"].hi * (1 + 1e-9)
        assert row["eff_interval"].lo <= row["pred_efficiency"] <= row["eff_interval"].hi
    strong = held_out.strong(recs, allreduce, estimate=estimate)
    assert sorted((r["model"], r["batch"]) for r in strong) == sorted((m, b) for m in MODELS for b in (1, 2))
    for row in strong:  # compute at b from the other two batches: the per-step line is exact here
        assert "per-step" in row["compute"]
        assert row["pred_alone_ms"] == pytest.approx(row["alone_ms"], rel=1e-6)
        assert row["pred_efficiency"] == pytest.approx(row["efficiency"], rel=0.02)


def test_an_interval_comes_from_the_other_models_errors():
    allreduce = net(bw=5e8)
    recs = [r for m in MODELS for r in _job(m, batches=(2,), allreduce=allreduce)]
    # GPT-2's record made with more sharing than the others: its errors widen UNet's interval, not its own.
    recs[1] = dict(record("gpt2-small", TRUTH.with_(sharing=Term(0.3)), allreduce, (0.1, 0.2, 0.01), batch=2,
                          run_id="g", rounds=[310.0] * 3), **HOST)
    rows = {r["model"]: r for r in held_out.weak(recs, allreduce, estimate=estimate)}
    cal = held_out.calibration(recs, "unet", 2, allreduce, estimate=estimate)
    assert "leave-one-model-out errors of 2 records of braggnn, gpt2-small" in cal.errors_how
    assert cal.df == 2 and cal.s_model > 0.05
    assert rows["unet"]["interval"].half_width(rows["unet"]["predicted"]) > 0.05
    one = held_out.calibration([r for r in recs if r["model"] != "gpt2-small"], "unet", 2, allreduce,
                               estimate=estimate)
    assert "in-sample" in one.errors_how


def test_compute_from_batches_fits_per_step_or_says_it_assumed_zero():
    recs = _job("unet")
    t, bf, opt, how = held_out.compute_from_batches(recs)
    assert t(8) == pytest.approx(0.02 + 8 * 0.3) and bf == pytest.approx(2 / 3) and opt == pytest.approx(0.01)
    assert "per-step 20.0 ms" in how
    t1, _, _, how1 = held_out.compute_from_batches(recs[:1])
    assert t1(2) == pytest.approx(2 * (0.02 + 0.3)) and "assumed 0" in how1
    with pytest.raises(ValueError):
        held_out.compute_from_batches([])


def test_compute_from_records_fits_the_per_step_cost_from_several_batches():
    recs = _job("unet")
    comp = calibrate.compute_from_records(recs, "unet")
    assert comp.per_step_s == pytest.approx(0.02) and comp.seconds_per_sample == pytest.approx(0.3)
    assert "fitted" in comp.per_step_how and "1, 2, 4" in comp.per_step_how
    one = calibrate.compute_from_records(recs[1:2], "unet")
    assert one.per_step_s == 0 and "assumed 0" in one.per_step_how
