"""What a replication run may take of its host, decided before anything is built.

The ranks that share a machine (its host name, or under ``launch.emulate``
the real machine behind every emulated host: :func:`machine_key`) share its
cores and memory (:class:`HostShare`).  :func:`host_limits` gives each rank its
threads and refuses what the machine cannot hold (``--threads`` above the
usable cores without ``--oversubscribe``; model state plus the largest
batch's activations, times the ranks on the machine, above the memory
available: :mod:`facts.host_limits`); :func:`threads_line` is the header's
line on who shares which cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from collectives.config import Config

__all__ = ["HostShare", "machine_key", "share_of", "state_bytes", "element_bytes", "host_limits", "threads_line",
           "BYTES_PER_PARAM"]

BYTES_PER_PARAM = {"adam": 4 * 7, "sgd": 4 * 5}


def machine_key() -> str:
    """What identifies the machine whose cores and memory this rank shares: its host name, or under
    launch.emulate the real machine (every emulated host's namespace has a host name of its own)."""
    import socket

    from ground import env as launch_env

    emulated = launch_env.emulation()
    if emulated:
        return "emulated:" + str(emulated.get("machine_id") or emulated.get("machine") or "")
    return socket.gethostname()


@dataclass(frozen=True)
class HostShare:
    """This rank's view of the machine it shares: the ranks on it, the hosts they appear as (more
    than one when emulated), the cores they can use together and the memory it has available."""

    ranks: int
    hosts: int
    cores: int
    available: Optional[int]
    emulated: bool = False

    @property
    def where(self) -> str:
        return "this machine" if self.emulated else "this host"


def share_of(ctx: Dict, keys: Sequence[str], rank: int, available: Optional[int]) -> HostShare:
    """The ranks whose machine key is this rank's share its cores (their affinities' union, capped by
    any quota) and its memory."""
    from ground import env as launch_env

    mine = [i for i, k in enumerate(keys) if k == keys[rank]]
    cores = max(1, launch_env.usable_cores([ctx["ranks"][i]["affinity"] for i in mine]))
    hosts = len({ctx["ranks"][i]["host"] for i in mine})
    return HostShare(len(mine), hosts, cores, available, keys[rank].startswith("emulated:"))


def state_bytes(cfg: Config, params: int) -> int:
    return params * BYTES_PER_PARAM[cfg.optimizer] * element_bytes(cfg) // 4


def element_bytes(cfg: Config) -> int:
    return 2 if cfg.dtypes[0].name == "bfloat16" else 4


def host_limits(cfg: Config, w, share: HostShare, cpu: bool = True) -> Tuple[int, List[str], List[str]]:
    """(threads per rank, refusals, notes) for this rank's machine, before anything is built.

    Threads: ``--threads`` above the usable cores is refused without ``--oversubscribe``; by default
    the cores are shared among the ranks on the machine (every emulated host's ranks together).
    Memory: model state and the largest batch's activations, times the ranks on the machine,
    against what it has available."""
    from facts import host_limits as hl

    refusals: List[str] = []
    notes: List[str] = []
    threads = cfg.threads or max(1, share.cores // share.ranks)
    if cpu and cfg.threads:
        if not cfg.oversubscribe:
            refusal = hl.threads_refusal(cfg.threads, share.cores, share.where)
            if refusal:
                refusals.append(refusal)
        note = hl.threads_note(cfg.threads, share.ranks, share.cores, share.where)
        if note:
            notes.append(note)
    if not cpu:  # model and activations live in the device's memory, which torch checks itself
        return threads, refusals, notes
    batch = max(cfg.sizes)
    seq = cfg.seq or (128 if w.model_input.kind == "tokens" else None)
    per_sample = hl.activation_bytes(w, 1, seq, element_bytes(cfg))
    refusal = hl.memory_refusal(w.name, batch, state_bytes(cfg, w.params), per_sample, share.ranks,
                                share.available, share.where, w.params,
                                f"weights, gradients, DDP buckets and {cfg.optimizer} state")
    if refusal:
        refusals.append(refusal)
    return threads, refusals, notes


def threads_line(cfg: Config, share: HostShare, threads: int) -> str:
    """The header's line on who shares which cores."""
    def n(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"

    given = " (--threads)" if cfg.threads else ""
    if share.emulated:
        who = f"{n(share.ranks, 'rank')} on {n(share.hosts, 'emulated host')}"
        cores = f"this machine's {n(share.cores, 'core')}"
    else:
        who, cores = f"{n(share.ranks, 'rank')} on this host", f"its {n(share.cores, 'usable core')}"
    if share.ranks == 1:
        return f"# threads: {who}, {cores}: {n(threads, 'thread')}{given}"
    return f"# threads: {who} share {cores}: {n(threads, 'thread')} each{given}"
