"""The shm transport: every collective through shared memory, by our own code.

MPI (the harness's control communicator) is used only to bootstrap: rank,
size, host names, process ids, the job id, the control segment's location,
and a barrier while attaching.  After that every byte and every
synchronisation goes through shared memory (:mod:`.segment`, :mod:`.sync`).

Buffers (``--buffer``):

* ``shared`` (default, zero-copy): :meth:`alloc` places buffers in this
  rank's own shared segments, like NCCL's registered buffers; at bind time
  the ranks swap descriptors and map each other's buffers, and collectives
  read peers' memory directly.
* ``host``: ordinary process memory; each call copies the input into a
  shared staging buffer and the result back out, inside the timed call.

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

broadcast, allgather, alltoall, sendrecv and pingpong copy straight from
the source rank's buffer (one read and one write per byte received).
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from collectives.dtypes import DType
from launch import env as launch_env
from transports.base import Bound, TransportBase, Unsupported
from transports.shm import kernels, segment
from transports.shm.sync import Flags, arch_ok, control_bytes, eager_area

__all__ = ["ShmTransport", "ALGOS", "FLAT_MAX", "BUFFERS"]

BUFFERS = ("shared", "host")
ALGOS = {
    "allreduce": ("flat", "direct", "ring"),
    "reduce": ("flat", "direct"),
    "reduce_scatter": ("direct", "ring"),
}
FLAT_MAX = 16 * 1024  # auto: flat up to here, direct above (measured, see README)


class _View:
    """Every rank's view of one role (send, recv, scratch) of a bound call."""

    def __init__(self, views: List[np.ndarray]):
        self.views = views

    def __getitem__(self, rank: int) -> np.ndarray:
        return self.views[rank]


class ShmTransport(TransportBase):
    name = "shm"
    enforces_timeout = True  # every wait raises WaitTimeout naming the peer

    def __init__(self, comm, options: dict):
        super().__init__(comm.rank, comm.size)
        p, me = comm.size, comm.rank
        hosts = comm.allgather(socket.gethostname())
        if len(set(hosts)) > 1:
            raise Unsupported(f"shm needs every rank on one host; this job spans {len(set(hosts))} hosts "
                              "(use --transport mpi)")
        self.buffer_mode = options.get("buffer") or "shared"
        if self.buffer_mode not in BUFFERS:
            raise Unsupported(f"--buffer {self.buffer_mode}: shm has {', '.join(BUFFERS)}")
        self.algo = (options.get("algo") or "auto").lower()
        known = sorted({a for v in ALGOS.values() for a in v} | {"auto"})
        if self.algo not in known:
            raise Unsupported(f"--algo {self.algo}: shm has {', '.join(known)}")
        self.policy = os.environ.get("COLLSCALE_SHM_WAIT", "futex")
        self.seg_mode = os.environ.get("COLLSCALE_SHM_SEGMENTS", "memfd")
        if self.seg_mode not in ("memfd", "named"):
            raise Unsupported("COLLSCALE_SHM_SEGMENTS must be memfd or named")
        # Spin only where every rank has a core (the union of their affinities).
        self.oversubscribed = p > launch_env.usable_cores(comm.allgather(launch_env.affinity()))
        self.job = comm.bcast(uuid.uuid4().hex[:12] if me == 0 else None)
        self.pids = comm.allgather(os.getpid())
        self._own: Dict[int, segment.Segment] = {}
        self._peer: Dict[Tuple[int, int], segment.Segment] = {}
        self._fresh: List[segment.Segment] = []  # named segments not yet unlinked
        self._next_id = 1
        self._stages: Dict[str, np.ndarray] = {}
        self._eager_calls = [0]
        self._ctrl = self._bootstrap(comm)
        timeout = float(options.get("timeout") or 0)
        if timeout and me != 0:
            timeout += min(5.0, max(1.0, 0.2 * timeout))  # rank 0 reports first
        self.flags = Flags(self._ctrl.mem, p, me, timeout, self.oversubscribed, self.policy)
        # (parity, rank, bytes): every rank's two eager slots, side by side.
        self._eager = eager_area(self._ctrl.mem, p)
        self._closed = False

    # -- start-up ------------------------------------------------------------------
    def _bootstrap(self, comm) -> segment.Segment:
        """Rank 0's control segment, attached by all; memfd unless it cannot work."""
        if self.seg_mode == "named" and self.rank == 0:
            segment.sweep_orphans()
        for mode in (self.seg_mode, "named") if self.seg_mode == "memfd" else ("named",):
            desc = error = None
            ctrl = None
            if self.rank == 0:
                ctrl = segment.create(mode, self.job, 0, 0, control_bytes(self.size))
                desc = ctrl.desc
            desc = comm.bcast(desc)
            if self.rank != 0:
                try:
                    ctrl = segment.attach(mode, self.job, self.pids[0], desc)
                except OSError as exc:
                    error = f"rank {self.rank}: {exc}"
            errors = [e for e in comm.allgather(error) if e]
            if not errors:
                comm.barrier()  # everyone is attached: the name is no longer needed
                if self.rank == 0:
                    ctrl.unlink()
                self.seg_mode = mode
                return ctrl
            if ctrl is not None:
                ctrl.close()
        raise Unsupported("cannot share memory between the ranks: " + "; ".join(errors))

    # -- buffers -------------------------------------------------------------------
    def _new_segment(self, nbytes: int) -> segment.Segment:
        seg = segment.create(self.seg_mode, self.job, self.rank, self._next_id, nbytes)
        self._own[self._next_id] = seg
        self._next_id += 1
        if seg.path is not None:
            self._fresh.append(seg)
        return seg

    def alloc(self, count: int, dtype: DType):
        if self.buffer_mode == "host":
            return super().alloc(count, dtype)
        seg = self._new_segment(max(1, count) * dtype.itemsize)
        return np.frombuffer(seg.mem, dtype=dtype.storage, count=max(count, 0))

    def _locate(self, arr: np.ndarray) -> Optional[Tuple[segment.Segment, int]]:
        if not arr.flags.c_contiguous:
            return None
        addr = arr.__array_interface__["data"][0]
        for seg in self._own.values():
            if seg.addr <= addr and addr + arr.nbytes <= seg.addr + seg.size:
                return seg, addr - seg.addr
        return None

    def _stage(self, role: str, like: np.ndarray) -> np.ndarray:
        """A shared buffer of this rank for ``role``, at least as big as ``like``."""
        have = self._stages.get(role)
        if have is None or have.nbytes < like.nbytes:
            seg = self._new_segment(max(like.nbytes, 2 * (have.nbytes if have is not None else 0)))
            have = np.frombuffer(seg.mem, np.uint8)
            self._stages[role] = have
        return have[: like.nbytes].view(like.dtype)

    def _share(self, arrays: Sequence[Optional[np.ndarray]], dtype: np.dtype,
               what: str) -> List[Optional[_View]]:
        """Swap descriptors of ``arrays`` (each None or in an own segment) and map the peers'.

        Returns, per role, every rank's view of that role (None where the
        rank published nothing); all in ``dtype``.
        """
        records = []
        for arr in arrays:
            if arr is None:
                records.append((0, 0, 0, 0, -1))
                continue
            seg, offset = self._locate(arr)
            records.append((seg.desc.seg_id, seg.desc.fd, seg.desc.size, offset, arr.nbytes))
        fl = self.flags
        fl.publish(records)
        fl.barrier(f"exchanging buffers for {what}")
        views: List[List[Optional[np.ndarray]]] = [[None] * self.size for _ in arrays]
        for peer in range(self.size):
            recs = records if peer == self.rank else fl.read(peer, len(arrays))
            for k, rec in enumerate(recs):
                seg_id, fd, size, offset, nbytes = rec[:5]
                if nbytes < 0:
                    continue
                if peer == self.rank:
                    views[k][peer] = arrays[k]
                    continue
                key = (peer, seg_id)
                seg = self._peer.get(key)
                if seg is None:
                    seg = segment.attach(self.seg_mode, self.job, self.pids[peer],
                                         segment.Descriptor(peer, seg_id, fd, size))
                    self._peer[key] = seg
                views[k][peer] = np.frombuffer(seg.mem, dtype=dtype, count=nbytes // dtype.itemsize,
                                               offset=offset)
        fl.barrier(f"mapping buffers for {what}")
        for seg in self._fresh:  # every rank has attached: named segments lose their names
            seg.unlink()
        self._fresh.clear()
        return [_View(v) if any(x is not None for x in v) else None for v in views]

    def _prepare(self, send, recv, what: str, scratch_like: Optional[np.ndarray] = None):
        """Shared views of send/recv/scratch (staged when not shared) and the copy-in steps."""
        copy_in: List[Tuple[np.ndarray, np.ndarray]] = []
        send_sh = None
        if send is not None:
            send_sh = send if self._locate(send) else self._stage("send", send)
            if send_sh is not send:
                copy_in.append((send_sh, send))
        recv_sh = recv if self._locate(recv) else self._stage("recv", recv)
        staged_recv = recv_sh is not recv
        if staged_recv and send is None:
            copy_in.append((recv_sh, recv))
        z = self._stage("scratch", scratch_like) if scratch_like is not None else None
        s_view, r_view, z_view = self._share([send_sh, recv_sh, z], recv.dtype, what)
        return s_view, r_view, z_view, copy_in, (recv, recv_sh) if staged_recv else None

    def _finish(self, body, result_sh, copy_in, staged) -> Bound:
        """Wrap ``body`` with staging copies; map the result view back to the caller's buffer."""
        if result_sh is None or staged is None:
            result = result_sh
            copy_out = None
        else:
            user, shared = staged
            start = (result_sh.__array_interface__["data"][0]
                     - shared.__array_interface__["data"][0]) // shared.itemsize
            result = user[start: start + len(result_sh)]
            copy_out = (result, result_sh)
        if not copy_in and copy_out is None:
            return Bound(body, result)
        ins = kernels.plan_copy(copy_in)
        outs = kernels.plan_copy([copy_out] if copy_out else [])

        def run():
            ins()
            body()
            outs()
        return Bound(run, result)

    def _choose(self, collective: str, nbytes: int) -> str:
        options = ALGOS[collective]
        if self.algo == "auto":
            if collective == "reduce_scatter":
                return "direct"
            return "flat" if nbytes <= FLAT_MAX else "direct"
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
        calls = self._eager_calls
        arrive = fl.arrive

        def body():
            e = fl.epoch
            fl.epoch = e + 1
            par = calls[0] & 1
            calls[0] += 1
            fill[par]()
            arrive(e + 1, "allreduce inputs")
            reduce[par]()
        assert n == rows[0].shape[1]
        return body

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
            return self._finish(self._eager_allreduce(src[me], mine, dtype, op), mine, copy_in, staged)
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
            return self._finish(body, mine, copy_in, staged)
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

    def broadcast(self, send, recv, dtype, root):
        """Cooperative copy: the root's core writes a 1/p share into every other rank.

        Each non-root copies the other (p-1)/p of the data from the root's
        buffer; the root, otherwise idle, writes its share into every
        non-root once that rank has entered the call.  Every core then writes
        (p-1)/p of n bytes instead of the non-roots writing n each: 2x at 2
        ranks, p/(p-1) in general (when every rank has its own core).
        """
        p, me, fl = self.size, self.rank, self.flags
        S, R, Z, copy_in, staged = self._prepare(send, recv, "broadcast")
        if me != root:
            copy_in = []  # only the root's data is read; a non-root's buffers are outputs
        data = S[root] if (send is not None) else R[root]
        mine = R[me]
        share = kernels.split(len(mine), p, mine.itemsize)[root]  # the root's part
        post, wait, arrive = fl.post, fl.wait, fl.arrive
        copy = np.copyto
        if me == root:
            pushes = [(j, R[j][share], data[share]) for j in range(p) if j != root and len(R[j][share])]
            local = send is not None

            def body():
                e = fl.epoch
                fl.epoch = e + 2
                post(e + 1)
                if local:
                    copy(mine, data)
                for j, dst, src in pushes:
                    wait(j, e + 1, "broadcast receiver")  # j has entered: its buffer is ours to fill
                    copy(dst, src)
                arrive(e + 2, "broadcast readers")
        else:
            pulls = [(mine[sl], data[sl]) for k, sl in enumerate(kernels.split(len(mine), p, mine.itemsize))
                     if k != root]

            def body():
                e = fl.epoch
                fl.epoch = e + 2
                post(e + 1)
                wait(root, e + 1, "broadcast root")
                for dst, src in pulls:
                    copy(dst, src)
                post(e + 2)
                wait(root, e + 2, "broadcast root's share")
        return self._finish(body, mine, copy_in, staged)

    def _pull(self, pairs, what: str, keep=None, readers=None):
        """Post "my data is ready", copy each (peer, dst, src) once that peer is
        ready, then wait until the ranks reading this one's data (``readers``;
        all by default) are done.  ``keep`` (in place) first saves this rank's
        data where the others will read it."""
        fl = self.flags
        post, wait, arrive, wait_many = fl.post, fl.wait, fl.arrive, fl.wait_many
        copy = np.copyto

        def body():
            e = fl.epoch
            fl.epoch = e + 2
            if keep is not None:
                keep()
            post(e + 1)
            for j, dst, src in pairs:
                wait(j, e + 1, what)
                copy(dst, src)
            if readers is None:
                arrive(e + 2, what + " readers")
            else:
                post(e + 2)
                wait_many(readers, e + 2, what + " reader")
        return body

    def allgather(self, send, recv, dtype):
        p, me = self.size, self.rank
        S, R, Z, copy_in, staged = self._prepare(send, recv, "allgather")
        mine = R[me]
        block = len(mine) // p
        pairs = []
        for k in range(p):
            j = (me + 1 + k) % p  # start with the next rank: spread the readers
            if j == me and send is None:
                continue  # in place, this rank's block is already there
            src = S[j] if send is not None else R[j][j * block:(j + 1) * block]
            pairs.append((j, mine[j * block:(j + 1) * block], src))
        return self._finish(self._pull(pairs, "allgather block"), mine, copy_in, staged)

    def alltoall(self, send, recv, dtype):
        p, me = self.size, self.rank
        S, R, Z, copy_in, staged = self._prepare(send, recv, "alltoall",
                                                 scratch_like=recv if send is None else None)
        mine = R[me]
        block = len(mine) // p
        src = S if send is not None else Z  # in place: read the others' saved copies
        keep = kernels.plan_copy([(Z[me], mine)]) if send is None else None
        pairs = [((me + 1 + k) % p, mine[j * block:(j + 1) * block], src[j][me * block:(me + 1) * block])
                 for k in range(p) for j in [(me + 1 + k) % p]]
        return self._finish(self._pull(pairs, "alltoall block", keep), mine, copy_in, staged)

    def sendrecv(self, send, recv, dtype, dest, source):
        S, R, Z, copy_in, staged = self._prepare(send, recv, "sendrecv",
                                                 scratch_like=recv if send is None else None)
        mine = R[self.rank]
        incoming = S[source] if send is not None else Z[source]  # in place: the saved copy
        keep = kernels.plan_copy([(Z[self.rank], mine)]) if send is None else None
        body = self._pull([(source, mine, incoming)], "sendrecv data", keep, readers=[dest])
        return self._finish(body, mine, copy_in, staged)

    def pingpong(self, send, recv, dtype, peer):
        if send is None:
            raise Unsupported("pingpong uses separate send and receive buffers (as OSU)")
        fl = self.flags
        S, R, Z, copy_in, staged = self._prepare(send, recv, "pingpong")
        mine, theirs = R[self.rank], S[peer]
        post, wait = fl.post, fl.wait
        copy = np.copyto
        if self.rank == 0:
            def body():
                e = fl.epoch
                fl.epoch = e + 3
                post(e + 1)  # ping: my data is ready
                wait(peer, e + 2, "pong")
                copy(mine, theirs)
                post(e + 3)  # I have read yours
        else:
            def body():
                e = fl.epoch
                fl.epoch = e + 3
                wait(peer, e + 1, "ping")
                copy(mine, theirs)
                post(e + 2)  # pong: read yours, mine is ready
                wait(peer, e + 3, "pong read")
        return self._finish(body, mine, copy_in, staged)

    def barrier(self):
        fl = self.flags
        arrive = fl.arrive

        def body():
            e = fl.epoch
            fl.epoch = e + 1
            arrive(e + 1, "barrier")
        return Bound(body, None)

    # -- the rest ------------------------------------------------------------------------
    def describe(self):
        return {
            "transport": self.name,
            "transport_version": f"collscale {_version()}: {self.seg_mode} segments, {self.policy} waits",
            "algo": self.algo,
            "buffer": self.buffer_mode,
            "notes": [
                "shm: " + ("zero-copy buffers in shared memory" if self.buffer_mode == "shared"
                           else "ordinary buffers, copied into shared memory and back inside the timed call"),
                f"shm algo auto: flat up to {FLAT_MAX} B, direct above (allreduce, reduce); direct "
                "for reduce_scatter",
            ],
        }

    def cleanup(self) -> None:
        """Unlink every name this job has in /dev/shm (named segments only).

        Names carry the job id, so the rank that fails can remove every
        rank's, including those the launcher is about to kill.  Two sweeps,
        0.1 s apart: a rank between two allocations may still create one, and
        then blocks at the next exchange, waiting for this one.
        """
        if self.seg_mode != "named":
            return
        import time

        prefix = f"{segment.PREFIX}{self.job}-"
        for attempt in range(2):
            if attempt:
                time.sleep(0.1)
            for name in os.listdir("/dev/shm"):
                if name.startswith(prefix):
                    try:
                        os.unlink(f"/dev/shm/{name}")
                    except OSError:
                        pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.flags.barrier("closing")  # nobody still reads my memory
        finally:
            self.flags.close()
            for seg in list(self._peer.values()) + list(self._own.values()) + [self._ctrl]:
                seg.close()
            self._peer.clear()
            self._own.clear()


def _version() -> str:
    from collectives import __version__

    return __version__


def probe() -> Optional[str]:
    return arch_ok() or (None if hasattr(os, "memfd_create") or os.path.isdir("/dev/shm")
                         else "no memfd_create and no /dev/shm")
