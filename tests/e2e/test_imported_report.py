"""Other tools' real logs through the real CLIs: a report with fits and scaling curves from a published
nccl-tests log (ALCF Polaris) and a published OSU log, and predict/scaling fitted on them."""

import sys
from pathlib import Path

import pytest

from tests.e2e.test_analysis import _md_tables

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

DATA = Path(__file__).resolve().parents[1] / "data"
NCCL = DATA / "polaris-nccl2.18-n2-all_reduce_output.dat"
OSU = DATA / "osu-5.8-metrics-operator-2023.txt"


def test_report_from_nccl_tests_and_osu_logs(runner, tmp_path):
    out = tmp_path / "rep"
    res = runner.run([sys.executable, "-m", "analysis.report", str(NCCL), str(OSU), "-o", str(out)], timeout=240)
    assert res.returncode == 0, res.stderr
    # the one-sided OSU tests are named and skipped, in one line
    assert res.stderr.count("\n") == 1 and "OSU tests collscale does not read" in res.stderr
    md = (out / "report.md").read_text()
    tables = _md_tables(md)
    fits = next(rows for header, rows in tables if header[:3] == ["transport", "collective", "algorithm"])
    assert {(r[0], r[1], r[3]) for r in fits} >= {("nccl-tests", "allreduce", "8"), ("osu", "allreduce", "2")}
    glance = next(rows for header, rows in tables if "peak busbw (GB/s)" in header)
    assert {(r[0], r[1]) for r in glance} >= {("nccl-tests", "allreduce"), ("osu", "allreduce"), ("osu", "p2p_bw"),
                                              ("osu", "pingpong")}
    assert "measured nccl-tests allreduce" in md and "measured osu allreduce" in md  # scaling curves from the fits
    for png in ("busbw_allreduce.png", "time_allreduce.png", "busbw_p2p_bw.png", "scaling_unet.png"):
        assert (out / png).stat().st_size > 1000, png


def test_predict_and_scaling_fit_an_imported_log(runner):
    res = runner.run([sys.executable, "-m", "analysis.predict", "--results", str(NCCL), "--ranks", "64", "-b", "1M",
                      "-e", "4M"], timeout=120)
    assert res.returncode == 0, res.stderr
    assert "MODELLED" in res.stdout and "measured nccl-tests" in res.stdout
    res = runner.run([sys.executable, "-m", "analysis.scaling", "--results", f"{OSU}:ranks=2", "--transport", "osu",
                      "--samples-per-second", "100", "--devices", "1,2,8", "--batch", "4"], timeout=120)
    assert res.returncode == 0, res.stderr
    assert "measured osu allreduce" in res.stdout
