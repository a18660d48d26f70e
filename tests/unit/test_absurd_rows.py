"""Issue 18: non-physical rows (analysis.physical) never reach a table, a fit or a prediction.

A time of 1e308 us, a size of 2**62 B, a busbw of 1e308 GB/s, one row of 1 TiB
in 1 us among sane ones: each is left out with ONE warning naming file:line
(``strict``: an error), from collscale results and imported logs alike, and no
numpy warning reaches the user (the fits refuse non-finite input themselves).
"""

import subprocess
import sys
import warnings

import numpy as np
import pytest

from analysis import fit, physical, predict
from analysis.load import points, reader
from tests.unit.test_analysis_errors import rec, write_csv, write_jsonl

pytest.importorskip("pandas")

SIZES = [1 << k for k in range(10, 31, 2)]  # 1 KiB .. 1 GiB
TIB_IN_1US = dict(size_bytes=1 << 40, time_us=1.0, algbw_gbs=None, busbw_gbs=None)  # bandwidths derived


def sane(ranks=(2, 4, 8)):
    return [rec(p, s) for p in ranks for s in SIZES]


def load(path, **kw):
    said = []
    return points.load(path, warn=said.append, **kw), said


@pytest.mark.parametrize("bad, words", [
    (dict(time_us=1e308), "time_us 1e+308 not in"),
    (dict(size_bytes=1 << 62), "size_bytes 4.612e+18 > 2^50"),
    (dict(busbw_gbs=1e308), "busbw_gbs 1e+308 > 100000 GB/s"),
    (dict(algbw_gbs=1e308), "algbw_gbs 1e+308 > 100000 GB/s"),
    (dict(time_us=0.0), "time_us 0 not in"),  # below 1 ns
    (dict(nranks=8, **TIB_IN_1US), "> 100000 GB/s"),
])
def test_one_absurd_row_is_left_out_with_one_warning_naming_its_line(tmp_path, bad, words):
    recs = sane()
    recs.insert(6, rec(**{"nranks": 4, **bad}))
    path = write_jsonl(tmp_path / "results.jsonl", recs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning, no other warning either
        df, said = load(path)
    assert len(df) == len(recs) - 1
    assert df["time_us"].max() < 2e6 and df["size_bytes"].max() <= 1 << 30 and df["busbw_gbs"].max() < 10
    notes = [s for s in said if "non-physical" in s]
    assert len(notes) == 1 and notes[0].startswith(f"{path}:7: 1 non-physical row left out") and words in notes[0]
    assert not any("derived" in s for s in said)  # the 1 TiB row's derived bandwidths left with it
    with pytest.raises(reader.ResultsError, match=r"results\.jsonl:7: non-physical row: .*--strict"):
        points.load(path, strict=True, warn=said.append)


def test_many_absurd_rows_one_warning_first_line_and_count(tmp_path):
    recs = sane()
    for at, bad in ((3, dict(time_us=1e308)), (9, dict(busbw_gbs=1e308)), (12, dict(time_us=1e308))):
        recs.insert(at, rec(2, 4096, **bad))
    df, said = load(write_jsonl(tmp_path / "r.jsonl", recs))
    assert len(df) == len(sane())
    (note,) = [s for s in said if "non-physical" in s]
    assert "r.jsonl:4: 3 non-physical rows left out (time_us 1e+308" in note
    assert "first at line 4; also lines 10, 13" in note and "time_us 2, busbw_gbs 1" in note


def test_csv_rows_are_checked_too(tmp_path):
    recs = sane((2,)) + [rec(2, 4096, time_us=1e308)]
    df, said = load(write_csv(tmp_path / "r.csv", recs))
    assert len(df) == len(SIZES) and any(f"r.csv:{len(recs) + 1}: 1 non-physical" in s for s in said)


def test_bounds_are_inclusive_and_one_rank_rows_may_be_fast():
    edge = [rec(2, 1 << 50, time_us=(1 << 50) / 5e7),  # 1 PiB at 50 TB/s
            rec(2, 8, time_us=physical.MIN_TIME_US, algbw_gbs=0.001, busbw_gbs=0.001),
            rec(2, 8, time_us=physical.MAX_TIME_US),
            rec(1, 1 << 40, time_us=1.0)]  # 1 rank in place: nothing moves, nccl-tests reports such rows
    keep, counts, first = physical.check(edge)
    assert keep.all() and not counts and first is None
    beyond = [rec(2, (1 << 50) + 1), rec(2, 8, time_us=physical.MIN_TIME_US * 0.999),
              rec(2, 8, time_us=physical.MAX_TIME_US * 1.001), rec(2, 8, busbw_gbs=-1.0)]
    assert not physical.check(beyond)[0].any()


def test_imported_rows_are_checked_and_named_by_their_source_line(tmp_path):
    header = ("#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   "
              "busbw #wrong")
    rows = [f"{s:12d} {s // 4:13d}     float     sum      -1 {5 + s / 1e4:8.2f} {1.0:7.2f} {2.0:7.2f} {0:6d}"
            f" {5 + s / 1e4:8.2f} {1.0:7.2f} {2.0:7.2f} {0:6d}" for s in (1024, 2048, 4096)]
    rows.insert(1, f"{1 << 40:14d} {1 << 38:13d}     float     sum      -1 {1.0:8.2f} {1.0:7.2f} {2.0:7.2f} {0:6d}"
                   f" {1.0:8.2f} {1.0:7.2f} {2.0:7.2f} {0:6d}")  # 1 TiB in 1 us, bandwidths printed sane
    text = "\n".join(["# Collective test starting: all_reduce_perf",
                      "#  Rank  0 Group  0 Pid 1 on h0 device  0 [0x0] G",
                      "#  Rank  1 Group  0 Pid 2 on h1 device  0 [0x0] G", header] + rows) + "\n"
    path = tmp_path / "nccl.log"
    path.write_text(text)
    df, said = load(path)
    assert sorted(set(df["size_bytes"])) == [1024, 2048, 4096]
    (note,) = [s for s in said if "non-physical" in s]
    assert note.startswith(f"{path}:6: 2 non-physical rows left out (size_bytes / time_us = 1.1e+09 GB/s")
    with pytest.raises(reader.ResultsError, match=r"nccl\.log:6: non-physical row"):
        points.load(path, strict=True, warn=said.append)


def test_fits_refuse_non_finite_input_without_a_numpy_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for times in ([np.inf, 1e-6], [np.nan, 1e-6], [0.0, 1e-6], [1e302, 1e302], [1e-300, 1e-300]):
            for f in (fit.fit_affine, fit.fit_segmented):
                with pytest.raises(ValueError, match="times must be"):
                    f([8, 16], times)
            with pytest.raises(ValueError, match="times must be"):
                fit.fit_model("allreduce", [8, 16], [2, 2], times)
        with pytest.raises(ValueError, match="sizes must be"):
            fit.fit_model("allreduce", [1e308, 8], [2, 2], [1e-6, 1e-6])
        # degenerate but finite: a flat line (infinite bandwidth) is an answer, not a warning
        assert fit.fit_affine([8, 16, 32], [1e-6] * 3).latency_s == pytest.approx(1e-6)
        assert fit.fit_model("allreduce", [8, 16, 32], [2, 4, 8], [1e-6] * 3).alpha > 0


def test_a_frame_built_without_the_loader_still_keeps_absurd_rows_out_of_fits():
    good = points.frame(sane())
    bad = points.frame(sane() + [rec(8, **{**TIB_IN_1US, "algbw_gbs": 1.0, "busbw_gbs": 1.0}),
                                  rec(4, 4096, time_us=1e308)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (a,), (b,) = fit.fit_transport(good, "shm"), fit.fit_transport(bad, "shm")
    assert (a.alpha, a.beta, a.points) == (b.alpha, b.beta, b.points)


def test_one_tib_in_one_us_among_sane_rows_leaves_predict_unchanged(tmp_path):
    """The tester's case, run as a user would, with numpy's RuntimeWarnings made errors."""
    recs = sane()
    clean = write_jsonl(tmp_path / "clean.jsonl", recs)
    recs.insert(5, rec(8, **TIB_IN_1US))
    one = write_jsonl(tmp_path / "one.jsonl", recs)
    outs = []
    for path in (clean, one):
        p = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "analysis.predict", "--results",
                            str(path), "--ranks", "64", "-b", "1M", "-e", "1G"], capture_output=True, text=True)
        assert p.returncode == 0 and "RuntimeWarning" not in p.stderr and "Traceback" not in p.stderr, p.stderr
        outs.append(p)
    assert outs[0].stdout == outs[1].stdout  # the bad row changed nothing
    assert outs[0].stderr == ""
    (line,) = outs[1].stderr.splitlines()
    assert line.startswith(f"analysis.predict: warning: {one}:6: 1 non-physical row left out")
    busbw = [float(ln.split()[7]) for ln in outs[1].stdout.splitlines() if ln.endswith("MODELLED")]
    assert busbw and max(busbw) < 10  # the fit of the sane rows: ~2 GB/s, not 27,876


def test_predict_in_process_on_degenerate_results_warns_nothing_numeric(tmp_path, capsys):
    """Equal times at every size (an infinite fitted bandwidth) and a lone absurd row: no numpy warning."""
    recs = [rec(p, s, time_us=7.0, algbw_gbs=None, busbw_gbs=None) for p in (2, 4) for s in SIZES[:4]]
    recs.append(rec(2, 1 << 20, time_us=float("1e308")))
    path = write_jsonl(tmp_path / "flat.jsonl", recs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        code = predict.main(["--results", str(path), "--ranks", "8", "-b", "8", "-e", "1M"])
    out, err = capsys.readouterr()
    assert code == 0 and "RuntimeWarning" not in err and "flat.jsonl:9: 1 non-physical" in err, err
