"""``python -m collectives.triage``: one job that gathers what the triage needs, in O(H) rounds.

Three phases, every record written as the harness writes it (``--json``):

1. **CPU probe**: every rank runs a fixed single-threaded kernel (elementwise
   numpy over 64 Ki doubles) for ``--probe-seconds`` of wall time, all at
   once, and counts its repetitions: a host held to part of its CPU share
   completes fewer (time per repetition); one record
   (``collective: cpu_probe``) keeps every rank's time and host
   (:mod:`facts.per_rank`), so the analysis compares hosts.
2. **Pairs**: ``sendrecv`` between one rank per host, hosts paired on the
   round-robin schedule of ``--split pairs`` (:mod:`collectives.split`): every
   pair of hosts in H-1 rounds (H for odd H), at ``--small`` (latency) and
   ``--large`` (bandwidth).
3. **World**: one ``allreduce`` of ``--large`` over every rank, with per-rank
   times.

``-T`` bounds every call: a round that hangs ends the job with exit 124 and
the line of the hung ranks names the pair (its ranks and hosts).  On one
host there are no pairs: phase 2 is skipped and the header says so.  Then
``python -m analysis.triage FILE`` names the suspects.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from collectives import cli, harness, lifecycle
from collectives.output import open_sinks
from facts import per_rank, record
from ground.dtypes import ConfigError
from ground.sizes import parse_size
from ground.version import __version__

__all__ = ["main", "run", "cpu_probe", "PROBE_N"]

NAME = "triage"
PROBE_N = 65536  # the probe's vector: 64 Ki doubles (512 KiB: in the caches of any current core)


def _parser(quiet: bool = False):
    p = cli.Parser(prog=f"python -m collectives.{NAME}",
                   description="Gather the triage's evidence in one job: a CPU probe on every rank, sendrecv "
                   "between every pair of hosts (one rank each, H-1 rounds), and an allreduce over every rank. "
                   "Then: python -m analysis.triage FILE.")
    p.quiet = quiet
    p.add_argument("--large", default="4M", help="the bandwidth message (default 4M)")
    p.add_argument("--small", default="8", help="the latency message (default 8)")
    p.add_argument("--probe-seconds", type=cli.pos_float, default=1.0,
                   help="how long every rank runs the CPU probe, all at once (default 1)")
    p.add_argument("-n", "--iters", type=cli.pos_int, default=20, help="timed iterations per size (default 20)")
    p.add_argument("-w", "--warmup_iters", type=cli.nonneg_int, default=2, help="warm-up iterations (default 2)")
    p.add_argument("-T", "--timeout", type=cli.seconds, default=60.0,
                   help="end the job when one call makes no progress for this long (default 60)")
    p.add_argument("--transport", default="auto", help="mpi (default under mpirun) or gloo")
    p.add_argument("--json", help="append every record to this JSON Lines file (what analysis.triage reads)")
    return p


def cpu_probe(seconds: float) -> float:
    """This rank's time per repetition of a fixed single-threaded kernel (elementwise numpy over 64 Ki
    doubles: no BLAS threads), counted over ``seconds`` of wall time (s per repetition).  Every rank probes
    the same window at once, so none waits (and spins) while others still work, and a host held to part
    of its CPU share completes fewer repetitions."""
    a = np.arange(1, PROBE_N + 1, dtype=np.float64)
    b = np.empty_like(a)
    reps = 0
    start = time.perf_counter()
    end = start + seconds
    now = start
    while now < end:
        np.sqrt(a, out=b)
        np.multiply(b, b, out=a)
        reps += 1
        now = time.perf_counter()
    return (now - start) / max(1, reps)


def _probe_record(comm, seconds: float, json_path: Optional[str], dog) -> Dict:
    with dog.watch("the CPU probe's barrier"):
        comm.barrier()
    with dog.local("the CPU probe"):
        mine = cpu_probe(seconds) * 1e6
    with dog.watch("gathering the CPU probe"):
        every = comm.allgather((mine, socket.gethostname()))
    means = [m for m, _ in every]
    hosts = {r: h for r, (_, h) in enumerate(every)}
    names = list(dict.fromkeys(h for _, h in every))
    rec = record.new("measured", "ok", collective="cpu_probe", transport="none", nranks=comm.size,
                     nhosts=len(names), hosts=",".join(f"{h}:{sum(1 for _, x in every if x == h)}" for h in names),
                     size_bytes=0, iters=None, time_us=float(np.median(means)), algbw_gbs=0.0, busbw_gbs=0.0,
                     busbw_factor=0.0, wrong=0, checks=0, aggregation="median",
                     **per_rank.fields(means, hosts), collscale_version=__version__)
    if comm.rank == 0 and json_path:
        for sink in open_sinks(json_path, None):
            sink.record(rec)
            sink.close()
    return rec


def _argv(a, collective: str, sizes: Sequence[int], extra: Sequence[str]) -> List[str]:
    lo, hi = min(sizes), max(sizes)
    out = ["-b", str(lo), "-e", str(hi), "-n", str(a.iters), "-w", str(a.warmup_iters), "-T", f"{a.timeout:g}",
           "--transport", a.transport, "--out-of-place" if collective == "sendrecv" else "--in-place", *extra]
    if hi > lo:
        out += ["-f", str(hi / lo)]
    return out + (["--json", a.json] if a.json else [])


def run(comm, argv: Sequence[str], table, tweaks=None, dog=None) -> List[Dict]:
    a = _parser(quiet=comm.rank != 0).parse_args(list(argv))
    large, small = parse_size(a.large), parse_size(a.small)
    if not 0 < small < large:
        raise ConfigError(f"--small {a.small} must be smaller than --large {a.large} (and at least 1 byte)")
    hosts = comm.allgather(socket.gethostname())
    records = [_probe_record(comm, a.probe_seconds, a.json, dog)]
    say = [s.note for s in table] if comm.rank == 0 else []
    for note in say:
        note(f"triage: CPU probe on {comm.size} ranks of {len(set(hosts))} hosts done")
    if len(set(hosts)) > 1:
        cfg = cli.parse_args("sendrecv", _argv(a, "sendrecv", (small, large), ["--split", "pairs"]),
                             quiet=comm.rank != 0)
        records += harness.run(comm, cfg, table, env_tweaks=tweaks, watchdog=dog)
    else:
        for note in say:
            note("triage: one host: no pairs to measure (the CPU probe and the allreduce only)")
    cfg = cli.parse_args("allreduce", _argv(a, "allreduce", (large,), []), quiet=comm.rank != 0)
    if comm.size > 1:
        records += harness.run(comm, cfg, table, env_tweaks=tweaks, watchdog=dog)
    for note in say:
        note(f"triage: done; next: python -m analysis.triage {a.json or 'FILE (give --json FILE)'}")
    return records


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return lifecycle.process_main(lambda comm, tweaks, table, dog: run(comm, argv, table, tweaks, dog))


if __name__ == "__main__":
    raise SystemExit(main())
