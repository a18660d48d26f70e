"""Weight streaming as Cerebras runs it: MemoryX -> SwarmX tree -> workers, and back.

Rank 0 plays MemoryX, the source that holds the weights.  The ranks form a
k-ary tree (``--fanout k``; rank r's parent is (r-1)//k): inner ranks are
SwarmX relays, leaves are the workers (the CS-2 systems).  For every layer

* **down**: the weights flow from the source through the relays to every
  worker (a broadcast along the tree), and
* **up**: the workers' gradients flow back, each relay summing its
  children's, so the source receives the sum over all workers (a reduce
  along the tree), layers in reverse order.

Both directions are pipelined per layer: at step t a rank at depth d
receives layer t-d+1 from its parent while it forwards layer t-d to its
children, so the tree's links all carry different layers at once; going up,
a rank of height h sends layer j at step j+h, after every child (of smaller
height) has delivered it.  Each step is one ``transport.p2p`` call per rank
(all its sends and receives at once), so any transport with point-to-point
transfers (mpi, gloo, nccl, ...) carries the pattern.

Exactness: the weights a worker receives must equal the source's bit for
bit, and the source's summed gradient must equal the closed-form sum of the
workers' seeded inputs (facts.validate), in any summation order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

from facts import validate
from ground.dtypes import DType
from transports.base import Unsupported

__all__ = ["Tree", "down_steps", "up_steps", "Stream"]


@dataclass(frozen=True)
class Tree:
    """The k-ary tree over ranks 0..p-1 rooted at 0 (heap layout)."""

    nranks: int
    fanout: int
    depth: Tuple[int, ...] = field(init=False)
    height: Tuple[int, ...] = field(init=False)

    def __post_init__(self):
        if self.nranks < 2:
            raise ValueError("weight streaming needs at least 2 ranks (a source and a worker)")
        if self.fanout < 1:
            raise ValueError("the fan-out must be at least 1")
        depth = [0] * self.nranks
        for r in range(1, self.nranks):
            depth[r] = depth[self.parent(r)] + 1
        height = [0] * self.nranks
        for r in reversed(range(self.nranks)):
            kids = self.children(r)
            height[r] = 1 + max(height[c] for c in kids) if kids else 0
        object.__setattr__(self, "depth", tuple(depth))
        object.__setattr__(self, "height", tuple(height))

    def parent(self, r: int) -> Optional[int]:
        return None if r == 0 else (r - 1) // self.fanout

    def children(self, r: int) -> List[int]:
        first = self.fanout * r + 1
        return [c for c in range(first, first + self.fanout) if c < self.nranks]

    @property
    def workers(self) -> List[int]:
        return [r for r in range(1, self.nranks) if not self.children(r)]

    @property
    def relays(self) -> List[int]:
        return [r for r in range(1, self.nranks) if self.children(r)]

    def role(self, r: int) -> str:
        return "source" if r == 0 else ("relay" if self.children(r) else "worker")


Step = Tuple[List[Tuple[int, int]], List[Tuple[int, int]]]  # (sends, recvs) of (layer, peer)


def down_steps(tree: Tree, rank: int, nlayers: int) -> List[Step]:
    """Per step, what ``rank`` sends to its children and receives from its parent.

    A rank at depth d receives layer t-d+1 and forwards layer t-d at step t;
    the deepest worker gets the last layer at step nlayers + depth - 2.
    """
    d = tree.depth[rank]
    parent, kids = tree.parent(rank), tree.children(rank)
    steps = []
    for t in range(nlayers + max(tree.depth) - 1):
        out = t - d
        sends = [(out, c) for c in kids] if 0 <= out < nlayers else []
        into = t - d + 1
        recvs = [(into, parent)] if parent is not None and 0 <= into < nlayers else []
        steps.append((sends, recvs))
    return steps


def up_steps(tree: Tree, rank: int, nlayers: int) -> List[Step]:
    """Per step, what ``rank`` sends to its parent and receives from each child.

    Layers go up in reverse order, j = 0 being the last layer; a rank of
    height h sends j at step j+h, when every child (height < h) has already
    delivered it.
    """
    h = tree.height[rank]
    parent, kids = tree.parent(rank), tree.children(rank)
    steps = []
    for t in range(nlayers + tree.height[0] - 1):
        j = t - h
        sends = [(j, parent)] if parent is not None and 0 <= j < nlayers else []
        recvs = [(t - tree.height[c], c) for c in kids if 0 <= t - tree.height[c] < nlayers]
        steps.append((sends, recvs))
    return steps


class Stream:
    """Buffers and bound calls of weight streaming on one rank.

    ``weights[l]`` and ``grads[l]`` hold layer l on every rank (workers'
    gradients are their inputs; relays and the source accumulate into
    theirs); ``inbox[c]`` receives from child c.
    """

    def __init__(self, transport, tree: Tree, dtype: DType, counts: Sequence[int]):
        self.t, self.tree, self.dtype, self.counts = transport, tree, dtype, list(counts)
        self.rank = transport.rank
        if dtype.name == "bfloat16" and not hasattr(transport, "torch"):
            raise Unsupported("bfloat16 gradients can only be summed on torch transports")
        alloc = transport.alloc
        self.weights = [alloc(n, dtype) for n in counts]
        self.grads = [alloc(n, dtype) for n in counts]
        biggest = max(counts)
        self.inbox = {c: alloc(biggest, dtype) for c in tree.children(self.rank)}

    def bind_down(self, layers: Sequence[int]) -> Callable[[], None]:
        calls = []
        for sends, recvs in down_steps(self.tree, self.rank, len(layers)):
            calls.append(self.t.p2p([(self.weights[layers[j]], peer) for j, peer in sends],
                                    [(self.weights[layers[j]], peer) for j, peer in recvs], self.dtype))

        def run():
            for call in calls:
                call()
        return run

    def bind_up(self, layers: Sequence[int]) -> Callable[[], None]:
        order = list(reversed(layers))  # gradients of the last layer come first
        arrived = set()
        plan = []
        for sends, recvs in up_steps(self.tree, self.rank, len(order)):
            call = self.t.p2p([(self.grads[order[j]], peer) for j, peer in sends],
                              [(self.inbox[c][: self.counts[order[j]]], c) for j, c in recvs], self.dtype)
            actions = []
            for j, c in recvs:
                layer = order[j]
                dst, src = self.grads[layer], self.inbox[c][: self.counts[layer]]
                actions.append(_accumulate(dst, src, first=layer not in arrived))
                arrived.add(layer)
            plan.append((call, actions))

        def run():
            for call, actions in plan:
                call()
                for act in actions:
                    act()
        return run

    # -- inputs and checks ---------------------------------------------------------------
    def layer_key(self, seed: int, check: int, layer: int) -> validate.Key:
        return validate.Key(seed, check * 100_003 + layer)

    def seed_down(self, seed: int, check: int, layers: Sequence[int]) -> None:
        for l in layers:
            buf = self.weights[l]
            if self.rank == 0:
                data = validate.moved(self.dtype, self.tree.nranks, 0, self.layer_key(seed, check, l), 0,
                                      self.counts[l])
                self.t.from_host(buf, data)
            else:
                self.t.fill(buf, self.dtype.poison())

    def check_down(self, seed: int, check: int, layers: Sequence[int]) -> int:
        if self.rank == 0:
            return 0
        wrong = 0
        for l in layers:
            expected = validate.moved(self.dtype, self.tree.nranks, 0, self.layer_key(seed, check, l), 0,
                                      self.counts[l])
            wrong += validate.count_wrong(self.t.to_host(self.weights[l]), expected)
        return wrong

    def seed_up(self, seed: int, check: int, layers: Sequence[int]) -> None:
        workers = self.tree.workers
        for l in layers:
            buf = self.grads[l]
            if self.rank in workers:
                data = validate.rank_input("sum", self.dtype, len(workers), workers.index(self.rank),
                                           self.layer_key(seed, check, l), 0, self.counts[l])
                self.t.from_host(buf, data)
            else:
                self.t.fill(buf, self.dtype.poison())

    def check_up(self, seed: int, check: int, layers: Sequence[int]) -> int:
        if self.rank != 0:
            return 0
        nworkers = len(self.tree.workers)
        wrong = 0
        for l in layers:
            expected = validate.reduced("sum", self.dtype, nworkers, self.layer_key(seed, check, l), 0,
                                        self.counts[l])
            wrong += validate.count_wrong(self.t.to_host(self.grads[l]), expected)
        return wrong


def _accumulate(dst, src, first: bool) -> Callable[[], None]:
    """dst = src for the first child's gradient, dst += src for the others."""
    if first:
        def copy():
            dst[...] = src
        return copy

    def add(dst=dst, src=src):
        dst += src  # in place for numpy, torch and CuPy arrays alike
    return add
