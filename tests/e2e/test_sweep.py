"""launch.sweep end to end: local rank sweeps over mpirun and torchrun, failed points,
timeouts, and PBS/Slurm job scripts submitted through stand-in qsub/sbatch."""

import os
import signal
import sys
import textwrap
import time

import pytest

from tests.conftest import BIN, read_jsonl

SWEEP = [sys.executable, "-m", "launch.sweep"]


def _sweep(runner, tmp_path, *args, timeout=300):
    return runner.run([*SWEEP, "--dir", str(tmp_path / "sw"), *args], timeout=timeout)


def test_local_rank_sweep_1_2_3(runner, tmp_path):
    res = _sweep(runner, tmp_path, "--ranks", "1,2,3", "--collectives", "allreduce,allgather",
                 "--", "-e", "16K", "-n", "2", "-w", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    for k in range(1, 7):
        assert f"[{k}/6] " in res.stdout
    assert "6 of 6 points completed" in res.stdout
    recs = read_jsonl(tmp_path / "sw" / "results.jsonl")
    assert len({r["sweep_id"] for r in recs}) == 1 and recs[0]["sweep_id"].startswith("sweep-")
    assert {r["nranks"] for r in recs} == {1, 2, 3}
    assert {r["sweep_point"] for r in recs} == {f"ranks{n}-{c}" for n in (1, 2, 3)
                                              for c in ("allreduce", "allgather")}
    assert all(r["status"] == "ok" and r["wrong"] == 0 for r in recs)
    assert all(r["sweep_point"].startswith(f"ranks{r['nranks']}-{r['collective']}") for r in recs)
    logs = sorted(os.listdir(tmp_path / "sw" / "logs"))
    assert len(logs) == 6 and "ranks3-allgather.log" in logs
    assert "# collscale " in (tmp_path / "sw" / "logs" / "ranks3-allgather.log").read_text()
    # Straight into the analysis.
    from analysis.load import points

    df = points.load(tmp_path / "sw" / "results.jsonl")
    assert set(df["nranks"]) == {1, 2, 3} and df["sweep_id"].nunique() == 1


def test_a_failed_point_is_recorded_and_the_sweep_goes_on(runner, tmp_path):
    # Root 1 does not exist at one rank: that point fails, the next one runs.
    res = _sweep(runner, tmp_path, "--ranks", "1,2", "--collectives", "broadcast", "--",
                 "-r", "1", "-e", "4K", "-n", "2")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAILED" in res.stdout and "going on" in res.stdout and "failed: ranks1-broadcast" in res.stdout
    recs = read_jsonl(tmp_path / "sw" / "results.jsonl")
    failed = [r for r in recs if r["status"] == "failed"]
    assert len(failed) == 1
    assert failed[0]["sweep_point"] == "ranks1-broadcast" and failed[0]["exit_code"] == 2
    assert "root 1 does not exist" in failed[0]["reason"]
    assert any(r["status"] == "ok" and r["nranks"] == 2 for r in recs)
    from analysis.load import points

    every = points.load(tmp_path / "sw" / "results.jsonl", all_status=True)
    assert (every["status"] == "failed").sum() == 1
    assert set(points.load(tmp_path / "sw" / "results.jsonl")["nranks"]) == {2}


def test_a_point_past_its_timeout_is_stopped_and_recorded(runner, tmp_path):
    res = _sweep(runner, tmp_path, "--ranks", "2", "--collectives", "allreduce", "--point-timeout", "4",
                 "--", "-e", "64M", "--time-budget", "2")
    assert res.returncode == 1, res.stdout + res.stderr
    recs = read_jsonl(tmp_path / "sw" / "results.jsonl")
    failed = [r for r in recs if r["status"] == "failed"]
    assert len(failed) == 1 and "--point-timeout 4 s" in failed[0]["reason"] and failed[0]["exit_code"] == 124
    # What was measured before the stop is kept.
    assert any(r["status"] == "ok" for r in recs)


def test_torchrun_sweep(runner, tmp_path):
    pytest.importorskip("torch")
    res = _sweep(runner, tmp_path, "--launcher", "torchrun", "--ranks", "2,3", "--collectives", "allreduce",
                 "--", "--transport", "gloo", "-e", "4K", "-n", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    recs = read_jsonl(tmp_path / "sw" / "results.jsonl")
    assert {r["nranks"] for r in recs} == {2, 3} and {r["transport"] for r in recs} == {"gloo"}
    # gloo reduces in place only: the out-of-place column is honestly 'unsupported'.
    assert {r["status"] for r in recs} == {"ok", "unsupported"}
    assert {r["nranks"] for r in recs if r["status"] == "ok"} == {2, 3}


def test_wrong_elements_are_not_a_failed_point(runner, tmp_path):
    res = _sweep(runner, tmp_path, "--ranks", "2", "--collectives", "allreduce", "--",
                 "-e", "4K", "-n", "2", "--inject-fault", "1")
    assert res.returncode == 1, res.stdout + res.stderr  # as the harness: wrong elements are an error
    assert "WRONG ELEMENTS in: ranks2-allreduce" in res.stdout and "1 of 1 points completed" in res.stdout
    recs = read_jsonl(tmp_path / "sw" / "results.jsonl")
    assert any(r["status"] == "wrong" for r in recs) and not any(r["status"] == "failed" for r in recs)


def test_a_torchrun_failure_is_a_failed_point(runner, tmp_path):
    # torchrun exits 1 for any failed worker: without wrong rows that is a failure, not "wrong".
    pytest.importorskip("torch")
    res = _sweep(runner, tmp_path, "--launcher", "torchrun", "--ranks", "1", "--collectives", "broadcast", "--",
                 "-r", "3", "-e", "4K")
    assert res.returncode == 1, res.stdout + res.stderr
    (rec,) = read_jsonl(tmp_path / "sw" / "results.jsonl")
    assert rec["status"] == "failed" and rec["exit_code"] == 1


def test_record_failure_unless_wrong(runner, tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"sweep_id": "S", "sweep_point": "nodes2-allreduce", "status": "wrong"}\n')
    base = [*SWEEP, "record-failure", "--json", str(path), "--sweep-id", "S", "--collective", "allreduce",
            "--nranks", "4", "--exit-code", "1", "--reason", "r", "--unless-wrong", "--point"]
    assert runner.run([*base, "nodes2-allreduce"], timeout=60).returncode == 0
    assert len(read_jsonl(path)) == 1  # wrong rows exist: nothing added
    assert runner.run([*base, "nodes4-allreduce"], timeout=60).returncode == 0
    assert read_jsonl(path)[-1]["status"] == "failed" and read_jsonl(path)[-1]["sweep_point"] == "nodes4-allreduce"


def test_sigterm_stops_the_running_point_and_records_it(runner, tmp_path):
    proc = runner.popen([*SWEEP, "--dir", str(tmp_path / "sw"), "--ranks", "2", "--collectives", "allreduce",
                         "--", "-e", "64M", "--time-budget", "5"])
    log = tmp_path / "sw" / "logs" / "ranks2-allreduce.log"
    deadline = time.time() + 60
    while time.time() < deadline and "# collscale" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.2)
    assert len(runner.strays()) >= 3  # the sweep, mpirun and its ranks are running
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert "stopped by SIGTERM" in err
    recs = read_jsonl(tmp_path / "sw" / "results.jsonl")
    assert recs[-1]["status"] == "failed" and "SIGTERM" in recs[-1]["reason"]


def _with_marker(marker):
    """Live processes whose command line holds ``marker`` (a point's unique results path)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat") as f:
                zombie = f.read().rpartition(")")[2].split()[0] == "Z"
        except OSError:
            continue
        if marker.encode() in cmdline and not zombie:
            found.append(int(entry))
    return found


@pytest.mark.parametrize("launcher", ["mpirun", "torchrun"])
def test_kill_9_of_the_sweep_ends_its_point_within_10_s(runner, tmp_path, launcher):
    # mpirun: Hydra's proxy and each rank run in sessions of their own; torchrun's workers too,
    # and a SIGKILLed torchrun leaves them running: the sweep's reaper must stop them all.
    if launcher == "torchrun":
        pytest.importorskip("torch")
    extra, harness = (["--launcher", "torchrun"], ["--transport", "gloo"]) if launcher == "torchrun" else ([], [])
    results = tmp_path / "sw" / "results.jsonl"
    proc = runner.popen([*SWEEP, "--dir", str(tmp_path / "sw"), *extra, "--ranks", "2", "--collectives",
                         "allreduce", "--", *harness, "-b", "1M", "-e", "64M", "-n", "500"])
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (results.exists() and results.read_text().count("\n") >= 1):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert results.exists(), "no row within 120 s"
        point = _with_marker(str(results))  # the launcher and its ranks (the --json path is in their argv)
        assert len(point) >= 2, point
        proc.kill()
        proc.wait()
        t0 = time.time()
        while time.time() - t0 < 10 and (runner.strays() or _with_marker(str(results))):
            time.sleep(0.1)
        took = time.time() - t0
        # runner.strays(): every process of the test's environment, proxies and the reaper included.
        assert not runner.strays() and not _with_marker(str(results)), f"left after {took:.1f} s"
    finally:
        if proc.poll() is None:
            proc.kill()
        err = proc.communicate(timeout=30)[1]
    assert f"collscale: sweep (pid {proc.pid}) died: its launch is stopped" in err, err
    size = results.stat().st_size
    time.sleep(2)
    assert results.stat().st_size == size  # nothing writes any more
    assert read_jsonl(results)  # what was measured before the kill is kept


@pytest.mark.parametrize("args, message", [
    (["--ranks", "0,2"], "at least 1"),
    (["--point-timeout", "nan"], "positive number"),
    (["--scheduler", "slurm", "--nodes", "1", "--ppn", "2", "--select", "system=x"], "--select is PBS"),
    (["--scheduler", "pbs", "--nodes", "1", "--ppn", "2", "--queue", "a b"], "cannot hold spaces"),
    (["--scheduler", "pbs", "--nodes", "1", "--ppn", "2", "--point-timeout", "5"], "local sweeps"),
    (["--queue", "debug"], "need --scheduler"),
    (["--ranks", "two"], "whole numbers"),
    (["--collectives", "allreduce,nonesuch"], "unknown nonesuch"),
    (["--", "--json", "x.jsonl"], "the sweep writes the results"),
    (["--scheduler", "pbs", "--ppn", "4"], "--nodes"),
    (["--scheduler", "pbs", "--nodes", "1,2"], "--ppn"),
    (["--scheduler", "slurm", "--nodes", "1", "--ppn", "2", "--walltime", "1h"], "walltime"),
    (["--scheduler", "slurm", "--nodes", "1", "--ppn", "2", "--env", "NOEQUALS"], "NAME=VALUE"),
    (["--nodes", "2"], "need --scheduler"),
    (["--sweep-id", "../../escape"], "cannot be a path"),
    (["--ranks", "1_0"], "whole numbers"),
    (["--json", "/proc/nonesuch/r.jsonl"], "--json"),
])
def test_bad_input_is_one_clear_error(runner, tmp_path, args, message):
    res = _sweep(runner, tmp_path, *args, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "sw").exists()  # nothing written for a refused sweep


def _fake(tmp_path, name, body):
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    path = bindir / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return bindir


def test_pbs_scripts_submitted_and_run_by_a_stand_in_qsub(runner, tmp_path):
    # The stand-in qsub runs the job script on this machine at once, as PBS would on
    # the first node, with MPICH's mpiexec (which takes PALS's -n/--ppn too).
    log = tmp_path / "qsub.log"
    bindir = _fake(tmp_path, "qsub", f"""\
        echo "$@" >> {log}
        bash "$1" > "$1.out" 2>&1
        echo "$(basename "$1").4242.fakepbs"
        """)
    runner.env["PATH"] = f"{bindir}{os.pathsep}{BIN}{os.pathsep}{runner.env['PATH']}"
    res = _sweep(runner, tmp_path, "--scheduler", "pbs", "--nodes", "1,2", "--ppn", "1", "--queue", "debug",
                 "--account", "P", "--walltime", "10", "--collectives", "broadcast", "--",
                 "-r", "1", "-e", "4K", "-n", "2", timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    sw = tmp_path / "sw"
    assert sorted(p.name for p in sw.glob("*.pbs")) == ["nodes1.pbs", "nodes2.pbs"]
    assert "submitted" in res.stdout and "4242.fakepbs" in res.stdout
    assert log.read_text().split() == [str(sw / "nodes1.pbs"), str(sw / "nodes2.pbs")]
    recs = read_jsonl(sw / "results.jsonl")
    # One node x one rank has no root 1: that point is recorded as failed by the job script.
    failed = [r for r in recs if r["status"] == "failed"]
    assert [r["sweep_point"] for r in failed] == ["nodes1-broadcast"]
    assert failed[0]["exit_code"] == 2 and failed[0]["nhosts"] == 1 and failed[0]["nranks"] == 1
    ok = [r for r in recs if r["status"] == "ok"]
    assert ok and {r["sweep_point"] for r in ok} == {"nodes2-broadcast"} and {r["nranks"] for r in ok} == {2}
    assert len({r["sweep_id"] for r in recs}) == 1


def test_slurm_scripts_submitted_with_a_stand_in_sbatch(runner, tmp_path):
    log = tmp_path / "sbatch.log"
    bindir = _fake(tmp_path, "sbatch", f"""\
        echo "$@" >> {log}
        echo "Submitted batch job 77"
        """)
    runner.env["PATH"] = f"{bindir}{os.pathsep}{runner.env['PATH']}"
    res = _sweep(runner, tmp_path, "--scheduler", "slurm", "--nodes", "2,4", "--ppn", "8", "--queue", "gpu",
                 "--walltime", "01:00:00", "--", "-e", "1G")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("Submitted batch job 77") == 2
    script = (tmp_path / "sw" / "nodes4.sbatch").read_text()
    assert "#SBATCH --nodes=4" in script and "#SBATCH --ntasks-per-node=8" in script
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --time=01:00:00" in script
    assert "srun --nodes=4 --ntasks=32 --ntasks-per-node=8 --kill-on-bad-exit=1" in script


def test_a_refused_submission_records_its_points(runner, tmp_path):
    bindir = _fake(tmp_path, "qsub", """\
        echo "qsub: Unknown queue" >&2
        exit 170
        """)
    runner.env["PATH"] = f"{bindir}{os.pathsep}{runner.env['PATH']}"
    res = _sweep(runner, tmp_path, "--scheduler", "pbs", "--nodes", "2", "--ppn", "4", "--queue", "nope",
                 "--collectives", "allreduce,allgather")
    assert res.returncode == 1, res.stdout + res.stderr
    recs = read_jsonl(tmp_path / "sw" / "results.jsonl")
    assert [r["sweep_point"] for r in recs] == ["nodes2-allreduce", "nodes2-allgather"]
    assert all(r["status"] == "failed" and "Unknown queue" in r["reason"] for r in recs)


def test_dry_run_prints_the_commands(runner, tmp_path):
    bindir = _fake(tmp_path, "qsub", "echo SHOULD-NOT-RUN; exit 1\n")
    runner.env["PATH"] = f"{bindir}{os.pathsep}{runner.env['PATH']}"
    res = _sweep(runner, tmp_path, "--scheduler", "pbs", "--nodes", "1,2,4,8", "--ppn", "4", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "SHOULD-NOT-RUN" not in res.stdout
    for n in (1, 2, 4, 8):
        assert f"qsub {tmp_path / 'sw' / f'nodes{n}.pbs'}" in res.stdout
