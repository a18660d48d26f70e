"""The watchdog that enforces -T for every runner.

No collective, and no phase around one (starting the transport, agreeing
between ranks, closing), may go ``timeout`` seconds without progress; see
:class:`Watchdog`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Optional

from collectives.config import EXIT_TIMEOUT

__all__ = ["Watchdog"]


class Watchdog:
    """Enforces -T: no collective may go ``timeout`` seconds without progress.

    It is armed for the whole run: ``watch(what, timer)`` names the current
    phase (a timed loop, an agreement between ranks, validation, closing);
    between phases it stays armed as "coordinating ranks", and only
    ``local(...)`` pauses it, around work that needs no other rank (building
    validation data).  Start-up phases (``starting``: imports, rendezvous,
    allocating and touching buffers) are bounded by the start-up limit
    instead, which is longer: -T bounds a stall, not work that progresses.
    ``finishing`` arms it for the end of the job until :meth:`close`.  When
    a timer is given, each iteration stamp it fills counts as progress, so a
    long loop of fast collectives never trips it; a single stuck collective
    does.  The thread never touches MPI: on expiry it reports, lets
    ``on_expire`` write what rank 0 knows, and ends the process, which the
    launcher turns into the end of the job.  Rank 0 fires first; other ranks
    wait a grace period so that rank 0's record gets written.
    """

    IDLE = "coordinating ranks between measurements"

    def __init__(self, timeout: float, rank: int, on_expire=None, exit=os._exit, startup: float = 0.0):
        self.rank = rank
        self.on_expire = on_expire
        self._exit = exit
        self._what: Optional[str] = None
        self._startup_phase = False
        self._timer = None
        self._since = time.monotonic()
        self._seen = -1
        self._stop = threading.Event()
        self._thread = None
        self.ranks: list = []  # every rank's host and pid, once known (collectives.context)
        self.configure(timeout, startup)

    def configure(self, timeout: float, startup: float = 0.0) -> None:
        """Set -T (``timeout``) and the start-up limit (``startup``); 0 disables either."""
        self.timeout = timeout
        self.requested = timeout  # the user's -T, named in messages even when backing up a transport
        self.startup = startup
        self.grace = 0.0 if self.rank == 0 else min(5.0, max(1.0, 0.2 * timeout))
        if (timeout > 0 or startup > 0) and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="collscale-watchdog", daemon=True)
            self._thread.start()

    def _arm(self, what: Optional[str], timer=None, startup: bool = False) -> None:
        self._timer, self._seen, self._since = timer, -1, time.monotonic()
        self._startup_phase = startup
        self._what = what

    def watch(self, what: str, timer=None) -> "_Phase":
        """Arm for one phase (-T); back to :attr:`IDLE` (still armed) when it ends."""
        self._arm(what, timer)
        return _Phase(self, self.IDLE)

    def starting(self, what: str) -> "_Phase":
        """Arm for one start-up phase (imports, rendezvous, allocating and first touching
        buffers), bounded by the start-up limit rather than -T."""
        self._arm(what, startup=True)
        return _Phase(self, self.IDLE)

    def local(self, what: str) -> "_Phase":
        """Pause while this rank works alone; re-armed as :attr:`IDLE` afterwards."""
        self._arm(None)
        return _Phase(self, self.IDLE)

    def finishing(self, what: str) -> None:
        """Arm for the end of the job (closing, finalising): stays armed until :meth:`close`."""
        self._arm(what)

    def close(self) -> None:
        self._what = None
        self._stop.set()

    def _progress(self) -> int:
        stamps = getattr(self._timer, "stamps", None)
        if not stamps:
            return -1
        lo, hi = 0, len(stamps) - 1  # stamps are filled in order over zeros
        if stamps[lo] == 0.0:
            return -1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if stamps[mid] != 0.0:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _limit(self):
        """(seconds, flag) that bound the current phase: the start-up limit or -T."""
        if self._startup_phase:
            return self.startup, "--startup-timeout"
        return self.timeout, "-T"

    def _loop(self) -> None:
        limits = [x for x in (self.timeout, self.startup) if x > 0]
        tick = min(1.0, max(0.05, min(limits) / 20)) if limits else 1.0
        while not self._stop.wait(tick):
            what = self._what
            limit, _ = self._limit()
            if what is None or limit <= 0:
                continue
            done = self._progress()
            if done != self._seen:
                self._seen, self._since = done, time.monotonic()
                continue
            if time.monotonic() - self._since > limit + self.grace and self._what == what:
                self._expire(what)

    def _expire(self, what: str) -> None:
        limit, flag = self._limit()
        if flag == "-T":
            waited = f" (the watchdog waited {self.timeout:g} s)" if self.timeout != self.requested else ""
            within = f"-T {self.requested:g} s{waited}"
        else:
            within = f"--startup-timeout {limit:g} s"
        msg = f"collscale: rank {self.rank}: timeout: {what} did not complete within {within}; aborting the job"
        try:
            print(msg, file=sys.stderr, flush=True)
            if self.on_expire is not None:
                self.on_expire(what)
            sys.stdout.flush()
            from transports.base import cleanup_all

            cleanup_all()
        finally:
            self._exit(EXIT_TIMEOUT)


class _Phase:
    def __init__(self, dog: Watchdog, after: Optional[str]):
        self.dog, self.after = dog, after

    def __enter__(self):
        return self.dog

    def __exit__(self, *exc):
        self.dog._arm(self.after)
        return False
