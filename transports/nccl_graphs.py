"""CUDA-graph capture of the timed iterations (``--cuda-graph``, nccl-tests' ``-G``).

UNTESTED ON HARDWARE: no GPU was available where this was written; the
control path is covered by tests with a stand-in, the CUDA calls are not.

Without graphs every iteration of a GPU collective is launched from Python,
and at small sizes the launch costs (Python, torch.distributed, the kernel
launch) are most of the figure.  With ``--cuda-graph`` the iterations are
captured once into CUDA graphs and replayed, as nccl-tests does with ``-G``:
the GPU then runs them back to back, and a CUDA event recorded inside the
graph after each iteration (an *external* event, so it is a timing node of
the graph rather than a dependency) gives each iteration's own GPU time, so
min/p50/p99/max mean what they mean elsewhere.

Iterations are captured in chunks of at most :data:`CHUNK`, one graph per
chunk length (cached per bound call, so warm-up, calibration and the timed
loop capture each length once); after each replayed chunk the device is
synchronised and the host stamps advance, so the watchdog sees progress.
Before the first capture the call runs once on the capture stream, as
torch asks (NCCL's communicator must exist before capture).
"""

from __future__ import annotations

import time
from typing import Dict, Tuple

from transports.base import HostTimer

__all__ = ["GraphTimer", "CHUNK"]

CHUNK = 128  # iterations per captured graph


class GraphTimer(HostTimer):
    """Replays captured graphs of ``run``; stamps from the CUDA events inside them."""

    def __init__(self, torch, cache: Dict[Tuple[int, int], tuple]):
        super().__init__()
        self.torch, self.cache = torch, cache

    def _capture(self, run, k: int):
        key = (id(run), k)
        if key in self.cache:
            return self.cache[key][1:]
        torch = self.torch
        cuda = torch.cuda
        side = cuda.Stream()
        side.wait_stream(cuda.current_stream())
        with cuda.stream(side):  # one eager call on a side stream before capture (torch's rule)
            run()
        cuda.current_stream().wait_stream(side)
        cuda.synchronize()
        graph = cuda.CUDAGraph()
        events = [cuda.Event(enable_timing=True, external=True) for _ in range(k + 1)]
        with cuda.graph(graph):
            events[0].record()
            for i in range(1, k + 1):
                run()
                events[i].record()
        self.cache[key] = (run, graph, events)  # run kept alive: its id stays unique
        return graph, events

    def _loop(self, run, iters, synchronize, before=None):
        if before is not None:
            raise ValueError("--cuda-graph replays captured iterations: --fresh-inputs cannot run between them")
        stamps = [0.0] * (iters + 1)
        self.stamps = stamps
        t = stamps[0] = time.perf_counter()
        done = 0
        while done < iters:
            k = min(CHUNK, iters - done)
            graph, events = self._capture(run, k)
            graph.replay()
            synchronize()
            for i in range(1, k + 1):  # the GPU's own time of each iteration, as cumulative seconds
                t += events[i - 1].elapsed_time(events[i]) * 1e-3
                stamps[done + i] = t
            done += k
        return stamps
