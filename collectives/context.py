"""Who runs where: the run's context, gathered once and identical on every rank.

:func:`gather` collects each rank's host, pid and CPU affinity, the hosts
and which ranks share one, oversubscription (more ranks than usable cores),
emulation and sweep labels, the run id, the transport's own description and
the versions; the header (:mod:`collectives.header`) and every record
(:func:`facts.record.context_fields`) are made from it.
"""

from __future__ import annotations

import os
import platform
import socket
import uuid
from datetime import datetime, timezone
from typing import Dict, List, Optional, Tuple

import numpy as np

from ground.version import __version__
from ground import env as launch_env

__all__ = ["gather", "rank_entry", "proc_start", "memory_here"]


def _cpus() -> str:
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return "?"
    if cpus and cpus == list(range(cpus[0], cpus[-1] + 1)):
        return f"{cpus[0]}-{cpus[-1]}" if len(cpus) > 1 else str(cpus[0])
    return ",".join(map(str, cpus))


def memory_here(ctx: Dict) -> Optional[Tuple[int, int, str]]:
    """(MemAvailable in bytes, ranks of this job on this host, host name), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    host = socket.gethostname()
    return available, len(ctx["hosts"].get(host, [])) or 1, host


def proc_start(pid: int) -> Optional[int]:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _pidns() -> Optional[str]:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def rank_entry(comm) -> Dict:
    """This rank as ``ctx["ranks"]`` lists it: rank, pid, host, affinity, cpus, start time, pid namespace."""
    return {
        "rank": comm.rank,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "affinity": launch_env.affinity(),
        "cpus": _cpus(),
        # Which process this pid is (start time, pid namespace): the end of the
        # job waits for a host's ranks by pid and must not mistake a reused one.
        "start": proc_start(os.getpid()),
        "pidns": _pidns(),
    }


def gather(comm, transport, env_tweaks: Optional[Dict] = None) -> Dict:
    """Placement, versions and settings, identical on every rank."""
    ranks = comm.allgather(rank_entry(comm))
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
        "env_tweaks": dict(env_tweaks or {}),
        "transport": desc,
        "versions": {
            "collscale_version": __version__,
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
