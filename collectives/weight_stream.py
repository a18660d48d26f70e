"""``python -m collectives.weight_stream``: SwarmX-style weight streaming (see collectives.streaming).

    mpirun -n 7 python -m collectives.weight_stream --fanout 2 --layers 4M,16M,16M,4M

One table row per layer: on the left the weights streamed down the tree to
every worker, on the right the gradients summed back up to the source, each
measured for that layer alone; a last row streams all layers pipelined.
algbw = layer bytes / time (busbw = algbw: every link carries each byte
once per direction, as nccl-tests counts broadcast and reduce).

A runner like the harness: it goes through the runner core
(:class:`collectives.runner.Run`: transport, watchdog, sinks, validation)
and builds its records with :mod:`facts.record`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence

from collectives import cli, lifecycle
from facts import per_rank, record
from collectives.config import Config, parse_size
from collectives.timed_loop import Timing
from collectives.header import header_lines
from collectives.runner import Run
from collectives.streaming import Stream, Tree
from ground.dtypes import OPS, ConfigError, parse_dtypes
from transports.base import Unsupported

__all__ = ["run", "main", "parse_args", "StreamConfig"]

NAME = "weight_stream"


@dataclass(frozen=True)
class StreamConfig(Config):
    """A run's Config plus the tree's fan-out; ``sizes`` are the layers' sizes in bytes."""

    fanout: int = 2

    @property
    def collective(self) -> str:
        return NAME


def _layers(text: str) -> List[int]:
    sizes = [parse_size(x) for x in text.split(",") if x.strip()]
    if not sizes or min(sizes) < 1:
        raise ConfigError("--layers needs one or more sizes of at least 1 byte, e.g. 4M,16M,4M")
    return sizes


def parse_args(argv: Sequence[str], quiet: bool = False) -> StreamConfig:
    p = cli.Parser(prog=f"python -m collectives.{NAME}",
                   description="Stream a model's weights from a source rank (MemoryX) through a fan-out "
                   "tree of relays (SwarmX) to worker ranks, and reduce the gradients back, pipelined "
                   "per layer; every layer is validated.")
    p.quiet = quiet
    p.add_argument("--fanout", type=cli.pos_int, default=2, help="children per tree node (default 2)")
    p.add_argument("--layers", default="1M,4M,4M,1M", help="layer sizes in bytes (default 1M,4M,4M,1M)")
    p.add_argument("-d", "--datatype", default="float32", help="weights and gradients type (default float32)")
    cli.add_timing_flags(p, warmup=3)
    cli.add_iter_flags(p)
    cli.add_run_flags(p, transport_help="mpi, gloo, nccl, ... (needs point-to-point), or auto (default: "
                      "mpi under mpirun, else gloo)")
    a = p.parse_args(list(argv))
    dtypes = parse_dtypes(a.datatype)
    if len(dtypes) != 1:
        raise ConfigError("weight_stream takes one datatype")
    layers = _layers(a.layers)
    return StreamConfig(
        spec=None, sizes=tuple(layers),
        size_flags=f"layers {len(layers)} ({','.join(str(x) for x in layers)} B) fanout: {a.fanout}",
        dtypes=dtypes, ops=(OPS["sum"],), root=0, placements=("out", "in"), fresh_inputs=False,
        inject_fault=None, transport_options=cli.TransportOptions(device=a.device, iface=a.iface),
        fanout=a.fanout, **cli.run_fields(a),
    )


def run(comm=None, argv: Sequence[str] = (), sinks=None) -> List[Dict]:
    """Measure weight streaming in-process; returns the records (prints nothing)."""
    from ground.comm import as_comm

    comm = as_comm(comm)
    cfg = parse_args(argv, quiet=comm.rank != 0)
    return _run(comm, cfg, list(sinks or []))


def _run(comm, cfg: StreamConfig, sinks, watchdog=None) -> List[Dict]:
    if comm.size < 2:
        raise ConfigError("weight_stream needs at least 2 ranks: a source and a worker")
    tree = Tree(comm.size, cfg.fanout)
    if cfg.transport == "auto":
        cfg = replace(cfg, transport="mpi" if getattr(comm, "mpi", None) is not None else "gloo")
    with Run(comm, cfg, sinks, watchdog=watchdog) as session:
        return _sweep(session, tree)


def _sweep(session: Run, tree: Tree) -> List[Dict]:
    comm, transport, cfg, dog = session.comm, session.transport, session.cfg, session.watchdog
    dtype = cfg.dtypes[0]
    counts = [max(1, size // dtype.itemsize) for size in cfg.sizes]
    reason = None
    try:
        with dog.starting("allocating layer buffers"):
            stream = Stream(transport, tree, dtype, counts)
    except Unsupported as exc:
        reason = str(exc)
    reasons = [r for r in comm.allgather(reason) if r]
    if reasons:
        raise ConfigError(f"weight_stream over '{cfg.transport}': {reasons[0]}")
    session.header(header_lines(cfg, session.ctx) + [
        f"# tree: source rank 0 (MemoryX), {len(tree.relays)} relays (SwarmX) {tree.relays}, "
        f"{len(tree.workers)} workers {tree.workers}, fan-out {tree.fanout}, depth {max(tree.depth)}",
        "# columns: left = weights streamed down to every worker, right = gradients summed up to the "
        "source; rows: each layer alone, then all layers pipelined",
    ], columns=("weights down", "gradients up"))
    timing = Timing(comm, transport, cfg, dog)
    records: List[Dict] = []

    def measure(phase: str, layers: List[int], label: str) -> Dict:
        size = sum(counts[l] for l in layers) * dtype.itemsize
        what = f"weight_stream {phase} of {label} ({size} B)"
        rec = record.new(
            "measured", "running", collective=NAME, nranks=comm.size, size_bytes=size,
            count=size // dtype.itemsize, dtype=dtype.name, op="sum" if phase == "up" else None, root=0,
            in_place=False, warmup=cfg.warmup, fresh_inputs=False, aggregation=cfg.aggregation,
            checks=0, phase=phase, layer=layers[0] if len(layers) == 1 else None, layers=len(layers),
            pipelined=len(layers) > 1, fanout=tree.fanout, relays=len(tree.relays), workers=len(tree.workers),
            **record.transport_fields(session.ctx), **record.context_fields(session.ctx),
        )
        session.current = rec
        with dog.watch(f"binding {what}"):
            bound = stream.bind_down(layers) if phase == "down" else stream.bind_up(layers)
        seed_fn = stream.seed_down if phase == "down" else stream.seed_up
        check_fn = stream.check_down if phase == "down" else stream.check_up
        with dog.local("seeding inputs"):
            seed_fn(cfg.seed, 0, layers)  # the timed loop's inputs; checks use fresh keys
        iters, stats = timing.time(bound, what)

        def seed(key):
            seed_fn(key.seed, key.iteration, layers)
            return key
        wrong = session.validate(what, seed, bound, lambda key: check_fn(key.seed, key.iteration, layers))
        rec.update(record.timing_fields(iters, stats, size, 1.0, per_rank.host_of_rank(session.ctx["hosts"])))
        rec.update(status="ok" if not wrong else "wrong", wrong=wrong, checks=cfg.check)
        session.emit(rec)
        records.append(rec)
        return rec

    for layer in range(len(counts)):
        session.point([measure("down", [layer], f"layer {layer}"), measure("up", [layer], f"layer {layer}")])
    if len(counts) > 1:
        every = list(range(len(counts)))
        session.note(f"all {len(counts)} layers, pipelined:")
        session.point([measure("down", every, "all layers"), measure("up", every, "all layers")])
    session.current = None
    session.footer({"wrong": sum(r["wrong"] or 0 for r in records), "avg_busbw": None})
    return records


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m collectives.weight_stream``: print the table on rank 0, return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return lifecycle.process_main(lambda comm, tweaks, table, dog: _run(comm, parse_args(argv, quiet=comm.rank != 0),
                                                                   table, dog))


if __name__ == "__main__":
    raise SystemExit(main())
