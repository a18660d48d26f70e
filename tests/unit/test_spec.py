"""Collective facts: bus-bandwidth factors, S, element counts (nccl-tests PERFORMANCE.md)."""

import pytest

from facts import spec as specs
from ground.dtypes import DTYPES

F32 = DTYPES["float32"]


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 8, 16, 1024])
def test_busbw_factors(p):
    factor = {name: s.busbw_factor(p) for name, s in specs.SPECS.items()}
    assert factor["allreduce"] == pytest.approx(2 * (p - 1) / p)
    for name in ("allgather", "reduce_scatter", "alltoall"):
        assert factor[name] == pytest.approx((p - 1) / p)
    for name in ("broadcast", "reduce", "sendrecv", "pingpong", "barrier"):
        assert factor[name] == 1.0


def test_every_collective_is_in_the_table():
    assert set(specs.names()) == {
        "allreduce", "broadcast", "allgather", "reduce_scatter", "reduce", "alltoall", "barrier",
        "sendrecv", "pingpong",
    }


@pytest.mark.parametrize(
    "name, p, size, send, recv, total",
    [
        ("allreduce", 4, 1024, 256, 256, 256),
        ("broadcast", 3, 1024, 256, 256, 256),
        ("reduce", 3, 1024, 256, 256, 256),
        ("sendrecv", 3, 1024, 256, 256, 256),
        # allgather: S is the gathered total; each rank sends S/p.
        ("allgather", 4, 1024, 64, 256, 256),
        ("allgather", 3, 1024, 85, 255, 255),
        # reduce_scatter: S is the total input; each rank receives S/p.
        ("reduce_scatter", 4, 1024, 256, 64, 256),
        # alltoall: S is one rank's whole send buffer.
        ("alltoall", 4, 1024, 256, 256, 256),
        ("alltoall", 5, 1024, 255, 255, 255),
        # Never fewer than one element per rank.
        ("allgather", 3, 4, 1, 3, 3),
        ("allreduce", 2, 1, 1, 1, 1),
        ("barrier", 4, 1024, 0, 0, 0),
    ],
)
def test_layouts(name, p, size, send, recv, total):
    lay = specs.layout_for(specs.get(name), size, F32, p)
    assert (lay.send, lay.recv, lay.total) == (send, recv, total)
    assert lay.inplace == max(lay.send, lay.recv)


def test_inplace_offsets():
    lay = specs.layout_for(specs.get("allgather"), 1024, F32, 4)
    assert specs.get("allgather").inplace_offset(2, lay) == 2 * lay.block
    assert specs.get("allreduce").inplace_offset(2, lay) == 0


def test_facts_live_in_one_row():
    pp = specs.get("pingpong")
    assert pp.exact_ranks == 2 and pp.time_divisor == 2.0 and pp.placements == ("out",)
    assert specs.get("barrier").sized is False
    assert specs.get("reduce").rooted and specs.get("reduce").reduces
    assert not specs.get("allgather").reduces
