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
core its peer needs).  Every wait honours the timeout and raises
:class:`WaitTimeout` naming the rank waited for.
"""

from __future__ import annotations

import ctypes
import os
import platform
import time
from typing import Optional, Sequence

__all__ = ["Flags", "WaitTimeout", "SLOT", "control_bytes", "arch_ok", "POLICIES"]

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


def control_bytes(nranks: int) -> int:
    return nranks * SLOT + nranks * MAX_DESC * DESC_WORDS * 8


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
        self.desc_base = nranks * _Q
        self.timeout = timeout if timeout and timeout > 0 else float("inf")
        self.policy = policy
        self.spins = 50 if oversubscribed else 4000
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
            if futex is not None and yields >= 20:
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

    def barrier(self, what: str) -> None:
        """Every rank passes this point before any leaves it."""
        self.epoch += 1
        self.post(self.epoch)
        self.wait_all(self.epoch, what)

    def close(self) -> None:
        self.words.release()
