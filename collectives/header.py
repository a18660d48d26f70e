"""The header text above every table: settings, transport, placement, warnings.

nccl-tests prints one; ours also names the transport's own settings and
notes, oversubscription, emulation and fault injection, so that a table
pasted alone still says how it was measured.
"""

from __future__ import annotations

from typing import Dict, List

from collectives.config import Config

__all__ = ["header_lines"]


def header_lines(cfg: Config, ctx: Dict) -> List[str]:
    """The ``#`` lines above the table: what ran, how, where, and every warning."""
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
    if cfg.spec is not None and cfg.spec.reduces:
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
