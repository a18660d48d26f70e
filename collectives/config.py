"""The frozen :class:`Config` of one run, and the facts the front ends share.

A Config is built once (by :mod:`collectives.cli` from argv, or by another
runner's front end) and read by the runner core and the harness; it holds
the collective's :class:`~facts.spec.CollectiveSpec` itself, resolved
once, and the transport's options typed (:class:`TransportOptions`).

Also here: the exit codes every entry point uses and the iteration limits
of the timed loop; size parsing (nccl-tests' K/M/G suffixes, powers of
1024) is :mod:`ground.sizes`, re-exported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

from facts.spec import CollectiveSpec
from ground.dtypes import ConfigError, DType, Op
from ground.errors import (EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE,  # noqa: F401
                           EXIT_WRONG)
from ground.sizes import DEFAULT_MAX, DEFAULT_MIN, MAX_SIZES, parse_size, sweep_sizes
from transports.base import TransportOptions

__all__ = ["Config", "TransportOptions", "parse_size", "sweep_sizes",
           "EXIT_OK", "EXIT_WRONG", "EXIT_USAGE", "EXIT_ERROR", "EXIT_TIMEOUT", "EXIT_INTERRUPTED",
           "MAX_ITERS", "MIN_ITERS", "MAX_GIVEN_ITERS", "MAX_CHECKS", "MAX_SIZES", "DEFAULT_MIN", "DEFAULT_MAX",
           "DEFAULT_STARTUP_TIMEOUT", "check_group"]


MAX_ITERS = 100_000  # the most iterations --time-budget picks
MIN_ITERS = 5
MAX_GIVEN_ITERS = 10_000_000  # -n and -w (a stamp per iteration is kept: 80 MB at this count)
MAX_CHECKS = 10_000  # -c
DEFAULT_STARTUP_TIMEOUT = 300.0


@dataclass(frozen=True)
class Config:
    """Everything one run needs, checked; identical on every rank.

    ``spec`` is the collective measured (None for runners that measure a
    pattern of their own, which then name themselves through
    :attr:`collective`).
    """

    spec: Optional[CollectiveSpec]
    sizes: Tuple[int, ...]
    size_flags: str  # how the sweep was asked for, for the header
    iters: Optional[int]  # None: chosen per size from time_budget
    warmup: int
    check: int
    dtypes: Tuple[DType, ...]
    ops: Tuple[Op, ...]
    root: Optional[int]  # None: every root in turn (-r all)
    average: int
    transport: str
    json: Optional[str]
    csv: Optional[str]
    time_budget: float
    placements: Tuple[str, ...]
    timeout: float
    fresh_inputs: bool
    seed: int
    inject_fault: Optional[int]
    transport_options: TransportOptions = field(default_factory=TransportOptions)
    # Start-up (imports, rendezvous, allocating and touching buffers) is
    # bounded by this rather than by -T: it is work that progresses.
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    # --fabric: each row's busbw beside this fabric's model (collectives.model_column); None: not compared.
    fabric: Optional[str] = None
    # --min-busbw / --min-pct-model: the bars of collectives.gates; None: not judged (exit 4 below them).
    gate: Optional[object] = None
    # --iter-times[=CAP] / --iter-skip K: per-iteration samples per rank (facts.per_rank); None: not kept.
    iter_times: Optional[int] = None
    iter_skip: int = 0
    # --split hosts|pairs|N: concurrent groups of ranks (collectives.split); None: the job is one group.
    split: Optional[object] = None

    @property
    def collective(self) -> str:
        return self.spec.name

    @property
    def csv_fields(self) -> Tuple[str, ...]:
        """The ``--csv`` columns: every record field (runners with summary columns of their own add them)."""
        from facts.record import FIELDS

        return FIELDS

    @property
    def aggregation(self) -> str:
        return ("rank0", "avg", "min", "max")[self.average]


def check_group(cfg: Config, nranks: int, who: str = "this job") -> None:
    """The checks of ``cfg`` against the ranks that run it (``who``: "this job", or a group of --split)."""
    spec = cfg.spec
    if spec.exact_ranks is not None and nranks != spec.exact_ranks:
        hint = "" if who != "this job" else \
            f" (mpirun -n {spec.exact_ranks} python -m collectives.{cfg.collective})"
        raise ConfigError(f"{cfg.collective} needs exactly {spec.exact_ranks} ranks, {who} has {nranks}{hint}")
    if spec.rooted and cfg.root is not None and cfg.root >= nranks:
        raise ConfigError(f"root {cfg.root} does not exist: {who} has {nranks} ranks (0..{nranks - 1})")
    if not set(cfg.placements) & set(spec.placements):
        raise ConfigError(f"{cfg.collective} has no in-place form (drop --in-place)")
    if cfg.inject_fault is not None and cfg.inject_fault >= nranks and who == "this job":
        raise ConfigError(f"--inject-fault {cfg.inject_fault}: this job has {nranks} ranks")
