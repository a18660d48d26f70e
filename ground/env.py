"""Who am I: rank, local rank, ranks per host and host count under any launcher.

The launcher variables (docs/reference.md, "Launcher variables", with the launchers' documentation):

=============  ====================  ==================  =============  ===================
               Open MPI              MPICH Hydra / IMPI  Slurm (srun)   PBS Pro + Cray PALS
=============  ====================  ==================  =============  ===================
rank           OMPI_COMM_WORLD_RANK  PMI_RANK            SLURM_PROCID   PALS_RANKID
size           OMPI_COMM_WORLD_SIZE  PMI_SIZE            SLURM_NTASKS   (from MPI)
local rank     ..._LOCAL_RANK        MPI_LOCALRANKID     SLURM_LOCALID  PALS_LOCAL_RANKID
local size     ..._LOCAL_SIZE        MPI_LOCALNRANKS     (tasks/node)   PALS_LOCAL_SIZE
=============  ====================  ==================  =============  ===================

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE.

This module reads the environment only; it never initialises MPI, because
some MPI settings (MPICH's progress throttle) must be in the environment
*before* ``MPI_Init``.  Once the ranks are up, the harness gathers every
rank's host name and CPU affinity, which is authoritative for placement and
oversubscription (:func:`usable_cores`).
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence

__all__ = [
    "LaunchEnv",
    "detect",
    "host_cores",
    "affinity",
    "usable_cores",
    "is_oversubscribed",
    "oversubscription_settings",
    "apply_oversubscription_settings",
    "slurm_tasks_on_node",
    "emulation",
    "sweep_point",
    "ranks_sharing_cores",
]


@dataclass(frozen=True)
class LaunchEnv:
    """What the launcher told this process about itself.

    ``rank`` and ``size`` are None when no launcher is detected (a plain
    ``python -m ...`` run, which is one rank).  ``local_size`` is None when
    the launcher does not say how many ranks share this host.
    """

    launcher: str
    rank: Optional[int]
    size: Optional[int]
    local_rank: Optional[int]
    local_size: Optional[int]
    host: str
    nhosts: Optional[int] = None

    @property
    def launched(self) -> bool:
        return self.launcher != "none"


def _ceil_div(a: Optional[int], b: Optional[int]) -> Optional[int]:
    return -(-a // b) if a and b else None


def _nodefile_hosts(path: Optional[str]) -> Optional[int]:
    """Distinct hosts in a PBS_NODEFILE (one line per rank slot)."""
    if not path:
        return None
    try:
        with open(path) as f:
            return len({line.strip() for line in f if line.strip()}) or None
    except OSError:
        return None


def _int(env: Mapping[str, str], *names: str) -> Optional[int]:
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                continue
    return None


def slurm_tasks_on_node(tasks_per_node: str, node_id: int) -> Optional[int]:
    """Ranks on node ``node_id`` from SLURM_TASKS_PER_NODE, e.g. ``"2(x3),1"``.

    Slurm compresses the per-node task counts as ``count(xrepeat)`` items.
    """
    counts = []
    for item in tasks_per_node.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", item)
        if not match:
            return None
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts[node_id] if 0 <= node_id < len(counts) else None


def detect(env: Optional[Mapping[str, str]] = None) -> LaunchEnv:
    """Read rank and placement from the launcher's environment variables.

    Precedence follows who actually started the process: an MPI launcher's
    own variables win over Slurm's (``mpirun`` inside an allocation leaves the
    batch step's SLURM_PROCID=0 in every rank), and torchrun's over Slurm's.
    """
    env = os.environ if env is None else env
    host = socket.gethostname()
    # Host counts: what the launcher states (Slurm, PBS node file, torchrun's
    # node count), else size / ranks-per-host assuming an even spread.
    if "OMPI_COMM_WORLD_RANK" in env:
        size, local = _int(env, "OMPI_COMM_WORLD_SIZE"), _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE")
        return LaunchEnv("openmpi", _int(env, "OMPI_COMM_WORLD_RANK"), size,
                         _int(env, "OMPI_COMM_WORLD_LOCAL_RANK"), local, host, _ceil_div(size, local))
    if "PALS_RANKID" in env:
        size, local = _int(env, "PMI_SIZE"), _int(env, "PALS_LOCAL_SIZE")
        return LaunchEnv("pals", _int(env, "PALS_RANKID"), size, _int(env, "PALS_LOCAL_RANKID"), local,
                         host, _nodefile_hosts(env.get("PBS_NODEFILE")) or _ceil_div(size, local))
    if "PMI_RANK" in env and "MPI_LOCALRANKID" in env:
        size, local = _int(env, "PMI_SIZE"), _int(env, "MPI_LOCALNRANKS")
        return LaunchEnv("hydra", _int(env, "PMI_RANK"), size, _int(env, "MPI_LOCALRANKID"), local,
                         host, _ceil_div(size, local))
    if "TORCHELASTIC_RUN_ID" in env or ("RANK" in env and "LOCAL_WORLD_SIZE" in env):
        size, local = _int(env, "WORLD_SIZE"), _int(env, "LOCAL_WORLD_SIZE")
        return LaunchEnv("torchrun", _int(env, "RANK"), size, _int(env, "LOCAL_RANK"), local, host,
                         _int(env, "GROUP_WORLD_SIZE") or _ceil_div(size, local))
    if "SLURM_PROCID" in env and "SLURM_STEP_ID" in env:
        node_id = _int(env, "SLURM_NODEID")
        tasks = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
        local_size = slurm_tasks_on_node(tasks, node_id) if tasks and node_id is not None else None
        return LaunchEnv(
            "slurm",
            _int(env, "SLURM_PROCID"),
            _int(env, "SLURM_NTASKS", "SLURM_NPROCS"),
            _int(env, "SLURM_LOCALID"),
            local_size,
            host,
            _int(env, "SLURM_STEP_NUM_NODES", "SLURM_NNODES", "SLURM_JOB_NUM_NODES"),
        )
    if "PMI_RANK" in env:
        return LaunchEnv("pmi", _int(env, "PMI_RANK"), _int(env, "PMI_SIZE"), None, None, host)
    return LaunchEnv("none", None, None, None, None, host, 1)


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> Optional[float]:
    """CPUs allowed by a cgroup v2 (``cpu.max``) or v1 (cfs quota) limit under ``root``, if any."""
    try:
        with open(os.path.join(root, "cpu.max")) as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:
            quota_us = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period_us = int(f.read())
        if quota_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def host_cores() -> int:
    """Cores this host gives us: the CPU count, capped by any cgroup quota.

    Not ``sched_getaffinity``: under ``mpirun --bind-to core`` that is the
    rank's own core, not the host's.
    """
    cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = max(1, min(cores, int(limit + 0.999)))
    return cores


def affinity() -> List[int]:
    """CPUs this process may run on (all of them where affinity is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def usable_cores(affinities: Sequence[Sequence[int]]) -> int:
    """Cores the ranks of one host can use together: the union of their
    affinities (taskset, cpusets, binding), capped by the host's cores and
    any cgroup CPU quota."""
    union = set()
    for cpus in affinities:
        union.update(cpus)
    return max(1, min(len(union) or host_cores(), host_cores()))


def is_oversubscribed(ranks_on_host: Optional[int], cores: Optional[int] = None) -> bool:
    """More ranks on this host than cores: every rank cannot run at once."""
    if not ranks_on_host:
        return False
    return ranks_on_host > (cores if cores is not None else host_cores())


def oversubscription_settings() -> dict:
    """Environment that keeps MPI usable when ranks outnumber cores.

    MPICH's ch4 device busy-polls, so ranks that share a core take
    milliseconds per small allreduce without the throttle and microseconds
    with it (docs/results/2026-11.md).
    Open MPI yields the core when idle if told to.
    """
    return {
        "MPIR_CVAR_CH4_PROGRESS_THROTTLE": "1",
        "OMPI_MCA_mpi_yield_when_idle": "1",
    }


def apply_oversubscription_settings(env=None) -> dict:
    """Put :func:`oversubscription_settings` into ``env`` where the user has not.

    Must run before ``MPI_Init``.  Returns what was actually set, for the
    header; a user's own value is never overwritten.
    """
    env = os.environ if env is None else env
    applied = {}
    for key, value in oversubscription_settings().items():
        if key not in env:
            env[key] = value
            applied[key] = value
    return applied


def emulation(env: Optional[Mapping[str, str]] = None) -> Optional[dict]:
    """What ``launch.emulate`` says about the emulated hosts (COLLSCALE_EMULATED), or None."""
    env = os.environ if env is None else env
    raw = env.get("COLLSCALE_EMULATED")
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"describe": str(raw)}


def sweep_point(env: Optional[Mapping[str, str]] = None) -> dict:
    """The sweep and point a run belongs to (set by ``launch.sweep`` and its job scripts)."""
    env = os.environ if env is None else env
    return {"id": env.get("COLLSCALE_SWEEP_ID") or None, "point": env.get("COLLSCALE_SWEEP_POINT") or None}


def ranks_sharing_cores(launched: LaunchEnv, env: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """Ranks that compete for this machine's cores: the ranks on this host, or
    every rank when the hosts are emulated on one machine."""
    if emulation(env) and launched.size:
        return launched.size
    return launched.local_size
