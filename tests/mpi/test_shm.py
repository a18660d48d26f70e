"""The shm transport in-process under mpirun (pytest-mpi): every collective,
dtype, op, root, placement, algorithm and buffer mode, validated exactly.

Run by tests/e2e/test_pytest_mpi.py at 1, 2, 3 and 5 ranks.
"""

import numpy as np
import pytest

from collectives import cli
from transports.shm.transport import ALGOS

SIZES = ["-b", "8", "-e", "128K", "-f", "128"]  # 8 B (eager), 1 KiB, 128 KiB (past every threshold)

CASES = [(c, a) for c, algos in ALGOS.items() for a in ("auto",) + algos] + [
    (c, "auto") for c in ("broadcast", "allgather", "alltoall", "sendrecv", "barrier")
]


def _world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _dtypes(comm) -> str:
    """Every dtype up to 3 ranks; at 5 (oversubscribed in CI), one float, one integer and the
    16-bit float: the dtype arithmetic is the same at every rank count, the rank pattern is not."""
    return "all" if comm.Get_size() <= 3 else "float32,int64,float16"


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("buffer", ["shared", "host"])
@pytest.mark.parametrize("collective, algo", CASES, ids=[f"{c}-{a}" for c, a in CASES])
def test_every_type_op_root_and_placement(collective, algo, buffer):
    comm = _world()
    # Every root at 2 ranks; at 3 the middle one (neither the first nor the last rank); at 5
    # (oversubscribed in CI) the last one: together they cover each kind of root.
    roots = "all" if comm.Get_size() <= 2 else "1" if comm.Get_size() == 3 else str(comm.Get_size() - 1)
    recs = cli.run(collective, comm, ["--transport", "shm", "--algo", algo, "--buffer", buffer,
                                      "-d", _dtypes(comm), "-o", "all", "-r", roots, "-n", "2", "-w", "0"] + SIZES)
    assert recs and all(r["status"] == "ok" for r in recs), {r["status"] for r in recs}
    assert all(r["wrong"] in (0, None) for r in recs)
    assert {r["buffer"] for r in recs} == {buffer}
    if collective != "barrier":
        assert {r["in_place"] for r in recs} == {False, True}
        assert len({r["dtype"] for r in recs}) == (10 if comm.Get_size() <= 3 else 3)


@pytest.mark.mpi(min_size=2)
def test_pingpong():
    comm = _world()
    if comm.Get_size() != 2:
        pytest.skip("pingpong needs exactly 2 ranks")
    for buffer in ("shared", "host"):
        recs = cli.run("pingpong", comm, ["--transport", "shm", "--buffer", buffer, "-d", "all",
                                          "-n", "2", "-w", "0"] + SIZES)
        assert all(r["status"] == "ok" and r["wrong"] == 0 for r in recs)


@pytest.mark.mpi(min_size=2)
def test_fresh_inputs_still_validate():
    recs = cli.run("allreduce", _world(), ["--transport", "shm", "--fresh-inputs", "-n", "3", "-w", "1",
                                           "-o", "sum,max"] + SIZES)
    assert all(r["fresh_inputs"] and r["wrong"] == 0 for r in recs)


@pytest.mark.mpi(min_size=2)
def test_zero_copy_buffers_are_shared_and_host_ones_are_not():
    from ground.comm import MPIComm
    from ground.dtypes import DTYPES
    from transports.base import TransportOptions
    from transports.shm.transport import ShmTransport

    comm = MPIComm(_world())
    f32 = DTYPES["float32"]
    shared = ShmTransport(comm, TransportOptions(timeout=30))
    host = ShmTransport(comm, TransportOptions(timeout=30, buffer="host"))
    try:
        assert shared._locate(shared.alloc(16, f32)) is not None
        assert host._locate(host.alloc(16, f32)) is None
        buf = shared.alloc(4, f32)
        buf[:] = comm.rank
        bound = shared.allreduce(None, buf, f32, "max")
        bound.run()
        assert np.all(bound.result == comm.size - 1)
    finally:
        shared.close()
        host.close()
