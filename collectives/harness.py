"""The sweep: warm-up, iteration count, timed loop, validation, statistics.

For each (datatype, op, root, size) point and each placement (out-of-place,
in-place) the harness

1. binds the operation once (a transport that cannot do it raises
   Unsupported; all ranks agree before anything is reported),
2. fills the inputs with the seeded pattern and runs ``-w`` warm-up
   iterations,
3. picks the iteration count: ``-n`` exactly, or from ``--time-budget``
   by timing a doubling number of iterations until a probe lasts 1/8 of the
   budget (IMB's -time idea; every rank uses the slowest rank's probe),
4. after a barrier, times the loop with one clock stamp per iteration
   (``time_us`` is the loop's total over its count; min/p50/p99/max come
   from the per-iteration stamps), stopping the clock only after the
   transport's device work is synchronised,
5. aggregates across ranks as ``-a`` says (rank 0, average, min, max),
6. validates ``-c`` runs outside the timed loop: seeded inputs, output
   buffers filled with poison, one run, a bit-exact compare against the
   closed-form result; ``#wrong`` is summed over ranks.

A watchdog thread enforces ``-T``: if one collective makes no progress for
that long, the rank reports the collective and size, rank 0 records a
``timeout`` row, and the process exits with 124, which makes the launcher
end the whole job.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Dict, List, Optional, Sequence

import numpy as np

from collectives import spec as specs
from collectives import validate
from collectives.cli import EXIT_TIMEOUT, MAX_ITERS, MIN_ITERS, Config
from collectives.dtypes import DTYPES, ConfigError
from collectives.output import FIELDS, SCHEMA, Sink, open_sinks
from launch import env as launch_env
from transports.base import Unsupported

__all__ = ["run", "Watchdog", "Timing", "measured_fields", "iteration_stats", "aggregate",
           "StartupError", "CollectiveTimeout"]


class StartupError(RuntimeError):
    """A transport failed to start on some rank; every rank knows, none is stuck."""


class CollectiveTimeout(TimeoutError):
    """A transport's own wait gave up; the message names the point and the peer."""



def _version() -> str:
    try:
        from importlib.metadata import version

        return version("collscale")
    except Exception:
        return "0+unknown"


# -- the watchdog --------------------------------------------------------------

class Watchdog:
    """Enforces -T: no collective may go ``timeout`` seconds without progress.

    It is armed for the whole run: ``watch(what, timer)`` names the current
    phase (a timed loop, an agreement between ranks); between phases it
    stays armed as "coordinating ranks", and only ``local(...)`` pauses it,
    around work that needs no other rank (building validation data).  When
    a timer is given, each iteration stamp it fills counts as progress, so a
    long loop of fast collectives never trips it; a single stuck collective
    does.  The thread never touches MPI: on expiry it reports, lets
    ``on_expire`` write what rank 0 knows, and ends the process, which the
    launcher turns into the end of the job.  Rank 0 fires first; other ranks
    wait a grace period so that rank 0's record gets written.
    """

    IDLE = "coordinating ranks between measurements"

    def __init__(self, timeout: float, rank: int, on_expire=None, exit=os._exit):
        self.timeout = timeout
        self.requested = timeout  # the user's -T, named in messages even when backing up a transport
        self.rank = rank
        self.on_expire = on_expire
        self._exit = exit
        self.grace = 0.0 if rank == 0 else min(5.0, max(1.0, 0.2 * timeout))
        self._what: Optional[str] = None
        self._timer = None
        self._since = time.monotonic()
        self._seen = -1
        self._stop = threading.Event()
        self._thread = None
        if timeout > 0:
            self._thread = threading.Thread(target=self._loop, name="collscale-watchdog", daemon=True)
            self._thread.start()

    def _arm(self, what: Optional[str], timer=None) -> None:
        self._timer, self._seen, self._since = timer, -1, time.monotonic()
        self._what = what

    def watch(self, what: str, timer=None) -> "_Phase":
        """Arm for one phase; back to :attr:`IDLE` (still armed) when it ends."""
        self._arm(what, timer)
        return _Phase(self, self.IDLE)

    def local(self, what: str) -> "_Phase":
        """Pause while this rank works alone; re-armed as :attr:`IDLE` afterwards."""
        self._arm(None)
        return _Phase(self, self.IDLE)

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

    def _loop(self) -> None:
        tick = min(1.0, max(0.05, self.timeout / 20))
        while not self._stop.wait(tick):
            what = self._what
            if what is None:
                continue
            done = self._progress()
            if done != self._seen:
                self._seen, self._since = done, time.monotonic()
                continue
            if time.monotonic() - self._since > self.timeout + self.grace and self._what == what:
                self._expire(what)

    def _expire(self, what: str) -> None:
        waited = f" (the watchdog waited {self.timeout:g} s)" if self.timeout != self.requested else ""
        msg = (f"collscale: rank {self.rank}: timeout: {what} did not complete within "
               f"-T {self.requested:g} s{waited}; aborting the job")
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


# -- statistics ----------------------------------------------------------------

def iteration_stats(stamps: Sequence[float], divisor: float = 1.0) -> Dict[str, float]:
    """This rank's loop statistics in microseconds, from ``iters + 1`` stamps."""
    arr = np.asarray(stamps, dtype=np.float64)
    per = np.diff(arr) * (1e6 / divisor)
    total = (arr[-1] - arr[0]) * 1e6 / divisor / max(1, len(per))
    return {
        "mean": float(total),
        "min": float(per.min()),
        "p50": float(np.percentile(per, 50)),
        "p99": float(np.percentile(per, 99)),
        "max": float(per.max()),
    }


def aggregate(per_rank: Sequence[Dict[str, float]], average: int) -> Dict[str, float]:
    """Combine ranks' statistics as nccl-tests' ``-a``: 0 rank 0, 1 avg, 2 min, 3 max."""
    if average == 0:
        out = dict(per_rank[0])
    else:
        fn = {1: np.mean, 2: np.min, 3: np.max}[average]
        out = {k: float(fn([s[k] for s in per_rank])) for k in per_rank[0]}
    means = [s["mean"] for s in per_rank]
    out["rank_min"], out["rank_max"] = float(min(means)), float(max(means))
    return out


# -- context: who runs where ---------------------------------------------------

def _cpus() -> str:
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return "?"
    if cpus and cpus == list(range(cpus[0], cpus[-1] + 1)):
        return f"{cpus[0]}-{cpus[-1]}" if len(cpus) > 1 else str(cpus[0])
    return ",".join(map(str, cpus))


def gather_context(comm, transport, cfg: Config, env_tweaks: Dict) -> Dict:
    """Placement, versions and settings, identical on every rank."""
    me = {
        "rank": comm.rank,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "affinity": launch_env.affinity(),
        "cpus": _cpus(),
    }
    ranks = comm.allgather(me)
    hosts: Dict[str, List[int]] = {}
    for r in ranks:
        hosts.setdefault(r["host"], []).append(r["rank"])
    # Cores the ranks of a host can use together: the union of their affinities.
    cores = {h: launch_env.usable_cores([ranks[i]["affinity"] for i in rs]) for h, rs in hosts.items()}
    over = {h: (len(rs), cores[h]) for h, rs in hosts.items() if len(rs) > cores[h]}
    emulated = comm.bcast(launch_env.emulation())
    sweep = comm.bcast(launch_env.sweep_point())
    if emulated:
        # Emulated hosts share one machine's cores: count every rank against them.
        machine_cores = launch_env.usable_cores([r["affinity"] for r in ranks])
        if len(ranks) > machine_cores:
            over = {f"{emulated.get('machine', 'this machine')} (all emulated hosts)":
                    (len(ranks), machine_cores)}
    run_id = comm.bcast(
        datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    )
    desc = transport.describe()
    return {
        "run_id": run_id,
        "ranks": ranks,
        "hosts": hosts,
        "oversubscribed": over,
        "emulated": emulated,
        "sweep": sweep,
        "env_tweaks": env_tweaks,
        "transport": desc,
        "versions": {
            "collscale_version": _version(),
            "python_version": platform.python_version(),
            "numpy_version": np.__version__,
            "mpi4py_version": desc.get("mpi4py_version") or _mpi4py_version(),
        },
    }


def _mpi4py_version() -> Optional[str]:
    try:
        import mpi4py

        return mpi4py.__version__
    except ImportError:
        return None


def header_lines(cfg: Config, ctx: Dict) -> List[str]:
    d = ctx["transport"]
    v = ctx["versions"]
    nranks = len(ctx["ranks"])
    iters = str(cfg.iters) if cfg.iters else f"auto ({cfg.time_budget:g} s per size)"
    root = "all" if cfg.root is None else cfg.root
    lines = [
        f"# collscale {v['collscale_version']} {cfg.collective}  run {ctx['run_id']}  (measured)",
        f"# transport: {d['transport']}"
        + (f" ({d['transport_version']})" if d.get("transport_version") else "")
        + (f" algo: {d['algo']}" if d.get("algo") else "")
        + (f" buffer: {d['buffer']}" if d.get("buffer") else "")
        + "".join(f" {k}: {v_}" for k, v_ in d.get("settings", {}).items())
        + f" | python {v['python_version']} numpy {v['numpy_version']}"
        + (f" mpi4py {v['mpi4py_version']}" if v.get("mpi4py_version") else ""),
        f"# {cfg.size_flags} warmup iters: {cfg.warmup} iters: {iters} "
        f"agg: {cfg.aggregation} validation: {cfg.check} timeout: {cfg.timeout:g} s",
        f"# datatype: {','.join(d_.name for d_ in cfg.dtypes)} op: {','.join(o.name for o in cfg.ops)} "
        f"root: {root} placement: {'+'.join(cfg.placements)} seed: {cfg.seed}"
        + (" inputs: rewritten before every iteration (--fresh-inputs)" if cfg.fresh_inputs else ""),
        f"# nranks {nranks} nhosts {len(ctx['hosts'])}: "
        + ", ".join(f"{h} ({len(rs)} ranks)" for h, rs in ctx["hosts"].items()),
    ]
    if ctx.get("emulated"):
        lines.append(f"# EMULATED hosts: {ctx['emulated'].get('describe', 'yes')} "
                     "(python -m launch.emulate); traffic between them crosses the emulated links")
    for note in d.get("notes", []):
        lines.append(f"# note: {note}")
    if cfg.collective in specs.SPECS and specs.get(cfg.collective).reduces:
        for op in cfg.ops:
            if op.name in d.get("op_impl", {}):
                lines.append(f"# note: {op.name} = {d['op_impl'][op.name]}")
    for host, (n, cores) in ctx["oversubscribed"].items():
        lines.append(
            f"# WARNING: oversubscribed: {n} ranks on {cores} usable cores of {host}: ranks take "
            "turns on the cores, so these times are NOT representative of dedicated hardware"
        )
    if ctx["env_tweaks"]:
        lines.append("# MPI settings chosen before MPI_Init: "
                     + " ".join(f"{k}={v_}" for k, v_ in ctx["env_tweaks"].items()))
    if cfg.inject_fault is not None:
        lines.append(f"# FAULT INJECTION: rank {cfg.inject_fault} corrupts one element of its "
                     "result before each check (testing the validator)")
    lines.append("#")
    lines.append("# Using ranks")
    if nranks <= 64:
        for r in ctx["ranks"]:
            lines.append("#  Rank %3d Pid %7d on %12s cpus %s" % (r["rank"], r["pid"], r["host"], r["cpus"]))
    else:
        for host, rs in ctx["hosts"].items():
            lines.append(f"#  {host}: ranks {min(rs)}..{max(rs)} ({len(rs)})")
    return lines


# -- one measured point ---------------------------------------------------------

class Timing:
    """Warm-up, iteration count, timed loop and cross-rank statistics for one call.

    Shared by the collective sweep and by patterns built on it (weight
    streaming): give it a zero-argument ``run`` and it returns the
    iteration count and the aggregated statistics (microseconds).
    """

    def __init__(self, comm, transport, cfg: Config, watchdog: Watchdog):
        self.comm, self.t, self.cfg, self.watchdog = comm, transport, cfg, watchdog

    def loop(self, run, iters: int, what: str, before=None):
        timer = self.t.timer()
        with self.watchdog.watch(what, timer):
            return timer.loop(run, iters, self.t.synchronize, before)

    def calibrate(self, run, what: str, before=None) -> int:
        budget = self.cfg.time_budget
        k = 1
        while True:
            stamps = self.loop(run, k, what, before)
            with self.watchdog.watch(f"agreeing on the iteration count for {what}"):
                elapsed = self.comm.allreduce(stamps[-1] - stamps[0], "max")
            if elapsed >= budget / 8 or k >= MAX_ITERS:
                break
            grow = 2 if elapsed <= 0 else min(16, max(2, int(budget / 8 / elapsed) + 1))
            k = min(MAX_ITERS, k * grow)
        per_iter = max(elapsed / k, 1e-9)
        return int(min(MAX_ITERS, max(MIN_ITERS, round(budget / per_iter))))

    def time(self, run, what: str, divisor: float = 1.0, before=None):
        """(iterations, statistics aggregated across ranks as -a says)."""
        cfg = self.cfg
        if cfg.warmup:
            self.loop(run, cfg.warmup, what, before)
        iters = cfg.iters or self.calibrate(run, what, before)
        with self.watchdog.watch(f"the barrier before timing {what}"):
            self.comm.barrier()
        stamps = self.loop(run, iters, what, before)
        mine = iteration_stats(stamps, divisor)
        with self.watchdog.watch(f"gathering the times of {what}"):
            stats = aggregate(self.comm.allgather(mine), cfg.average)
        return iters, stats


def measured_fields(iters: int, stats: Dict[str, float], size_bytes: int, factor: float) -> Dict:
    """The timing part of a record: times, algbw = S/t, busbw = algbw * factor."""
    algbw = size_bytes / (stats["mean"] * 1e-6) / 1e9 if size_bytes else 0.0
    return {
        "iters": iters,
        "time_us": stats["mean"],
        "time_us_min": stats["min"],
        "time_us_p50": stats["p50"],
        "time_us_p99": stats["p99"],
        "time_us_max": stats["max"],
        "time_us_rank_min": stats["rank_min"],
        "time_us_rank_max": stats["rank_max"],
        "algbw_gbs": algbw,
        "busbw_gbs": algbw * factor,
        "busbw_factor": factor,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }


class _Point:
    """Buffers and facts of one (dtype, op, root, size) point."""

    def __init__(self, spec, dtype, op, root, size_bytes, nranks):
        self.spec, self.dtype, self.op, self.root = spec, dtype, op, root
        self.layout = specs.layout_for(spec, size_bytes, dtype, nranks)
        self.size_bytes = self.layout.total * dtype.itemsize

    def describe(self, in_place: bool) -> str:
        place = "in-place" if in_place else "out-of-place"
        if not self.spec.sized:
            return self.spec.name
        return f"{self.spec.name} of {self.size_bytes} B ({self.dtype.name}, {place})"


class _Runner:
    def __init__(self, comm, transport, cfg: Config, ctx: Dict, sinks: List[Sink], watchdog: Watchdog):
        self.comm, self.t, self.cfg, self.ctx = comm, transport, cfg, ctx
        self.sinks, self.watchdog = sinks, watchdog
        self.spec = specs.get(cfg.collective)
        self.timing = Timing(comm, transport, cfg, watchdog)
        self.check_counter = 0
        self.current: Optional[Dict] = None
        self.refill = None

    def allocate_bytes(self):
        """Two byte buffers, big enough for every dtype and size of the sweep.

        Allocated once and viewed as each dtype in turn, so a transport with
        registered (shared, device) memory allocates it only once.
        """
        p = self.t.size
        lays = [(specs.layout_for(self.spec, s, d, p), d.itemsize) for d in self.cfg.dtypes
                for s in self.cfg.sizes]
        send = max(1, max(l.send * k for l, k in lays))
        recv = max(1, max(max(l.recv, l.inplace) * k for l, k in lays))
        byte = DTYPES["uint8"]
        self.send_raw = self.t.alloc(send, byte)
        self.recv_raw = self.t.alloc(recv, byte)

    def allocate(self, dtype):
        if not hasattr(self, "send_raw"):
            self.allocate_bytes()
        k = dtype.itemsize
        self.send_buf = self.t.view(self.send_raw[: len(self.send_raw) // k * k], dtype)
        self.recv_buf = self.t.view(self.recv_raw[: len(self.recv_raw) // k * k], dtype)

    def _buffers(self, pt: _Point, in_place: bool):
        lay = pt.layout
        if in_place:
            return None, self.recv_buf[: lay.inplace]
        return self.send_buf[: lay.send], self.recv_buf[: lay.recv]

    def _fill(self, pt: _Point, in_place: bool, send, recv, key) -> Optional[np.ndarray]:
        """Seed this rank's inputs, poison its outputs; return the expected result.

        Leaves ``self.refill``: a function that rewrites the inputs (for
        ``--fresh-inputs``), or None when this rank has no input.
        """
        t, p, rank = self.t, self.t.size, self.t.rank
        kind = pt.op.name if pt.spec.reduces else "move"
        data, expected = pt.spec.data(pt.dtype, kind, p, rank, pt.root, pt.layout, key)
        poison = pt.dtype.poison()
        t.fill(recv, poison)
        self.refill = None
        if data is not None:
            if in_place:
                off = pt.spec.inplace_offset(rank, pt.layout)
                target = recv[off: off + len(data)]
            else:
                target = send
            t.from_host(target, data)
            from_host, sync = t.from_host, t.synchronize

            def refill():
                from_host(target, data)
                sync()
            self.refill = refill
        return expected

    def _agree_unsupported(self, reason: Optional[str]) -> Optional[str]:
        reasons = self.comm.allgather(reason)
        return next((r for r in reasons if r is not None), None)

    def measure(self, pt: _Point, in_place: bool) -> Dict:
        cfg, t = self.cfg, self.t
        what = pt.describe(in_place)
        rec = self._base_record(pt, in_place)
        self.current = rec
        send, recv = self._buffers(pt, in_place)
        reason = None
        with self.watchdog.watch(f"binding {what}"):
            try:
                bound = pt.spec.bind(t, send, recv, pt.dtype, pt.op.name, pt.root)
            except Unsupported as exc:
                reason = str(exc) or "unsupported"
            reason = self._agree_unsupported(reason)
        if reason is not None:
            rec.update(status="unsupported", reason=reason)
            return rec

        key = validate.Key(cfg.seed, self.check_counter)
        with self.watchdog.local("seeding inputs"):
            self._fill(pt, in_place, send, recv, key)
        before = self.refill if cfg.fresh_inputs else None
        iters, stats = self.timing.time(bound.run, what, pt.spec.time_divisor, before)

        wrong = None
        if cfg.check and pt.spec.sized:
            wrong = 0
            for _ in range(cfg.check):
                self.check_counter += 1
                key = validate.Key(cfg.seed, self.check_counter)
                with self.watchdog.local("seeding inputs"):
                    expected = self._fill(pt, in_place, send, recv, key)
                with self.watchdog.watch(f"the validation run of {what}"):
                    bound.run()
                    t.synchronize()
                if bound.result is not None and expected is not None:
                    with self.watchdog.local("checking results"):
                        got = t.to_host(bound.result)
                        if cfg.inject_fault == t.rank:
                            got = got.copy()
                            got.view(np.uint8)[0] ^= 1
                        wrong += validate.count_wrong(got, expected)
            with self.watchdog.watch(f"summing #wrong of {what}"):
                wrong = self.comm.allreduce(wrong, "sum")

        rec.update(measured_fields(iters, stats, pt.size_bytes, pt.spec.busbw_factor(t.size)))
        rec.update(status="ok" if not wrong else "wrong", wrong=wrong,
                   checks=cfg.check if pt.spec.sized else 0)
        return rec

    def _base_record(self, pt: _Point, in_place: bool) -> Dict:
        d = self.ctx["transport"]
        return {
            **dict.fromkeys(FIELDS),
            "schema": SCHEMA,
            "kind": "measured",
            "status": "running",
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "collective": pt.spec.name,
            "transport": d["transport"],
            "algo": d.get("algo"),
            "buffer": d.get("buffer", "host"),
            "nranks": self.t.size,
            "size_bytes": pt.size_bytes,
            # nccl-tests' count: elements per rank (allgather, reduce_scatter),
            # per peer (alltoall), or of the vector.
            "count": pt.layout.block,
            "dtype": pt.dtype.name if pt.spec.sized else None,
            "op": pt.op.name if pt.spec.reduces else None,
            "op_impl": d.get("op_impl", {}).get(pt.op.name) if pt.spec.reduces else None,
            "root": pt.root if pt.spec.rooted else None,
            "in_place": in_place,
            "iters": None,
            "warmup": self.cfg.warmup,
            "fresh_inputs": self.cfg.fresh_inputs,
            "aggregation": self.cfg.aggregation,
            "wrong": None,
            "checks": 0,
            "reason": None,
            "transport_version": d.get("transport_version"),
            **context_fields(self.ctx),
        }


def context_fields(ctx: Dict) -> Dict:
    """Record fields that describe the run rather than the point: placement,
    emulation, sweep and versions (shared by every entry point's records)."""
    hosts = ctx["hosts"]
    emulated = ctx.get("emulated") or {}
    sweep = ctx.get("sweep") or {}
    bits = emulated.get("rate_bits")
    return {
        "run_id": ctx["run_id"],
        "nhosts": len(hosts),
        "ranks_per_host": max(len(rs) for rs in hosts.values()),
        "oversubscribed": bool(ctx["oversubscribed"]),
        "hosts": ",".join(f"{h}:{len(rs)}" for h, rs in hosts.items()),
        "emulated": emulated.get("describe"),
        # The configured link rate in GB/s (1e9 bytes/s), to compare with what was measured.
        "emulated_link_gbs": bits / 8e9 if bits else None,
        "sweep_id": sweep.get("id"),
        "sweep_point": sweep.get("point"),
        **ctx["versions"],
    }


# -- the sweep -------------------------------------------------------------------

def _points(cfg: Config, spec, nranks: int):
    roots = list(range(nranks)) if cfg.root is None else [cfg.root]
    for dtype in cfg.dtypes if spec.sized else cfg.dtypes[:1]:
        yield dtype, None
        for op in cfg.ops if spec.reduces else cfg.ops[:1]:
            for root in roots if spec.rooted else [None]:
                seen = set()
                for size in cfg.sizes:
                    pt = _Point(spec, dtype, op, root, size, nranks)
                    if pt.size_bytes in seen:  # sizes that round to the same element count
                        continue
                    seen.add(pt.size_bytes)
                    yield dtype, pt


def _create_transport(comm, cfg: Config):
    import transports

    failure = None
    transport = None
    try:
        options = {"algo": cfg.algo, "buffer": cfg.buffer, "timeout": cfg.timeout, "device": cfg.device,
                   "iface": cfg.iface, **cfg.options}
        transport = transports.create(cfg.transport, comm, options)
    except ConfigError as exc:
        failure = ("config", str(exc))
    except Unsupported as exc:
        failure = ("config", f"transport '{cfg.transport}': {exc}")
    except Exception as exc:
        failure = ("error", f"rank {comm.rank}: transport '{cfg.transport}' failed to start: "
                   f"{type(exc).__name__}: {exc}")
    failures = [f for f in comm.allgather(failure) if f is not None]
    if failures:
        kind, message = failures[0]
        raise (ConfigError if kind == "config" else StartupError)(message)
    return transport


def run(comm, cfg: Config, sinks: List[Sink], env_tweaks: Optional[Dict] = None) -> List[Dict]:
    """Measure every point of ``cfg``; return the records (the same on every rank)."""
    spec = specs.get(cfg.collective)
    watchdog = Watchdog(cfg.timeout, comm.rank)
    try:
        with watchdog.watch(f"starting transport '{cfg.transport}'"):
            transport = _create_transport(comm, cfg)
        if cfg.timeout and getattr(transport, "enforces_timeout", False):
            # The transport's own waits name the rank they waited for; the
            # watchdog only backs them up.
            watchdog.timeout = cfg.timeout * 1.2 + 1
        # In-place sums repeated in a timed loop overflow by design; numpy must
        # not print about it (the check runs on fresh inputs).
        saved = np.seterr(all="ignore")
        try:
            records = _sweep(comm, transport, cfg, spec, sinks, env_tweaks or {}, watchdog)
        finally:
            np.seterr(**saved)
        # Closed only on success: after a failure the job is aborted, and closing
        # would wait for ranks that may be gone.
        with watchdog.watch("closing the transport"):
            transport.close()
        return records
    finally:
        watchdog.close()


def _open_files(comm, cfg: Config) -> List[Sink]:
    files: List[Sink] = []
    error = None
    if comm.rank == 0:
        try:
            files = open_sinks(cfg.json, cfg.csv)
        except OSError as exc:
            error = str(exc)
    error = comm.bcast(error)
    if error:
        raise ConfigError(error)
    return files


def _sweep(comm, transport, cfg, spec, sinks, env_tweaks, watchdog) -> List[Dict]:
    ctx = gather_context(comm, transport, cfg, env_tweaks)
    sinks = list(sinks) + _open_files(comm, cfg)
    runner = None

    def on_expire(what):
        # Watchdog thread (or a transport timeout), rank 0: record the point that hung.
        rec = dict(runner.current or {}) if runner else {}
        if rec and comm.rank == 0:
            rec.update(status="timeout", reason=f"did not complete within -T {cfg.timeout:g} s: {what}",
                       timestamp=datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
            for s in sinks:
                s.record(rec)
                s.note(f"TIMEOUT: {rec['reason']}")

    watchdog.on_expire = on_expire
    records: List[Dict] = []
    unsupported: List[str] = []
    try:
        for s in sinks:
            s.header({"header_lines": header_lines(cfg, ctx), "context": ctx, "config": cfg})
        runner = _Runner(comm, transport, cfg, ctx, sinks, watchdog)
        for dtype, pt in _points(cfg, spec, transport.size):
            if pt is None:
                runner.allocate(dtype)
                continue
            recs = []
            for placement in [pl for pl in cfg.placements if pl in spec.placements]:
                try:
                    rec = runner.measure(pt, placement == "in")
                except TimeoutError as exc:
                    what = pt.describe(placement == "in")
                    on_expire(f"{what}: {exc}")
                    raise CollectiveTimeout(f"{what} did not complete within -T {cfg.timeout:g} s "
                                            f"({exc})") from exc
                for s in sinks:
                    s.record(rec)
                recs.append(rec)
                records.append(rec)
                if rec["status"] == "unsupported":
                    note = f"{pt.describe(placement == 'in')}: {rec['reason']}"
                    unsupported.append(note)
            for s in sinks:
                s.point(recs)
        runner.current = None
        measured = [r for r in records if r["status"] in ("ok", "wrong")]
        busbw = [r["busbw_gbs"] for r in measured if r["size_bytes"]]
        summary = {
            "wrong": sum(r["wrong"] or 0 for r in records),
            "avg_busbw": float(np.mean(busbw)) if busbw else None,
            "unsupported": _dedupe_reasons(unsupported),
        }
        for s in sinks:
            s.footer(summary)
        return records
    finally:
        for s in sinks:
            s.close()


def _dedupe_reasons(notes: List[str]) -> List[str]:
    """One line per distinct reason, naming the first case (the table shows the rest)."""
    seen, out = set(), []
    for note in notes:
        reason = note.split(": ", 1)[-1]
        if reason not in seen:
            seen.add(reason)
            out.append(note)
    return out
