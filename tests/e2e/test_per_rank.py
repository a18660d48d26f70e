"""Per-rank truth end to end: every record names its slowest rank and host and keeps each rank's time; with
--iter-times, bounded per-iteration samples and statistics per rank (JSON only; the CSV keeps the summary)."""

import csv

import pytest

from tests.conftest import read_jsonl


@pytest.mark.parametrize("transport, n", [("shm", 3), ("mpi", 5), ("gloo", 3)])
def test_records_carry_per_rank_truth(runner, tmp_path, transport, n):
    out, table = tmp_path / "r.jsonl", tmp_path / "r.csv"
    res = runner.cli(n, "allreduce", "-b", "1K", "-e", "4K", "-n", "12", "-w", "1", "--transport", transport,
                     "--in-place", "--iter-times", "4", "--iter-skip", "2", "--json", out, "--csv", table,
                     timeout=180)
    assert res.returncode == 0, res.stderr
    recs = read_jsonl(out)
    assert len(recs) == 3
    for r in recs:
        times = r["rank_time_us"]
        assert len(times) == n and len(r["rank_host"]) == n
        assert r["slowest_rank"] == times.index(max(times)) and r["slowest_host"] == r["rank_host"][r["slowest_rank"]]
        assert max(times) == pytest.approx(r["time_us_rank_max"], rel=1e-3)
        assert set(r["host_time_us"]) == set(r["rank_host"])
        assert sorted(r["iter_us"]) == sorted(map(str, range(n))) and all(len(v) == 4 for v in r["iter_us"].values())
        assert all(s["n"] == 10 and s["p50"] <= s["p99"] for s in r["iter_stats"].values())
    with open(table, newline="") as f:
        header = next(csv.reader(f))
    assert "slowest_rank" in header and "slowest_host" in header and "iter_us" not in header


def test_without_iter_times_no_samples_are_kept(runner, tmp_path):
    out = tmp_path / "r.jsonl"
    res = runner.cli(3, "broadcast", "-b", "1K", "-e", "1K", "-n", "5", "--json", out, timeout=120)
    assert res.returncode == 0, res.stderr
    for r in read_jsonl(out):
        assert "iter_us" not in r and len(r["rank_time_us"]) == 3


def test_iter_skip_needs_iter_times(runner):
    import sys

    res = runner.run([sys.executable, "-m", "collectives.allreduce", "--iter-skip", "3"], timeout=60)
    assert res.returncode == 2 and "give --iter-times too" in res.stderr
