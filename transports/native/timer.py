"""The compiled timed loop as the harness sees it: :class:`NativeLoop` and :class:`NativeTimer`.

A transport with a compiled path attaches a :class:`NativeLoop` to the
:class:`~transports.base.Bound` it returns (``bound.native``).  The loop's C
function runs ``iters`` iterations without returning to Python and writes
``stamps[0]`` before the first and ``stamps[i]`` after iteration ``i``
(CLOCK_MONOTONIC seconds, the clock of ``time.perf_counter`` on Linux), so
the statistics (min/p50/p99/max over iterations) come out exactly as from the
Python loop (:class:`transports.base.HostTimer`).  ctypes releases the GIL
for the call: the watchdog thread keeps reading the stamps, so a stalled
peer still ends the job within -T.
"""

from __future__ import annotations

import gc
import time
from typing import Callable, Optional

import numpy as np

from transports.base import HostTimer

__all__ = ["NativeLoop", "NativeTimer"]


class NativeLoop:
    """One bound operation, compiled.

    ``call(iters, stamps_address) -> status`` runs it; a non-zero status goes
    to ``failed(status)``, which raises (a timeout naming the peer, an MPI
    error).  ``keep`` holds whatever the C side points into (buffers,
    handles, programs) for as long as this object lives.
    """

    def __init__(self, call: Callable[[int, int], int], failed: Callable[[int], None], keep=()):
        self._call, self._failed, self._keep = call, failed, keep
        self._once = np.zeros(2)

    def loop(self, iters: int, stamps: np.ndarray) -> None:
        """Run ``iters`` iterations, stamping ``stamps[0..iters]`` (float64, C-contiguous)."""
        status = self._call(iters, stamps.ctypes.data)
        if status:
            self._failed(status)

    def run(self) -> None:
        """One iteration: what the validated run executes (the same compiled call as the timed loop)."""
        self.loop(1, self._once)

    __call__ = run


class NativeTimer(HostTimer):
    """A :class:`HostTimer` whose iterations run inside ``native``'s C loop.

    ``stamps`` is a memoryview of the array the C loop writes, so the
    watchdog's reads (``len``, indexing, truth) work while the loop runs.
    With ``before`` (``--fresh-inputs``) each iteration is one compiled call
    after ``before()``, and only the C loop's own stamps count.
    """

    def __init__(self, native: NativeLoop):
        super().__init__()
        self.native = native

    def loop(self, run, iters: int, synchronize, before: Optional[Callable] = None):
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            stamps = np.zeros(iters + 1)
            self.stamps = memoryview(stamps)
            if before is None:
                self.native.loop(iters, stamps)
                synchronize()
            else:
                self._fresh(iters, synchronize, before, stamps)
            return stamps
        finally:
            if was_enabled:
                gc.enable()

    def _fresh(self, iters, synchronize, before, stamps) -> None:
        one = np.zeros(2)
        elapsed = time.perf_counter()
        stamps[0] = elapsed
        for i in range(1, iters + 1):
            before()
            self.native.loop(1, one)
            synchronize()
            elapsed += one[1] - one[0]
            stamps[i] = elapsed
