"""The collective sweep: every (datatype, op, root, size) point bound, timed, validated and recorded.

For each (datatype, op, root, size) point and each placement (out-of-place,
in-place) the harness

1. binds the operation once (a transport that cannot do it raises
   Unsupported; all ranks agree before anything is reported),
2. fills the inputs with the seeded pattern and times the call with the
   runner core's timed loop (:class:`collectives.timed_loop.Timing`:
   ``-w`` warm-up, the iteration count from ``-n`` or ``--time-budget``, a
   barrier, one clock stamp per iteration; ``time_us`` is the loop's total
   over its count, min/p50/p99/max come from the per-iteration stamps);
   where the transport bound a compiled form of the call (``bound.native``,
   ``--loop auto|compiled``), warm-up, timed loop and validation run
   through it, iterations in C (:mod:`transports.native`), and each record
   says ``loop: compiled``,
3. aggregates across ranks as ``-a`` says (rank 0, average, min, max),
4. validates ``-c`` runs outside the timed loop: seeded inputs, output
   buffers filled with poison, one run, a bit-exact compare against the
   closed-form result; ``#wrong`` is summed over ranks.

Around it, the runner core (:mod:`collectives.runner`) starts the
transport, arms the watchdog (:mod:`collectives.watchdog`, ``-T``) for the
whole run, gathers the context, writes the header
(:mod:`collectives.header`) and every record the moment it exists
(:mod:`facts.record`, :mod:`collectives.output`), and closes.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from collectives import context, model_column
from facts import per_rank, record, spec as specs, validate
from collectives.config import Config
from collectives.header import header_lines
from collectives.output import Sink
from collectives.runner import Run
from collectives.timed_loop import Timing
from collectives.watchdog import Watchdog
from ground.dtypes import DTYPES, ConfigError
from transports.base import Unsupported

__all__ = ["run", "CollectiveTimeout"]


class CollectiveTimeout(TimeoutError):
    """A transport's own wait gave up; the message names the point and the peer."""


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
    """Buffers and the measurement of one point, inside a :class:`Run`."""

    def __init__(self, session: Run):
        self.session = session
        self.comm, self.t, self.cfg = session.comm, session.transport, session.cfg
        self.spec = session.cfg.spec
        self.timing = Timing(self.comm, self.t, self.cfg, session.watchdog)
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
        reason = _memory_shortfall(send + recv, self.session.ctx)
        if reason is None:
            try:
                self.send_raw = self.t.alloc(send, byte)
                self.recv_raw = self.t.alloc(recv, byte)
            except (MemoryError, OSError) as exc:  # numpy's MemoryError; mmap's ENOMEM/ENOSPC (shm)
                reason = f"rank {self.t.rank} cannot allocate {send + recv:,} bytes of buffers ({exc})"
        reasons = [r for r in self.comm.allgather(reason) if r]
        if reasons:
            raise ConfigError(f"{reasons[0]}; use a smaller -e")

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
        cfg, t, session = self.cfg, self.t, self.session
        dog = session.watchdog
        what = pt.describe(in_place)
        if session.group:  # --split: say which group, so that a hang names its ranks and hosts
            g = session.group["fields"]
            what += (f" in split round {g['split_round']} group {g['group']} (ranks {g['group_ranks']} on "
                     f"{g['group_hosts']})")
        rec = self._base_record(pt, in_place)
        session.current = rec
        send, recv = self._buffers(pt, in_place)
        reason = None
        with dog.watch(f"binding {what}"):
            try:
                bound = pt.spec.bind(t, send, recv, pt.dtype, pt.op.name, pt.root)
            except Unsupported as exc:
                reason = str(exc) or "unsupported"
            reason = self._agree_unsupported(reason)
        if reason is not None:
            rec.update(status="unsupported", reason=reason)
            return rec
        with dog.watch(f"agreeing on the timed loop of {what}"):
            native = self._compiled(bound)
        if native is None and (cfg.transport_options.loop or "auto") == "compiled":
            rec.update(status="unsupported", reason="no compiled loop for this case (--loop compiled)")
            return rec
        graphs = session.ctx["transport"].get("loop") == "cuda-graph"
        rec["loop"] = "compiled" if native is not None else ("cuda-graph" if graphs else "python")
        execute = bound.run if native is None else native.run

        with dog.local("seeding inputs"):
            self._fill(pt, in_place, send, recv, session.check_key())
        before = self.refill if cfg.fresh_inputs else None
        iters, stats = self.timing.time(bound.run, what, pt.spec.time_divisor, before, native)

        def count(expected) -> int:
            if bound.result is None or expected is None:
                return 0
            got = t.to_host(bound.result)
            if cfg.inject_fault == (session.group["ranks"][t.rank] if session.group else t.rank):  # a job rank
                got = got.copy()
                got.view(np.uint8)[0] ^= 1
            return validate.count_wrong(got, expected)

        wrong = None
        if pt.spec.sized:
            wrong = session.validate(what, lambda key: self._fill(pt, in_place, send, recv, key), execute,
                                     count)
        group = session.group or {}
        rec.update(record.timing_fields(iters, stats, pt.size_bytes, pt.spec.busbw_factor(t.size),
                                       per_rank.host_of_rank(session.ctx["hosts"]), group.get("ranks")))
        rec.update(status="ok" if not wrong else "wrong", wrong=wrong,
                   checks=cfg.check if pt.spec.sized else 0)
        return rec

    def _compiled(self, bound):
        """``bound``'s compiled form when ``--loop`` allows it and every rank has one, else None."""
        native = bound.native if (self.cfg.transport_options.loop or "auto") != "python" else None
        return native if all(self.comm.allgather(native is not None)) else None

    def _base_record(self, pt: _Point, in_place: bool) -> Dict:
        ctx = self.session.ctx
        d = ctx["transport"]
        return record.new(
            "measured", "running",
            collective=pt.spec.name,
            algo=d.get("algo"),
            nranks=self.t.size,
            size_bytes=pt.size_bytes,
            # nccl-tests' count: elements per rank (allgather, reduce_scatter),
            # per peer (alltoall), or of the vector.
            count=pt.layout.block,
            dtype=pt.dtype.name if pt.spec.sized else None,
            op=pt.op.name if pt.spec.reduces else None,
            op_impl=d.get("op_impl", {}).get(pt.op.name) if pt.spec.reduces else None,
            root=pt.root if pt.spec.rooted else None,
            in_place=in_place,
            warmup=self.cfg.warmup,
            fresh_inputs=self.cfg.fresh_inputs,
            aggregation=self.cfg.aggregation,
            checks=0,
            **record.transport_fields(ctx),
            **record.context_fields(ctx),
            **(self.session.group or {}).get("fields", {}),
        )


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


def run(comm, cfg: Config, sinks: Sequence[Sink], env_tweaks: Optional[Dict] = None,
        watchdog: Optional[Watchdog] = None, group: Optional[Dict] = None) -> List[Dict]:
    """Measure every point of ``cfg``; return the records (the same on every rank).

    ``watchdog``: a process's own (see :class:`collectives.runner.Run`).  With ``--split`` the job's
    groups measure at once (:mod:`collectives.split`), each through this function with its ``group``."""
    if getattr(cfg, "split", None) is not None and group is None:
        from collectives import split

        return split.run(comm, cfg, sinks, env_tweaks, watchdog, run)
    # --fabric: the model's figures join each record before the table and the files see it.
    with Run(comm, cfg, [*model_column.sinks(cfg), *sinks], env_tweaks, watchdog, group) as session:
        # In-place sums repeated in a timed loop overflow by design; numpy must
        # not print about it (the check runs on fresh inputs).
        saved = np.seterr(all="ignore")
        try:
            return _sweep(session)
        finally:
            np.seterr(**saved)


def _sweep(session: Run) -> List[Dict]:
    cfg, spec = session.cfg, session.cfg.spec
    desc = session.ctx["transport"]
    if (cfg.transport_options.loop or "auto") == "compiled" and desc.get("loop") != "compiled":
        raise ConfigError(f"--loop compiled: the {desc['transport']} transport has no compiled loop "
                          "(mpi with host buffers and shm have one); use --loop auto or python")
    if cfg.transport_options.cuda_graph and (desc.get("loop") != "cuda-graph" or cfg.fresh_inputs):
        raise ConfigError("--cuda-graph captures the timed iterations of nccl on CUDA (--transport nccl), "
                          "without --fresh-inputs" + f"; this run: transport {desc['transport']}")
    session.header(header_lines(cfg, session.ctx))
    runner = _Runner(session)
    records: List[Dict] = []
    unsupported: List[str] = []
    for dtype, pt in _points(cfg, spec, session.transport.size):
        if pt is None:
            with session.watchdog.starting(f"allocating buffers for {dtype.name}"):
                runner.allocate(dtype)
            continue
        recs = []
        for placement in [pl for pl in cfg.placements if pl in spec.placements]:
            try:
                rec = runner.measure(pt, placement == "in")
            except TimeoutError as exc:
                what = pt.describe(placement == "in")
                session.record_timeout(f"{what}: {exc}")
                raise CollectiveTimeout(f"{what} did not complete within -T {cfg.timeout:g} s "
                                        f"({exc})") from exc
            session.emit(rec)
            recs.append(rec)
            records.append(rec)
            if rec["status"] == "unsupported":
                unsupported.append(f"{pt.describe(placement == 'in')}: {rec['reason']}")
        session.point(recs)
    session.current = None
    measured = [r for r in records if r["status"] in ("ok", "wrong")]
    busbw = [r["busbw_gbs"] for r in measured if r["size_bytes"]]
    session.footer({
        "wrong": sum(r["wrong"] or 0 for r in records),
        "avg_busbw": float(np.mean(busbw)) if busbw else None,
        "unsupported": _dedupe_reasons(unsupported),
    })
    return records


def _memory_shortfall(nbytes: int, ctx: Dict) -> Optional[str]:
    """Why host buffers of ``nbytes`` per rank cannot fit this host, or None.

    Only for host memory (buffers the transport describes as host or shared,
    on the CPU): the ranks of this host together against MemAvailable.  Allocation is lazy
    on Linux, so without this a too-large -e is found by the OOM killer
    halfway through the run instead of by a message before it.
    """
    desc = ctx["transport"]
    device = str(desc.get("settings", {}).get("device", "cpu"))
    if desc.get("buffer", "host") not in ("host", "shared") or not device.startswith("cpu"):
        return None
    here = context.memory_here(ctx)
    if here is None:
        return None
    available, local, host = here
    if nbytes * local <= available:
        return None
    return (f"the buffers need {nbytes / 2**30:.1f} GiB per rank, {nbytes * local / 2**30:.1f} GiB for the "
            f"{local} ranks on {host}, which has {available / 2**30:.1f} GiB available")


def _dedupe_reasons(notes: List[str]) -> List[str]:
    """One line per distinct reason, naming the first case (the table shows the rest)."""
    seen, out = set(), []
    for note in notes:
        reason = note.split(": ", 1)[-1]
        if reason not in seen:
            seen.add(reason)
            out.append(note)
    return out
