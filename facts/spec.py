"""The collectives, as data: the ONLY place a collective's facts live.

Each :class:`CollectiveSpec` row says how many elements each buffer holds
for a requested size, what S (the size behind algbw = S/t) is, the bus
bandwidth factor, where an in-place input sits, which seeded inputs every
rank holds and what it must receive, and how to call the transport.

Sizes, algbw and busbw follow nccl-tests' doc/PERFORMANCE.md: S is the
vector size for allreduce, broadcast and reduce; the *total* gathered size
for allgather; the total input size for reduce_scatter; a rank's whole send
buffer for alltoall.  busbw = algbw * factor, with factor 2(n-1)/n for
allreduce, (n-1)/n for allgather, reduce_scatter and alltoall, and 1 for
broadcast, reduce, sendrecv and pingpong.  Pingpong follows OSU's latency
test: the time reported is half a round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from facts import validate
from ground.dtypes import DType

__all__ = ["Layout", "CollectiveSpec", "SPECS", "get", "names", "find", "layout_for", "FOREIGN_SIZES",
           "s_from_foreign_size"]


@dataclass(frozen=True)
class Layout:
    """Element counts of one measured point.

    ``send``/``recv``: out-of-place buffer lengths; ``inplace``: the single
    buffer's length in place; ``block``: elements per rank for collectives
    that split by rank; ``total``: elements behind S (S = total * itemsize).
    """

    send: int
    recv: int
    inplace: int
    block: int
    total: int


def _whole(elements: int, p: int) -> Layout:
    n = max(1, elements)
    return Layout(n, n, n, n, n)


def _gathered(elements: int, p: int) -> Layout:
    b = max(1, elements // p)
    return Layout(b, b * p, b * p, b, b * p)


def _scattered(elements: int, p: int) -> Layout:
    b = max(1, elements // p)
    return Layout(b * p, b, b * p, b, b * p)


def _exchanged(elements: int, p: int) -> Layout:
    b = max(1, elements // p)
    return Layout(b * p, b * p, b * p, b, b * p)


def _nothing(elements: int, p: int) -> Layout:
    return Layout(0, 0, 0, 0, 0)


# Inputs and expected results, per collective.  Each returns
# (this rank's input or None, this rank's expected result or None).
Data = Tuple[Optional[np.ndarray], Optional[np.ndarray]]


def _allreduce_data(dt, op, p, rank, root, lay, key) -> Data:
    return (
        validate.rank_input(op, dt, p, rank, key, 0, lay.total),
        validate.reduced(op, dt, p, key, 0, lay.total),
    )


def _reduce_data(dt, op, p, rank, root, lay, key) -> Data:
    expected = validate.reduced(op, dt, p, key, 0, lay.total) if rank == root else None
    return validate.rank_input(op, dt, p, rank, key, 0, lay.total), expected


def _reduce_scatter_data(dt, op, p, rank, root, lay, key) -> Data:
    return (
        validate.rank_input(op, dt, p, rank, key, 0, lay.total),
        validate.reduced(op, dt, p, key, rank * lay.block, lay.block),
    )


def _broadcast_data(dt, op, p, rank, root, lay, key) -> Data:
    data = validate.moved(dt, p, root, key, 0, lay.total)
    return (data if rank == root else None), data


def _allgather_data(dt, op, p, rank, root, lay, key) -> Data:
    blocks = [validate.moved(dt, p, r, key, 0, lay.block) for r in range(p)]
    return blocks[rank], np.concatenate(blocks)


def _alltoall_data(dt, op, p, rank, root, lay, key) -> Data:
    # Block j of rank r's send buffer goes to rank j: global indices keep
    # every (source, destination) block distinct.
    mine = validate.moved(dt, p, rank, key, 0, lay.total)
    received = [validate.moved(dt, p, j, key, rank * lay.block, lay.block) for j in range(p)]
    return mine, np.concatenate(received)


def _sendrecv_data(dt, op, p, rank, root, lay, key) -> Data:
    return (
        validate.moved(dt, p, rank, key, 0, lay.total),
        validate.moved(dt, p, (rank - 1) % p, key, 0, lay.total),
    )


def _pingpong_data(dt, op, p, rank, root, lay, key) -> Data:
    return (
        validate.moved(dt, p, rank, key, 0, lay.total),
        validate.moved(dt, p, 1 - rank, key, 0, lay.total),
    )


def _no_data(dt, op, p, rank, root, lay, key) -> Data:
    return None, None


# How to call the transport.  ``send`` is None in place.
def _bind_allreduce(t, send, recv, dt, op, root):
    return t.allreduce(send, recv, dt, op)


def _bind_broadcast(t, send, recv, dt, op, root):
    return t.broadcast(send, recv, dt, root)


def _bind_reduce(t, send, recv, dt, op, root):
    return t.reduce(send, recv, dt, op, root)


def _bind_allgather(t, send, recv, dt, op, root):
    return t.allgather(send, recv, dt)


def _bind_reduce_scatter(t, send, recv, dt, op, root):
    return t.reduce_scatter(send, recv, dt, op)


def _bind_alltoall(t, send, recv, dt, op, root):
    return t.alltoall(send, recv, dt)


def _bind_sendrecv(t, send, recv, dt, op, root):
    return t.sendrecv(send, recv, dt, (t.rank + 1) % t.size, (t.rank - 1) % t.size)


def _bind_pingpong(t, send, recv, dt, op, root):
    return t.pingpong(send, recv, dt, 1 - t.rank)


def _bind_barrier(t, send, recv, dt, op, root):
    return t.barrier()


def _ring_factor(p: int) -> float:
    return 2.0 * (p - 1) / p


def _share_factor(p: int) -> float:
    return (p - 1) / p


def _one(p: int) -> float:
    return 1.0


@dataclass(frozen=True)
class CollectiveSpec:
    """One collective: everything the harness needs to measure and check it."""

    name: str
    summary: str
    reduces: bool  # takes -o
    rooted: bool  # takes -r
    layout: Callable[[int, int], Layout]
    busbw_factor: Callable[[int], float]
    data: Callable[..., Data]
    bind: Callable[..., object]
    placements: Tuple[str, ...] = ("out", "in")
    exact_ranks: Optional[int] = None
    time_divisor: float = 1.0  # pingpong: one-way time is half the round trip
    sized: bool = True
    # In place, a rank's input sits in its own block of the one buffer
    # (allgather: MPI_IN_PLACE / NCCL's sendbuff = recvbuff + rank*count);
    # otherwise at the buffer's start.
    inplace_own_block: bool = False
    # Each rank exchanges with one peer rather than with all ranks (nccl-tests'
    # sendrecv, OSU's latency test): link figures, not collective models.
    peer_to_peer: bool = False

    def inplace_offset(self, rank: int, layout: Layout) -> int:
        """Where this rank's input sits in the single in-place buffer."""
        return rank * layout.block if self.inplace_own_block else 0


SPECS: Dict[str, CollectiveSpec] = {
    s.name: s
    for s in (
        CollectiveSpec("allreduce", "every rank gets the reduction of all ranks' vectors",
                       True, False, _whole, _ring_factor, _allreduce_data, _bind_allreduce),
        CollectiveSpec("broadcast", "the root's vector is copied to every rank",
                       False, True, _whole, _one, _broadcast_data, _bind_broadcast),
        CollectiveSpec("allgather", "every rank gets all ranks' blocks, in rank order",
                       False, False, _gathered, _share_factor, _allgather_data, _bind_allgather,
                       inplace_own_block=True),
        CollectiveSpec("reduce_scatter", "rank r gets block r of the reduction",
                       True, False, _scattered, _share_factor, _reduce_scatter_data,
                       _bind_reduce_scatter),
        CollectiveSpec("reduce", "the root gets the reduction of all ranks' vectors",
                       True, True, _whole, _one, _reduce_data, _bind_reduce),
        CollectiveSpec("alltoall", "block j of rank i's buffer goes to block i of rank j",
                       False, False, _exchanged, _share_factor, _alltoall_data, _bind_alltoall),
        CollectiveSpec("barrier", "no rank leaves before every rank has entered",
                       False, False, _nothing, _one, _no_data, _bind_barrier,
                       placements=("out",), sized=False),
        CollectiveSpec("sendrecv", "ring exchange: send to rank+1, receive from rank-1 "
                       "(nccl-tests sendrecv)",
                       False, False, _whole, _one, _sendrecv_data, _bind_sendrecv, peer_to_peer=True),
        CollectiveSpec("pingpong", "two ranks bounce a message; one-way time = round trip / 2 "
                       "(OSU latency)",
                       False, False, _whole, _one, _pingpong_data, _bind_pingpong,
                       placements=("out",), exact_ranks=2, time_divisor=2.0, peer_to_peer=True),
    )
}


def names():
    return list(SPECS)


def find(name: str) -> Optional[CollectiveSpec]:
    """The spec of ``name``, or None for what is not a standard collective (weight_stream, a
    foreign log's row): analysis asks this of every row it reads."""
    return SPECS.get(name)


def get(name: str) -> CollectiveSpec:
    from ground.dtypes import ConfigError

    try:
        return SPECS[name]
    except KeyError:
        raise ConfigError(
            f"unknown collective '{name}' (choose from: {', '.join(SPECS)})"
        ) from None


def layout_for(spec: CollectiveSpec, size_bytes: int, dtype: DType, nranks: int) -> Layout:
    """Element counts for a requested size in bytes (rounded down, at least one per rank)."""
    return spec.layout(size_bytes // dtype.itemsize, nranks)


# What other benchmarks print as a row's size, against S above: for the collectives
# listed, one rank's block (allgather: what each rank contributes; alltoall: what a rank
# sends to each peer), so S = size x nranks; for every other collective S itself.
FOREIGN_SIZES: Dict[str, Tuple[Tuple[str, ...], str]] = {
    "nccl-tests": ((), "nccl-tests doc/PERFORMANCE.md: the size column is S for every collective"),
    "rccl-tests": ((), "rccl-tests prints nccl-tests' table (src/common.cu)"),
    "osu": (("allgather", "alltoall"),
            "OMB 5.3 and 7.4 mpi/collective/osu_allgather.c (MPI_Allgather of `size` bytes per rank), "
            "osu_alltoall.c (`size` bytes to each peer), osu_reduce_scatter.c (prints the whole input vector)"),
    "imb": (("allgather", "alltoall"),
            "IMB src_c/IMB_allgather.c and IMB_alltoall.c (s_num = size / type size per rank and per peer), "
            "IMB_reduce_scatter.c (the whole vector, split into rank portions)"),
    "hccl_demo": (("allgather",),
                  "hccl_demo.cpp describeStat: data_size is each rank's input buffer; algo bandwidth = data_size / t "
                  "and NW bandwidth = algo x (n-1) for all_gather, as nccl-tests' busbw"),
}


def s_from_foreign_size(tool: str, collective: str, size: int, nranks: Optional[int]) -> Optional[int]:
    """S (the bytes behind algbw) for a size as ``tool`` prints it; None when it needs the rank count
    and that is unknown.  See :data:`FOREIGN_SIZES`."""
    blocks = FOREIGN_SIZES.get(tool, ((), ""))[0]
    if collective not in blocks:
        return size
    return size * nranks if nranks else None
