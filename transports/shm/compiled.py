"""The shm transport's compiled path: each bound call's steps, run by a C loop.

Every shm call is a short sequence of steps on the ranks' epoch flags and
buffers: post, wait for a peer, arrive (post and wait for all), copy,
reduce.  The transport's Python bodies run those steps one Python call at a
time; here the same steps are written down once per bound call
(:class:`Program`) and ``transports/native/shm_loop.c`` runs them
``iters`` times in C (:class:`ShmCompiled.native`), with acquire/release
atomics and the flags' own wake-up protocol, so Python and C calls mix on
the same counters.  The epoch and the eager allreduce's call count are
handed to the C loop and taken back after it.

Compiled here: allreduce's eager flat (small sizes) and direct
algorithms, broadcast, barrier, pingpong, and the pulls (sendrecv,
allgather, alltoall), with ``--buffer host``'s staging copies.  The others
(flat allreduce past the eager slots, ring, reduce, reduce_scatter) keep the
Python loop, and their records say ``loop: python``.
"""

from __future__ import annotations

import uuid
from typing import List, Optional, Sequence

import numpy as np

from transports.native import agree
from transports.shm.sync import WaitTimeout

__all__ = ["Program", "ShmCompiled", "SPIN_NS", "broadcast_root", "broadcast_leaf", "pull", "pingpong"]

SPIN_NS = 60  # about one Python spin of sync.Flags.wait: C spins as long as the Python loop would


def _address(arr: np.ndarray) -> Optional[int]:
    if not arr.flags.c_contiguous:
        return None
    return arr.__array_interface__["data"][0]


class Program:
    """The steps of one bound call, in one or two variants (by call parity), ``span`` epochs each."""

    def __init__(self, codes, span: int, variants: int = 1):
        self.codes, self.span = codes, span
        self.variants: List[List[List[int]]] = [[] for _ in range(variants)]
        self.whats: List[str] = []
        self.keep: list = []
        self.ok = True  # False once a step cannot be compiled (the call keeps the Python loop)
        self.v = 0  # the variant being written

    def _what(self, text: str) -> int:
        if text not in self.whats:
            self.whats.append(text)
        return self.whats.index(text)

    def _add(self, *words: int) -> "Program":
        self.variants[self.v].append(list(words))
        return self

    def post(self, rel: int) -> "Program":
        return self._add(self.codes.OPCODES["post"], rel)

    def wait(self, peer: int, rel: int, what: str) -> "Program":
        return self._add(self.codes.OPCODES["wait"], peer, rel, self._what(what))

    def arrive(self, rel: int, what: str) -> "Program":
        return self._add(self.codes.OPCODES["arrive"], rel, self._what(what))

    def copy(self, dst: np.ndarray, src: np.ndarray) -> "Program":
        if not dst.nbytes:
            return self
        a, b = _address(dst), _address(src)
        if a is None or b is None or dst.nbytes != src.nbytes or dst.dtype != src.dtype:
            self.ok = False
            return self
        self.keep += [dst, src]
        return self._add(self.codes.OPCODES["copy"], a, b, dst.nbytes)

    def reduce(self, dtype, op: str, nranks: int, out: np.ndarray, inputs: Sequence[np.ndarray],
               reduces) -> "Program":
        """``out = reduce(op, inputs)`` in input order (``avg``: then / nranks), as kernels.plan_reduce."""
        addrs = [_address(x) for x in [out, *inputs]]
        if None in addrs or not reduces(dtype.name) or any(len(x) != len(out) for x in inputs):
            self.ok = False
            return self
        if not len(out):
            return self
        srcs = np.array(addrs[1:], np.int64)
        self.keep += [out, *inputs, srcs]
        return self._add(self.codes.OPCODES["reduce"], addrs[0], srcs.ctypes.data, len(inputs), len(out),
                         self.codes.TYPES[dtype.name], self.codes.REDUCE_OPS[op], nranks)

    def around(self, before: Sequence, after: Sequence) -> "Program":
        """Staging copies (``--buffer host``) before and after every variant's steps."""
        core = self.variants
        self.variants = []
        for steps in core:
            self.variants.append([])
            self.v = len(self.variants) - 1
            for dst, src in before:
                self.copy(dst, src)
            self.variants[-1] += steps
            for dst, src in after:
                self.copy(dst, src)
        return self

    def table(self) -> np.ndarray:
        width = self.codes.STEP
        n = max(len(v) for v in self.variants)
        out = np.zeros((len(self.variants), n, width), np.int64)  # op 0: nothing (padding)
        for i, steps in enumerate(self.variants):
            for j, words in enumerate(steps):
                out[i, j, :len(words)] = words
        return out


class ShmCompiled:
    """Whether this shm run has the compiled loop (agreed by every rank), and its programs."""

    def __init__(self, comm, transport, mode: Optional[str], job: str):
        self.t, self.job = transport, job
        self.lib, self.loop, self.note = agree(comm.allgather, mode, self._start, "the shm transport")
        self.codes = None
        if self.lib is not None:
            from transports.native import shm as codes

            self.codes = codes

    def _start(self):
        from transports.native import shm as native_shm

        lib = native_shm.load(token=self.job or uuid.uuid4().hex)
        how = (f"compiled in {lib.built.seconds:.1f} s" if lib.built.compiled else "cached") + (
            f"; {lib.built.note}" if lib.built.note else "")
        return lib, (f"timed loop: compiled C for allreduce (flat, direct), broadcast, barrier, pingpong, "
                     f"sendrecv, allgather, alltoall; Python for ring, reduce, reduce_scatter ({how}: "
                     f"{lib.built.path})")

    def program(self, span: int, variants: int = 1) -> Optional[Program]:
        """A new program, or None when this run has no compiled loop."""
        return None if self.lib is None else Program(self.codes, span, variants)

    def reduces(self, dtype_name: str) -> bool:
        return self.lib is not None and self.lib.reduces(dtype_name)

    def native(self, program: Optional[Program]):
        """The :class:`~transports.native.timer.NativeLoop` of a finished program, or None."""
        from transports.native.timer import NativeLoop

        if program is None or not program.ok:
            return None
        t, codes = self.t, self.codes
        fl, calls = t.flags, t.eager_calls
        table = program.table()
        # The flags' address, without holding an export of their memoryview (Flags.close releases it).
        base = np.frombuffer(fl.words, np.int64).ctypes.data
        cfg = np.array([base, t.size, t.rank, int(fl.oversubscribed), codes.POLICIES[fl.policy],
                        max(0, fl.spins) * SPIN_NS, fl.yields,
                        0 if fl.timeout == float("inf") else int(fl.timeout * 1e9)], np.int64)
        state = np.zeros(codes.STATE, np.int64)
        run = self.lib.run
        args = (cfg.ctypes.data, table.ctypes.data, table.shape[1], table.shape[0], program.span,
                state.ctypes.data)
        whats = program.whats

        def call(iters: int, stamps: int) -> int:
            state[0], state[1] = fl.epoch, calls[0]
            status = run(*args, iters, stamps)
            fl.epoch, calls[0] = int(state[0]), int(state[1])
            return status

        def failed(status: int) -> None:
            raise WaitTimeout(t.rank, int(state[2]), whats[int(state[3])], fl.timeout)

        return NativeLoop(call, failed, keep=(cfg, table, state, program.keep))


# -- the steps of the transport's bodies that are not written inline there (transport.py) --------

def broadcast_root(prog: Optional[Program], pushes, local) -> Optional[Program]:
    """ShmTransport.broadcast at the root: ``pushes`` (peer, dst, src); ``local`` (dst, src) or None."""
    if prog is not None:
        prog.post(1)
        if local is not None:
            prog.copy(*local)
        for j, dst, src in pushes:
            prog.wait(j, 1, "broadcast receiver").copy(dst, src)
        prog.arrive(2, "broadcast readers")
    return prog


def broadcast_leaf(prog: Optional[Program], root: int, pulls) -> Optional[Program]:
    if prog is not None:
        prog.post(1).wait(root, 1, "broadcast root")
        for dst, src in pulls:
            prog.copy(dst, src)
        prog.post(2).wait(root, 2, "broadcast root's share")
    return prog


def pull(prog: Optional[Program], pairs, what: str, keep, readers) -> Optional[Program]:
    """ShmTransport._pull's steps (sendrecv, allgather, alltoall)."""
    if prog is not None:
        if keep is not None:
            prog.copy(*keep)
        prog.post(1)
        for j, dst, src in pairs:
            prog.wait(j, 1, what).copy(dst, src)
        if readers is None:
            prog.arrive(2, what + " readers")
        else:
            prog.post(2)
            for j in readers:
                prog.wait(j, 2, what + " reader")
    return prog


def pingpong(prog: Optional[Program], rank: int, peer: int, mine, theirs) -> Optional[Program]:
    if prog is not None and rank == 0:
        prog.post(1).wait(peer, 2, "pong").copy(mine, theirs).post(3)
    elif prog is not None:
        prog.wait(peer, 1, "ping").copy(mine, theirs).post(2).wait(peer, 3, "pong read")
    return prog
