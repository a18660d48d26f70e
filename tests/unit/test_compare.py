"""analysis.compare: NEW/BASE ratios per point, intervals from repeats or per-iteration samples, exit 4/2."""

import math

import pytest

from analysis import compare
from analysis.load import points
from tests.unit.test_analysis_errors import rec, write_jsonl

SIZES = (1024, 1 << 20)


def _runs(path, scale=1.0, runs=3, noise=(0.99, 1.0, 1.01), **kw):
    recs = []
    for i in range(runs):
        for s in SIZES:
            r = rec(3, s, run_id=f"r{i}", **kw)
            r["time_us"] *= scale * noise[i % len(noise)]
            recs.append(r)
    return write_jsonl(path, recs)


def test_t_quantiles():
    assert compare.t95(1) == 12.706 and compare.t95(2.9) == 4.303 and compare.t95(100) == 1.96


def test_interval_of_known_samples():
    # Same spread both sides, means 10 % apart: the interval holds 1.1 and excludes 1.
    base = [100.0, 101.0, 99.0, 100.5, 99.5]
    new = [v * 1.1 for v in base]
    lo, hi = compare.interval(base, new)
    assert lo < 1.1 < hi and lo > 1.0
    assert compare.interval([1.0], new) is None


def test_identical_results_are_the_same(tmp_path, capsys):
    base = _runs(tmp_path / "b.jsonl")
    new = _runs(tmp_path / "n.jsonl")
    assert compare.main([str(base), str(new)]) == 0
    out = capsys.readouterr().out
    assert "2 points in both: 0 slower, 0 faster, 2 within 5 %" in out


def test_a_slower_point_is_named_and_exit_4(tmp_path, capsys):
    base = _runs(tmp_path / "b.jsonl")
    new = _runs(tmp_path / "n.jsonl", scale=1.2)
    assert compare.main([str(base), str(new), "--threshold", "10"]) == 4
    err = capsys.readouterr().err
    assert err.count("analysis.compare: slower: shm allreduce 3 ranks float32 out-of-place") == 2
    assert "from runs" in err
    table = compare.compare(points.load(base), points.load(new), 10)
    assert set(table["verdict"]) == {"slower"} and (table["lo"] > 1.1).all()
    assert table["ratio"].round(6).eq(1.2).all()


def test_a_slowdown_within_the_noise_is_not_a_regression(tmp_path):
    base = _runs(tmp_path / "b.jsonl", noise=(0.8, 1.0, 1.2))
    new = _runs(tmp_path / "n.jsonl", scale=1.08, noise=(0.8, 1.0, 1.2))
    table = compare.compare(points.load(base), points.load(new), 5)
    assert set(table["verdict"]) == {"same"} and (table["lo"] < 1.05).all()


def test_one_run_each_side_says_so_and_judges_the_ratio(tmp_path, capsys):
    base = _runs(tmp_path / "b.jsonl", runs=1)
    new = _runs(tmp_path / "n.jsonl", scale=1.5, runs=1)
    assert compare.main([str(base), str(new)]) == 4
    captured = capsys.readouterr()
    assert "their verdict is the ratio alone" in captured.out and "(one run)" in captured.err


def test_per_iteration_samples_give_an_interval_to_single_runs(tmp_path):
    def one(path, scale):
        recs = []
        for s in SIZES:
            r = rec(3, s)
            r["time_us"] *= scale
            r["iter_us"] = [r["time_us"] * f for f in (0.98, 1.0, 1.02, 0.99, 1.01)]
            recs.append(r)
        return points.load(write_jsonl(path, recs))
    table = compare.compare(one(tmp_path / "b.jsonl", 1.0), one(tmp_path / "n.jsonl", 1.3), 5)
    assert set(table["how"]) == {"iterations"} and set(table["verdict"]) == {"slower"}
    assert all(lo < r < hi for lo, r, hi in zip(table["lo"], table["ratio"], table["hi"]))


def test_points_in_one_set_only_are_counted_not_compared(tmp_path, capsys):
    base = _runs(tmp_path / "b.jsonl")
    new = write_jsonl(tmp_path / "n.jsonl", [rec(3, 1024, run_id="x"), rec(5, 1024, run_id="x")])
    assert compare.main([str(base), str(new), "--threshold", "1000"]) == 0
    assert "not compared: 1 points only in BASE, 1 only in NEW" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["{b}", "{m}"], "no point is in both"),
    (["{b}", "{missing}"], "missing.jsonl"),
    (["{b}", "{b}", "--threshold", "-1"], "--threshold"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    b = _runs(tmp_path / "b.jsonl")
    m = write_jsonl(tmp_path / "m.jsonl", [rec(7, 64)])
    names = dict(b=b, m=m, missing=tmp_path / "missing.jsonl")
    assert compare.main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_csv_holds_every_point(tmp_path):
    import pandas as pd

    base = _runs(tmp_path / "b.jsonl")
    new = _runs(tmp_path / "n.jsonl", scale=0.5)
    out = tmp_path / "c.csv"
    assert compare.main([str(base), str(new), "--csv", str(out)]) == 0  # faster is no regression
    df = pd.read_csv(out)
    assert len(df) == 2 and set(df["verdict"]) == {"faster"} and math.isclose(df["ratio"].iloc[0], 0.5)


def test_the_report_shows_the_comparison_with_a_baseline(tmp_path):
    from analysis import report

    base = _runs(tmp_path / "b.jsonl")
    new = _runs(tmp_path / "n.jsonl", scale=1.3)
    paths = report.build([str(new)], str(tmp_path / "rep"), baseline=str(base))
    md = paths["report.md"].read_text()
    assert "## Against the baseline" in md and "2 points in both: 2 slower" in md
    assert md.count("| slower |") == 2
    plain = report.build([str(new)], str(tmp_path / "rep2"))["report.md"].read_text()
    assert "## Against the baseline" not in plain


def test_wrong_results_in_new_come_first_and_failures_are_regressions(tmp_path, capsys):
    base = _runs(tmp_path / "b.jsonl", runs=1)
    wrong = [rec(3, s, run_id="w") for s in SIZES]
    wrong[0].update(status="wrong", wrong=3)
    assert compare.main([str(base), str(write_jsonl(tmp_path / "w.jsonl", wrong))]) == 1
    assert "wrong results: shm allreduce 3 ranks float32 out-of-place 1024 B" in capsys.readouterr().err
    failed = [rec(3, s, run_id="f") for s in SIZES]
    failed[1].update(status="timeout", time_us=None, busbw_gbs=None, algbw_gbs=None)
    assert compare.main([str(base), str(write_jsonl(tmp_path / "f.jsonl", failed))]) == 4
    assert "not measured: shm allreduce 3 ranks float32 out-of-place 1048576 B (timeout)" in capsys.readouterr().err


def test_points_without_an_op_or_with_roots_compare(tmp_path):
    recs = []
    for run in ("a", "b"):
        for root in (0, 1):
            r = rec(3, 1024, run_id=run, collective="broadcast", op=None, root=root)
            r["time_us"] *= 1 + root  # root 1 is twice as slow: never averaged with root 0
            recs.append(r)
    path = write_jsonl(tmp_path / "bc.jsonl", recs)
    t = compare.compare(points.load(path), points.load(path))
    assert len(t) == 2 and set(t["runs_base"]) == {2} and set(t["verdict"]) == {"same"}


def test_a_record_read_twice_is_one_run(tmp_path):
    from tests.conftest import read_jsonl

    recs = read_jsonl(_runs(tmp_path / "b.jsonl", runs=1))
    twice = write_jsonl(tmp_path / "d.jsonl", recs + recs)
    t = compare.compare(points.load(twice), points.load(twice))
    assert set(t["runs_base"]) == {1} and len(recs) == 2
