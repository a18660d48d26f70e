"""The compiled loops through the real CLI under mpirun: built once per cache however many ranks
start at once, named in the header and every record with the thread level, a missing compiler
falling back to the Python loop with a header note (or exit 2 under --loop compiled), and
--cuda-graph refused where there is no CUDA.  The runner fixture fails a test that leaves a
process or a /dev/shm segment behind."""

import os
import sys

import pytest

from tests.conftest import read_jsonl

# the thread level auto picks for a small sweep at 2 ranks: FUNNELED with a core per rank
CORES = len(os.sched_getaffinity(0))


def _env(runner, tmp_path, **extra):
    runner.env.update(COLLSCALE_CACHE_DIR=str(tmp_path / "cache"), **extra)
    return runner


def _logging_mpicc(tmp_path):
    """The real mpicc, logging each run: how many ranks compiled."""
    real = os.path.join(os.path.dirname(sys.executable), "mpicc")
    if not os.path.exists(real):
        pytest.skip("no mpicc beside this Python (the mpich wheel installs one)")
    script = tmp_path / "mpicc-logged"
    script.write_text(f"#!/bin/sh\necho run >> {tmp_path / 'mpicc.log'}\nsleep 0.3\nexec {real} \"$@\"\n")
    script.chmod(0o755)
    return str(script)


def test_three_ranks_starting_at_once_compile_once(runner, tmp_path):
    _env(runner, tmp_path, COLLSCALE_MPICC=_logging_mpicc(tmp_path))
    out = tmp_path / "r.jsonl"
    res = runner.cli(3, "allreduce", "--transport", "mpi", "-b", "8", "-e", "64", "-n", "5", "--json", out,
                     timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "mpicc.log").read_text().count("run") == 1
    assert "# note: timed loop: compiled C over this MPI" in res.stdout and "compiled in" in res.stdout
    recs = read_jsonl(out)
    assert recs and {r["loop"] for r in recs} == {"compiled"} and all(r["wrong"] == 0 for r in recs)
    level = recs[0]["thread_level"]
    assert level == ("funneled" if CORES >= 3 else "multiple")  # 3 ranks on 2 cores: oversubscribed
    assert f"thread level: {level} loop: compiled" in res.stdout
    again = runner.cli(3, "allreduce", "--transport", "mpi", "-b", "8", "-e", "64", "-n", "5", timeout=120)
    assert again.returncode == 0 and "cached:" in again.stdout
    assert (tmp_path / "mpicc.log").read_text().count("run") == 1


# (ids: a test id "mpi" reads as pytest-mpi's marker, and the test is skipped without --with-mpi)
@pytest.mark.parametrize("transport", ["mpi", "shm"], ids=["via-MPI", "via-shm"])
def test_header_and_records_say_which_loop_and_thread_level(runner, tmp_path, transport):
    _env(runner, tmp_path)
    out = tmp_path / "r.jsonl"
    res = runner.cli(2, "pingpong", "--transport", transport, "-b", "8", "-e", "1K", "-f", "32", "--json", out,
                     timeout=120)
    assert res.returncode == 0, res.stderr
    recs = read_jsonl(out)
    assert recs and {r["loop"] for r in recs} == {"compiled"} and all(r["wrong"] == 0 for r in recs)
    assert "loop: compiled" in res.stdout
    if transport == "mpi":
        want = "funneled" if CORES >= 2 else "multiple"
        assert {r["thread_level"] for r in recs} == {want} and f"thread level: {want}" in res.stdout
        forced = runner.cli(2, "barrier", "--transport", "mpi", "--thread-level", "multiple", "--json", out,
                            timeout=120)
        assert forced.returncode == 0 and "thread level: multiple" in forced.stdout
        assert read_jsonl(out)[-1]["thread_level"] == "multiple" and read_jsonl(out)[-1]["loop"] == "compiled"
        assert "collective selection" not in forced.stdout  # a level given: the library's own selection
        # A sweep past 256 KiB, level left to auto: with MPICH, FUNNELED and its large collectives re-routed.
        runner.env.pop("COLLSCALE_MPICH_TUNING", None)
        big = runner.cli(2, "allreduce", "--transport", "mpi", "-b", "8", "-e", "4M", "-f", "512", "-n", "3",
                         "--json", out, timeout=120)
        assert big.returncode == 0, big.stderr
        if str(read_jsonl(out)[-1]["transport_version"]).startswith("MPICH "):
            assert read_jsonl(out)[-1]["thread_level"] == want
            assert ("collective selection: MPICH intra-node" in big.stdout) == (want == "funneled")
    else:
        assert {r["thread_level"] for r in recs} == {None}  # shm's calls never touch MPI


@pytest.mark.parametrize("transport", ["mpi", "shm"], ids=["via-MPI", "via-shm"])
def test_no_compiler_falls_back_to_the_python_loop_and_says_why(runner, tmp_path, transport):
    _env(runner, tmp_path, CC="/nonexistent/cc")
    out = tmp_path / "r.jsonl"
    res = runner.cli(2, "allreduce", "--transport", transport, "-b", "8", "-e", "1K", "-f", "32", "-n", "5",
                     "--json", out, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert "# note: timed loop: Python (the compiled loop could not be built:" in res.stdout
    assert "/nonexistent/cc" in res.stdout and "loop: python" in res.stdout
    recs = read_jsonl(out)
    assert recs and {r["loop"] for r in recs} == {"python"} and all(r["wrong"] == 0 for r in recs)
    forced = runner.cli(2, "allreduce", "--transport", transport, "-e", "8", "-n", "2", "--loop", "compiled",
                        timeout=120)
    assert forced.returncode == 2, forced.stderr
    lines = forced.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("collscale: error: --loop compiled:"), forced.stderr


def test_cuda_graph_is_refused_without_cuda(runner, tmp_path):
    _env(runner, tmp_path)
    res = runner.cli(2, "allreduce", "--transport", "mpi", "--cuda-graph", "-e", "8", "-n", "2", timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("collscale: error: --cuda-graph") and "Traceback" not in res.stderr
