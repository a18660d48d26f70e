"""collectives.replicate: DDP training steps of a real (tiny) model, measured per phase and bucket."""

import pytest

from tests.conftest import cli_cmd, read_jsonl

pytest.importorskip("torch")

TINY = ["--model", "braggnn", "-n", "2", "-w", "1", "--steps", "2"]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_phases_add_up_and_buckets_match_ddp(runner, tmp_path, n):
    from analysis.load import points, replicate_runs
    from facts import workloads

    out = tmp_path / "r.jsonl"
    res = runner.cli(n, "replicate", *TINY, "--batch", "2,4", "--json", out, "--csv", tmp_path / "r.csv",
                     timeout=240)
    assert res.returncode == 0, res.stderr
    assert "synthetic inputs" in res.stdout and "no data loading" in res.stdout
    assert "# host memory allocator: " in res.stdout
    assert "Traceback" not in res.stderr and "Warning" not in res.stderr, res.stderr[-2000:]
    recs = read_jsonl(out)
    assert [r["batch"] for r in recs] == [2, 4]
    w = workloads.get("braggnn")
    for r in recs:
        assert r["kind"] == "measured" and r["status"] == "ok" and r["nranks"] == n
        assert r["forward_ms"] + r["backward_ms"] + r["optimizer_ms"] == pytest.approx(r["step_ms"], rel=1e-6)
        assert r["step_ms_spread"][0] <= r["step_ms"] <= r["step_ms_spread"][1]
        assert r["size_bytes"] == 4 * w.params
        # DDP's buckets (25 MiB, the first 1 MiB): braggnn's gradients fit one.
        assert [b["bytes"] for b in r["bucket_timeline"]] == workloads.gradient_buckets(w)
        for b in r["bucket_timeline"]:
            assert 0 <= b["ready_ms"] <= b["done_ms"] <= r["backward_ms"] + 1e-6
        # E(N) from the same job's rounds, and the parts of its loss add up.
        assert r["rounds_timed"] == 2 and len(r["rounds"]) == 2
        assert all(len(x["ddp_ms"]) == n for x in r["rounds"])
        assert r["efficiency"] == pytest.approx(r["alone_ms"] / r["ddp_ms"])
        assert r["loss_sharing"] + r["loss_skew"] + r["loss_exposed"] == pytest.approx(1 - r["efficiency"])
        assert r["xn_samples_per_s"] == pytest.approx(n * r["batch"] / r["ddp_ms"] * 1e3)
        assert r["alone_forward_ms"] + r["alone_backward_ms"] + r["alone_optimizer_ms"] > 0
        assert r["threads"] >= 1
        assert r["steps_per_phase"] == 2
        assert r["allocator"] and r["alone_faults_per_step"] >= 0 and r["ddp_faults_per_step"] >= 0
        assert r["host_cores"] >= 1
        if n == 1:
            assert r["loss_sharing"] == 0 and r["loss_skew"] == 0 and r["wait_cpu_ms"] is None
            assert r["comm_alone_ms"] is None and r["copy_alone_ms"] is None and r["wake_alone_ms"] is None
        else:
            assert r["wait_cpu_ms"] is not None and r["nosync_max_ms"] >= r["nosync_ms"]
            # The gradient allreduce alone: every DDP bucket, timed in every round.
            assert r["comm_alone_ms"] > 0 and all(len(x["comm_ms"]) == n for x in r["rounds"])
            assert [b["bytes"] for b in r["comm_alone_buckets"]] == workloads.gradient_buckets(w)
            assert r["copy_alone_ms"] > 0  # DDP's copies into and out of its buckets, timed apart
            # ... and neither they nor the wake probe's 20 ms of compute are in the allreduce's own time:
            # the buckets' own times add up to it (each a median over rounds, so not exactly).
            own = sum(b["ms"] for b in r["comm_alone_buckets"])
            assert own == pytest.approx(r["comm_alone_ms"], rel=0.5)
            # The wake probe: a difference of two allreduce times (noise may make it negative, never huge).
            assert isinstance(r["wake_alone_ms"], float) and abs(r["wake_alone_ms"]) < 1000
    # The collective-points frame leaves training steps out; they load into their own.
    assert points.load([str(out)], all_status=True).empty
    df = replicate_runs.load([str(out)])
    assert list(df["batch"]) == [2, 4] and (df["nranks"] == n).all() and df["efficiency"].notna().all()
    csv_df = replicate_runs.load([str(tmp_path / "r.csv")])
    assert list(csv_df["batch"]) == [2, 4] and csv_df["efficiency"].tolist() == pytest.approx(
        df["efficiency"].tolist())


def test_bad_input_is_one_line(runner):
    # In one launch each would cost seconds: the parser in-process, the CLI once.
    from collectives.replicate import parse_args
    from ground.dtypes import ConfigError

    for argv, message in ((["--model", "resnet"], "unknown"), (["--batch", "0"], "--batch"),
                          (["--batch", "2,x"], "--batch"), (["--transport", "mpi"], "gloo, nccl or hccl"),
                          (["-n", "0"], "at least 1")):
        with pytest.raises(ConfigError, match=message):
            parse_args(argv)
    res = runner.cli(2, "replicate", "--model", "resnet", timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_a_model_too_big_for_memory_is_refused(runner):
    res = runner.cli(2, "replicate", "--model", "genslm-25b", "-n", "1", timeout=120)
    assert res.returncode == 2, res.stderr
    assert "GiB available" in res.stderr or "too big" in res.stderr, res.stderr


def test_under_torchrun(runner, tmp_path):
    from tests.e2e.test_torch import _torchrun

    out = tmp_path / "r.jsonl"
    # Steps per phase chosen from an untimed step (braggnn at batch 2 takes milliseconds: several).
    res = runner.run(_torchrun(2) + ["-m", "collectives.replicate", *TINY[:-2], "-n", "1", "--json", str(out)],
                     timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    (rec,) = read_jsonl(out)
    assert rec["nranks"] == 2 and rec["status"] == "ok" and rec["transport"] == "gloo"
    assert 1 < rec["steps_per_phase"] <= 50


def test_a_rank_killed_mid_run_ends_the_job_and_keeps_what_was_measured(runner, tmp_path):
    import os
    import signal
    import time

    from tests.e2e.test_cli import _pid_of_rank, _wait_rows

    out = tmp_path / "r.jsonl"
    proc = runner.popen(cli_cmd(2, "replicate", "--model", "braggnn", "--batch", "2,4", "-n", "200", "-w", "1",
                                "--steps", "1", "--json", out))
    deadline = time.time() + 120
    try:
        pid, _ = _pid_of_rank(proc, 1, deadline)
        _wait_rows(out, 1, deadline)  # the first batch size is measured and written
        os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    recs = read_jsonl(out)
    assert [r["batch"] for r in recs if r["status"] == "ok"] == [2]
