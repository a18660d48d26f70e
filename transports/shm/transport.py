"""The shm transport: every collective through shared memory, by our own code.

Memory, start-up and release are :mod:`.memory`; this module is the
algorithms.  MPI (the harness's control communicator) is used only to bootstrap: rank,
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

Algorithms (``--algo``; ``auto`` picks by size) of the reducing collectives:
:mod:`.reductions`, with the memory traffic of each.

broadcast, allgather, alltoall, sendrecv and pingpong copy straight from
the source rank's buffer (one read and one write per byte received).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from transports.base import Bound, Unsupported
from transports.shm import compiled as programs, kernels
from transports.shm.memory import BUFFERS
from transports.shm.reductions import ALGOS, ShmReductions
from transports.shm.sync import arch_ok

__all__ = ["ShmTransport", "ALGOS", "BUFFERS", "probe"]


class ShmTransport(ShmReductions):
    name = "shm"
    enforces_timeout = True  # every wait raises WaitTimeout naming the peer

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
        prog = self.compiled.program(span=2)
        if me == root:
            pushes = [(j, R[j][share], data[share]) for j in range(p) if j != root and len(R[j][share])]
            local = send is not None
            programs.broadcast_root(prog, pushes, (mine, data) if local else None)

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
            programs.broadcast_leaf(prog, root, pulls)

            def body():
                e = fl.epoch
                fl.epoch = e + 2
                post(e + 1)
                wait(root, e + 1, "broadcast root")
                for dst, src in pulls:
                    copy(dst, src)
                post(e + 2)
                wait(root, e + 2, "broadcast root's share")
        return self._finish(body, mine, copy_in, staged, prog)

    def _pull(self, pairs, what: str, keep=None, readers=None):
        """Post "my data is ready", copy each (peer, dst, src) once that peer is
        ready, then wait until the ranks reading this one's data (``readers``;
        all by default) are done.  ``keep`` (in place: a (dst, src) pair) first
        saves this rank's data where the others will read it.  Returns the
        body and its compiled program (None without the compiled loop)."""
        fl = self.flags
        post, wait, arrive, wait_many = fl.post, fl.wait, fl.arrive, fl.wait_many
        copy = np.copyto
        prog = programs.pull(self.compiled.program(span=2), pairs, what, keep, readers)
        keep = kernels.plan_copy([keep]) if keep is not None else None

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
        return body, prog

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
        body, prog = self._pull(pairs, "allgather block")
        return self._finish(body, mine, copy_in, staged, prog)

    def alltoall(self, send, recv, dtype):
        p, me = self.size, self.rank
        S, R, Z, copy_in, staged = self._prepare(send, recv, "alltoall",
                                                 scratch_like=recv if send is None else None)
        mine = R[me]
        block = len(mine) // p
        src = S if send is not None else Z  # in place: read the others' saved copies
        keep = (Z[me], mine) if send is None else None
        pairs = [((me + 1 + k) % p, mine[j * block:(j + 1) * block], src[j][me * block:(me + 1) * block])
                 for k in range(p) for j in [(me + 1 + k) % p]]
        body, prog = self._pull(pairs, "alltoall block", keep)
        return self._finish(body, mine, copy_in, staged, prog)

    def sendrecv(self, send, recv, dtype, dest, source):
        S, R, Z, copy_in, staged = self._prepare(send, recv, "sendrecv",
                                                 scratch_like=recv if send is None else None)
        mine = R[self.rank]
        incoming = S[source] if send is not None else Z[source]  # in place: the saved copy
        keep = (Z[self.rank], mine) if send is None else None
        body, prog = self._pull([(source, mine, incoming)], "sendrecv data", keep, readers=[dest])
        return self._finish(body, mine, copy_in, staged, prog)

    def pingpong(self, send, recv, dtype, peer):
        if send is None:
            raise Unsupported("pingpong uses separate send and receive buffers (as OSU)")
        fl = self.flags
        S, R, Z, copy_in, staged = self._prepare(send, recv, "pingpong")
        mine, theirs = R[self.rank], S[peer]
        post, wait = fl.post, fl.wait
        copy = np.copyto
        prog = programs.pingpong(self.compiled.program(span=3), self.rank, peer, mine, theirs)
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
        return self._finish(body, mine, copy_in, staged, prog)

    def barrier(self):
        fl = self.flags
        arrive = fl.arrive

        def body():
            e = fl.epoch
            fl.epoch = e + 1
            arrive(e + 1, "barrier")
        prog = self.compiled.program(span=1)
        return Bound(body, None, self.compiled.native(prog and prog.arrive(1, "barrier")))

    # -- the rest ------------------------------------------------------------------------
    def describe(self):
        return {
            "transport": self.name,
            "transport_version": f"collscale {_version()}: {self.seg_mode} segments, {self.policy} waits",
            "algo": self.algo,
            "buffer": self.buffer_mode,
            "loop": self.compiled.loop,
            "settings": {"loop": self.compiled.loop},
            "notes": [self.compiled.note,
                "shm: " + ("zero-copy buffers in shared memory" if self.buffer_mode == "shared"
                           else "ordinary buffers, copied into shared memory and back inside the timed call"),
                f"shm algo auto: flat up to {self.flat_max} B, direct above (allreduce, reduce); direct "
                "for reduce_scatter",
            ],
        }


def _version() -> str:
    from ground.version import __version__

    return __version__


def probe() -> Optional[str]:
    return arch_ok() or (None if hasattr(os, "memfd_create") or os.path.isdir("/dev/shm")
                         else "no memfd_create and no /dev/shm")
