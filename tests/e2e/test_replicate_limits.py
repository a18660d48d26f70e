"""collectives.replicate refuses what the host cannot hold before building anything: threads above
its usable cores (unless --oversubscribe) and a batch whose memory it does not have."""

import time

import pytest

from tests.conftest import read_jsonl

pytest.importorskip("torch")

TINY = ["--model", "braggnn", "--batch", "2", "-n", "1", "-w", "0", "--steps", "1"]


def _cores() -> int:
    from ground import env as launch_env

    return launch_env.usable_cores([launch_env.affinity()])


def test_threads_above_the_cores_are_refused_in_one_line(runner):
    res = runner.cli(2, "replicate", *TINY, "--threads", "999", timeout=120)
    assert res.returncode == 2, res.stderr
    cores = _cores()
    assert res.stderr == (f"collscale: error: --threads 999: this host has {cores} usable "
                          f"core{'s' if cores > 1 else ''}; add --oversubscribe to run anyway\n")
    assert "# replicate:" not in res.stdout  # refused before the model was built


def test_a_batch_that_cannot_fit_is_refused_quickly(runner):
    t0 = time.monotonic()
    res = runner.cli(2, "replicate", "--model", "unet", "--batch", "100000", "-n", "1", timeout=120)
    took = time.monotonic() - t0
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("collscale: error: --batch 100000: unet needs about ")
    assert "MB activations per sample), 2 ranks on this host: " in res.stderr and "GB available" in res.stderr
    assert "# replicate:" not in res.stdout
    assert took < 60, took  # startup only: nothing was allocated


def test_oversubscribe_runs_anyway_with_a_note(runner, tmp_path):
    out = tmp_path / "r.jsonl"
    threads = _cores() + 1
    res = runner.cli(1, "replicate", *TINY, "--threads", str(threads), "--oversubscribe", "--json", out,
                     timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"# threads: 1 rank on this host, its {_cores()} usable core" in res.stdout
    assert "# note: 1 rank x" in res.stdout and "oversubscribed" in res.stdout
    (rec,) = read_jsonl(out)
    assert rec["status"] == "ok" and rec["threads"] == threads
