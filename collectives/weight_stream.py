"""``python -m collectives.weight_stream``: SwarmX-style weight streaming (see collectives.streaming).

    mpirun -n 7 python -m collectives.weight_stream --fanout 2 --layers 4M,16M,16M,4M

One table row per layer: on the left the weights streamed down the tree to
every worker, on the right the gradients summed back up to the source, each
measured for that layer alone; a last row streams all layers pipelined.
algbw = layer bytes / time (busbw = algbw: every link carries each byte
once per direction, as nccl-tests counts broadcast and reduce).
"""

from __future__ import annotations

import sys
from typing import Dict, List, Optional, Sequence

from collectives import cli, harness
from collectives.dtypes import ConfigError, parse_dtypes

__all__ = ["run", "main", "parse_args"]

NAME = "weight_stream"


def _layers(text: str) -> List[int]:
    sizes = [cli.parse_size(x) for x in text.split(",") if x.strip()]
    if not sizes or min(sizes) < 1:
        raise ConfigError("--layers needs one or more sizes of at least 1 byte, e.g. 4M,16M,4M")
    return sizes


def parse_args(argv: Sequence[str], quiet: bool = False) -> cli.Config:
    p = cli._Parser(prog=f"python -m collectives.{NAME}",
                    description="Stream a model's weights from a source rank (MemoryX) through a fan-out "
                    "tree of relays (SwarmX) to worker ranks, and reduce the gradients back, pipelined "
                    "per layer; every layer is validated.")
    p.quiet = quiet
    p.add_argument("--fanout", type=cli._pos_int, default=2, help="children per tree node (default 2)")
    p.add_argument("--layers", default="1M,4M,4M,1M", help="layer sizes in bytes (default 1M,4M,4M,1M)")
    p.add_argument("-d", "--datatype", default="float32", help="weights and gradients type (default float32)")
    p.add_argument("-n", "--iters", type=cli._pos_int, help="timed iterations (default: --time-budget)")
    p.add_argument("-w", "--warmup_iters", type=cli._nonneg_int, default=3)
    p.add_argument("-c", "--check", type=cli._nonneg_int, default=1)
    p.add_argument("-a", "--average", type=int, choices=(0, 1, 2, 3), default=1)
    p.add_argument("-T", "--timeout", type=cli._nonneg_float, default=300.0)
    p.add_argument("--transport", default="auto", help="mpi, gloo, nccl, ... (needs point-to-point)")
    p.add_argument("--device", choices=("cpu", "cuda", "hpu"))
    p.add_argument("--iface")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--csv", metavar="PATH")
    p.add_argument("--time-budget", type=cli._pos_float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(list(argv))
    dtypes = parse_dtypes(a.datatype)
    if len(dtypes) != 1:
        raise ConfigError("weight_stream takes one datatype")
    layers = _layers(a.layers)
    from collectives.dtypes import OPS

    return cli.Config(
        collective=NAME, sizes=tuple(layers),
        size_flags=f"layers {len(layers)} ({','.join(str(x) for x in layers)} B) fanout: {a.fanout}",
        iters=a.iters, warmup=a.warmup_iters, check=a.check, dtypes=dtypes, ops=(OPS["sum"],), root=0,
        average=a.average, transport=a.transport.strip().lower(), json=a.json, csv=a.csv,
        time_budget=a.time_budget, placements=("out", "in"), timeout=a.timeout, algo=None, buffer=None,
        device=a.device, iface=a.iface, fresh_inputs=False, seed=a.seed, inject_fault=None,
        options={"fanout": a.fanout},
    )


def run(comm=None, argv: Sequence[str] = (), sinks=None) -> List[Dict]:
    """Measure weight streaming in-process; returns the records (prints nothing)."""
    from launch.comm import as_comm

    comm = as_comm(comm)
    cfg = parse_args(argv, quiet=comm.rank != 0)
    return _run(comm, cfg, list(sinks or []))


def _run(comm, cfg: cli.Config, sinks) -> List[Dict]:
    from collectives.streaming import Tree

    if comm.size < 2:
        raise ConfigError("weight_stream needs at least 2 ranks: a source and a worker")
    tree = Tree(comm.size, cfg.options["fanout"])
    if cfg.transport == "auto":
        cfg = _replace(cfg, transport="mpi" if getattr(comm, "mpi", None) is not None else "gloo")
    watchdog = harness.Watchdog(cfg.timeout, comm.rank)
    try:
        with watchdog.watch(f"starting transport '{cfg.transport}'"):
            transport = harness._create_transport(comm, cfg)
        ctx = harness.gather_context(comm, transport, cfg, {})
        files = harness._open_files(comm, cfg)
        sinks = list(sinks) + files
        try:
            records = _sweep(comm, transport, cfg, tree, ctx, sinks, watchdog)
        finally:
            for s in sinks:
                s.close()
        with watchdog.watch("closing the transport"):
            transport.close()
        return records
    finally:
        watchdog.close()


def _replace(cfg, **kw):
    from dataclasses import replace

    return replace(cfg, **kw)


def _sweep(comm, transport, cfg, tree, ctx, sinks, watchdog) -> List[Dict]:
    from collectives.streaming import Stream
    from transports.base import Unsupported


    dtype = cfg.dtypes[0]
    counts = [max(1, size // dtype.itemsize) for size in cfg.sizes]
    reason = None
    try:
        with watchdog.watch("allocating layer buffers"):
            stream = Stream(transport, tree, dtype, counts)
    except Unsupported as exc:
        reason = str(exc)
    reasons = [r for r in comm.allgather(reason) if r]
    if reasons:
        raise ConfigError(f"weight_stream over '{cfg.transport}': {reasons[0]}")
    lines = harness.header_lines(cfg, ctx) + [
        f"# tree: source rank 0 (MemoryX), {len(tree.relays)} relays (SwarmX) {tree.relays}, "
        f"{len(tree.workers)} workers {tree.workers}, fan-out {tree.fanout}, depth {max(tree.depth)}",
        "# columns: left = weights streamed down to every worker, right = gradients summed up to the "
        "source; rows: each layer alone, then all layers pipelined",
    ]
    for s in sinks:
        s.header({"header_lines": lines, "context": ctx, "config": cfg,
                  "columns": ("weights down", "gradients up")})
    timing = harness.Timing(comm, transport, cfg, watchdog)
    records: List[Dict] = []
    checks = [0]

    def measure(phase: str, layers: List[int], label: str) -> Dict:
        size = sum(counts[l] for l in layers) * dtype.itemsize
        what = f"weight_stream {phase} of {label} ({size} B)"
        with watchdog.watch(f"binding {what}"):
            bound = stream.bind_down(layers) if phase == "down" else stream.bind_up(layers)
        seed_fn = stream.seed_down if phase == "down" else stream.seed_up
        check_fn = stream.check_down if phase == "down" else stream.check_up
        with watchdog.local("seeding inputs"):
            seed_fn(cfg.seed, 0, layers)
        iters, stats = timing.time(bound, what)
        wrong = None
        if cfg.check:
            wrong = 0
            for _ in range(cfg.check):
                checks[0] += 1
                with watchdog.local("seeding inputs"):
                    seed_fn(cfg.seed, checks[0], layers)
                with watchdog.watch(f"the validation run of {what}"):
                    bound()
                    transport.synchronize()
                with watchdog.local("checking results"):
                    wrong += check_fn(cfg.seed, checks[0], layers)
            with watchdog.watch(f"summing #wrong of {what}"):
                wrong = comm.allreduce(wrong, "sum")
        rec = dict.fromkeys(harness.FIELDS)
        rec.update(
            schema=harness.SCHEMA, kind="measured", collective=NAME,
            transport=ctx["transport"]["transport"], transport_version=ctx["transport"].get("transport_version"),
            buffer=ctx["transport"].get("buffer", "host"), nranks=comm.size, size_bytes=size,
            count=size // dtype.itemsize,
            dtype=dtype.name, op="sum" if phase == "up" else None, root=0, in_place=False,
            warmup=cfg.warmup, fresh_inputs=False, aggregation=cfg.aggregation, checks=cfg.check,
            phase=phase, layer=layers[0] if len(layers) == 1 else None, layers=len(layers),
            pipelined=len(layers) > 1, fanout=tree.fanout, relays=len(tree.relays),
            workers=len(tree.workers), **harness.context_fields(ctx),
        )
        rec.update(harness.measured_fields(iters, stats, size, 1.0))
        rec.update(status="ok" if not wrong else "wrong", wrong=wrong)
        for s in sinks:
            s.record(rec)
        records.append(rec)
        return rec

    for layer in range(len(counts)):
        recs = [measure("down", [layer], f"layer {layer}"), measure("up", [layer], f"layer {layer}")]
        for s in sinks:
            s.point(recs)
    if len(counts) > 1:
        every = list(range(len(counts)))
        for s in sinks:
            s.note(f"all {len(counts)} layers, pipelined:")
        recs = [measure("down", every, "all layers"), measure("up", every, "all layers")]
        for s in sinks:
            s.point(recs)
    summary = {"wrong": sum(r["wrong"] or 0 for r in records), "avg_busbw": None}
    for s in sinks:
        s.footer(summary)
    return records


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m collectives.weight_stream``: print the table on rank 0, return the exit status."""
    from collectives.output import stdout_table
    from launch.comm import world

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        comm, _ = world()
    except Exception as exc:
        print(f"collscale: error: {exc}", file=sys.stderr)
        return cli.EXIT_ERROR

    def body():
        cfg = parse_args(argv, quiet=comm.rank != 0)
        return _run(comm, cfg, [stdout_table()] if comm.rank == 0 else [])
    return cli.guarded(comm, body)


if __name__ == "__main__":
    raise SystemExit(main())
