"""The one record format, and the one place records are built.

A *record* is a flat dict: one measured (or modelled, or failed) row.  Every
record in the project comes from :func:`new` — the harness's rows, weight
streaming's rows, a sweep's failed point, :mod:`analysis.predict`'s
modelled rows — so they all carry every field of :data:`FIELDS` (None
where a field does not apply), the :data:`SCHEMA` tag the loader checks,
``kind`` (measured or modelled) and a timestamp.

This module imports no MPI and nothing from the transports, so
``analysis`` may use it (docs/ARCHITECTURE.md, design rule 9).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Dict, Mapping, Optional

from facts import per_rank

__all__ = ["SCHEMA", "FIELDS", "KINDS", "now", "new", "timing_fields", "context_fields", "transport_fields"]

# Every record says what it is, so the loader can refuse foreign files.
SCHEMA = "collscale.row/1"

# Column order of CSV and of each JSON object.  Records may carry more keys
# (JSON keeps them); these are always present.  ``loop``: which timed loop ran
# (compiled: iterations in C; python; cuda-graph); ``thread_level``: the MPI
# thread level of the measured calls (mpi transport only); ``slowest_rank``
# and ``slowest_host``: facts.per_rank, whose nested fields are JSON only.
FIELDS = (
    "schema", "kind", "status", "run_id", "timestamp", "collective", "transport", "algo",
    "buffer", "nranks", "nhosts", "ranks_per_host", "oversubscribed", "size_bytes", "count",
    "dtype", "op", "op_impl", "root", "in_place", "iters", "warmup", "fresh_inputs", "loop", "thread_level",
    "aggregation", "time_us",
    "time_us_min", "time_us_p50", "time_us_p99", "time_us_max", "time_us_rank_min",
    "time_us_rank_max", "slowest_rank", "slowest_host", "split", "split_round", "group", "group_ranks",
    "group_hosts", "algbw_gbs", "busbw_gbs", "busbw_factor", "wrong", "checks", "reason",
    "hosts", "emulated", "emulated_link_gbs", "sweep_id", "sweep_point", "transport_version", "collscale_version",
    "python_version", "numpy_version", "mpi4py_version",
)

# A modelled number is never shown as a measured one (docs/ARCHITECTURE.md, design rule 7).
KINDS = ("measured", "modelled")


def now(timespec: str = "milliseconds") -> str:
    """The timestamp every record carries: UTC, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


def new(kind: str, status: str, **fields) -> Dict:
    """A record with every field of :data:`FIELDS` (None unless given), the
    schema tag and a timestamp; extra keyword fields are kept after them."""
    if kind not in KINDS:
        raise ValueError(f"record kind {kind!r}: must be one of {', '.join(KINDS)}")
    rec = dict.fromkeys(FIELDS)
    rec.update(schema=SCHEMA, kind=kind, status=status, timestamp=now())
    rec.update(fields)
    return rec


def timing_fields(iters: int, stats: Mapping, size_bytes: int, factor: float,
                  hosts: Optional[Mapping[int, str]] = None, ranks=None) -> Dict:
    """The timing part of a record: times (us), algbw = S/t, busbw = algbw * factor, and the per-rank truth.

    ``stats`` holds the cross-rank statistics of the timed loop: mean, min,
    p50, p99, max and the slowest/fastest rank's mean (rank_min, rank_max);
    with ``rank_means`` (and ``iterations``) the fields of
    :func:`facts.per_rank.fields` are added, ``hosts`` naming each rank's host (``ranks``: the job's
    rank of each position, for a group of ``--split``).
    """
    algbw = size_bytes / (stats["mean"] * 1e-6) / 1e9 if size_bytes else 0.0
    truth = per_rank.fields(stats["rank_means"], hosts or {}, stats.get("iterations"), ranks) \
        if stats.get("rank_means") is not None else {}
    return {**truth,
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
        "timestamp": now(),
    }


def transport_fields(ctx: Mapping) -> Dict:
    """What the transport said about itself (its ``describe()``), as record fields."""
    d = ctx["transport"]
    return {
        "transport": d["transport"],
        "transport_version": d.get("transport_version"),
        "buffer": d.get("buffer", "host"),
        # The MPI thread level of the measured calls (mpi transport; None elsewhere).
        "thread_level": d.get("thread_level"),
    }


def context_fields(ctx: Mapping) -> Dict:
    """Record fields that describe the run rather than the point: placement,
    emulation, sweep and versions (shared by every runner's records)."""
    hosts = ctx["hosts"]
    emulated = ctx.get("emulated") or {}
    sweep = ctx.get("sweep") or {}
    bits: Optional[float] = emulated.get("rate_bits")
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
