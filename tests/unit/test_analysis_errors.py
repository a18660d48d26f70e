"""The analysis CLIs under careless or hostile input: one line on stderr and exit 2, never a traceback.

Each case a tester found has a test here: a 1-rank run's report, files
missing columns, directories and binary files as input, ``-o`` an existing
file or under missing parents, torn lines (read around; ``--strict``
refuses), ``--strong`` with a batch smaller than the device count, every
numeric flag, and an unexpected error (exit 3, a hint at COLLSCALE_DEBUG).
"""

import csv
import json

import pytest

from analysis import cli_common, predict, report, scaling
from analysis.load import points, reader
from facts import record
from collectives.output import FIELDS

pytest.importorskip("pandas")

SIZES = [8 << (2 * i) for i in range(8)]  # 8 B .. 128 KiB


def rec(nranks=2, size=1024, **kw):
    """A measured allreduce record as the harness writes it (time from a latency-bandwidth line)."""
    t = 5.0 * nranks + size / 1e3
    algbw = size / (t * 1e-6) / 1e9
    factor = 2 * (nranks - 1) / nranks
    fields = dict(collective="allreduce", transport="shm", nranks=nranks, size_bytes=size, time_us=t,
                  algbw_gbs=algbw, busbw_gbs=algbw * factor, busbw_factor=factor, run_id=f"run{nranks}",
                  dtype="float32", op="sum", in_place=False, wrong=0)
    fields.update(kw)
    return record.new("measured", "ok", **fields)


def write_jsonl(path, recs, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + tail)
    return path


def write_csv(path, recs, drop=()):
    header = [f for f in FIELDS if f not in drop]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in recs:
            w.writerow(["" if r.get(k) is None else r.get(k) for k in header])
    return path


def measured(tmp_path, name="r.jsonl", ranks=(2, 4)):
    return write_jsonl(tmp_path / name, [rec(p, s) for p in ranks for s in SIZES])


def run(main, argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error(prog, code, err, *words):
    """Exit 2 and exactly one stderr line, ``<prog>: error: ...``, holding ``words``."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"analysis.{prog}: error: "), lines
    for w in words:
        assert w in lines[0], (w, lines[0])


# -- 1: the report of a 1-rank run ------------------------------------------------------

def test_report_of_a_one_rank_run(tmp_path, capsys):
    src = write_jsonl(tmp_path / "one.jsonl", [rec(1, s) for s in SIZES])
    assert all(r["busbw_gbs"] == 0 for r in reader.read_records([src]))
    out = tmp_path / "a" / "b" / "rep"  # missing parents are created
    code, stdout, err = run(report.main, [src, "-o", out], capsys)
    assert code == 0, err
    names = {p.name for p in out.iterdir()}
    assert "time_allreduce.png" in names and "busbw_allreduce.png" not in names
    md = (out / "report.md").read_text()
    assert "ran on 1 rank" in md and "busbw_allreduce.png: not drawn" in md
    assert "| shm | allreduce | 1 |" in md  # the times are still tabulated


def test_one_rank_series_left_out_of_a_busbw_plot_beside_others(tmp_path, capsys):
    src = write_jsonl(tmp_path / "r.jsonl", [rec(p, s) for p in (1, 2) for s in SIZES])
    code, _, err = run(report.main, [src, "-o", tmp_path / "rep"], capsys)
    assert code == 0, err
    assert (tmp_path / "rep" / "busbw_allreduce.png").exists()
    assert "busbw_allreduce.png: left out: shm at 1 rank" in (tmp_path / "rep" / "report.md").read_text()


# -- 2: files missing columns -----------------------------------------------------------

def test_csv_without_busbw_derives_it_and_says_so(tmp_path):
    recs = [rec(4, s) for s in SIZES]
    path = write_csv(tmp_path / "r.csv", recs, drop=("busbw_gbs",))
    said = []
    df = points.load(path, warn=said.append)
    assert df["busbw_gbs"].tolist() == pytest.approx([r["busbw_gbs"] for r in recs])
    assert len(said) == 1 and "r.csv: busbw_gbs missing in 8 of 8" in said[0] and "derived" in said[0]


def test_busbw_and_algbw_derived_from_the_spec_factor(tmp_path):
    recs = [rec(4, s) for s in SIZES]
    path = write_csv(tmp_path / "r.csv", recs, drop=("busbw_gbs", "busbw_factor", "algbw_gbs"))
    said = []
    df = points.load(path, warn=said.append)
    assert df["busbw_gbs"].tolist() == pytest.approx([r["busbw_gbs"] for r in recs])
    assert df["algbw_gbs"].tolist() == pytest.approx([r["algbw_gbs"] for r in recs])
    assert len(said) == 2


@pytest.mark.parametrize("drop, missing", [(("time_us",), "time_us"), (("status", "nranks"), "nranks, status")])
def test_csv_without_a_required_column_is_refused(tmp_path, capsys, drop, missing):
    path = write_csv(tmp_path / "r.csv", [rec(2, s) for s in SIZES], drop=drop)
    with pytest.raises(reader.ResultsError, match=f"r.csv: missing required column.*{missing}"):
        points.load(path)
    code, _, err = run(report.main, [path, "-o", tmp_path / "o"], capsys)
    one_error("report", code, err, "r.csv", missing)
    assert not (tmp_path / "o").exists()


def test_jsonl_without_any_time_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [dict(rec(2, s), time_us=None) for s in SIZES])
    with pytest.raises(reader.ResultsError, match="r.jsonl: missing required column.*time_us"):
        points.load(path)


# -- 3: paths ---------------------------------------------------------------------------

@pytest.mark.parametrize("main, argv", [
    (report.main, ["{x}", "-o", "{tmp}/o"]),
    (predict.main, ["--results", "{x}"]),
    (scaling.main, ["--results", "{x}", "--samples-per-second", "10"]),
])
@pytest.mark.parametrize("kind, words", [("dir", "is a directory"), ("binary", "a binary file"),
                                         ("missing", "no such file"), ("empty", "no records")])
def test_inputs_that_are_not_results_files(tmp_path, capsys, main, argv, kind, words):
    x = tmp_path / "x.jsonl"
    if kind == "dir":
        x.mkdir()
    elif kind == "binary":
        x.write_bytes(bytes(range(256)) * 4)
    elif kind == "empty":
        x.write_text("\n\n")
    code, _, err = run(main, [a.format(x=x, tmp=tmp_path) for a in argv], capsys)
    one_error(main.__module__.split(".")[1], code, err, str(x), words)


def test_non_utf8_line_is_read_around(tmp_path):
    path = measured(tmp_path)
    path.write_bytes(path.read_bytes() + b"\xff\xfe garbage\n")
    said = []
    assert len(points.load(path, warn=said.append)) == 2 * len(SIZES)
    assert len(said) == 1 and "not UTF-8" in said[0]


def test_report_output_an_existing_file(tmp_path, capsys):
    src = measured(tmp_path)
    target = tmp_path / "taken"
    target.write_text("x")
    code, _, err = run(report.main, [src, "-o", target], capsys)
    one_error("report", code, err, "-o", "exists and is not a directory")


def test_output_dir_creates_parents_and_refuses_files(tmp_path):
    assert cli_common.output_dir("-o", str(tmp_path / "a" / "b")).is_dir()
    (tmp_path / "f").write_text("")
    with pytest.raises(cli_common.UsageError, match="cannot create"):
        cli_common.output_dir("-o", str(tmp_path / "f" / "sub"))
    for bad in ("", "a\x00b"):
        with pytest.raises(cli_common.UsageError, match="not a path"):
            cli_common.output_dir("-o", bad)


@pytest.mark.parametrize("main, argv", [
    (predict.main, ["--fabric", "nvlink3", "-e", "64"]),
    (scaling.main, ["--fabric", "nvlink3", "--devices", "1,2"]),
])
def test_json_output_paths(tmp_path, capsys, main, argv):
    prog = main.__module__.split(".")[1]
    code, _, err = run(main, argv + ["--json", tmp_path], capsys)
    one_error(prog, code, err, "--json", "is a directory")
    code, _, err = run(main, argv + ["--json", tmp_path / "no" / "x.jsonl"], capsys)
    one_error(prog, code, err, "--json", "no directory")
    code, out, err = run(main, argv + ["--json", tmp_path / "x.jsonl"], capsys)
    assert code == 0 and not err and (tmp_path / "x.jsonl").stat().st_size > 0


# -- 4: torn and bad lines --------------------------------------------------------------

TORN = '{"schema":"collscale.row/1","kind":"measu'


def test_torn_last_line_is_read_around_with_one_warning(tmp_path, capsys):
    path = write_jsonl(tmp_path / "r.jsonl", [rec(p, s) for p in (2, 4) for s in SIZES], tail=TORN)
    said = []
    assert len(points.load(path, warn=said.append)) == 16
    assert len(said) == 1 and "r.jsonl:17: skipped" in said[0] and "torn last line" in said[0]
    with pytest.raises(reader.ResultsError, match=r"r.jsonl:17: not JSON.*--strict"):
        points.load(path, strict=True)
    code, out, err = run(predict.main, ["--results", path, "-e", "1K"], capsys)
    assert code == 0 and "MODELLED" in out
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("analysis.predict: warning: ")]
    assert len(err.splitlines()) == 1 and "r.jsonl:17" in err
    for main, argv in ((predict.main, ["--results", path]),
                       (scaling.main, ["--results", path, "--samples-per-second", "9"]),
                       (report.main, [path, "-o", tmp_path / "o"])):
        code, _, err = run(main, argv + ["--strict"], capsys)
        one_error(main.__module__.split(".")[1], code, err, "r.jsonl:17", "--strict")


def test_bad_lines_in_the_middle_one_warning_per_file(tmp_path):
    recs = [json.dumps(rec(2, s)) for s in SIZES]
    lines = recs[:2] + ["garbage", '{"not": "ours"}'] + recs[2:] + ["[1]"]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n")
    said = []
    assert len(points.load(path, warn=said.append)) == len(SIZES)
    assert len(said) == 1 and "r.jsonl:3: skipped" in said[0] and "2 more (lines 4, 11)" in said[0]


def test_torn_csv_row_is_read_around(tmp_path):
    path = write_csv(tmp_path / "r.csv", [rec(2, s) for s in SIZES])
    text = path.read_text()
    path.write_text(text + text.splitlines()[1][:40])
    said = []
    assert len(points.load(path, warn=said.append)) == len(SIZES)
    assert len(said) == 1 and "r.csv:10: skipped" in said[0] and "fields" in said[0]


def test_newer_records_of_our_schema_load(tmp_path):
    newer = dict(rec(2, 64), schema="collscale.row/2", new_field={"nested": [1, 2]}, other=3)
    path = write_jsonl(tmp_path / "r.jsonl", [newer, rec(2, 128)])
    df = points.load(path, strict=True)
    assert len(df) == 2 and "new_field" in df and set(df["schema"]) == {"collscale.row/1", "collscale.row/2"}


def test_numbers_beyond_any_float_are_read_around(tmp_path):
    huge = 10 ** 400  # JSON allows it; float() does not
    recs = [rec(2, 8), dict(rec(2, 16), time_us=huge), dict(rec(2, 32), algbw_gbs=huge, count=huge),
            dict(rec(2, 64), nranks=huge), dict(rec(2, 128), time_us=5e-324)]
    said = []
    df = points.load(write_jsonl(tmp_path / "r.jsonl", recs), warn=said.append)
    assert df["size_bytes"].tolist() == [8, 32] and df["count"].isna().all()  # 5e-324 us: below 1 ns
    assert any("r.jsonl:5: 1 non-physical row left out (time_us 4.94e-324" in s for s in said), said
    assert df["algbw_gbs"].tolist()[1] == pytest.approx(recs[2]["size_bytes"] / recs[2]["time_us"] / 1e3)
    assert "r.jsonl:2: skipped" in said[0] and "1 more (line 4)" in said[0]


def test_foreign_file_is_refused_naming_file_and_line(tmp_path, capsys):
    path = tmp_path / "other.jsonl"
    path.write_text('{"name": "x", "value": 1}\n{"name": "y"}\n')
    code, _, err = run(report.main, [path, "-o", tmp_path / "o"], capsys)
    one_error("report", code, err, "other.jsonl:1", "not a collscale record")


# -- 5: strong scaling with a batch smaller than the device count -----------------------

def test_strong_scaling_says_which_device_counts_it_leaves_out(capsys):
    code, out, err = run(scaling.main, ["--fabric", "nvlink3", "--strong", "--batch", "8,64",
                                        "--devices", "1,4,16,128"], capsys)
    assert code == 0 and not err
    notes = [line for line in out.splitlines() if line.startswith("# note:")]
    assert notes == ["# note: --strong: global batch 8 is smaller than 16, 128 devices (less than one sample "
                     "each): those rows are left out",
                     "# note: --strong: global batch 64 is smaller than 128 devices (less than one sample "
                     "each): those rows are left out"]
    assert len([line for line in out.splitlines() if line.endswith("MODELLED")]) == 5
    code, _, err = run(scaling.main, ["--fabric", "nvlink3", "--strong", "--batch", "8", "--devices", "16"], capsys)
    one_error("scaling", code, err, "--strong", "nothing to show")


# -- 6: every numeric flag --------------------------------------------------------------

@pytest.mark.parametrize("flag, value", [
    ("--ranks", "0"), ("--ranks", "x"), ("--ranks", "1e3"), ("--ranks", "99999999999999999999999"),
    ("-b", "nan"), ("-b", "-1"), ("-b", "0"), ("-e", "1,,x"), ("-e", "9" * 40), ("-e", "2P"),
    ("-f", "1"), ("-f", "nan"), ("-f", "inf"), ("-f", "-2"), ("-f", "1e308"), ("-f", "x"),
    ("-d", "float128"), ("--collective", "nope"),
])
def test_predict_numeric_flags(capsys, flag, value):
    code, _, err = run(predict.main, ["--fabric", "nvlink3", flag, value], capsys)
    one_error("predict", code, err, flag)


@pytest.mark.parametrize("flag, value", [
    ("--devices", "1,,x"), ("--devices", ""), ("--devices", "0"), ("--devices", "1.5"), ("--devices", "2e10"),
    ("--devices", ",".join(["2"] * 101)), ("--batch", "-5"), ("--batch", "0,8"), ("--batch", "nan"),
    ("--accum", "0"), ("--accum", "inf"), ("--mfu", "0"), ("--mfu", "1.5"), ("--mfu", "nan"),
    ("--peak-tflops", "-1"), ("--peak-tflops", "inf"), ("--peak-tflops", "1e400"),
    ("--samples-per-second", "0"), ("--samples-per-second", "nan"), ("--samples-per-second", "-3"),
    ("--grad-dtype", "fp8"),
])
def test_scaling_numeric_flags(capsys, flag, value):
    code, _, err = run(scaling.main, ["--fabric", "nvlink3", f"{flag}={value}"], capsys)
    one_error("scaling", code, err, flag)


@pytest.mark.parametrize("argv, words", [
    ([], "required"), (["--fabric", "nvlink3", "--results", "x"], "not allowed with"),
    (["--fabric", "nope"], "unknown fabric"), (["--fabric", "nvlink3", "--bogus"], "unrecognized"),
])
def test_usage_errors_are_one_line(capsys, argv, words):
    for main in (predict.main, scaling.main):
        code, _, err = run(main, argv, capsys)
        one_error(main.__module__.split(".")[1], code, err, words)


def test_strong_scaling_extremes_stay_finite(capsys):
    code, out, err = run(scaling.main, ["--fabric", "nvlink3", "--batch", str(2 ** 31), "--devices", "1,1048576",
                                        "--accum", str(2 ** 20), "--samples-per-second", "1e-6"], capsys)
    assert code == 0 and not err and "nan" not in out and "inf" not in out


def test_help_exits_zero(capsys):
    for main in (predict.main, scaling.main, report.main):
        code, out, _ = run(main, ["--help"], capsys)
        assert code == 0 and "usage:" in out


# -- 7: an unexpected error -------------------------------------------------------------

def test_unexpected_error_is_one_line_unless_debugging(capsys, monkeypatch):
    def broken(*a, **k):
        raise TypeError("boom")

    monkeypatch.setattr(predict, "predict_rows", broken)
    monkeypatch.delenv("COLLSCALE_DEBUG", raising=False)
    code, _, err = run(predict.main, ["--fabric", "nvlink3"], capsys)
    assert code == 3 and err.splitlines() == [
        "analysis.predict: error: TypeError: boom (set COLLSCALE_DEBUG=1 for the traceback)"]
    monkeypatch.setenv("COLLSCALE_DEBUG", "1")
    code, _, err = run(predict.main, ["--fabric", "nvlink3"], capsys)
    assert code == 3 and "Traceback" in err and err.splitlines()[-1] == "analysis.predict: error: TypeError: boom"
