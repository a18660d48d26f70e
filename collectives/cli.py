"""Command line -> one frozen :class:`Config`, with nccl-tests' flag names.

nccl-tests flags: ``-b -e -i -f -n -w -c -d -o -r -a -T``; collscale's own:
``--transport --json --csv --time-budget --in-place/--out-of-place/--both
--algo --seed --inject-fault``.  Sizes take K/M/G/T suffixes (powers of
1024, as nccl-tests); datatypes accept nccl-tests names (``float``,
``half``, ``double``) as well as numpy ones, comma lists and ``all``.
:func:`main` is what ``python -m collectives.NAME`` runs: it hands the
process (MPI, printing, exit status) to :func:`collectives.lifecycle.process_main`.
:func:`run` is the in-process entry point: ``run(name, comm, argv)`` returns
the records and prints nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from typing import List, Optional, Sequence

from collectives import gates, harness, model_column, split
from collectives.lifecycle import process_main
from facts import spec as specs
from collectives.config import check_group
from collectives.config import (DEFAULT_MAX, DEFAULT_MIN, DEFAULT_STARTUP_TIMEOUT, MAX_CHECKS, MAX_GIVEN_ITERS,
                                Config, TransportOptions, parse_size, sweep_sizes)
from facts.per_rank import DEFAULT_CAP
from transports.native import add_loop_flags, thread_hint
from ground import errors
from ground.dtypes import ConfigError, parse_dtypes, parse_ops

__all__ = ["Parser", "build_parser", "add_timing_flags", "add_iter_flags", "add_run_flags", "run_fields",
           "parse_args", "check_against_ranks", "run", "main", "entry_points", "nonneg_int", "pos_int", "pos_float",
           "nonneg_float"]

class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, and prints help on rank 0 only."""

    quiet = False

    def error(self, message):
        raise ConfigError(message)

    def _print_message(self, message, file=None):
        if not self.quiet:
            super()._print_message(message, file)


def _whole(text, least: int, most: Optional[int] = None) -> int:
    digits = str(text).strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,19}", digits):  # int() would take '1_000' and other scripts' digits
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number")
    value = int(digits)
    if value < least:
        raise argparse.ArgumentTypeError(f"'{text}' must be at least {least}")
    if most is not None and value > most:
        raise argparse.ArgumentTypeError(f"'{text}' must be at most {most}")
    return value


MAX_SECONDS = 1e7  # about 115 days: longer is a typo (and past what alarm() takes)


def _finite(text, least: float, strictly: bool, most: Optional[float] = None) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' must be a finite number")
    if value < least or (strictly and value == least):
        raise argparse.ArgumentTypeError(f"'{text}' must be {'>' if strictly else '>='} {least:g}")
    if most is not None and value > most:
        raise argparse.ArgumentTypeError(f"'{text}' must be at most {most:g}")
    return value


def nonneg_int(text) -> int:
    return _whole(text, 0)


def pos_int(text) -> int:
    return _whole(text, 1)


def iterations(text) -> int:
    """-n, -w: a stamp per iteration is kept, so the count is bounded."""
    return _whole(text, 1, MAX_GIVEN_ITERS)


def warmups(text) -> int:
    return _whole(text, 0, MAX_GIVEN_ITERS)


def checks(text) -> int:
    return _whole(text, 0, MAX_CHECKS)


def pos_float(text) -> float:
    return _finite(text, 0.0, strictly=True)


def nonneg_float(text) -> float:
    return _finite(text, 0.0, strictly=False)


def seconds(text) -> float:
    """A time limit: finite, 0 (never) to :data:`MAX_SECONDS`."""
    return _finite(text, 0.0, strictly=False, most=MAX_SECONDS)


def _path(flag: str):
    def parse(text: str) -> str:
        if not str(text).strip():
            raise argparse.ArgumentTypeError("needs a file name (an empty path writes nothing)")
        return errors.length_checked(text, argparse.ArgumentTypeError)  # before anything runs
    parse.__name__ = f"{flag} path"
    return parse


def add_timing_flags(g, warmup: int) -> None:
    """nccl-tests' timing flags, shared by every runner: -n -w -c -a -T."""
    g.add_argument("-n", "--iters", type=iterations,
                   help="timed iterations per size, 1 to 10000000 (default: chosen from --time-budget)")
    g.add_argument("-w", "--warmup_iters", type=warmups, default=warmup,
                   help=f"untimed warm-up iterations (default {warmup})")
    g.add_argument("-c", "--check", type=checks, default=1,
                   help=f"validated runs per size, outside the timed loop, up to {MAX_CHECKS}; 0 disables "
                   "(default 1)")
    g.add_argument("-a", "--average", type=int, choices=(0, 1, 2, 3), default=1,
                   help="time across ranks: 0 rank 0, 1 average, 2 min, 3 max (default 1)")
    g.add_argument("-T", "--timeout", type=seconds, default=300.0,
                   help="abort if one collective, or any step between and after them (validation, closing), "
                   "makes no progress for this many seconds; 0: never (default 300)")
    g.add_argument("--startup-timeout", type=seconds, default=DEFAULT_STARTUP_TIMEOUT, metavar="SECONDS",
                   help="abort if starting up once MPI runs (starting the transport: imports, rendezvous; "
                   "allocating and touching buffers) takes longer than this; 0: never (default "
                   f"{DEFAULT_STARTUP_TIMEOUT:g})")


def add_iter_flags(g) -> None:
    """``--iter-times[=CAP]`` and ``--iter-skip K``: per-iteration samples per rank (facts.per_rank)."""
    g.add_argument("--iter-times", nargs="?", type=pos_int, const=DEFAULT_CAP, metavar="CAP",
                   help="keep each rank's per-iteration times in the JSON (at most CAP per rank and size, "
                   f"a uniform sample beyond; default {DEFAULT_CAP}) with p50/p95/p99, stdev and CV per rank")
    g.add_argument("--iter-skip", type=nonneg_int, metavar="K",
                   help="with --iter-times: leave each rank's first K iterations out of its samples and "
                   "statistics (time_us still counts every iteration)")


def add_run_flags(g, transport_help: str = "shm, mpi, gloo, nccl, hccl, torch-mpi, poplar, or auto "
                  "(default: shm when all ranks share a host, else mpi); see python -m transports") -> None:
    """collscale's flags shared by every runner: transport, device, outputs, budget, seed."""
    g.add_argument("--transport", default="auto", help=transport_help)
    g.add_argument("--device", choices=("cpu", "cuda", "hpu"),
                   help="torch transports: where tensors live (default: cpu for gloo, cuda for nccl, hpu "
                   "for hccl); the GPU is chosen by local rank")
    g.add_argument("--iface", metavar="NAME",
                   help="network interface for gloo/nccl/hccl traffic and the rendezvous (sets "
                   "GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME)")
    g.add_argument("--json", metavar="PATH", type=_path("--json"),
                   help="append one JSON line per measured row to PATH (collscale JSON Lines only)")
    g.add_argument("--csv", metavar="PATH", type=_path("--csv"),
                   help="append one CSV row per measured row to PATH (a new file, or one with collscale's header)")
    g.add_argument("--time-budget", type=pos_float, default=0.05, metavar="SECONDS",
                   help="timed seconds per size and placement when -n is not given (default 0.05)")
    g.add_argument("--seed", type=int, default=0, help="seed of the validation inputs (default 0)")


def run_fields(a) -> dict:
    """The Config fields that :func:`add_timing_flags` and :func:`add_run_flags` gave."""
    if a.json and a.csv and os.path.realpath(a.json) == os.path.realpath(a.csv):
        raise ConfigError(f"--json and --csv name the same file ({a.json}): give two files")
    if getattr(a, "iter_skip", None) is not None and not getattr(a, "iter_times", None):
        raise ConfigError("--iter-skip drops samples of --iter-times: give --iter-times too")
    if getattr(a, "iter_times", None) and not a.json:
        raise ConfigError("--iter-times keeps the samples in the JSON Lines: give --json FILE")
    if getattr(a, "iter_skip", None) and a.iters is not None and a.iter_skip >= a.iters:
        raise ConfigError(f"--iter-skip {a.iter_skip} leaves none of -n {a.iters} iterations: skip fewer")
    iter_fields = dict(iter_times=a.iter_times, iter_skip=a.iter_skip or 0) if hasattr(a, "iter_times") else {}
    return dict(**iter_fields, iters=a.iters, warmup=a.warmup_iters, check=a.check, average=a.average,
                transport=a.transport.strip().lower(), json=a.json, csv=a.csv, time_budget=a.time_budget,
                timeout=a.timeout, startup_timeout=a.startup_timeout, seed=a.seed)


def build_parser(collective: str, quiet: bool = False) -> argparse.ArgumentParser:
    spec = specs.get(collective)
    p = Parser(
        prog=f"python -m collectives.{collective}",
        description=f"{collective}: {spec.summary}.  Measures time, algbw and busbw per size "
        "(nccl-tests columns) and validates every result.",
        epilog="Sizes accept K, M, G (powers of 1024).  Run under mpirun for more than one rank: "
        f"mpirun -n 8 python -m collectives.{collective}",
    )
    p.quiet = quiet
    g = p.add_argument_group("sizes (nccl-tests)")
    g.add_argument("-b", "--minbytes", help="smallest size (default 8)")
    g.add_argument("-e", "--maxbytes", help="largest size (default 64M)")
    g.add_argument("-f", "--stepfactor", type=pos_float, help="multiply the size by this (default 2)")
    g.add_argument("-i", "--stepbytes", help="add this many bytes per step instead of -f")
    g = p.add_argument_group("operation (nccl-tests)")
    g.add_argument("-d", "--datatype", default="float32",
                   help="int8 uint8 int32 uint32 int64 uint64 float16 bfloat16 float32 float64 "
                   "(or nccl-tests names float, half, double), a comma list, or all (default float32)")
    g.add_argument("-o", "--op", default="sum", help="sum prod min max avg, a comma list, or all (default sum)")
    g.add_argument("-r", "--root", default="0", help="root rank for broadcast and reduce, or all (default 0)")
    add_timing_flags(p.add_argument_group("timing (nccl-tests)"), warmup=5)
    g = p.add_argument_group("per-rank truth and groups")
    add_iter_flags(g)
    g.add_argument("--split", type=split.parse_spec, metavar="hosts|pairs|N",
                   help="measure in groups at once, each row naming its ranks and hosts: hosts (one group per "
                   "host), pairs (one rank per host, every pair of hosts in H-1 rounds, H for odd H), or N "
                   "(consecutive groups of N ranks)")
    g = p.add_argument_group("collscale")
    add_run_flags(g)
    g.add_argument("--algo", help="algorithm, where the transport has several (shm: flat, direct, ring)")
    g.add_argument("--buffer", help="where buffers live: shared (shm's zero-copy default) or host "
                   "(ordinary memory; shm copies in and out inside the timed call); with --transport mpi: "
                   "host (default) or cupy (GPU arrays; staged through host memory unless the MPI is "
                   "CUDA-aware)")
    place = g.add_mutually_exclusive_group()
    place.add_argument("--in-place", dest="placement", action="store_const", const="in")
    place.add_argument("--out-of-place", dest="placement", action="store_const", const="out")
    place.add_argument("--both", dest="placement", action="store_const", const="both",
                       help="measure out-of-place and in-place (default)")
    g.add_argument("--fresh-inputs", action="store_true",
                   help="rewrite each rank's input before every timed iteration, outside the clock, as a "
                   "training step rewrites its gradients (by default, as in nccl-tests, inputs stay the "
                   "same, and on CPUs a peer's unchanged buffer can stay in cache)")
    g.add_argument("--inject-fault", type=nonneg_int, metavar="RANK",
                   help="corrupt one element of RANK's result before each check: proves that "
                   "validation catches errors (the run then exits 1)")
    add_loop_flags(g)
    model_column.add_fabric_flag(g)
    gates.add_gate_flags(p.add_argument_group("gates (exit 4 below expectation)"))
    return p


def parse_args(collective: str, argv: Sequence[str], quiet: bool = False) -> Config:
    """Parse and check everything that does not depend on the rank count."""
    spec = specs.get(collective)
    a = build_parser(collective, quiet).parse_args(list(argv))
    if a.stepfactor is not None and a.stepbytes is not None:
        raise ConfigError("give either -f (step factor) or -i (step bytes), not both")
    min_given, max_given = a.minbytes is not None, a.maxbytes is not None
    lo = parse_size(a.minbytes) if min_given else DEFAULT_MIN
    hi = parse_size(a.maxbytes) if max_given else DEFAULT_MAX
    if min_given and not max_given:
        hi = max(hi, lo)
    if max_given and not min_given:
        lo = min(lo, hi)
    if hi < 1:
        raise ConfigError("sizes must be at least 1 byte (-e)")
    if lo < 1:
        raise ConfigError("sizes must be at least 1 byte (-b)")
    if lo > hi:
        raise ConfigError(f"minimum size {lo} B (-b) is larger than the maximum {hi} B (-e)")
    if a.stepfactor is not None and a.stepfactor <= 1:
        raise ConfigError("-f (step factor) must be greater than 1")
    step_bytes = parse_size(a.stepbytes) if a.stepbytes is not None else None
    if step_bytes is not None and step_bytes < 1:
        raise ConfigError("-i (step bytes) must be at least 1")
    factor = a.stepfactor if a.stepfactor is not None else (None if step_bytes else 2.0)
    sizes = sweep_sizes(lo, hi, factor, step_bytes) if spec.sized else (0,)
    step = f"{factor:g}(factor)" if factor else f"{step_bytes}(bytes)"
    size_flags = f"minBytes {lo} maxBytes {hi} step: {step}"

    if a.root.strip().lower() == "all":
        root = None
    else:
        try:
            root = int(a.root)
        except ValueError:
            raise ConfigError(f"invalid root '{a.root}' (a rank number or all)") from None
        if root < 0:
            raise ConfigError(f"invalid root {root}: ranks start at 0")

    placements = {"in": ("in",), "out": ("out",)}.get(a.placement, ("out", "in"))
    return Config(
        spec=spec,
        sizes=sizes,
        size_flags=size_flags,
        dtypes=parse_dtypes(a.datatype),
        ops=parse_ops(a.op),
        root=root,
        placements=placements,
        fresh_inputs=a.fresh_inputs,
        inject_fault=a.inject_fault, fabric=a.fabric, split=a.split, gate=gates.from_args(a, sizes, spec.sized),
        transport_options=TransportOptions(algo=a.algo, buffer=a.buffer, device=a.device, iface=a.iface, loop=a.loop, cuda_graph=a.cuda_graph),
        **run_fields(a),
    )


def check_against_ranks(cfg: Config, nranks: int) -> None:
    """The checks that need the rank count; identical on every rank.  Under --split each group is checked
    by :mod:`collectives.split` before anything runs; here the job (--inject-fault names a job rank)."""
    if cfg.split is not None:
        if cfg.inject_fault is not None and cfg.inject_fault >= nranks:
            raise ConfigError(f"--inject-fault {cfg.inject_fault}: this job has {nranks} ranks")
        return
    check_group(cfg, nranks)


def run(collective: str, comm=None, argv: Sequence[str] = (), sinks=None) -> List[dict]:
    """Measure ``collective`` in-process and return the records (prints nothing).

    ``comm`` is an mpi4py communicator, a :class:`ground.comm.Comm`, or None
    for the job's world.  ``sinks`` receive the records as they are measured;
    files named by ``--json``/``--csv`` are written on rank 0 either way.
    """
    from ground.comm import as_comm

    comm = as_comm(comm)
    cfg = parse_args(collective, argv, quiet=comm.rank != 0)
    check_against_ranks(cfg, comm.size)
    return harness.run(comm, cfg, list(sinks or []))


def main(collective: str, argv: Optional[Sequence[str]] = None) -> int:
    """``python -m collectives.NAME``: run, print the table on rank 0, and end the process with
    the exit status (after a clean start; see :func:`process_main`; use :func:`run` in-process)."""
    argv = sys.argv[1:] if argv is None else list(argv)

    parsed: List[Config] = []

    def body(comm, tweaks, table, watchdog):
        cfg = parse_args(collective, argv, quiet=comm.rank != 0)
        parsed.append(cfg)
        check_against_ranks(cfg, comm.size)
        return harness.run(comm, cfg, table, env_tweaks=tweaks, watchdog=watchdog)

    def judge(records) -> List[str]:
        return gates.below(parsed[0].gate, records) if parsed and parsed[0].gate else []
    return process_main(body, thread_hint(argv, getattr(specs.find(collective), "sized", True)), judge)


def entry_points(collective: str):
    """``(run, main)`` for one collective's module: ``run(comm, argv)`` and ``main(argv=None)``."""
    specs.get(collective)

    def run_one(comm=None, argv: Sequence[str] = (), sinks=None) -> List[dict]:
        return run(collective, comm, argv, sinks)

    def main_one(argv: Optional[Sequence[str]] = None) -> int:
        return main(collective, argv)

    run_one.__doc__ = f"Measure {collective} in-process and return the records (see collectives.cli.run)."
    main_one.__doc__ = f"python -m collectives.{collective}: print the table, return the exit status."
    return run_one, main_one
