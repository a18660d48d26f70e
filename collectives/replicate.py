"""``python -m collectives.replicate``: data-parallel replication, measured (first part of issue 12).

    mpirun -n 2 python -m collectives.replicate --model unet --batch 2

Every rank builds the workload's real torch model (:mod:`analysis.workloads`),
wraps it in DistributedDataParallel over a torch backend (``--transport
gloo|nccl|hccl``) and trains it on synthetic inputs of the model's real
shape (no data loading: the header says so) with a real optimizer.  Per
step and rank it measures forward, backward, optimizer and the whole step;
a communication hook around DDP's default allreduce records each gradient
bucket's size, the moment it became ready and the moment its allreduce was
done, and the hook's own cost.  Exposed communication is backward's return
minus the moment the last bucket became ready (DDP's backward returns only
after the last allreduce).  One table line and one summary record per batch
size: the median step of the slowest rank, whole (its phases add up to its
step time), and the spread over steps.

Not yet here (issue 12 goes on): the interleaved single-rank baseline and
E(N) inside one job, the model terms calibrated from these records, the
report's measured points; CUDA events per phase (``--device cuda`` times
with a device synchronisation per phase instead, untested without a GPU).
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from collectives import cli, context, record
from collectives.config import Config
from collectives.dtypes import ConfigError, parse_dtypes
from collectives.harness import aggregate
from collectives.header import header_lines
from collectives.runner import Run
from collectives.spec import SPECS

__all__ = ["run", "main", "parse_args", "ReplicateConfig"]

NAME = "replicate"
OPTIMIZERS = ("adam", "sgd")
DTYPES = ("float32", "bfloat16")
# Bytes per parameter a training rank holds: weights, gradients, DDP's
# gradient buckets, and Adam's two moments (SGD: none, momentum off).
_BYTES_PER_PARAM = {"adam": 4 * 5, "sgd": 4 * 3}


@dataclass(frozen=True)
class ReplicateConfig(Config):
    """A run's Config plus the workload; ``sizes`` are the per-rank batch sizes."""

    model: str = "braggnn"
    optimizer: str = "adam"
    seq: Optional[int] = None  # tokens per sample for GPT-style models (default: a short 128)

    @property
    def collective(self) -> str:
        return NAME


def _batches(text: str) -> Tuple[int, ...]:
    try:
        values = tuple(cli.pos_int(x) for x in text.split(","))
    except Exception:
        raise ConfigError(f"--batch {text!r}: give per-rank batch sizes, whole numbers >= 1, e.g. 2 or 2,4")
    if len(values) > 32:
        raise ConfigError("--batch: at most 32 batch sizes")
    return values


def parse_args(argv: Sequence[str], quiet: bool = False) -> ReplicateConfig:
    from analysis import workloads

    p = cli.Parser(prog=f"python -m collectives.{NAME}",
                   description="Data-parallel training steps of a real model under DDP, measured per phase "
                   "and per gradient bucket (synthetic inputs, no data loading).")
    p.quiet = quiet
    p.add_argument("--model", default="braggnn", help=f"one of {', '.join(workloads.names())} (default braggnn)")
    p.add_argument("--batch", default="2", help="samples per rank per step, a comma list allowed (default 2)")
    p.add_argument("--seq", type=cli.pos_int, help="tokens per sample for GPT-style models (default 128)")
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="weights and activations (default float32)")
    cli.add_timing_flags(p, warmup=2)
    cli.add_run_flags(p, transport_help="gloo (default), nccl or hccl: the torch backend DDP runs over")
    a = p.parse_args(list(argv))
    try:
        w = workloads.get(a.model)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if w.builder is None:
        raise ConfigError(f"--model {a.model}: no torch model for this workload")
    fields = cli.run_fields(a)
    if fields["transport"] in ("auto", ""):
        fields["transport"] = "gloo"
    if fields["transport"] not in ("gloo", "nccl", "hccl"):
        raise ConfigError(f"--transport {fields['transport']}: replicate runs DDP over a torch backend: "
                          "gloo, nccl or hccl")
    if fields["iters"] is None:
        fields["iters"] = 5  # steps, not a time budget: a step is seconds long
    batches = _batches(a.batch)
    return ReplicateConfig(
        spec=None, sizes=batches, size_flags=f"model {w.name} batch {','.join(map(str, batches))} per rank",
        dtypes=parse_dtypes(a.dtype), ops=(), root=None, placements=("out",), fresh_inputs=False,
        inject_fault=None, transport_options=cli.TransportOptions(device=a.device, iface=a.iface),
        model=w.name, optimizer=a.optimizer, seq=a.seq, **fields,
    )


def _check_memory(cfg: ReplicateConfig, params: int, ctx: Dict) -> Optional[str]:
    """Model + gradients + buckets + optimizer state of this host's ranks against MemAvailable."""
    here = context.memory_here(ctx)
    if here is None:
        return None
    available, local, host = here
    need = params * _BYTES_PER_PARAM[cfg.optimizer] * local
    if need <= available:
        return None
    return (f"{cfg.model} ({params:,} parameters) needs about {need / 2**30:.1f} GiB for its {local} ranks on "
            f"{host} (weights, gradients, buckets, {cfg.optimizer} state), which has "
            f"{available / 2**30:.1f} GiB available")


class _BucketLog:
    """A DDP communication hook: the default allreduce, with each bucket's times recorded."""

    def __init__(self, torch, dist, group, world: int):
        self.torch, self.dist, self.group, self.world = torch, dist, group, world
        self.events: List[Tuple[int, float, float]] = []  # (bytes, ready, done)
        self.hook_s = 0.0

    def hook(self, state, bucket):
        t0 = time.perf_counter()
        buf = bucket.buffer()
        nbytes = buf.numel() * buf.element_size()
        buf.div_(self.world)
        fut = self.dist.all_reduce(buf, group=self.group, async_op=True).get_future()
        slot = len(self.events)
        self.events.append((nbytes, t0, float("nan")))

        def done(f):
            self.events[slot] = (nbytes, t0, time.perf_counter())
            return f.value()[0]
        self.hook_s += time.perf_counter() - t0
        return fut.then(done)


def _step_fn(torch, model, opt, data, sync, log: _BucketLog):
    def step() -> Dict[str, float]:
        log.events.clear()
        log.hook_s = 0.0
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(data)
        out = out[0] if isinstance(out, (tuple, list)) else getattr(out, "logits", out)
        loss = out.float().pow(2).mean()
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        opt.step()
        sync()
        t3 = time.perf_counter()
        last_ready = max((e[1] for e in log.events), default=t2)
        return {
            "forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2, "step": t3 - t0,
            "exposed": max(0.0, t2 - last_ready), "hook": log.hook_s,
            "allreduce": sum(e[2] - e[1] for e in log.events if e[2] == e[2]),
            "buckets": [(b, r - t1, d - t1) for b, r, d in log.events],
        }
    return step


def _sweep(session: Run) -> List[Dict]:
    from analysis import workloads

    cfg: ReplicateConfig = session.cfg
    comm, t, dog = session.comm, session.transport, session.watchdog
    torch, dist = t.torch, t.dist
    w = workloads.get(cfg.model)
    # Before building anything: the table's exact parameter count.
    reasons = [r for r in comm.allgather(_check_memory(cfg, w.params, session.ctx)) if r]
    if reasons:
        raise ConfigError(reasons[0])
    with dog.starting(f"building {w.name}"):
        torch.manual_seed(1234)  # every rank starts from the same weights (DDP broadcasts rank 0's anyway)
        model = workloads.build_torch_model(w, device=t.device)
        if cfg.dtypes[0].name == "bfloat16":
            model = model.to(torch.bfloat16)
        params = sum(p.numel() for p in model.parameters())
    with dog.starting("wrapping the model in DistributedDataParallel"):
        ddp = torch.nn.parallel.DistributedDataParallel(model, process_group=t.group)
        log = _BucketLog(torch, dist, t.group, t.size)
        ddp.register_comm_hook(None, log.hook)
        opt = (torch.optim.Adam(ddp.parameters(), lr=1e-4) if cfg.optimizer == "adam"
               else torch.optim.SGD(ddp.parameters(), lr=1e-3))
    sync = (lambda: torch.cuda.synchronize(t.device)) if t.device.type == "cuda" else (lambda: None)
    grad_bytes = params * (2 if cfg.dtypes[0].name == "bfloat16" else 4)
    session.header(header_lines(cfg, session.ctx) + [
        f"# replicate: {w.title}, {params:,} parameters ({grad_bytes:,} B of gradients), DDP over "
        f"{cfg.transport}, {cfg.optimizer}, {cfg.dtypes[0].name}; synthetic inputs of the model's shape "
        "(no data loading); times: the median step of the slowest rank, its phases (ms)",
        "#    batch   step_ms   fwd_ms   bwd_ms   opt_ms  exposed_ms  allred_ms  hook_ms  buckets"
        "  samples/s(all ranks)",
    ], columns=False)
    records = []
    seq = cfg.seq or (128 if w.model_input.kind == "tokens" else None)
    for batch in cfg.sizes:
        data = workloads.example_input(w, batch, seq, device=t.device)
        if cfg.dtypes[0].name == "bfloat16" and data.is_floating_point():
            data = data.to(torch.bfloat16)
        rec = record.new("measured", "running", collective=NAME, nranks=t.size, size_bytes=grad_bytes,
                         count=params, dtype=cfg.dtypes[0].name, op="avg", in_place=True, warmup=cfg.warmup,
                         aggregation="max", model=w.name, batch=batch, seq=seq, optimizer=cfg.optimizer,
                         **record.transport_fields(session.ctx), **record.context_fields(session.ctx))
        session.current = rec
        step = _step_fn(torch, ddp, opt, data, sync, log)
        steps = []
        for i in range(cfg.warmup + cfg.iters):
            with dog.watch(f"training step {i + 1} of {w.name} at batch {batch}"):
                result = step()
            if i >= cfg.warmup:
                steps.append(result)
        with dog.watch(f"gathering the step times of batch {batch}"):
            per_rank = comm.allgather(steps)
        rec.update(_summary(per_rank, batch, grad_bytes, t.size))
        rec.update(status="ok")
        session.emit(rec)
        records.append(rec)
        session.text("%9d  %8.1f %8.1f %8.1f %8.1f  %10.1f  %9.1f  %7.2f  %7d  %10.2f" % (
            batch, rec["step_ms"], rec["forward_ms"], rec["backward_ms"], rec["optimizer_ms"],
            rec["exposed_ms"], rec["allreduce_ms"], rec["hook_ms"], rec["buckets"], rec["samples_per_s"]))
    session.current = None
    session.footer({"wrong": None, "avg_busbw": None})
    return records


def _summary(per_rank: List[List[Dict]], batch: int, grad_bytes: int, nranks: int) -> Dict:
    """The median step of the slowest rank, whole: its phases add up to its step time.

    For each timed step the slowest rank (by step time) is taken; of those
    steps, the median one is reported with all its phases and its bucket
    timeline; the spread is over all steps.
    """
    slowest = [max((r[i] for r in per_rank), key=lambda s: s["step"]) for i in range(len(per_rank[0]))]
    order = sorted(range(len(slowest)), key=lambda i: slowest[i]["step"])
    med = slowest[order[len(order) // 2]]
    steps_s = [s["step"] for s in slowest]
    stats = aggregate([{"mean": med["step"] * 1e6, "min": min(steps_s) * 1e6,
                        "p50": statistics.median(steps_s) * 1e6, "p99": max(steps_s) * 1e6,
                        "max": max(steps_s) * 1e6}], 0)
    allreduce_s = med["allreduce"]
    out = record.timing_fields(len(slowest), stats, 0, 0.0)
    # algbw/busbw of the gradient allreduce as it ran inside the step (sum of the buckets' times).
    algbw = grad_bytes / allreduce_s / 1e9 if allreduce_s > 0 else 0.0
    factor = SPECS["allreduce"].busbw_factor(nranks)
    out.update(
        algbw_gbs=algbw, busbw_factor=factor, busbw_gbs=algbw * factor, wrong=None, checks=0,
        step_ms=med["step"] * 1e3, forward_ms=med["forward"] * 1e3, backward_ms=med["backward"] * 1e3,
        optimizer_ms=med["optimizer"] * 1e3, exposed_ms=med["exposed"] * 1e3, allreduce_ms=allreduce_s * 1e3,
        hook_ms=med["hook"] * 1e3, buckets=len(med["buckets"]),
        samples_per_s=nranks * batch / med["step"],
        step_ms_spread=[min(steps_s) * 1e3, max(steps_s) * 1e3],
        bucket_timeline=[{"bytes": b, "ready_ms": r * 1e3, "done_ms": d * 1e3} for b, r, d in med["buckets"]],
    )
    return out


def run(comm=None, argv: Sequence[str] = (), sinks=None) -> List[Dict]:
    """Measure replication in-process; returns the records (prints nothing)."""
    from launch.comm import as_comm

    comm = as_comm(comm)
    cfg = parse_args(argv, quiet=comm.rank != 0)
    with Run(comm, cfg, list(sinks or [])) as session:
        return _sweep(session)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m collectives.replicate``: print the table on rank 0, end with the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)

    def body(comm, tweaks, table, dog):
        cfg = parse_args(argv, quiet=comm.rank != 0)
        with Run(comm, cfg, table, tweaks, dog) as session:
            return _sweep(session)
    return cli.process_main(body)


if __name__ == "__main__":
    raise SystemExit(main())
