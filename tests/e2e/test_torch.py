"""torch.distributed transports end to end: gloo under mpirun and torchrun, the
rendezvous, clear errors for absent hardware, the Gaudi and CuPy control paths,
and weight streaming."""

import json
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import BIN, mpirun_cmd, parse_table, read_jsonl

torch = pytest.importorskip("torch")

STANDINS = str(Path(__file__).resolve().parents[1] / "standins")
DRIVER = str(Path(__file__).resolve().parent / "torchrun_driver.py")


def _torchrun(n: int):
    exe = BIN / "torchrun"
    with socket.socket() as s:  # a free port for torchrun's own rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [str(exe) if exe.exists() else shutil.which("torchrun"), "--nproc-per-node", str(n),
            "--master-addr", "127.0.0.1", "--master-port", str(port)]


@pytest.mark.parametrize("n", [2, 3])
def test_every_collective_over_gloo_under_torchrun(runner, tmp_path, n):
    out = tmp_path / "summary.json"
    res = runner.run(_torchrun(n) + [DRIVER, str(out)], timeout=280)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert set(summary) >= {"allreduce", "broadcast", "allgather", "reduce_scatter", "reduce", "alltoall",
                            "barrier", "sendrecv"} | ({"pingpong"} if n == 2 else set())
    for name, (ok, wrong, launcher) in summary.items():
        assert ok > 0 and wrong == 0, name
        assert launcher == "torchrun"


def test_the_real_cli_under_torchrun(runner):
    res = runner.run(_torchrun(3) + ["-m", "collectives.allgather", "--transport", "gloo", "-e", "64K",
                                     "-n", "2"], timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("# collscale ") == 1 and "nranks 3" in res.stdout and "0 OK" in res.stdout


def test_gloo_under_mpirun_json_and_labels(runner, tmp_path):
    out = tmp_path / "r.jsonl"
    res = runner.cli(3, "reduce_scatter", "--transport", "gloo", "-e", "64K", "-n", "2", "-o", "avg,sum",
                     "-d", "float32,int32", "--json", out)
    assert res.returncode == 0, res.stderr
    recs = read_jsonl(out)
    assert {r["transport"] for r in recs} == {"gloo"} and {r["buffer"] for r in recs} == {"cpu"}
    avg_int = [r for r in recs if r["op"] == "avg" and r["dtype"] == "int32"]
    assert avg_int and all("floor division" in r["op_impl"] for r in avg_int)
    assert all(r["wrong"] == 0 for r in recs if r["status"] == "ok")


def test_rendezvous_on_a_taken_port_is_a_clear_error(runner):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner.env["MASTER_PORT"] = str(port)
        res = runner.cli(2, "allreduce", "--transport", "gloo", "-e", "64", "-n", "1", timeout=120)
        assert res.returncode == 2, res.stderr
        assert f"cannot listen on 127.0.0.1:{port}" in res.stderr and "unset MASTER_PORT" in res.stderr
        assert "Traceback" not in res.stderr
        # Without MASTER_PORT collscale picks a free port, whatever is taken.
        del runner.env["MASTER_PORT"]
        res = runner.cli(2, "allreduce", "--transport", "gloo", "-e", "64", "-n", "1", timeout=120)
        assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("args, message", [
    (["--transport", "nccl"], "transport 'nccl' is not available here"),
    (["--transport", "gloo", "--device", "cuda"], "no CUDA device is visible"),
    (["--transport", "hccl"], "habana_frameworks is not installed"),
    (["--transport", "mpi", "--buffer", "cupy"], "CuPy is not installed"),
])
def test_absent_hardware_is_one_clear_error(runner, args, message):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    res = runner.cli(2, "allreduce", *args, "-e", "64", "-n", "1", timeout=120)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr and res.stderr.count("collscale: error") == 1


def test_hccl_control_path_with_a_stand_in(runner):
    runner.env["PYTHONPATH"] = STANDINS + os.pathsep + runner.env["PYTHONPATH"]
    res = runner.cli(2, "allreduce", "--transport", "hccl", "--device", "cpu", "-e", "64K", "-n", "2",
                     "-o", "all", "-d", "float32,bfloat16", "--in-place")
    assert res.returncode == 0, res.stderr
    assert "# transport: hccl" in res.stdout and "0 OK" in res.stdout


@pytest.mark.parametrize("aware, label", [("0", "cupy-staged"), ("1", "cupy-direct")])
def test_cupy_buffers_through_mpi_with_a_stand_in(runner, aware, label):
    runner.env["PYTHONPATH"] = STANDINS + os.pathsep + runner.env["PYTHONPATH"]
    runner.env["COLLSCALE_CUDA_AWARE_MPI"] = aware
    for collective in ("allreduce", "allgather", "reduce", "alltoall"):
        res = runner.cli(3, collective, "--transport", "mpi", "--buffer", "cupy", "-e", "64K", "-n", "2",
                         "-d", "float32,int8")
        assert res.returncode == 0, res.stderr
        assert f"buffer: {label}" in res.stdout and "0 OK" in res.stdout
        if aware == "0":
            assert "STAGED through host memory" in res.stdout


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("transport", ["mpi", "gloo"], ids=["via-MPI", "via-gloo"])
def test_weight_stream_validates(runner, tmp_path, n, transport):
    out = tmp_path / "w.jsonl"
    res = runner.run(mpirun_cmd(n, sys.executable, "-m", "collectives.weight_stream", "--fanout", "2",
                                "--layers", "64K,1M,4K", "-n", "2", "--transport", transport, "--json", out),
                     timeout=180)
    assert res.returncode == 0, res.stderr
    rows = parse_table(res.stdout)
    assert len(rows) == 4  # three layers and the pipelined row
    recs = read_jsonl(out)
    assert {r["phase"] for r in recs} == {"down", "up"}
    assert all(r["wrong"] == 0 and r["status"] == "ok" for r in recs)
    assert [r["pipelined"] for r in recs] == [False] * 6 + [True] * 2
    if n == 5:
        assert "1 relays (SwarmX) [1]" in res.stdout and "3 workers [2, 3, 4]" in res.stdout


def test_weight_stream_catches_a_wrong_sum(runner):
    # Four ranks in a chain (fan-out 1): ranks 1 and 2 relay, rank 3 works.  A relay that
    # forwarded garbage would be caught; here the check proves the source sees the sum.
    res = runner.run(mpirun_cmd(4, sys.executable, "-m", "collectives.weight_stream", "--fanout", "1",
                                "--layers", "1K", "-n", "1", "-d", "int8"), timeout=120)
    assert res.returncode == 0 and "0 OK" in res.stdout


def test_torchrun_needs_no_mpi(runner, tmp_path):
    # A machine without MPI: importing mpi4py fails.  torchrun alone starts and
    # coordinates the ranks (issue 6: torchrun as a launcher in its own right).
    blocked = tmp_path / "nompi" / "mpi4py"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text('raise ImportError("mpi4py blocked: a machine without MPI")\n')
    runner.env["PYTHONPATH"] = str(tmp_path / "nompi") + os.pathsep + runner.env["PYTHONPATH"]
    out = tmp_path / "r.jsonl"
    res = runner.run(_torchrun(4) + ["-m", "collectives.allreduce", "--transport", "gloo", "-e", "16K", "-n", "2",
                                     "--json", str(out)], timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "nranks 4" in res.stdout and "0 OK" in res.stdout and "mpi4py" not in res.stdout.split("\n")[1]
    recs = read_jsonl(out)
    assert {r["nranks"] for r in recs} == {4} and any(r["status"] == "ok" for r in recs)
    assert all(r["mpi4py_version"] is None for r in recs)
    # And the default transport still works without MPI.
    res = runner.run(_torchrun(2) + ["-m", "collectives.broadcast", "-e", "4K", "-n", "2"], timeout=180)
    assert res.returncode == 0 and "0 OK" in res.stdout, res.stderr[-3000:]
