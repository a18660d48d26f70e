"""The real CLI under mpirun, in subprocesses with timeouts."""

import os
import re
import signal
import sys
import time

import pytest

from facts.spec import SPECS
from tests.conftest import cli_cmd, mpirun_cmd, parse_table, read_jsonl

FAST = ["-b", "8", "-e", "256K", "-w", "1", "--time-budget", "0.005"]
STALL_DRIVER = os.path.join(os.path.dirname(__file__), "stall_driver.py")

CASES = [(name, n) for name in SPECS if name != "pingpong" for n in (3, 4)] + [("pingpong", 2)]


@pytest.mark.parametrize("collective, n", CASES)
def test_every_collective_validates_and_table_matches_json(runner, tmp_path, collective, n):
    out = tmp_path / "r.jsonl"
    args = FAST + ["--json", out, "-d", "float32,int8", "-o", "sum,min", "-r", str(n - 1),
                   "--transport", "mpi"]
    res = runner.cli(n, collective, *args)
    assert res.returncode == 0, res.stderr
    assert "# Out of bounds values : 0 OK" in res.stdout
    assert res.stdout.count("# collscale ") == 1, "only rank 0 prints"
    rows, recs = parse_table(res.stdout), read_jsonl(out)
    measured = [r for r in recs if r["status"] == "ok"]
    assert measured and all(r["wrong"] == 0 for r in measured if r["checks"])
    assert {r["status"] for r in recs} <= {"ok", "unsupported"}
    assert all(r["nranks"] == n and r["collective"] == collective and r["transport"] == "mpi" for r in recs)
    # One table line per point; its cells are the JSON records' figures.
    for row in rows:
        match = [r for r in recs if r["size_bytes"] == row["size"] and (r["dtype"] or "none") == row["type"]
                 and (r["op"] or "none") == row["redop"] and not r["in_place"]]
        assert match, row
        rec = match[0]
        if rec["status"] == "ok":
            assert float(row["out"]["time"]) == pytest.approx(rec["time_us"], rel=0.01, abs=0.01)
            assert float(row["out"]["busbw"]) == pytest.approx(rec["busbw_gbs"], abs=0.006)
    for rec in measured:
        assert rec["busbw_gbs"] == pytest.approx(rec["algbw_gbs"] * SPECS[collective].busbw_factor(n))
        assert rec["algbw_gbs"] == pytest.approx(rec["size_bytes"] / rec["time_us"] / 1e3)
    if collective == "broadcast":
        assert any(r["status"] == "unsupported" and not r["in_place"] for r in recs)
        assert "# unsup: broadcast" in res.stdout


@pytest.mark.parametrize("collective", ["allreduce", "reduce_scatter", "alltoall", "allgather"])
def test_five_ranks_all_types(runner, collective):
    res = runner.cli(5, collective, "-b", "8", "-e", "64K", "-n", "3", "-w", "1", "-d", "all",
                     "-o", "all")
    assert res.returncode == 0, res.stderr
    rows = parse_table(res.stdout)
    assert {r["type"] for r in rows} >= {"float16", "bfloat16", "uint64", "int8"}
    assert "# Out of bounds values : 0 OK" in res.stdout


def test_default_run_8_ranks(runner, tmp_path):
    """The README's first command: the default sweep, 8 ranks on whatever cores CI has."""
    out = tmp_path / "r.jsonl"
    t0 = time.time()
    res = runner.cli(8, "allreduce", "--json", out, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = parse_table(res.stdout)
    assert [r["size"] for r in rows] == [8 << i for i in range(24)]
    assert all(r["out"]["wrong"] == "0" and r["in"]["wrong"] == "0" for r in rows)
    if (os.cpu_count() or 1) < 8:
        assert "WARNING: oversubscribed" in res.stdout
    assert len(read_jsonl(out)) == 48
    print(f"default 8-rank run took {time.time() - t0:.1f} s")


def test_fault_injection_gives_wrong_and_exit_1(runner, tmp_path):
    out = tmp_path / "r.jsonl"
    res = runner.cli(3, "allreduce", "-e", "4K", "-n", "2", "--inject-fault", "1", "--json", out)
    assert res.returncode == 1
    rows = parse_table(res.stdout)
    assert all(int(r["out"]["wrong"]) > 0 and int(r["in"]["wrong"]) > 0 for r in rows)
    assert "FAILED" in res.stdout and "FAULT INJECTION" in res.stdout
    assert all(r["status"] == "wrong" for r in read_jsonl(out))


BAD = [
    ("allreduce", ["-b", "0"], "at least 1 byte"),
    ("allreduce", ["-b", "-4"], "invalid size"),
    ("allreduce", ["-e", "lots"], "invalid size"),
    ("allreduce", ["-b", "1M", "-e", "1K"], "larger than the maximum"),
    ("allreduce", ["-d", "float128"], "unknown datatype"),
    ("allreduce", ["-o", "xor"], "unknown op"),
    ("allreduce", ["--transport", "carrier-pigeon"], "unknown transport"),
    ("broadcast", ["-r", "3"], "root 3 does not exist"),
    ("reduce", ["-r", "9"], "root 9 does not exist"),
    ("pingpong", [], "exactly 2 ranks"),
    ("allreduce", ["--json", "/nonexistent/dir/r.jsonl"], "cannot write"),
    ("allreduce", ["--no-such-flag"], "unrecognized arguments"),
]


@pytest.mark.parametrize("collective, argv, message", BAD)
def test_bad_input_one_message_no_traceback(runner, collective, argv, message):
    res = runner.cli(3, collective, *argv, timeout=60)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.count("collscale: error:") == 1, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert "# collscale" not in res.stdout


@pytest.mark.parametrize("how", [["collectives.allreduse"], ["collectives", "allreduse"]])
def test_unknown_collective_one_message_from_rank_0(runner, how):
    res = runner.run(mpirun_cmd(3, sys.executable, "-m", *how, "-n", "1"), timeout=60)
    assert res.returncode == 2
    assert res.stderr.count("collscale: error: unknown collective 'allreduse'") == 1, res.stderr
    assert "allreduce, broadcast" in res.stderr and "Traceback" not in res.stderr


def test_all_unsupported_is_an_error_not_ok(runner):
    res = runner.cli(2, "allreduce", "--transport", "mpi", "-d", "bfloat16", "-e", "64", "-n", "1",
                     timeout=60)
    assert res.returncode == 2
    assert "nothing was measured" in res.stderr and "bfloat16" in res.stderr


def test_mpi_has_no_algorithm_choice(runner):
    res = runner.cli(2, "allreduce", "--transport", "mpi", "--algo", "ring", timeout=60)
    assert res.returncode == 2 and "no algorithm choices" in res.stderr


def test_single_rank_without_mpirun(runner):
    res = runner.run([sys.executable, "-m", "collectives.allgather", "-e", "1K", "-n", "2"], timeout=60)
    assert res.returncode == 0, res.stderr
    assert "nranks 1 nhosts 1" in res.stdout and "0 OK" in res.stdout


def test_help_printed_once(runner):
    res = runner.cli(2, "allreduce", "--help", timeout=60)
    assert res.returncode == 0
    assert res.stdout.count("usage:") == 1 and "--time-budget" in res.stdout


def test_listing(runner):
    res = runner.run([sys.executable, "-m", "collectives"], timeout=60)
    assert res.returncode == 0
    for name in SPECS:
        assert name in res.stdout
    assert re.search(r"mpi\s+available", res.stdout)
    res = runner.run([sys.executable, "-m", "transports"], timeout=60)
    assert res.returncode == 0 and re.search(r"mpi\s+available", res.stdout)


def _pid_of_rank(proc, rank, deadline):
    """Read the header until rank ``rank``'s PID appears."""
    pat = re.compile(rf"#\s+Rank\s+{rank} Pid\s+(\d+)")
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = pat.search(line)
        if m:
            return int(m.group(1)), lines
    raise AssertionError("no PID in header:\n" + "".join(lines))


def _stop_rank_after_rows(runner, cmd, out, rows, rank=1, wait=60):
    """Start ``cmd``, SIGSTOP ``rank`` once ``out`` holds ``rows`` rows, and wait for the job's end
    (the stopped rank is continued afterwards, whatever happened)."""
    proc = runner.popen(cmd)
    deadline = time.time() + 120
    pid = None
    try:
        pid, _ = _pid_of_rank(proc, rank, deadline)
        _wait_rows(out, rows, deadline)
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:  # it had already finished
            pass
        stdout, stderr = proc.communicate(timeout=wait)
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            stdout, stderr = proc.communicate()
    return proc, stdout, stderr


def _wait_rows(path, n, deadline):
    while time.time() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} rows in {path}")


@pytest.mark.parametrize("transport", ["mpi", "shm"], ids=["via-MPI", "via-shm"])
def test_killed_rank_ends_the_job_and_keeps_rows(runner, tmp_path, transport):
    out = tmp_path / "r.jsonl"
    proc = runner.popen(cli_cmd(3, "allreduce", "-b", "1K", "-e", "1G", "--json", out,
                                "--transport", transport))
    deadline = time.time() + 120
    try:
        pid, _ = _pid_of_rank(proc, 1, deadline)
        _wait_rows(out, 4, deadline)
        os.kill(pid, signal.SIGKILL)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert rc != 0
    recs = read_jsonl(out)  # every line is whole
    assert len(recs) >= 4 and all(r["status"] == "ok" for r in recs)


@pytest.mark.parametrize("transport", ["mpi", "shm"], ids=["via-MPI", "via-shm"])
def test_hung_rank_times_out_reports_size_and_aborts(runner, tmp_path, transport):
    out = tmp_path / "r.jsonl"
    # Rank 1 stops answering after 2 rows: the others wait in a collective.
    proc, stdout, stderr = _stop_rank_after_rows(runner, cli_cmd(3, "allreduce", "-b", "64K", "-e", "1G", "-T", "2",
                                                                  "--json", out, "--transport", transport), out, 2)
    assert proc.returncode != 0
    # The transport's own wait or, when rank 1 stopped between timed calls (while the next one
    # was being bound, validated, or its times gathered), the watchdog naming that phase: either
    # way the size and placement are named, and the -T given.
    assert re.search(r"timeout: (?:[a-z#' ]+ )?allreduce of \d+ B \(float32, (out-of-place|in-place)\) "
                     r"did not complete within -T 2 s", stderr), stderr
    recs = read_jsonl(out)
    assert recs[-1]["status"] == "timeout" and recs[-1]["size_bytes"] > 0
    assert all(r["status"] == "ok" for r in recs[:-1])
    if transport == "shm" and "did not complete within" not in stderr:  # not the watchdog: shm's own
        assert "waited 2 s for rank 1" in stderr  # waits name the rank they waited for
    assert "# TIMEOUT:" in stdout


@pytest.mark.parametrize("transport", ["mpi", "shm"], ids=["via-MPI", "via-shm"])
def test_exception_on_one_rank_aborts_the_job(runner, transport):
    # An unexpected error on rank 1 only, while the others wait in a collective.
    res = runner.run(mpirun_cmd(3, sys.executable, STALL_DRIVER, "raise", transport, "-e", "64", "-n", "2"),
                     timeout=120)
    assert res.returncode == 3, res.stderr
    assert "collscale: rank 1: error: RuntimeError: injected failure on rank 1" in res.stderr, res.stderr
    assert "aborting the job" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("transport", ["mpi", "shm"], ids=["via-MPI", "via-shm"])
def test_one_rank_that_cannot_allocate_is_one_clear_line(runner, transport):
    # Rank 1 cannot allocate its buffers (address-space limit): every rank agrees, exit 2.
    script = ('if [ "$PMI_RANK" = 1 ]; then ulimit -v 1200000; fi; exec "$0" -m collectives.allreduce '
              f'-b 512M -e 512M -n 1 -w 0 --transport {transport}')
    res = runner.run(mpirun_cmd(3, "sh", "-c", script, sys.executable), timeout=120)
    assert res.returncode == 2, res.stderr
    assert re.search(r"collscale: error: rank 1 cannot allocate [\d,]+ bytes of buffers .*use a smaller -e",
                     res.stderr), res.stderr
    assert "Traceback" not in res.stderr


def test_pandas_loads_the_json(runner, tmp_path):
    pd = pytest.importorskip("pandas")
    out = tmp_path / "r.jsonl"
    res = runner.cli(2, "broadcast", "-e", "1K", "-n", "2", "--json", out, "--csv", tmp_path / "r.csv",
                     "--transport", "mpi")
    assert res.returncode == 0, res.stderr
    a = pd.read_json(out, lines=True)
    b = pd.read_csv(tmp_path / "r.csv")
    assert len(a) == len(b) == 16
    assert set(a["status"]) == {"ok", "unsupported"}
    assert (a.loc[a.status == "ok", "busbw_gbs"] > 0).all()


@pytest.mark.parametrize("phase", ["close", "finalize"])
@pytest.mark.parametrize("transport", ["mpi", "shm"], ids=["via-MPI", "via-shm"])
def test_a_rank_stalled_at_the_end_still_ends_the_job_within_T(runner, tmp_path, phase, transport):
    # -T bounds closing the transport, the closing barrier and finalising MPI too:
    # the job ends with 124, every row kept.
    out = tmp_path / "r.jsonl"
    t0 = time.monotonic()
    res = runner.run(mpirun_cmd(2, sys.executable, STALL_DRIVER, phase, transport, "-e", "64", "-n", "3",
                                "-T", "3", "--json", out), timeout=90)
    took = time.monotonic() - t0
    # 124 from the rank whose watchdog fired; Hydra may instead report the signal that
    # ended another rank (rank 0 was inside MPI_Finalize, waiting for rank 1): 9 when
    # Hydra killed it, 14 when its own -T + 7 s alarm (SIGALRM) came first.
    assert res.returncode in (124, 9, 14), res.stderr
    if phase == "close":  # the watchdog's closing phases, or shm's own wait naming the rank
        assert re.search(r"(the closing barrier|closing the transport) did not complete within -T 3 s|"
                         r"waited 3 s for rank 1 \(closing\)", res.stderr), res.stderr
    else:
        assert "rank 1: timeout: finishing the job" in res.stderr and "within -T 3 s" in res.stderr
    assert took < 60
    recs = read_jsonl(out)
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs)


@pytest.mark.parametrize("transport", ["mpi", "shm"], ids=["via-MPI", "via-shm"])
def test_stopping_a_rank_as_the_footer_prints_never_hangs_the_job(runner, tmp_path, transport):
    # Stopped before the closing barrier: -T ends the job (124); after it: the
    # rank has already exited (0).  Never a job that outlives -T.
    out = tmp_path / "r.jsonl"
    proc, _, _ = _stop_rank_after_rows(runner, cli_cmd(2, "allreduce", "-e", "64", "-n", "3", "-T", "3", "--json",
                                                        out, "--transport", transport), out, 8)
    # 9: Hydra reporting the stopped rank it had to kill; 14: rank 0, waiting in MPI_Finalize for the
    # stopped rank, ended by its own -T + grace alarm (SIGALRM), as in the test above (seen once in CI).
    assert proc.returncode in (0, 124, 9, 14)

