"""Gates end to end: exit 4 below the bar with one line naming the sizes, 0 above, 1 for wrong results
first, 2 for a gate that cannot judge the sweep (before anything runs)."""

import sys

import pytest

from tests.conftest import read_jsonl

SWEEP = ("-b", "256K", "-e", "2M", "-n", "3", "-w", "1", "--transport", "shm", "--out-of-place")


def test_below_the_bar_is_exit_4_naming_only_judged_sizes(runner, tmp_path):
    out = tmp_path / "r.jsonl"
    res = runner.cli(3, "allreduce", *SWEEP, "--min-busbw", "1e6", "--json", out, timeout=120)
    assert res.returncode == 4, res.stderr
    line = [x for x in res.stderr.splitlines() if "below expectation" in x]
    assert len(line) == 1, res.stderr
    # 1 MiB and 2 MiB are judged (the default --gate-from 1M); 256 KiB and 512 KiB are not.
    assert "busbw below 1e+06 GB/s at 2 of 2 judged sizes: 1 MiB (float32 sum out-of-place" in line[0]
    assert "256 KiB" not in line[0] and "512 KiB" not in line[0]
    assert len(read_jsonl(out)) == 4  # every row kept


def test_above_the_bar_and_gate_from_are_exit_0(runner):
    res = runner.cli(3, "allreduce", *SWEEP, "--min-busbw", "1e-6", "--gate-from", "256K", timeout=120)
    assert res.returncode == 0, res.stderr
    assert "below expectation" not in res.stderr


def test_wrong_results_are_exit_1_whatever_the_gate(runner):
    res = runner.cli(3, "allreduce", *SWEEP, "-c", "1", "--inject-fault", "1", "--min-busbw", "1e6",
                     timeout=120)
    assert res.returncode == 1, res.stderr


def test_percent_of_model_gate(runner):
    res = runner.cli(3, "allreduce", *SWEEP, "--fabric", "nvlink4", "--min-pct-model", "1000", timeout=120)
    assert res.returncode == 4, res.stderr
    assert "% of the model below 1000 %" in res.stderr


@pytest.mark.parametrize("args, message", [
    (("-e", "8", "--min-busbw", "1"), "nothing to judge"),
    (("--min-pct-model", "50"), "--min-pct-model needs --fabric"),
    (("--gate-from", "1K"), "--gate-from needs a bar"),
    (("--min-busbw", "-3"), "give a finite number above 0"),
])
def test_a_gate_that_cannot_judge_is_exit_2_before_running(runner, args, message):
    res = runner.run([sys.executable, "-m", "collectives.allreduce", *args], timeout=60)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and res.stdout == ""


def test_barrier_has_no_bandwidth_to_gate(runner):
    res = runner.run([sys.executable, "-m", "collectives.barrier", "--min-busbw", "1"], timeout=60)
    assert res.returncode == 2 and "no bandwidth to gate" in res.stderr
