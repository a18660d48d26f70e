"""``python -m collectives.replicate``: data-parallel replication, measured.

    mpirun -n 2 python -m collectives.replicate --model unet --batch 2

Every rank builds the workload's real torch model (:mod:`facts.workloads`),
wraps it in DistributedDataParallel over a torch backend (``--transport
gloo|nccl|hccl``) and trains it on synthetic inputs of the model's real
shape (no data loading: the header says so) with a real optimizer.

Efficiency is measured inside one job, because drift on a shared machine is
larger than the effect: each of ``-w`` + ``-n`` rounds runs rank 0 alone
(the others asleep in the backend's barrier), then every rank without
gradient sync, then every rank under DDP, each phase started together.  So
X(1), X(N), E(N) = X(N) / (N X(1)) and the parts of the loss (sharing,
skew, exposed communication) come from the same minutes
(:mod:`collectives.replicate_summary`).  Per step and rank the phases are
timed (forward, backward, optimizer); a communication hook around DDP's
default allreduce records each gradient bucket's size, the moment it became
ready and the moment its allreduce was done, and the hook's own cost
(:mod:`collectives.replicate_steps`).  Exposed communication is backward's
return minus the moment the last bucket became ready (DDP's backward
returns only after the last allreduce).

The rounds are not :class:`collectives.timed_loop.Timing` loops: each interleaves four phases (alone, no
sync, DDP, the allreduce alone with its copies and wake probe timed apart), one call each between barriers,
summarised as medians over rounds per phase, rank and bucket, not as one repeated call's stamps.

With ``--batch b,Nb`` at N ranks the job also measures strong scaling: a
``# strong scaling:`` line gives E(N) at global batch N b = one rank alone
at N b over N x the DDP step at b per rank
(:func:`collectives.replicate_summary.strong_pairs`).

One table line and one summary record per batch size (:func:`facts.record.new`): ``time_us`` is the DDP
step (the slowest rank's median), ``size_bytes`` and ``count`` the gradients DDP reduces; a size sweep's
loop statistics (per-iteration min/p50/p99/max, the ranks' means) and a sized message's algbw/busbw are
not measured here and stay None, and what is has fields of its own
(:data:`collectives.replicate_summary.SUMMARY_FIELDS`).  The per-round step
times and the median DDP step's bucket timeline are in the JSON only (the
CSV gets the summary columns).  Each rank runs ``--threads`` torch threads
(default: its host's usable cores over its ranks; under ``launch.emulate``
the machine's cores over all the ranks of its emulated hosts), so X(1) is
measured with the thread count each rank really has.

Before anything is built (:func:`host_limits`, :mod:`facts.host_limits`):
``--threads`` above the usable cores is refused unless ``--oversubscribe``
asks for it, threads x ranks above the cores is a header note, and a model
and batch whose state and measured activations would not fit the memory
the ranks' machine has available are refused with the figures.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

from collectives import cli, lifecycle
from facts import record
from collectives.config import Config
from collectives.header import header_lines
from collectives.replicate_host import host_limits, machine_key, share_of, threads_line
from collectives.replicate_steps import BucketLog, allocator, comm_fn, page_kib, repeat, step_fn
from collectives.replicate_summary import SUMMARY_FIELDS, strong_line, strong_pairs, summarize
from collectives.runner import Run
from ground.dtypes import ConfigError, parse_dtypes
from transports.base import TorchTransport, missing_members

__all__ = ["run", "main", "parse_args", "ReplicateConfig", "torch_transport", "not_torch", "DDP_TRANSPORTS"]

NAME = "replicate"
DDP_TRANSPORTS = ("gloo", "nccl", "hccl")  # the torch transports replicate runs DDP over
OPTIMIZERS = ("adam", "sgd")
DTYPES = ("float32", "bfloat16")
# Bytes per parameter a training rank holds: weights, gradients, DDP's
# gradient buckets, the comm-only phase's buckets and the gradients it copies
# them from and back to, and Adam's two moments (SGD: none, momentum off).
FAULTS_NOTE = 10000  # page faults a step above which the table says the allocator hands memory back
PHASE_S = 0.25  # --steps auto: steps per phase so that a phase lasts at least this long
MAX_STEPS = 50


@dataclass(frozen=True)
class ReplicateConfig(Config):
    """A run's Config plus the workload; ``sizes`` are the per-rank batch sizes."""

    model: str = "braggnn"
    optimizer: str = "adam"
    seq: Optional[int] = None  # tokens per sample for GPT-style models (default: a short 128)
    threads: Optional[int] = None  # torch threads per rank (default: the host's cores over its ranks)
    oversubscribe: bool = False  # --threads above the host's usable cores, asked for
    steps: Optional[int] = None  # steps per phase (default: enough for PHASE_S seconds)

    @property
    def collective(self) -> str:
        return NAME

    @property
    def csv_fields(self) -> Tuple[str, ...]:
        return record.FIELDS + tuple(f for f in SUMMARY_FIELDS if f not in record.FIELDS)


def _batches(text: str) -> Tuple[int, ...]:
    try:
        values = tuple(cli.pos_int(x) for x in text.split(","))
    except Exception:
        raise ConfigError(f"--batch {text!r}: give per-rank batch sizes, whole numbers >= 1, e.g. 2 or 2,4")
    if len(values) > 32:
        raise ConfigError("--batch: at most 32 batch sizes")
    return values


def parse_args(argv: Sequence[str], quiet: bool = False) -> ReplicateConfig:
    from facts import workloads

    p = cli.Parser(prog=f"python -m collectives.{NAME}",
                   description="Data-parallel training steps of a real model under DDP, measured per phase "
                   "and per gradient bucket (synthetic inputs, no data loading).")
    p.quiet = quiet
    p.add_argument("--model", default="braggnn", help=f"one of {', '.join(workloads.names())} (default braggnn)")
    p.add_argument("--batch", default="2", help="samples per rank per step, a comma list allowed (default 2)")
    p.add_argument("--seq", type=cli.pos_int, help="tokens per sample for GPT-style models (default 128)")
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="weights and activations (default float32)")
    p.add_argument("--threads", type=cli.pos_int, help="torch threads per rank on the CPU (default: the host's "
                   "usable cores divided by its ranks, at least 1; under launch.emulate the machine's cores by all "
                   "its ranks); more than the usable cores is refused without --oversubscribe")
    p.add_argument("--oversubscribe", action="store_true", help="run --threads above this host's usable cores "
                   "(refused otherwise): the threads take turns on the cores")
    p.add_argument("--steps", type=cli.pos_int, help="training steps per phase of a round, timed together "
                   f"(default: enough for {PHASE_S:g} s, from an untimed step, at most {MAX_STEPS})")
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
    if fields["transport"] not in DDP_TRANSPORTS:
        raise not_torch(fields["transport"])
    if fields["iters"] is None:
        fields["iters"] = 5  # steps, not a time budget: a step is seconds long
    batches = _batches(a.batch)
    return ReplicateConfig(
        spec=None, sizes=batches, size_flags=f"model {w.name} batch {','.join(map(str, batches))} per rank",
        dtypes=parse_dtypes(a.dtype), ops=(), root=None, placements=("out",), fresh_inputs=False,
        inject_fault=None, transport_options=cli.TransportOptions(device=a.device, iface=a.iface),
        model=w.name, optimizer=a.optimizer, seq=a.seq, threads=a.threads, oversubscribe=a.oversubscribe,
        steps=a.steps, **fields,
    )


def not_torch(transport: str, missing: Sequence[str] = ()) -> ConfigError:
    """The one-line error for a transport DDP cannot run over (``missing``: the members of
    :class:`transports.base.TorchTransport` it lacks)."""
    lacks = (f" (it lacks {', '.join(missing)} of transports.base.TorchTransport)" if missing else "")
    names = ", ".join(DDP_TRANSPORTS[:-1]) + " or " + DDP_TRANSPORTS[-1]
    return ConfigError(f"--transport {transport}: replicate runs DDP over a torch backend: {names}{lacks}")


def torch_transport(t, name: str) -> TorchTransport:
    """``t`` if it provides :class:`transports.base.TorchTransport` (torch, dist, group, device), else the
    one-line error (exit 2)."""
    missing = missing_members(t, TorchTransport)
    if missing:
        raise not_torch(name, missing)
    return t


def _sweep(session: Run) -> List[Dict]:
    from facts import workloads

    cfg: ReplicateConfig = session.cfg
    comm, dog = session.comm, session.watchdog
    t = torch_transport(session.transport, cfg.transport)
    torch = t.torch
    w = workloads.get(cfg.model)
    # Before building anything: threads against the cores, the table's parameter count and measured
    # activations against the memory, of every rank's machine (agreed: the first refusal ends the job).
    from facts.host_limits import available_memory

    share = share_of(session.ctx, comm.allgather(machine_key()), comm.rank, available_memory())
    threads, refusals, notes = host_limits(cfg, w, share, t.device.type == "cpu")
    checked = comm.allgather((refusals, notes))
    refusals = [r for rs, _ in checked for r in rs]
    if refusals:
        raise ConfigError(refusals[0])
    notes = list(dict.fromkeys(n for _, ns in checked for n in ns))
    cores, memory = share.cores, allocator()
    # The bare module's backward (alone and no-sync phases) lays out a 1x1 convolution's gradient
    # differently from DDP's bucket view; DDP copies it (correct, and timed as it runs): not the user's issue.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    if t.device.type == "cpu":
        torch.set_num_threads(threads)
    with dog.starting(f"building {w.name}"):
        torch.manual_seed(1234)  # every rank starts from the same weights (DDP broadcasts rank 0's anyway)
        model = workloads.build_torch_model(w, device=t.device)
        if cfg.dtypes[0].name == "bfloat16":
            model = model.to(torch.bfloat16)
        params = sum(p.numel() for p in model.parameters())
    with dog.starting("wrapping the model in DistributedDataParallel"):
        ddp = torch.nn.parallel.DistributedDataParallel(model, process_group=t.group)
        log = BucketLog(t.dist, t.group, t.size)
        ddp.register_comm_hook(None, log.hook)
        opt = (torch.optim.Adam(model.parameters(), lr=1e-4) if cfg.optimizer == "adam"
               else torch.optim.SGD(model.parameters(), lr=1e-3))
    grad_bytes = params * (2 if cfg.dtypes[0].name == "bfloat16" else 4)
    timer = "CUDA events per phase" if t.device.type == "cuda" else "host clock"
    session.header(header_lines(cfg, session.ctx) + [
        f"# replicate: {w.title}, {params:,} parameters ({grad_bytes:,} B of gradients), DDP over "
        f"{cfg.transport}, {cfg.optimizer}, {cfg.dtypes[0].name}, {threads} thread(s) per rank; synthetic inputs "
        "of the model's shape (no data loading); timed by the " + timer,
        threads_line(cfg, share, threads),
        *[f"# note: {n}" for n in notes],
        f"# host memory allocator: {memory}",
        f"# each of {cfg.warmup} + {cfg.iters} rounds: rank 0 alone (the others asleep in a barrier), all ranks "
        "without gradient sync, all ranks under DDP, then (N > 1) the gradient allreduce alone (every bucket, "
        "no compute: comm_ms; DDP's copies into and out of the buckets and a wake probe timed apart); each "
        "phase a group of steps (steps), timed together; E(N) = X(N) / (N X(1)) "
        "and its loss in points: sharing (no-sync mean vs alone), skew (slowest vs mean), exposed "
        "communication (DDP vs slowest no-sync); the DDP step shown is the median step of the slowest rank, "
        "its phases (ms)",
        "#    batch  steps   step_ms   fwd_ms   bwd_ms   opt_ms  exposed_ms  allred_ms  comm_ms  hook_ms  buckets"
        "   alone_ms    X(N)/s    X(1)/s    E(N)  sharing  skew  exposed",
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
                         threads=threads, host_cores=cores, params=params,
                         device=t.device.type, allocator=memory,
                         **record.transport_fields(session.ctx), **record.context_fields(session.ctx))
        session.current = rec
        plain = step_fn(torch, model, opt, data, t.device)
        synced = step_fn(torch, ddp, opt, data, t.device, log)
        with dog.watch(f"untimed steps of {w.name} at batch {batch} (steps per phase, DDP's buckets)"):
            steps = _steps_per_phase(comm, synced, log)  # always: DDP settles its buckets meanwhile
        steps = cfg.steps or steps
        rec["steps_per_phase"] = steps
        alone_fn, ddp_fn = repeat(plain, steps), repeat(synced, steps)
        comm_phase = _CommPhase(t, cfg.dtypes[0].name, steps)
        rounds = []
        for i in range(cfg.warmup + cfg.iters):
            with dog.watch(f"training round {i + 1} of {w.name} at batch {batch}"):
                one = _round(t, alone_fn, ddp_fn, comm_phase.fn([b for b, _, _ in log.events]))
            if i >= cfg.warmup:
                rounds.append(one)
        with dog.watch(f"gathering the step times of batch {batch}"):
            per_rank = comm.allgather(rounds)
        rec.update(_fields(summarize(per_rank, batch, t.size), cfg.iters))
        rec.update(status="ok")
        session.emit(rec)
        records.append(rec)
        session.text("%9d  %5d  %8.1f %8.1f %8.1f %8.1f  %10.1f  %9.1f  %7s  %7.2f  %7d  %9.1f  %8.3g  %8.3g  %5.1f%%"
                     "  %7.1f  %4.1f  %7.1f" % (
                         batch, steps, rec["step_ms"], rec["forward_ms"], rec["backward_ms"], rec["optimizer_ms"],
                         rec["exposed_ms"], rec["allreduce_ms"],
                         "-" if rec["comm_alone_ms"] is None else "%.1f" % rec["comm_alone_ms"],
                         rec["hook_ms"], rec["buckets"], rec["alone_ms"],
                         rec["xn_samples_per_s"], rec["x1_samples_per_s"], 100 * rec["efficiency"],
                         100 * rec["loss_sharing"], 100 * rec["loss_skew"], 100 * rec["loss_exposed"]))
        faults = rec.get("alone_faults_per_step") or 0
        if faults > FAULTS_NOTE:
            page = page_kib()
            session.text(f"# note: one rank alone takes {faults:,.0f} page faults a step (at least "
                         f"{faults * page / 1024:,.0f} MiB of fresh pages at {page} KiB): the allocator hands "
                         "large buffers back to the system every step and the kernel zeroes them again, which "
                         "ranks on a host contend for (see docs/replicate.md, 'Host memory allocator')")
    session.current = None
    for pair in strong_pairs(records):  # --batch b,N b: strong scaling measured in the same job
        session.text("# " + strong_line(pair))
    session.footer({"wrong": None, "avg_busbw": None})
    return records


def _steps_per_phase(comm, synced, log) -> int:
    """Steps per phase so that the slowest rank's phase lasts PHASE_S, from untimed DDP steps: at least two
    (DDP rebuilds its buckets at the start of the second forward, and the first carries one-off costs),
    more until the buckets stop changing (at most four). Every rank sees the same buckets, so every rank
    runs as many steps."""
    sizes, took = None, 0.0
    for i in range(4):
        step = synced()["step"]
        got = comm.allgather((step, [b for b, _, _ in log.events]))
        took, now = max(g[0] for g in got), got[0][1]  # rank 0's buckets decide for all
        if i >= 1 and now == sizes:
            break
        sizes = now
    return max(1, min(MAX_STEPS, math.ceil(PHASE_S / max(took, 1e-6))))


class _CommPhase:
    """The gradient allreduce alone: one buffer per bucket of the last DDP step, rebuilt when they change."""

    def __init__(self, t, dtype: str, steps: int):
        self.t, self.steps = t, steps
        self.dtype = getattr(t.torch, dtype)
        self.sizes: Optional[Tuple[int, ...]] = None
        self._fn = None

    def fn(self, sizes):
        if self.t.size <= 1 or not sizes:
            return None
        if tuple(sizes) != self.sizes:
            self._fn = None  # the old buffers go before the new ones are made
            self.sizes = tuple(sizes)
            self._fn = repeat(comm_fn(self.t.torch, self.t.dist, self.t.group, self.sizes, self.dtype,
                                      self.t.device, self.t.size), self.steps)
        return self._fn


def _round(t, plain, synced, comm_only=None) -> Dict:
    """One round: rank 0 alone, all without sync, all under DDP, then the allreduce alone (``comm_only``,
    when given), each phase started after a barrier.

    The barrier is the torch backend's own (gloo waits in a blocking read, so
    the ranks waiting while rank 0 runs alone take no core from it); the CPU
    time they use meanwhile is recorded (``wait_cpu``) as evidence.
    """
    barrier = partial(t.dist.barrier, group=t.group)
    out: Dict = {"alone": None, "nosync": None, "wait_cpu": None, "comm": None}
    barrier()
    if t.rank == 0:
        out["alone"] = plain()
        barrier()
    else:
        c0 = time.process_time()
        barrier()
        out["wait_cpu"] = time.process_time() - c0
    if t.size > 1:
        out["nosync"] = plain()
        barrier()
    out["ddp"] = synced()
    if comm_only is not None:
        barrier()
        out["comm"] = comm_only()
    return out


def _fields(summary: Dict, rounds: int) -> Dict:
    """The record's timing fields and the summary: ``time_us`` the DDP step (the slowest rank's median
    step, its spread over rounds ``step_ms_spread``), ``iters`` the rounds timed.  Nothing here is a size
    sweep's timed loop or a sized message's transfer: the fields of those (time_us_min/p50/p99/max and
    rank_min/max, algbw/busbw and their factor) stay None; no result is validated (``checks`` 0)."""
    out = {"iters": rounds, "time_us": summary["step_ms"] * 1e3, "wrong": None, "checks": 0,
           "timestamp": record.now()}
    out.update(summary)
    return out


def run(comm=None, argv: Sequence[str] = (), sinks=None) -> List[Dict]:
    """Measure replication in-process; returns the records (prints nothing)."""
    from ground.comm import as_comm

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
    return lifecycle.process_main(body)


if __name__ == "__main__":
    raise SystemExit(main())
