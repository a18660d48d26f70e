"""Epoch flags: how the ranks of the shm transport wait for each other.

Every rank owns one 64-byte line in the control segment holding a counter
that only it writes and that only grows: "I have passed step k".  A rank
waits for a peer by reading the peer's counter until it reaches k.  No
read-modify-write is ever needed, so plain aligned 8-byte loads and stores
suffice.  On x86-64 (total store order) a peer that sees the counter also
sees every byte written before it, because numpy's writes are finished when
the call returns and stores are not reordered with stores; that is why the
transport requires x86-64.

Waiting never spins without bound.  The policy (``COLLSCALE_SHM_WAIT``):

* ``futex`` (default): spin briefly, yield a few times, then sleep in
  ``FUTEX_WAIT`` on the peer's counter word with a 2 ms timeout; a rank
  that advances its counter wakes sleepers only when one has said it is
  sleeping, so the fast path makes no system call.
* ``yield``: spin, then ``sched_yield`` until done (plus short sleeps
  after a while).
* ``spin``: spin, then ``sched_yield`` (for measurements only).

Spinning is short when ranks outnumber cores (a spinning rank steals the
core its peer needs); ``COLLSCALE_SHM_SPINS`` and ``COLLSCALE_SHM_YIELDS``
override the counts.  Every wait honours the timeout and raises
:class:`WaitTimeout` naming the rank waited for.
"""

from __future__ import annotations

import ctypes
import os
import platform
import time
from typing import Optional, Sequence

__all__ = ["Flags", "WaitTimeout", "SLOT", "control_bytes", "eager_bytes", "eager_area", "arch_ok",
           "POLICIES"]

SLOT = 64  # bytes per rank: one cache line, so ranks never share a line
_Q = SLOT // 8  # int64 words per slot: [0] counter, [1] "wake me" request
DESC_WORDS = 8  # int64 words per buffer descriptor
MAX_DESC = 8  # descriptors a rank can publish at once
POLICIES = ("futex", "yield", "spin")

_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
_SYS_FUTEX = {"x86_64": 202}.get(platform.machine())


class WaitTimeout(TimeoutError):
    """A rank waited longer than the timeout for a peer."""

    def __init__(self, rank: int, peer: int, what: str, seconds: float):
        self.rank, self.peer, self.what, self.seconds = rank, peer, what, seconds
        super().__init__(f"shm: rank {rank} waited {seconds:g} s for rank {peer} ({what}); "
                         f"rank {peer} is stuck or gone")


def arch_ok() -> Optional[str]:
    if platform.machine() not in ("x86_64", "AMD64"):
        return (f"the shm transport relies on x86-64 store ordering; this is {platform.machine()}")
    return None


def _global_offset(nranks: int) -> int:
    """Byte offset of the shared words (the barrier generation) after the rank slots."""
    return nranks * SLOT


def eager_bytes(nranks: int) -> int:
    """Bytes per eager slot: 64 KiB, less when many ranks share the 8 MiB area."""
    return max(4096, min(64 * 1024, (8 << 20) // (2 * nranks)) // 4096 * 4096)


def control_bytes(nranks: int) -> int:
    """Flags, descriptors, then the eager area: 2 parities x p ranks x one slot."""
    return _eager_offset(nranks) + 2 * nranks * eager_bytes(nranks)


def _eager_offset(nranks: int) -> int:
    head = (nranks + 1) * SLOT + nranks * MAX_DESC * DESC_WORDS * 8
    return (head + 4095) // 4096 * 4096


def eager_area(mem, nranks: int):
    """The eager slots as a uint8 array of shape (2, nranks, slot bytes)."""
    import numpy as np

    slot = eager_bytes(nranks)
    return np.frombuffer(mem, np.uint8, count=2 * nranks * slot,
                         offset=_eager_offset(nranks)).reshape(2, nranks, slot)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class Flags:
    """Counters and descriptor slots of all ranks, over one shared mapping."""

    def __init__(self, mem, nranks: int, rank: int, timeout: float, oversubscribed: bool,
                 policy: str = "futex"):
        if policy not in POLICIES:
            raise ValueError(f"COLLSCALE_SHM_WAIT must be one of {', '.join(POLICIES)}, not {policy!r}")
        self.p, self.me = nranks, rank
        self.words = memoryview(mem).cast("q")
        self.gen = _global_offset(nranks) // 8  # word: the last barrier known complete
        self.desc_base = (nranks + 1) * _Q
        self.oversubscribed = oversubscribed
        self.timeout = timeout if timeout and timeout > 0 else float("inf")
        self.policy = policy
        # Chosen by measurement (docs/results/2026-11.md, "shm's waiting
        # policy"): oversubscribed, a few spins and some yields before the
        # futex beat sleeping at once; with a core per rank, spinning first
        # costs nothing and keeps the latency low.
        self.spins = int(os.environ.get("COLLSCALE_SHM_SPINS", 5 if oversubscribed else 4000))
        self.yields = int(os.environ.get("COLLSCALE_SHM_YIELDS", 50))
        self.epoch = 0
        self._futex = None
        self._base_addr = None
        if policy == "futex" and _SYS_FUTEX is not None:
            libc = ctypes.CDLL(None, use_errno=True)
            self._futex = libc.syscall
            self._futex.restype = ctypes.c_long
            self._base_addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
            self._ts = _Timespec(0, 2_000_000)

    # -- the owner's side ------------------------------------------------------
    def post(self, value: int) -> None:
        """Set my counter (never lowering it) and wake whoever sleeps on it."""
        w, i = self.words, self.me * _Q
        w[i] = value
        if w[i + 1]:
            w[i + 1] = 0
            if self._futex is not None:
                self._futex(_SYS_FUTEX, ctypes.c_void_p(self._base_addr + i * 8), _FUTEX_WAKE,
                            0x7FFFFFFF, None, None, 0)

    # -- the waiter's side -----------------------------------------------------
    def wait(self, peer: int, value: int, what: str) -> None:
        w, i = self.words, peer * _Q
        if w[i] >= value:
            return
        for _ in range(self.spins):
            if w[i] >= value:
                return
        self._wait_slow(peer, value, what)

    def wait_all(self, value: int, what: str) -> None:
        w = self.words
        for peer in range(self.p):
            if w[peer * _Q] < value:
                self.wait(peer, value, what)

    def wait_many(self, peers: Sequence[int], value: int, what: str) -> None:
        w = self.words
        for peer in peers:
            if w[peer * _Q] < value:
                self.wait(peer, value, what)

    def _wait_slow(self, peer: int, value: int, what: str) -> None:
        w, i = self.words, peer * _Q
        start = time.monotonic()
        deadline = start + self.timeout
        yields = 0
        futex = self._futex
        while w[i] < value:
            if futex is not None and yields >= self.yields:
                w[i + 1] = 1  # ask the peer to wake me
                seen = w[i]
                if seen >= value:
                    break
                futex(_SYS_FUTEX, ctypes.c_void_p(self._base_addr + i * 8), _FUTEX_WAIT,
                      seen & 0xFFFFFFFF, ctypes.byref(self._ts), None, 0)
            elif self.policy == "yield" and yields >= 2000:
                time.sleep(0.0002)
            else:
                os.sched_yield()
            yields += 1
            if (yields & 15) == 0 and time.monotonic() > deadline:
                if w[i] >= value:
                    break
                raise WaitTimeout(self.me, peer, what, self.timeout)

    # -- descriptors -------------------------------------------------------------
    def publish(self, slots: Sequence[Sequence[int]]) -> None:
        """Write my buffer descriptors (each up to DESC_WORDS integers)."""
        if len(slots) > MAX_DESC:
            raise ValueError("too many descriptors")
        base = self.desc_base + self.me * MAX_DESC * DESC_WORDS
        for k, values in enumerate(slots):
            for j, v in enumerate(values):
                self.words[base + k * DESC_WORDS + j] = int(v)

    def read(self, peer: int, count: int):
        base = self.desc_base + peer * MAX_DESC * DESC_WORDS
        return [tuple(self.words[base + k * DESC_WORDS: base + (k + 1) * DESC_WORDS])
                for k in range(count)]

    def arrive(self, value: int, what: str) -> None:
        """post(value) then wait_all(value): a barrier, built for oversubscription.

        With a core per rank this is a plain post and spin.  When ranks
        outnumber cores, waiters sleep on one shared generation word instead
        of on each peer in turn, so a barrier costs each rank at most one
        sleep and one wake-up: whoever first sees every rank arrived advances
        the generation and wakes all sleepers with one system call.  Waiting
        ranks yield first (a sleep and wake-up costs far more CPU than a
        yield: docs/results/2026-11.md); a rank about to sleep first fences (a
        futex call: the kernel issues a full memory barrier) and looks again,
        so the last arrivals cannot all miss each other and sleep; a 2 ms
        sleep limit backs that up.
        """
        if not self.oversubscribed or self._futex is None:
            self.post(value)
            self.wait_all(value, what)
            return
        w, q, p = self.words, _Q, self.p
        w[self.me * q] = value
        gen_addr = ctypes.c_void_p(self._base_addr + self.gen * 8)
        futex = self._futex
        start = None
        yields = 0
        fenced = False
        while True:
            g = w[self.gen]
            if g >= value:
                return
            for peer in range(p):
                if w[peer * q] < value:
                    break
            else:
                w[self.gen] = value  # everybody is here: say so, wake the sleepers
                futex(_SYS_FUTEX, gen_addr, _FUTEX_WAKE, 0x7FFFFFFF, None, None, 0)
                return
            if yields < self.yields:
                os.sched_yield()
                yields += 1
                continue
            if not fenced:
                # About to sleep: fence (the kernel's futex path is a full
                # barrier) and look once more, so the last arrivals cannot
                # all miss each other and sleep.
                futex(_SYS_FUTEX, gen_addr, _FUTEX_WAKE, 0, None, None, 0)
                fenced = True
                continue
            futex(_SYS_FUTEX, gen_addr, _FUTEX_WAIT, g & 0xFFFFFFFF, ctypes.byref(self._ts), None, 0)
            if start is None:
                start = time.monotonic()
            elif time.monotonic() - start > self.timeout:
                raise WaitTimeout(self.me, peer, what, self.timeout)

    def barrier(self, what: str) -> None:
        """Every rank passes this point before any leaves it."""
        self.epoch += 1
        self.arrive(self.epoch, what)

    def close(self) -> None:
        self.words.release()
