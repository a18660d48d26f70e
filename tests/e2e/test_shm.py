"""The shm transport end to end: default choice, no leaks on any exit path, concurrent jobs."""

import os
import re
import signal
import sys
import time

import pytest

from tests.conftest import cli_cmd, mpirun_cmd, parse_table, read_jsonl

MODES = ["memfd", "named"]


def _ours_in_shm():
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith("collscale-"))


def test_shm_is_the_default_on_one_host(runner):
    res = runner.cli(3, "allreduce", "-e", "64K", "-n", "2")
    assert res.returncode == 0, res.stderr
    assert "# transport: shm" in res.stdout and "buffer: shared" in res.stdout
    assert "0 OK" in res.stdout


@pytest.mark.parametrize("collective", ["allreduce", "broadcast", "allgather", "reduce_scatter"])
def test_single_rank_without_mpirun(runner, collective):
    res = runner.run([sys.executable, "-m", f"collectives.{collective}", "--transport", "shm", "-e", "64K",
                      "-n", "2", "-d", "all", "-o", "all"], timeout=60)
    assert res.returncode == 0, res.stderr
    assert "0 OK" in res.stdout


@pytest.mark.parametrize("mode", MODES)
def test_normal_exit_leaves_nothing(runner, mode):
    runner.env["COLLSCALE_SHM_SEGMENTS"] = mode
    res = runner.cli(3, "alltoall", "-e", "1M", "-n", "2", "--buffer", "host")
    assert res.returncode == 0, res.stderr
    assert f"{mode} segments" in res.stdout
    assert _ours_in_shm() == []  # the runner fixture also compares /dev/shm before and after


def _start(runner, mode, *args):
    runner.env["COLLSCALE_SHM_SEGMENTS"] = mode
    return runner.popen(cli_cmd(3, "allreduce", "--transport", "shm", "-b", "1K", "-e", "1G", *args))


def _wait_for_rows(proc, n, deadline):
    rows, header = 0, []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        header.append(line)
        if line.strip() and not line.startswith("#"):
            rows += 1
            if rows >= n:
                return header
    raise AssertionError("no rows:\n" + "".join(header))


@pytest.mark.parametrize("mode", MODES)
def test_names_are_gone_while_the_job_runs(runner, mode):
    proc = _start(runner, mode)
    try:
        _wait_for_rows(proc, 2, time.time() + 60)
        assert _ours_in_shm() == []  # attached and unlinked already
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_leaves_nothing(runner, mode):
    proc = _start(runner, mode)
    try:
        _wait_for_rows(proc, 2, time.time() + 60)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends mpirun
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "Traceback" not in err


@pytest.mark.parametrize("mode", MODES)
def test_a_killed_rank_leaves_nothing(runner, mode, tmp_path):
    out = tmp_path / "r.jsonl"
    proc = _start(runner, mode, "--json", str(out))
    try:
        header = _wait_for_rows(proc, 2, time.time() + 60)
        pid = int(re.search(r"Rank +1 Pid +(\d+)", "".join(header)).group(1))
        os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert len(read_jsonl(out)) >= 2


@pytest.mark.parametrize("mode", MODES)
def test_an_exception_leaves_nothing(runner, mode):
    runner.env["COLLSCALE_SHM_SEGMENTS"] = mode
    script = ('if [ "$PMI_RANK" = 2 ]; then ulimit -v 1200000; fi; exec "$0" -m collectives.allreduce '
              '--transport shm -b 1M -e 512M -f 512 -n 1 -w 0')
    res = runner.run(mpirun_cmd(3, "sh", "-c", script, sys.executable), timeout=120)
    assert res.returncode != 0
    # Agreed by every rank (one line, exit 2) when the allocation itself fails; an abort otherwise.
    assert "rank 2 cannot allocate" in res.stderr or "collscale: rank 2: error:" in res.stderr, res.stderr


def test_two_jobs_at_once_do_not_collide(runner):
    procs = [runner.popen(cli_cmd(3, "allreduce", "--transport", "shm", "-e", "4M", "-n", "20"))
             for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "0 OK" in out and len(parse_table(out)) == 20
    runs = {re.search(r"run (\S+)", out).group(1) for out, _ in outs}
    assert len(runs) == 2


def test_oversubscribed_8_ranks_validate(runner):
    res = runner.cli(8, "reduce_scatter", "--transport", "shm", "-e", "1M", "-n", "3", "-o", "all")
    assert res.returncode == 0, res.stderr
    assert "0 OK" in res.stdout
    if (os.cpu_count() or 1) < 8:
        assert "oversubscribed" in res.stdout
