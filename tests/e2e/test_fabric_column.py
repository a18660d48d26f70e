"""``mpirun -n 2 python -m collectives.allreduce --fabric NAME``: the %model column, as a user runs it."""

import pytest

from facts import fabrics, percent_of_model
from tests.conftest import read_jsonl


def test_fabric_adds_percent_of_model(runner, tmp_path):
    out = tmp_path / "r.jsonl"
    res = runner.cli(2, "allreduce", "-b", "1K", "-e", "64K", "-f", "8", "-n", "3", "-w", "1", "--transport", "shm",
                     "--fabric", "eth-10g", "--json", out, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "# %model: busbw as a % of the eth-10g model" in res.stdout
    rows = [ln.split() for ln in res.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(rows) == 3 and all(len(r) == 15 for r in rows)
    recs = read_jsonl(out)
    for rec in recs:
        want = percent_of_model.share(fabrics.get("eth-10g"), "allreduce", rec["size_bytes"], 2, rec["busbw_gbs"])
        assert rec["fabric"] == "eth-10g" and rec["pct_model"] == pytest.approx(want.pct_model)
    out_of_place = [r for r in recs if not r["in_place"]]
    assert [r[9].rstrip("*") for r in rows] == [f"{r['pct_model']:.1f}" for r in out_of_place]


def test_unknown_fabric_is_one_line(runner):
    res = runner.cli(2, "allreduce", "--fabric", "nope", timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "unknown fabric 'nope': give one of nvlink3" in res.stderr
