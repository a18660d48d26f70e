"""Where the time of shm's direct allreduce goes, phase by phase (no profiler attached).

    mpirun -n 2 python benchmarks/profile_shm_allreduce.py --size 1M

Replays the ``direct`` algorithm of transports/shm/transport.py on the
transport's own shared buffers with a clock around each phase: the reduce
of this rank's slice (its own input plus every peer's), the copies of the
other slices from their owners, and the three synchronisations.  A sampling
profiler is no use here: on 2 cores it takes the cores the ranks wait for.
The phase bandwidths are then compared with a numpy copy inside one rank
and a copy from another rank's buffer (the issue's "copy bound" question).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facts.spec import SPECS  # noqa: E402
from ground.comm import world  # noqa: E402
from ground.dtypes import DTYPES  # noqa: E402
from ground.sizes import parse_size  # noqa: E402
from transports.shm import kernels  # noqa: E402
from transports.shm.transport import ShmTransport  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1M")
    ap.add_argument("--iters", type=int, default=2000)
    args = ap.parse_args(argv)
    comm, _ = world()
    f32 = DTYPES["float32"]
    n = parse_size(args.size) // 4
    t = ShmTransport(comm, {"timeout": 60})
    p, me, fl = t.size, t.rank, t.flags
    send, recv = t.alloc(n, f32), t.alloc(n, f32)
    send[:] = 1.0
    S, R, _ = t._share([send, recv, None], np.dtype(np.float32), "profile")
    slices = kernels.split(n, p, 4)
    order = [me] + [j for j in range(p) if j != me]
    reduce = kernels.plan_reduce(f32, "sum", p, recv[slices[me]], [S[j][slices[me]] for j in order])
    gathers = [(j, recv[slices[j]], R[j][slices[j]]) for j in order[1:]]
    clock = time.perf_counter
    phase = np.zeros(6)
    for it in range(args.iters + 50):
        t0 = clock()
        e = fl.epoch
        fl.epoch = e + 3
        fl.arrive(e + 1, "inputs")
        t1 = clock()
        reduce()
        t2 = clock()
        fl.post(e + 2)
        waited = 0.0
        copied = 0.0
        for j, dst, src in gathers:
            a = clock()
            fl.wait(j, e + 2, "slices")
            b = clock()
            np.copyto(dst, src)
            c = clock()
            waited += b - a
            copied += c - b
        t3 = clock()
        fl.arrive(e + 3, "readers")
        t4 = clock()
        if it >= 50:
            phase += [t1 - t0, t2 - t1, waited, copied, t4 - t3, t4 - t0]
    phase = phase / args.iters * 1e6
    phase = np.mean(comm.allgather(phase), axis=0)
    nbytes = n * 4
    red_bytes = (p + 1) * nbytes / p  # p slice inputs read, one slice written
    copy_bytes = 2 * (p - 1) * nbytes / p
    if comm.rank == 0:
        names = ["sync: inputs ready", "reduce own slice", "wait for other slices",
                 "copy other slices", "sync: readers done", "total"]
        print(f"# direct allreduce, {p} ranks, {nbytes} B, mean over ranks of {args.iters} calls (measured)")
        for name, us in zip(names, phase):
            extra = ""
            if name == "reduce own slice":
                extra = f"  {red_bytes / us / 1e3:6.1f} GB/s (read+write)"
            if name == "copy other slices":
                extra = f"  {copy_bytes / us / 1e3:6.1f} GB/s (read+write)"
            print(f"{name:24s} {us:9.2f} us {100 * us / phase[-1]:5.1f}%{extra}")
        busbw = nbytes / phase[-1] / 1e3 * SPECS["allreduce"].busbw_factor(p)
        print(f"busbw {busbw:.2f} GB/s")
    t.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
