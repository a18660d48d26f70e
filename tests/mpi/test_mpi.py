"""In-process tests under mpirun (pytest-mpi): the MPI transport and the harness.

Run by tests/e2e/test_pytest_mpi.py as
``mpirun -n N python -m mpi4py -m pytest --with-mpi tests/mpi`` at N = 2 and 3;
skipped in a plain ``pytest`` run.
"""

import numpy as np
import pytest

from collectives import cli
from facts.spec import SPECS
from ground.dtypes import DTYPES, ConfigError

SMALL = ["--transport", "mpi", "-b", "8", "-e", "16K", "-n", "2", "-w", "1"]


def _world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _dtypes(comm) -> str:
    """Every dtype up to 3 ranks; at 5 (oversubscribed in CI), one float, one integer and the
    16-bit float: the dtype arithmetic is the same at every rank count, the rank pattern is not."""
    return "all" if comm.Get_size() <= 3 else "float32,int64,float16"


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("collective", [n for n in SPECS if n != "pingpong"])
def test_every_collective_every_type_and_op(collective):
    comm = _world()
    # Every root at 2 ranks; at 3 the middle one (neither the first nor the last rank); at 5
    # (oversubscribed in CI) the last one: together they cover each kind of root.
    roots = "all" if comm.Get_size() <= 2 else "1" if comm.Get_size() == 3 else str(comm.Get_size() - 1)
    recs = cli.run(collective, comm, SMALL + ["-d", _dtypes(comm), "-o", "all", "-r", roots])
    ok = [r for r in recs if r["status"] == "ok"]
    assert ok
    assert all(r["wrong"] in (0, None) for r in recs)
    assert {r["status"] for r in recs} <= {"ok", "unsupported"}
    # Every rank holds the same rows (aggregated times included).
    keys = [(r["size_bytes"], r["dtype"], r["op"], r["root"], r["in_place"], r["status"], r["iters"],
             r["time_us"], r["wrong"]) for r in recs]
    assert comm.allgather(keys) == [keys] * comm.Get_size()


@pytest.mark.mpi(min_size=2)
def test_pingpong_on_two_ranks_only():
    comm = _world()
    if comm.Get_size() != 2:
        with pytest.raises(ConfigError, match="exactly 2 ranks"):
            cli.run("pingpong", comm, SMALL)
        return
    recs = cli.run("pingpong", comm, SMALL + ["-d", "all"])
    assert all(r["wrong"] == 0 for r in recs if r["status"] == "ok")
    assert all(not r["in_place"] for r in recs)


@pytest.mark.mpi(min_size=2)
def test_unsupported_is_agreed_and_reported():
    recs = cli.run("broadcast", _world(), SMALL + ["-d", "bfloat16,float32"])
    by = {(r["dtype"], r["in_place"]): r["status"] for r in recs}
    assert by[("float32", False)] == "unsupported"  # MPI_Bcast has one buffer
    assert by[("float32", True)] == "ok"
    from mpi4py import MPI

    if MPI.BFLOAT16_T == MPI.DATATYPE_NULL:
        assert by[("bfloat16", True)] == "unsupported"


@pytest.mark.mpi(min_size=2)
def test_injected_fault_is_summed_over_ranks():
    comm = _world()
    recs = cli.run("allreduce", comm, SMALL + ["--inject-fault", str(comm.Get_size() - 1), "-c", "2"])
    assert all(r["wrong"] == 2 for r in recs)


@pytest.mark.mpi(min_size=2)
def test_aggregation_modes_pick_the_right_rank():
    comm = _world()
    # Ranks finish their loops at different times; each mode must pick its own figure.
    for average, check in (("0", "rank0"), ("1", "avg"), ("2", "min"), ("3", "max")):
        recs = cli.run("allreduce", comm, ["--transport", "mpi", "-b", "1K", "-e", "1K", "-n", "20",
                                          "-w", "1", "-a", average, "--out-of-place"])
        r = recs[0]
        assert r["aggregation"] == check
        lo, hi, t = r["time_us_rank_min"], r["time_us_rank_max"], r["time_us"]
        if average == "2":
            assert t == pytest.approx(lo)
        elif average == "3":
            assert t == pytest.approx(hi)
        else:
            assert lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)


@pytest.mark.mpi(min_size=1)
def test_comm_self_runs_at_any_rank_count():
    from mpi4py import MPI

    recs = cli.run("allreduce", MPI.COMM_SELF, SMALL)
    assert recs[0]["transport"] == "mpi"
    assert all(r["nranks"] == 1 and r["wrong"] == 0 for r in recs)


@pytest.mark.mpi(min_size=2)
def test_transport_directly_reduce_scatter_in_place():
    from transports.mpi.host import MPITransport

    comm = _world()
    p, r = comm.Get_size(), comm.Get_rank()
    t = MPITransport(comm)
    try:
        f32 = DTYPES["float32"]
        buf = t.alloc(4 * p, f32)
        buf[:] = np.arange(4 * p) + r
        bound = t.reduce_scatter(None, buf, f32, "sum")
        bound.run()
        expected = (np.arange(4 * p)[4 * r: 4 * r + 4] * p + p * (p - 1) / 2).astype(np.float32)
        assert np.array_equal(bound.result, expected)
    finally:
        t.close()
