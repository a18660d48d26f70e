"""The shm transport's reducing collectives (allreduce, reduce_scatter, reduce) and their algorithms.

Algorithms (``--algo``; ``auto`` picks by size).  Memory traffic is per
rank per call for n bytes and p ranks, reads + writes; it is the bound the
benchmark compares against:

* ``flat`` (allreduce, reduce; small sizes): every rank (or the root)
  reduces all p inputs itself.  Two synchronisations.  Traffic
  p·n + n (allreduce).
* ``direct`` (allreduce, reduce_scatter, reduce; large sizes): rank r
  reduces slice r of the vector straight from every rank's buffer (reads
  n, writes n/p), then copies the other p-1 reduced slices from their
  owners (reads and writes (p-1)·n/p).  Traffic (3 - 1/p)·n, the minimum
  for every rank to end with its own copy of the result.  Three
  synchronisations.
* ``ring`` (allreduce, reduce_scatter): the classic ring: p-1
  reduce-scatter steps (read own block + left's partial, write partial)
  and p-1 allgather steps (read left's block, write it), each waiting only
  for the left neighbour.  Traffic 5·(p-1)/p·n for allreduce.

:class:`ShmReductions` holds them over the memory of :class:`~transports.shm.memory.ShmMemory`;
:class:`transports.shm.transport.ShmTransport` adds the copying collectives.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from transports.base import TransportOptions, Unsupported
from transports.shm import kernels
from transports.shm.memory import ShmMemory

__all__ = ["ShmReductions", "ALGOS", "FLAT_MAX", "FLAT_MAX_COMPILED"]

ALGOS = {
    "allreduce": ("flat", "direct", "ring"),
    "reduce": ("flat", "direct"),
    "reduce_scatter": ("direct", "ring"),
}
FLAT_MAX = 16 * 1024  # auto: flat up to here, direct above (measured: docs/results/2026-12.md)
# With the compiled loop a synchronisation costs ~0.1 us instead of ~1 us, and direct, which reads
# only half of a peer's data, overtakes flat above ~1 KiB (2 ranks, out of place: 1 KiB 0.37 vs
# 0.38 us, 2 KiB flat 0.6 us, 4 KiB direct 0.3-0.5 vs flat 1.1 us, 16 KiB 1.8 vs 3.6 us): flat up to
# here when the loop is compiled.
FLAT_MAX_COMPILED = 1024


class ShmReductions(ShmMemory):
    """The reducing collectives, each algorithm bound once per call (see the module docstring)."""

    def _configure(self, options: TransportOptions) -> None:
        self.algo = (options.algo or "auto").lower()
        known = sorted({a for v in ALGOS.values() for a in v} | {"auto"})
        if self.algo not in known:
            raise Unsupported(f"--algo {self.algo}: shm has {', '.join(known)}")

    @property
    def flat_max(self) -> int:
        """auto's limit for flat: lower with the compiled loop, where synchronising is cheap."""
        return FLAT_MAX_COMPILED if self.compiled.loop == "compiled" else FLAT_MAX

    def _choose(self, collective: str, nbytes: int) -> str:
        options = ALGOS[collective]
        if self.algo == "auto":
            if collective == "reduce_scatter":
                return "direct"
            return "flat" if nbytes <= self.flat_max else "direct"
        if self.algo not in options:
            raise Unsupported(f"--algo {self.algo}: shm's {collective} has {', '.join(options)}")
        return self.algo

    def _eager_allreduce(self, src, mine, dtype, op):
        """Flat allreduce through double-buffered slots: one synchronisation per call.

        Each rank copies its input into its slot of the current parity in
        the control segment, posts, waits for all, and reduces all p slots
        (one row each) into its result with a single ``ufunc.reduce``, in
        rank order on every rank, so every rank gets the same bits.  Writing
        a slot again two calls later is safe: a rank reaching the previous
        call's synchronisation proves every rank had finished reading the
        call before it.
        """
        p, fl = self.size, self.flags
        n = len(mine)
        rows = [self._eager[par, :, : mine.nbytes].view(mine.dtype) for par in (0, 1)]
        fill = [kernels.plan_copy([(rows[par][self.rank], src)]) for par in (0, 1)]
        reduce = [kernels.plan_reduce_rows(dtype, op, p, mine, rows[par]) for par in (0, 1)]
        calls = self.eager_calls
        arrive = fl.arrive
        prog = self.compiled.program(span=1, variants=2)
        for par in (0, 1) if prog is not None else ():
            prog.v = par
            prog.copy(rows[par][self.rank], src).arrive(1, "allreduce inputs")
            prog.reduce(dtype, op, p, mine, list(rows[par]), self.compiled.reduces)

        def body():
            e = fl.epoch
            fl.epoch = e + 1
            par = calls[0] & 1
            calls[0] += 1
            fill[par]()
            arrive(e + 1, "allreduce inputs")
            reduce[par]()
        assert n == rows[0].shape[1]
        return body, prog

    # -- collectives -----------------------------------------------------------------
    def allreduce(self, send, recv, dtype, op):
        algo = self._choose("allreduce", recv.nbytes)
        S, R, Z, copy_in, staged = self._prepare(send, recv, "allreduce")
        src = R if send is None else S
        p, me, fl = self.size, self.rank, self.flags
        post, wait, arrive = fl.post, fl.wait, fl.arrive
        order = [me] + [j for j in range(p) if j != me]
        mine = R[me]
        if algo == "flat" and mine.nbytes <= self._eager.shape[2]:
            body, prog = self._eager_allreduce(src[me], mine, dtype, op)
            return self._finish(body, mine, copy_in, staged, prog)
        if algo == "flat":
            if send is None:
                tmp = np.empty_like(mine)
                reduce = kernels.plan_reduce(dtype, op, p, tmp, [src[j] for j in order])
                back = kernels.plan_copy([(mine, tmp)])
            else:
                reduce = kernels.plan_reduce(dtype, op, p, mine, [src[j] for j in order])
                back = None

            def body():
                e = fl.epoch
                fl.epoch = e + 2
                arrive(e + 1, "allreduce inputs")
                reduce()
                arrive(e + 2, "allreduce readers")
                if back is not None:
                    back()
            return self._finish(body, mine, copy_in, staged)
        if algo == "direct":
            slices = kernels.split(len(mine), p, mine.itemsize)
            sl = slices[me]
            reduce = kernels.plan_reduce(dtype, op, p, mine[sl], [src[j][sl] for j in order])
            gathers = [(j, mine[slices[j]], R[j][slices[j]]) for j in order[1:] if len(mine[slices[j]])]
            copy = np.copyto
            prog = self.compiled.program(span=3)
            if prog is not None:
                prog.arrive(1, "allreduce inputs")
                prog.reduce(dtype, op, p, mine[sl], [src[j][sl] for j in order], self.compiled.reduces).post(2)
                for j, dst, srcv in gathers:
                    prog.wait(j, 2, "allreduce slices").copy(dst, srcv)
                prog.arrive(3, "allreduce readers")

            def body():
                e = fl.epoch
                fl.epoch = e + 3
                arrive(e + 1, "allreduce inputs")
                reduce()
                post(e + 2)
                for j, dst, srcv in gathers:
                    wait(j, e + 2, "allreduce slices")
                    copy(dst, srcv)
                arrive(e + 3, "allreduce readers")
            return self._finish(body, mine, copy_in, staged, prog)
        blocks = kernels.split(len(mine), p, mine.itemsize)
        body = self._ring(dtype, op, src, R, blocks, shift=1, gather=True, final=None)
        return self._finish(body, mine, copy_in, staged)

    def _ring(self, dtype, op, src, W, blocks, shift: int, gather: bool, final: Optional[np.ndarray]):
        """Ring reduce-scatter (and allgather) over block-split buffers.

        Block b_s(r) = (r - s - 2 + shift) mod p is what rank r reduces at
        step s, into ``W[r]``; after p-1 steps rank r holds the reduction of
        block (r + shift) mod p (``final`` receives it, if given).  Every
        step waits only for the left neighbour, whose step s-1 produced the
        partial it adds; ``avg`` sums until the last step, which divides.
        The allgather steps then pass completed blocks rightwards.
        """
        p, me, fl = self.size, self.rank, self.flags
        mine = W[me]
        left = (me - 1) % p
        steps = []
        for s in range(p - 1):
            b = blocks[(me - s - 2 + shift) % p]
            partial = src[left][b] if s == 0 else W[left][b]
            last = s == p - 2
            out = final if (final is not None and last) else mine[b]
            step_op = "sum" if (op == "avg" and not last) else op
            steps.append(kernels.plan_reduce(dtype, step_op, p, out, [src[me][b], partial]))
        if p == 1:
            steps = [kernels.plan_reduce(dtype, op, 1, final if final is not None else mine, [src[me]])]
        copies = []
        if gather:
            for t in range(p - 1):
                c = blocks[(me - t + shift - 1) % p]
                copies.append((mine[c], W[left][c]))
        copy = np.copyto
        post, wait, arrive = fl.post, fl.wait, fl.arrive
        span = 2 * p if gather else p + 1
        solo = p == 1

        def body():
            e = fl.epoch
            fl.epoch = e + span
            post(e + 1)
            if solo:
                steps[0]()
            else:
                for s, step in enumerate(steps):
                    wait(left, e + 1 + s, "ring partial")
                    step()
                    post(e + 2 + s)
            for t, (dst, srcv) in enumerate(copies):
                wait(left, e + p + t, "ring block")
                copy(dst, srcv)
                post(e + p + 1 + t)
            arrive(e + span, "ring readers")
        return body

    def reduce_scatter(self, send, recv, dtype, op):
        algo = self._choose("reduce_scatter", recv.nbytes)
        p, me, fl = self.size, self.rank, self.flags
        ring_scratch = send if (algo == "ring" and send is not None) else None
        S, R, Z, copy_in, staged = self._prepare(send, recv, "reduce_scatter", scratch_like=ring_scratch)
        src = R if send is None else S
        order = [me] + [j for j in range(p) if j != me]
        block = len(src[me]) // p
        blocks = [slice(j * block, (j + 1) * block) for j in range(p)]
        result = R[me][blocks[me]] if send is None else R[me]
        if algo == "ring":
            W = R if send is None else Z
            body = self._ring(dtype, op, src, W, blocks, shift=0, gather=False, final=result)
            return self._finish(body, result, copy_in, staged)
        b = blocks[me]
        reduce = kernels.plan_reduce(dtype, op, p, result, [src[j][b] for j in order])
        arrive = fl.arrive

        def body():
            e = fl.epoch
            fl.epoch = e + 2
            arrive(e + 1, "reduce_scatter inputs")
            reduce()
            arrive(e + 2, "reduce_scatter readers")
        return self._finish(body, result, copy_in, staged)

    def reduce(self, send, recv, dtype, op, root):
        algo = self._choose("reduce", recv.nbytes)
        p, me, fl = self.size, self.rank, self.flags
        S, R, Z, copy_in, staged = self._prepare(send, recv, "reduce")
        src = R if send is None else S
        out = R[root]
        order = [root] + [j for j in range(p) if j != root]
        post, wait, wait_all, arrive = fl.post, fl.wait, fl.wait_all, fl.arrive
        if algo == "flat":
            reduce = kernels.plan_reduce(dtype, op, p, out, [src[j] for j in order]) if me == root else None

            def body():
                e = fl.epoch
                fl.epoch = e + 2
                post(e + 1)
                if reduce is not None:
                    wait_all(e + 1, "reduce inputs")
                    reduce()
                    post(e + 2)
                else:
                    post(e + 2)
                    wait(root, e + 2, "reduce root")
        else:
            sl = kernels.split(len(out), p, out.itemsize)[me]
            reduce = kernels.plan_reduce(dtype, op, p, out[sl], [src[j][sl] for j in order])

            def body():
                e = fl.epoch
                fl.epoch = e + 2
                arrive(e + 1, "reduce inputs")
                reduce()
                arrive(e + 2, "reduce slices")
        return self._finish(body, R[me] if me == root else None, copy_in, staged)
