"""The step model's terms, the calibration that fits them, and replicate's summary maths (pure)."""

import math
import statistics

import pytest

from analysis import calibrate, step_evidence
from facts import workloads
from analysis.step_model import (ASSUMED, CALIBRATED, Phases, Term, Terms, buckets_with_readiness,
                                 even_readiness, predict)
from collectives.replicate_summary import summarize
from tests.unit.synthetic_replicate import estimate, net
from tests.unit.synthetic_replicate import record as synthetic


PH = Phases(0.1, 0.2, 0.05)


def test_one_rank_is_the_alone_step():
    p = predict(PH, [(1 << 20, 1.0)], 1, net())
    assert p.step_s == pytest.approx(0.35) and p.efficiency == 1.0 and p.comm_s == 0


def test_exposed_is_what_runs_past_the_backward_pass():
    # One bucket ready at the end: all of it is exposed.
    t = net()(8e6, 2)
    p = predict(PH, [(8_000_000, 1.0)], 2, net())
    assert p.exposed_s == pytest.approx(t) and p.step_s == pytest.approx(0.35 + t)
    # Ready early and short: hidden behind the backward pass.
    p = predict(PH, [(8_000_000, 0.1)], 2, net())
    assert p.exposed_s == 0 and p.step_s == pytest.approx(0.35)


def test_each_term_moves_the_step_the_way_it_says():
    buckets = [(4_000_000, 0.5), (4_000_000, 1.0)]
    base = predict(PH, buckets, 2, net())
    shared = predict(PH, buckets, 2, net(), Terms(sharing=Term(0.1)))
    assert shared.compute_s == pytest.approx(base.compute_s + 0.1 * (0.1 + 0.2))
    opt = predict(PH, buckets, 2, net(), Terms(sharing_opt=Term(0.4)))
    assert opt.compute_s == pytest.approx(base.compute_s + 0.4 * 0.05)
    skewed = predict(PH, buckets, 2, net(), Terms(skew=Term(0.05)))
    assert skewed.compute_s == pytest.approx(base.compute_s * 1.05)
    early = [(4_000_000, 0.2), (4_000_000, 0.5)]  # both finish inside the backward pass: all their work slows it
    busy = predict(PH, early, 2, net(), Terms(interference=Term(0.5)))
    assert busy.backward_s == pytest.approx(0.2 + 0.5 * predict(PH, early, 2, net()).comm_s)
    slowed = predict(PH, [(40_000_000, 0.9)], 2, net(), Terms(overlap=Term(0.25)))
    # 0.02 s left of the backward pass at a quarter speed does 5 ms of the bucket's work; the rest after.
    work = net()(40_000_000, 2)
    assert slowed.exposed_s == pytest.approx(work - 0.25 * 0.02)
    slow = predict(PH, buckets, 2, net(), Terms(comm=Term(2.0)))
    assert slow.comm_s == pytest.approx(2 * base.comm_s) and slow.step_s > base.step_s
    assert base.efficiency == pytest.approx(0.35 / base.step_s)
    # DDP's copies: half (into the buckets) lengthens the backward pass, half (back out) is exposed.
    per_byte = 1e-9
    copied = predict(PH, [(4_000_000, 0.2)], 2, net(), Terms(copies=Term(per_byte)))
    plain = predict(PH, [(4_000_000, 0.2)], 2, net())
    assert copied.backward_s == pytest.approx(plain.backward_s + 0.002)
    assert copied.exposed_s == pytest.approx(plain.exposed_s + 0.002)
    assert copied.step_s == pytest.approx(plain.step_s + 0.004)
    assert predict(PH, [(4_000_000, 0.2)], 1, net(), Terms(copies=Term(per_byte))).step_s == pytest.approx(0.35)
    # The wake delay: once a step, exposed; at one rank none.
    woken = predict(PH, buckets, 2, net(), Terms(wake=Term(0.003)))
    assert woken.exposed_s == pytest.approx(base.exposed_s + 0.003) and woken.backward_s == base.backward_s
    assert predict(PH, buckets, 1, net(), Terms(wake=Term(0.003))).step_s == pytest.approx(0.35)


def test_buckets_follow_ddp_and_readiness_never_goes_back():
    for name in ("unet", "gpt2-small", "braggnn"):
        w = workloads.get(name)
        ready = {n: (i + 1) / len(w.layers) for i, (n, _) in enumerate(reversed(w.layers))}
        got = buckets_with_readiness(w.layers, ready)
        assert [b for b, _ in got] == workloads.gradient_buckets(w)
        shares = [s for _, s in got]
        assert shares == sorted(shares) and shares[-1] == pytest.approx(1.0)
    assert even_readiness([1, 1, 2]) == [0.25, 0.5, 1.0]


def test_terms_say_how_they_are_known():
    assert Terms().code() == "sharing a, sharing_opt a, skew a, interference a, comm a, overlap a, copies a, wake a"
    assert Terms(skew=Term(0.1, CALIBRATED)).skew.how == CALIBRATED and Terms().sharing.how == ASSUMED


# -- replicate's summary ------------------------------------------------------------------

def _step(s, f=0.3, b=0.5, **kw):
    out = {"forward": s * f, "backward": s * b, "optimizer": s * (1 - f - b), "step": s}
    out.update(kw)
    return out


def _ddp(s, ready=(0.5, 1.0)):
    return _step(s, exposed=0.0, hook=1e-4, allreduce=0.01, buckets=[(100, s * 0.3 * r, s * 0.3 * r + 0.01)
                                                                       for r in ready])


def test_summary_parts_add_up_to_the_loss():
    per_rank = [
        [{"alone": _step(1.0 + i / 10), "nosync": _step(1.1 + i / 10), "ddp": _ddp(1.3 + i / 10), "wait_cpu": None}
         for i in range(5)],
        [{"alone": None, "nosync": _step(1.2 + i / 10), "ddp": _ddp(1.25 + i / 10), "wait_cpu": 1e-4}
         for i in range(5)],
    ]
    s = summarize(per_rank, batch=2, nranks=2)
    assert s["alone_ms"] == pytest.approx(1200) and s["ddp_ms"] == pytest.approx(1500)
    assert s["nosync_ms"] == pytest.approx(1350) and s["nosync_max_ms"] == pytest.approx(1400)
    assert s["efficiency"] == pytest.approx(1.2 / 1.5)
    assert s["loss_sharing"] + s["loss_skew"] + s["loss_exposed"] == pytest.approx(1 - s["efficiency"])
    assert s["loss_sharing"] == pytest.approx(0.15 / 1.5) and s["loss_skew"] == pytest.approx(0.05 / 1.5)
    assert s["x1_samples_per_s"] == pytest.approx(2 / 1.2) and s["xn_samples_per_s"] == pytest.approx(4 / 1.5)
    assert s["wait_cpu_ms"] == pytest.approx(0.1) and len(s["rounds"]) == 5
    assert s["step_ms"] == pytest.approx(1500) and len(s["bucket_timeline"]) == 2
    lo, hi = s["loss_sharing_spread"]
    assert lo <= s["loss_sharing"] <= hi


def test_summary_at_one_rank_has_no_sharing_or_skew():
    per_rank = [[{"alone": _step(1.0), "nosync": None, "ddp": _ddp(1.1), "wait_cpu": None} for _ in range(3)]]
    s = summarize(per_rank, batch=1, nranks=1)
    assert s["loss_sharing"] == 0 and s["loss_skew"] == 0
    assert s["loss_exposed"] == pytest.approx(1 - 1 / 1.1)
    with pytest.raises(ValueError):
        summarize([[], []], 1, 2)


def test_summary_of_the_comm_only_phase():
    # Rank 0 is the faster one in every round (it left the barrier last): its times are the phase's.
    def comm(total, scale=1.0):
        return {"step": total * scale, "buckets": [(100, 0.0, 0.4 * total * scale), (300, 0.0, total * scale)],
                "copies": total * scale / 10, "wake": total * scale / 100}
    per_rank = [
        [{"alone": _step(1.0), "nosync": _step(1.1), "ddp": _ddp(1.3), "wait_cpu": None, "comm": comm(t)}
         for t in (0.2, 0.1, 0.3)],
        [{"alone": None, "nosync": _step(1.1), "ddp": _ddp(1.3), "wait_cpu": 0.0, "comm": comm(t, 1.5)}
         for t in (0.2, 0.1, 0.3)],
    ]
    s = summarize(per_rank, batch=1, nranks=2)
    assert s["comm_alone_ms"] == pytest.approx(200) and s["comm_alone_ms_spread"] == pytest.approx([100, 300])
    assert [b["bytes"] for b in s["comm_alone_buckets"]] == [100, 300]
    assert [b["ms"] for b in s["comm_alone_buckets"]] == pytest.approx([80, 120])
    assert s["rounds"][0]["comm_ms"] == pytest.approx([200, 300])
    # The copies are local work, nobody waits in them: the mean over ranks, median over rounds.
    assert s["copy_alone_ms"] == pytest.approx(statistics.median([25, 12.5, 37.5]))
    assert s["wake_alone_ms"] == pytest.approx(2.5)
    # At one rank (or rounds without the phase) there is nothing to report.
    one = summarize([[{"alone": _step(1.0), "nosync": None, "ddp": _ddp(1.1), "wait_cpu": None}]], 1, 1)
    assert one["comm_alone_ms"] is None and one["comm_alone_buckets"] is None and one["copy_alone_ms"] is None
    assert one["wake_alone_ms"] is None


def test_page_faults_a_step_are_summarised_and_the_allocator_named(monkeypatch):
    from collectives import replicate_steps

    per_rank = [[{"alone": _step(1.0, faults=f), "nosync": _step(1.1), "ddp": _ddp(1.3), "wait_cpu": None}
                 for f in (100, 300, 200)],
                [{"alone": None, "nosync": _step(1.1), "ddp": _ddp(1.2), "wait_cpu": 0.0} for _ in range(3)]]
    s = summarize(per_rank, batch=1, nranks=2)
    assert s["alone_faults_per_step"] == 200 and s["ddp_faults_per_step"] is None  # the DDP steps had none
    for k in replicate_steps.ALLOCATOR_ENV:
        monkeypatch.delenv(k, raising=False)
    assert replicate_steps.allocator() == "the C library's malloc, default settings"
    monkeypatch.setenv("MALLOC_TOP_PAD_", "1073741824")
    assert replicate_steps.allocator() == "MALLOC_TOP_PAD_=1073741824"


def test_the_slowest_rank_of_a_group_is_found_step_by_step():
    # Two ranks, three steps a phase: each is slow on a different step. Their group means tie (1.1 s);
    # a DDP step would wait for the slower one at every step: 1.2 s on average.
    def group(each):
        return dict(_step(sum(each) / len(each)), each=list(each))
    per_rank = [[{"alone": group((1.0, 1.0, 1.0)), "nosync": group((1.3, 1.0, 1.0)), "ddp": _ddp(1.3),
                  "wait_cpu": None}],
                [{"alone": None, "nosync": group((1.0, 1.0, 1.3)), "ddp": _ddp(1.3), "wait_cpu": 0.0}]]
    s = summarize(per_rank, batch=1, nranks=2)
    assert s["nosync_ms"] == pytest.approx(1100) and s["nosync_max_ms"] == pytest.approx(1200)
    assert s["rounds"][0]["alone_each_ms"] == pytest.approx([1000, 1000, 1000])


def test_repeated_steps_are_averaged_whole():
    from collectives.replicate_steps import repeat

    seq = iter([_ddp(1.0, ready=(0.5, 1.0)), _ddp(2.0, ready=(0.5, 1.0))])
    got = repeat(lambda: next(seq), 2)()
    assert got["step"] == pytest.approx(1.5) and got["forward"] == pytest.approx(0.45)
    assert got["each"] == pytest.approx([1.0, 2.0])
    assert got["buckets"][1] == pytest.approx((100, 0.45, 0.46))
    one = _ddp(1.0)
    assert repeat(lambda: one, 1)() is one


# -- calibration ----------------------------------------------------------------------------

def test_calibration_recovers_the_terms_that_made_the_records():
    truth = Terms(sharing=Term(0.08), sharing_opt=Term(0.3), skew=Term(0.03), interference=Term(0.7),
                  comm=Term(1.5), overlap=Term(0.4), copies=Term(2e-10))
    allreduce = net(bw=2e8, lat=step_evidence.MIN_COMM_S)  # every bucket long enough to fit comm and overlap on
    recs = [synthetic(m, truth, allreduce, alone) for m, alone in
            (("unet", (0.4, 0.9, 0.1)), ("gpt2-small", (0.3, 0.6, 0.3)), ("braggnn", (0.002, 0.004, 0.001)))]
    got = calibrate.fit_terms(recs, allreduce, estimate)
    for name in ("sharing", "sharing_opt", "skew", "interference", "comm", "overlap", "copies"):
        assert getattr(got, name).value == pytest.approx(getattr(truth, name).value, rel=0.02, abs=0.005), name
        assert getattr(got, name).how == CALIBRATED
    assert set(got.readiness) == {"unet", "gpt2-small", "braggnn"}
    rows = calibrate.evaluate(recs, allreduce, estimate)
    assert len(rows) == 3
    for r in rows:
        assert abs(r["cal_err"]) < 0.01 and abs(r["cal_eff_pts"]) < 1  # the held-out model too
        assert r["uncal_err"] < 0  # every term left out makes the step look shorter
        assert math.isfinite(r["uncal_eff"])


def test_the_job_network_stands_in_for_the_sweep():
    # Records made with one network; the sweep given to evaluate is 3x too fast, the job's comm-only
    # phase (its total split over buckets by bytes) is right: only the job network predicts them.
    truth = Terms(sharing=Term(0.05), skew=Term(0.02), interference=Term(0.5))
    # A latency: a bucket's own time is not its share of the total by bytes (and, a third of it, every
    # bucket still long enough to fit comm and overlap on).
    real = net(bw=2e8, lat=3 * step_evidence.MIN_COMM_S)
    recs = [synthetic(m, truth, real, alone) for m, alone in
            (("unet", (0.4, 0.9, 0.1)), ("gpt2-small", (0.3, 0.6, 0.3)), ("braggnn", (0.002, 0.004, 0.001)))]
    for r in recs:
        sizes = [b["bytes"] for b in r["bucket_timeline"]]
        r["comm_alone_ms"] = sum(real(b, 2) for b in sizes) * 1e3
        r["comm_alone_buckets"] = [{"bytes": b, "ms": real(b, 2) * 1e3} for b in sizes]
        got = step_evidence.job_network(r)
        assert [got(b, 2) for b in sizes] == pytest.approx([real(b, 2) for b in sizes])
        if len(sizes) > 1:
            by_bytes = r["comm_alone_ms"] * 1e-3 * min(sizes) / sum(sizes)
            assert got(min(sizes), 2) != pytest.approx(by_bytes)
        assert got(12345, 2) == pytest.approx(12345 * r["comm_alone_ms"] * 1e-3 / sum(sizes))  # other sizes
    fast = net(bw=6e8, lat=step_evidence.MIN_COMM_S)  # a third of the real one
    job = calibrate.evaluate(recs, fast, estimate, network="job")
    sweep = calibrate.evaluate(recs, fast, estimate, network="sweep")
    assert {r["network"] for r in job} == {"job"} and {r["network"] for r in sweep} == {"sweep"}
    # Uncalibrated, the allreduce is what the job measured (the sweep's is a third of it).
    for rec, j, w in zip(recs, job, sweep):
        assert j["uncal_comm_ms"] == pytest.approx(rec["comm_alone_ms"])
        assert w["uncal_comm_ms"] == pytest.approx(rec["comm_alone_ms"] / 3)
    assert sum(abs(r["uncal_err"]) for r in job) < sum(abs(r["uncal_err"]) for r in sweep)
    # Calibrated, either way the comm term absorbs a constant factor: both predict the held-out model.
    assert max(abs(r["cal_err"]) for r in job) < 0.01 and max(abs(r["cal_err"]) for r in sweep) < 0.01
    assert step_evidence.job_network({"comm_alone_ms": None}) is None
    with pytest.raises(ValueError, match="network"):
        calibrate.evaluate(recs, fast, estimate, network="guess")


def test_skew_and_interference_estimated_from_one_rank_and_the_host():
    from analysis.step_model import ESTIMATED, expected_max, interference_estimate, skew_estimate

    # The expected maximum of N standard normal draws (tables: 0.5642, 0.8463, 1.0294, 1.1630).
    assert [round(expected_max(n), 4) for n in (1, 2, 3, 4, 5)] == [0.0, 0.5642, 0.8463, 1.0294, 1.163]
    steps = [1.0, 1.1, 0.9, 1.0, 1.3]  # median 1.0, MAD 0.1: sigma 0.14826
    assert skew_estimate(steps, 2) == pytest.approx(0.5642 * 0.14826, rel=1e-3)
    assert skew_estimate(steps, 3) > skew_estimate(steps, 2)
    assert skew_estimate(steps[:2], 2) is None and skew_estimate(steps, 1) is None
    assert interference_estimate("cpu", 2, 2, 1) == 1.0 and interference_estimate("cpu", 8, 2, 4) == 1.0
    assert interference_estimate("cpu", 4, 2, 1) is None  # a spare core runs the backend's threads
    assert interference_estimate("cuda", 2, 2, 1) is None and interference_estimate("cpu", None, 2, 1) is None
    assert interference_estimate(None, 2, 2, 1) is None  # a record that does not say its device

    truth = Terms(sharing=Term(0.05))
    allreduce = net(bw=2e8)
    rec = synthetic("unet", truth, allreduce, (0.4, 0.9, 0.1))
    plain = calibrate.predict_record(rec, truth, allreduce, estimate)[0]
    rec.update(rounds=[{"alone_ms": 1000 * x} for x in steps], host_cores=2, threads=1, ranks_per_host=2,
               device="cpu")
    got = step_evidence.record_estimates(rec)
    assert got["skew"].how == ESTIMATED and got["skew"].value == pytest.approx(skew_estimate(steps, 2))
    assert got["interference"].value == 1.0 and got["interference"].how == ESTIMATED
    # The record's estimates replace the terms' own, calibrated or not.
    with_est = calibrate.predict_record(rec, truth, allreduce, estimate)[0]
    by_hand = predict(step_evidence.phases_of(rec), step_evidence.record_buckets(rec, truth, estimate)[0], 2, allreduce,
                      truth.with_(skew=got["skew"], interference=got["interference"]))
    assert with_est.step_s == pytest.approx(by_hand.step_s) and with_est.step_s > plain.step_s
    # Calibrating on records whose hosts all give interference leaves it estimated, not fitted.
    others = [dict(synthetic(m, truth, allreduce, a), host_cores=2, threads=1, ranks_per_host=2, device="cpu")
              for m, a in (("gpt2-small", (0.3, 0.6, 0.3)), ("braggnn", (0.002, 0.004, 0.001)))]
    assert calibrate.fit_terms(others, allreduce, estimate).interference.how == ESTIMATED


def test_comm_is_fitted_on_buckets_long_enough_to_say_it():
    # A short bucket's in-step time is mostly a fixed delay: as a ratio it would scale every bucket.
    rec = {"nranks": 2, "bucket_timeline": [{"bytes": 1, "ready_ms": 0.0, "done_ms": 50.0},
                                            {"bytes": 2, "ready_ms": 100.0, "done_ms": 108.0},
                                            {"bytes": 3, "ready_ms": 100.0, "done_ms": 160.0}]}
    model = {1: 0.040, 2: 0.002, 3: 0.050}  # seconds: the 2-byte bucket took 4x its time, by 6 ms
    after, inside = step_evidence.comm_samples(rec, lambda b, n: model[b])
    assert after == pytest.approx((0.052, 0.050)) and inside == pytest.approx((0.050, 0.040))
    model[2] = step_evidence.MIN_COMM_S  # long enough: it counts
    assert step_evidence.comm_samples(rec, lambda b, n: model[b])[0] == pytest.approx((0.060, 0.060))


def test_the_wake_delay_is_taken_off_the_first_bucket_after_the_backward_pass():
    rec = {"nranks": 2, "wake_alone_ms": 4.0,
           "bucket_timeline": [{"bytes": 1, "ready_ms": 100.0, "done_ms": 130.0},
                               {"bytes": 2, "ready_ms": 100.0, "done_ms": 160.0}]}
    after, _ = step_evidence.comm_samples(rec, lambda b, n: 0.030)
    assert after == pytest.approx((0.026 + 0.030, 0.060))  # counted once, by its own term
    rec["wake_alone_ms"] = float("nan")
    assert step_evidence.comm_samples(rec, lambda b, n: 0.030)[0] == pytest.approx((0.060, 0.060))


def test_curves_take_terms_per_rank_count():
    from analysis import scaling
    from analysis.step_model import Compute

    w = workloads.get("braggnn")
    compute = Compute(0.001, "given", "given", optimizer_s=0.001, optimizer_how="measured")
    network = scaling.Network("test", "measured", net(bw=2e8))
    fixed = scaling.curve(w, [4], [1, 2, 4], compute, network, terms=Terms(skew=Term(0.1)))
    per_n = scaling.curve(w, [4], [1, 2, 4], compute, network,
                          terms=lambda n: Terms(skew=Term(0.1 if n == 2 else 0.3 if n == 4 else 0.0)))
    assert per_n[1]["step_ms"] == pytest.approx(fixed[1]["step_ms"])  # N = 2: the same terms
    assert per_n[2]["step_ms"] > fixed[2]["step_ms"]  # N = 4: its own, larger skew
    assert per_n[0]["step_ms"] == pytest.approx(fixed[0]["step_ms"])  # N = 1: no skew either way


def test_copies_come_from_the_records_own_comm_only_phase():
    from analysis.step_model import MEASURED

    allreduce = net(bw=2e8)
    rec = synthetic("gpt2-small", Terms(), allreduce, (0.3, 0.6, 0.3))
    plain = calibrate.predict_record(rec, Terms(), allreduce, estimate)[0]
    grad = sum(b["bytes"] for b in rec["bucket_timeline"])
    rec["copy_alone_ms"] = 110.0
    got = step_evidence.record_estimates(rec)["copies"]
    assert got.how == MEASURED and got.value == pytest.approx(0.110 / grad) and "110.0 ms" in got.source
    # Uncalibrated or not, the record's copies are in its prediction: half in the backward pass (which then
    # hides more of the allreduce), half after it.
    with_copies = calibrate.predict_record(rec, Terms(), allreduce, estimate)[0]
    assert with_copies.backward_s == pytest.approx(plain.backward_s + 0.055)
    assert plain.step_s + 0.055 <= with_copies.step_s <= plain.step_s + 0.110 + 1e-9
    assert step_evidence.copies_per_byte({"copy_alone_ms": None, "bucket_timeline": rec["bucket_timeline"]}) is None
    assert step_evidence.copies_per_byte({"copy_alone_ms": 5.0}) is None  # no bucket sizes to divide by
    # The wake probe's delay: the record's own, exposed once a step.
    rec["wake_alone_ms"] = 3.0
    wake = step_evidence.record_estimates(rec)["wake"]
    assert wake.how == MEASURED and wake.value == pytest.approx(0.003) and "3.00 ms" in wake.source
    woken = calibrate.predict_record(rec, Terms(), allreduce, estimate)[0]
    assert woken.exposed_s == pytest.approx(with_copies.exposed_s + 0.003)
    assert calibrate.fit_terms([rec], allreduce, estimate).wake.value == pytest.approx(0.003)
    # Without a network of the runs' transport (a fabric's curve), the runs' copies and wake are not its.
    other = calibrate.fit_terms([rec], None, estimate)
    assert other.copies.how == ASSUMED and other.wake.how == ASSUMED
    assert step_evidence.copies_per_byte(dict(rec, copy_alone_ms=float("nan"))) is None


def test_sharing_is_pooled_so_a_model_weighs_by_its_time():
    allreduce = net(bw=2e8)
    long_ = synthetic("unet", Terms(sharing=Term(0.02)), allreduce, (0.4, 0.9, 0.1))
    short = synthetic("braggnn", Terms(sharing=Term(0.20)), allreduce, (0.002, 0.004, 0.001))
    got = calibrate.fit_terms([long_, short], allreduce, estimate).sharing.value
    assert got == pytest.approx((1.3 * 1.02 + 0.006 * 1.2) / 1.306 - 1) and got < 0.025


def test_an_oversubscribed_host_time_slices_its_cores():
    from analysis.step_model import ESTIMATED, oversubscription_estimate

    assert oversubscription_estimate("cpu", 2, 3, 1) == pytest.approx(0.5)  # 3 ranks on 2 cores: 2/3 speed
    assert oversubscription_estimate("cpu", 2, 2, 1) is None and oversubscription_estimate("cpu", 8, 2, 4) is None
    assert oversubscription_estimate("cuda", 2, 3, 1) is None and oversubscription_estimate("cpu", None, 3, 1) is None
    allreduce = net(bw=2e8)
    rec = dict(synthetic("unet", Terms(), allreduce, (0.4, 0.9, 0.1)), nranks=3, ranks_per_host=3, host_cores=2,
               threads=1, device="cpu")
    got = step_evidence.record_estimates(rec)
    assert got["sharing"].how == ESTIMATED and got["sharing"].value == pytest.approx(0.5)
    assert got["sharing_opt"].value == pytest.approx(0.5) and "time-sliced" in got["sharing"].source
    # A curve's N: all its ranks on the record's one host (2 ranks fill 2 cores: no time-slicing).
    assert "sharing" not in step_evidence.record_estimates(rec, 2)
    assert step_evidence.record_estimates(rec, 4)["sharing"].value == pytest.approx(1.0)
    # Replaces calibrated sharing in the record's prediction: the alone compute runs at 2/3 speed.
    slow = calibrate.predict_record(rec, Terms(sharing=Term(0.05)), allreduce, estimate)[0]
    assert slow.compute_s > 1.4 * 1.4


def test_calibration_needs_a_multi_rank_record():
    with pytest.raises(ValueError, match="2 ranks"):
        calibrate.fit_terms([{"nranks": 1, "model": "unet"}])


# -- the CLI and the report read replicate records --------------------------------------------

def _files(tmp_path):
    """Synthetic replicate records (made by a known model) and gloo allreduce points of a known line."""
    import json

    from facts import record

    allreduce = net(bw=2e8, lat=2e-4)
    truth = Terms(sharing=Term(0.05), sharing_opt=Term(0.2), skew=Term(0.02), interference=Term(0.5),
                  comm=Term(1.3))
    runs = tmp_path / "runs.jsonl"
    with open(runs, "w") as f:
        for m, alone in (("unet", (0.4, 0.9, 0.1)), ("gpt2-small", (0.3, 0.6, 0.3)), ("braggnn", (0.002, 0.004, 0.001))):
            rec = synthetic(m, truth, allreduce, alone)
            rec.update(loss_sharing=0.01, loss_skew=0.01, loss_exposed=0.1)
            f.write(json.dumps(record.new("measured", "ok", collective="replicate", transport="gloo",
                                          size_bytes=4 * workloads.get(m).params, time_us=rec["ddp_ms"] * 1e3,
                                          algbw_gbs=1.0, busbw_gbs=1.0, **rec)) + "\n")
    points = tmp_path / "gloo.jsonl"
    with open(points, "w") as f:
        for n in (2, 3):
            for k in range(14, 27, 2):
                size = 1 << k
                t = allreduce(size, n) * 1e6
                f.write(json.dumps(record.new("measured", "ok", collective="allreduce", transport="gloo", nranks=n,
                                              size_bytes=size, count=size // 4, dtype="float32", op="sum",
                                              time_us=t, time_us_p50=t, algbw_gbs=size / t / 1e3,
                                              busbw_gbs=size / t / 1e3 * 2 * (n - 1) / n)) + "\n")
    return runs, points


def test_scaling_calibrate_says_how_each_term_is_known(tmp_path, capsys):
    from analysis import scaling

    runs, points = _files(tmp_path)
    assert scaling.main(["--model", "unet", "--batch", "2", "--devices", "1,2,4", "--results", str(points),
                         "--calibrate", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "# term sharing +5.0 % (calibrated" in out and "# term comm x1.3 (calibrated" in out
    assert "measured by collectives.replicate" in out  # compute and bucket readiness of unet
    rows = [ln.split() for ln in out.splitlines() if ln.strip() and not ln.startswith("#")]
    assert [r[9] for r in rows] == ["ccccccaa/m"] * 3  # copies, wake: the records did not time them
    # A fabric is not the transport the runs used: comm stays assumed, and a note says why.
    assert scaling.main(["--model", "unet", "--batch", "2", "--devices", "1,2", "--fabric", "nvlink3",
                         "--calibrate", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "the comm, copies and wake terms stay assumed" in out and "# term comm x1 (assumed" in out
    assert scaling.main(["--model", "unet", "--batch", "2", "--devices", "1,2", "--fabric", "nvlink3",
                         "--calibrate", str(points)]) == 2
    assert "no collectives.replicate record" in capsys.readouterr().err


def test_report_puts_replicate_runs_beside_the_model(tmp_path):
    from analysis import report

    runs, points = _files(tmp_path)
    paths = report.build([str(runs), str(points)], str(tmp_path / "rep"))
    md = paths["report.md"].read_text()
    assert "## Data-parallel replication, measured" in md
    assert {"replicate_unet.png", "replicate_gpt2-small.png", "replicate_braggnn.png"} <= set(paths)
    table = [ln for ln in md.splitlines() if ln.startswith("| unet |") or ln.startswith("| braggnn |")]
    assert len(table) == 2
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[7] != "-" and abs(float(cells[10].rstrip(" %"))) < 1.0  # calibrated error, held out
