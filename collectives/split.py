"""``--split``: the job's ranks in groups that measure at once, each group's rows naming its ranks and hosts.

``--split hosts``: one group per host (its ranks), one round.  ``--split N``:
consecutive groups of N ranks (a job size N does not divide is exit 2), one
round.  ``--split pairs``: one rank per host (its lowest), hosts paired, every
pair of hosts in some round: the round-robin (circle) schedule covers the
H(H-1)/2 host pairs in H-1 rounds for an even host count and H rounds for an
odd one (one host sits each round out), every pair of a round at once.  That
is O(H) rounds where pairing by hand takes O(H^2) jobs.

Every group runs the whole sweep with a transport of its own over a
communicator of its ranks (MPI's ``Comm_Split``; shm within a host only; the
gloo rendezvous per group); the ranks outside any group of a round wait for
the round's end.  Each record carries ``split``, ``split_round``, ``group``,
``group_ranks`` and ``group_hosts``, and its per-rank fields name the job's
ranks.  Only rank 0 prints: its group's table, then one summary line per
group of every round; each group's first rank writes its rows to
``--json``/``--csv`` (appends are whole lines under a lock).  A group that
cannot start (a flag, a transport) ends the job with exit 2 on every rank
once the round is over, never a hang.
"""

from __future__ import annotations

import argparse
import socket
from contextlib import nullcontext
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from collectives.config import check_group
from ground.dtypes import ConfigError
from ground.sizes import human_size

__all__ = ["parse_spec", "pair_rounds", "plan", "describe", "run", "summary_line"]

Spec = Union[str, int]


def parse_spec(text: str) -> Spec:
    """argparse type of ``--split``: ``hosts``, ``pairs`` or a whole number of ranks per group."""
    t = str(text).strip().lower()
    if t in ("hosts", "pairs"):
        return t
    if t.isascii() and t.isdigit() and 0 < int(t) <= 1 << 24:
        return int(t)
    raise argparse.ArgumentTypeError(f"--split {text}: give hosts, pairs, or a number of ranks per group")


def pair_rounds(hosts: int) -> List[List[Tuple[int, int]]]:
    """Every pair of ``hosts`` hosts, in rounds of disjoint pairs (the circle method): H-1 rounds of H/2
    pairs for even H, H rounds of (H-1)/2 for odd H."""
    if hosts < 2:
        return []
    n = hosts + hosts % 2  # odd: a dummy host; its partner sits the round out
    ring = list(range(n))
    rounds = []
    for _ in range(n - 1):
        pairs = [(ring[i], ring[n - 1 - i]) for i in range(n // 2)]
        rounds.append([tuple(sorted(p)) for p in pairs if max(p) < hosts])
        ring = [ring[0], ring[-1]] + ring[1:-1]
    return rounds


def plan(spec: Spec, hosts: Sequence[str]) -> List[List[List[int]]]:
    """The rounds of ``spec`` for a job whose rank r runs on ``hosts[r]``: per round, its groups (ranks)."""
    size = len(hosts)
    order = list(dict.fromkeys(hosts))  # hosts in the order of their first rank
    if spec == "hosts":
        return [[[r for r in range(size) if hosts[r] == h] for h in order]]
    if spec == "pairs":
        if len(order) < 2:
            raise ConfigError(f"--split pairs pairs hosts: this job runs on {len(order)} host (use --split hosts "
                              "or N, or more hosts)")
        leader = [min(r for r in range(size) if hosts[r] == h) for h in order]
        return [[[leader[a], leader[b]] for a, b in rnd] for rnd in pair_rounds(len(order))]
    n = int(spec)
    if size % n:
        raise ConfigError(f"--split {n}: {size} ranks do not divide into groups of {n}")
    return [[list(range(i, i + n)) for i in range(0, size, n)]]


def describe(spec: Spec, rounds: List[List[List[int]]], hosts: Sequence[str]) -> str:
    groups = sum(len(r) for r in rounds)
    return (f"split {spec}: {groups} group{'s' * (groups != 1)} in {len(rounds)} round{'s' * (len(rounds) != 1)}"
            f" over {len(set(hosts))} host{'s' * (len(set(hosts)) != 1)}")


def summary_line(recs: Sequence[Dict]) -> Optional[str]:
    """One group's result in a line: its ranks and hosts, its largest size's busbw and slowest rank."""
    ok = [r for r in recs if r.get("status") in ("ok", "wrong")]
    if not ok:
        return None
    top = max(ok, key=lambda r: (r.get("size_bytes") or 0, not r.get("in_place")))
    busbw = top.get("busbw_gbs")
    return (f"round {top['split_round']} group {top['group']}: ranks {top['group_ranks']} on "
            f"{top['group_hosts']}: {human_size(top.get('size_bytes'))} {top.get('time_us', 0):.2f} us"
            + (f", busbw {busbw:.3f} GB/s" if isinstance(busbw, (int, float)) else "")
            + f", slowest rank {top.get('slowest_rank')} ({top.get('slowest_host')})"
            + (f", {sum(r.get('wrong') or 0 for r in recs)} wrong" if any(r.get("wrong") for r in recs) else ""))


def run(comm, cfg, sinks, env_tweaks, watchdog, measure: Callable) -> List[Dict]:
    """Measure ``cfg`` in the groups of ``cfg.split`` (see the module docstring); the records of every
    group, the same on every rank.  ``measure(comm, cfg, sinks, env_tweaks, watchdog, group)`` runs one
    group's sweep (:func:`collectives.harness.run`)."""
    from collectives import context
    from collectives.runner import StartupError

    splittable = getattr(comm, "split", None) is not None and (comm.size == 1 or getattr(comm, "mpi", None) is not None)
    if not splittable:
        raise ConfigError("--split needs an MPI launcher (mpirun, srun): its groups are MPI communicators")
    hosts = comm.allgather(socket.gethostname())
    rounds = plan(cfg.split, hosts)
    for ri, rnd in enumerate(rounds):  # every group against the flags, on every rank, before anything runs
        for gi, g in enumerate(rnd):
            check_group(cfg, len(g), f"group {gi} of split round {ri} (ranks {','.join(map(str, g))})")
    if str(cfg.transport).lower() == "shm" and any(len({hosts[r] for r in g}) > 1 for rnd in rounds for g in rnd):
        raise ConfigError(f"--split {cfg.split} puts ranks of several hosts in a group and shm works within a "
                          "host: use --transport mpi or gloo")
    if comm.rank == 0:
        for s in sinks:
            s.note(describe(cfg.split, rounds, hosts))
    every: List[Dict] = []
    lines: List[str] = []
    for index, groups in enumerate(rounds):
        mine = next((g for g, ranks in enumerate(groups) if comm.rank in ranks), None)
        if comm.rank == 0:
            here = (f"rank 0's group {mine}: ranks {','.join(map(str, groups[mine]))}" if mine is not None
                    else "rank 0 sits this round out")
            for s in sinks:
                s.note(f"split round {index}: {len(groups)} group{'s' * (len(groups) != 1)} at once; {here}")
        sub = comm.split(mine)
        failure = None
        recs: List[Dict] = []
        if sub is not None:
            ranks = groups[mine]
            fields = {"split": str(cfg.split), "split_round": index, "group": mine,
                      "group_ranks": ",".join(map(str, ranks)),
                      "group_hosts": ",".join(dict.fromkeys(hosts[r] for r in ranks))}
            group_cfg = cfg if sub.rank == 0 else replace(cfg, json=None, csv=None)
            try:
                recs = measure(sub, group_cfg, sinks if comm.rank == 0 else [], env_tweaks, watchdog,
                               {"fields": fields, "ranks": ranks})
            except (ConfigError, StartupError) as exc:  # agreed within the group: the job learns at the round's end
                failure = (type(exc).__name__, f"group {mine} (ranks {fields['group_ranks']}): {exc}")
            finally:
                if hasattr(sub, "free"):
                    sub.free()
        # Paused here: a group that hangs is ended by its own ranks' watchdogs, whose line names the
        # point and the group (its ranks and hosts); the ranks that wait for it must not fire first.
        with watchdog.local(f"waiting for the other groups of split round {index}") if watchdog else nullcontext():
            gathered = comm.allgather((failure, recs if sub is not None and not failure and
                                       recs and _first(recs, comm.rank) else None))
        failures = [f for f, _ in gathered if f]
        if failures:
            kind, message = failures[0]
            raise (StartupError if kind == "StartupError" else ConfigError)(message)
        for _, r in gathered:
            if r:
                every.extend(r)
                line = summary_line(r)
                if line:
                    lines.append(line)
    if watchdog is not None:
        watchdog.ranks = comm.allgather(context.rank_entry(comm))  # the job's ranks, for the end of the job
    if comm.rank == 0:
        for s in sinks:
            for line in lines:
                s.note(line)
    return every


def _first(recs: Sequence[Dict], rank: int) -> bool:
    """Whether this rank is its group's first (the one that reports the group's records)."""
    ranks = str(recs[0].get("group_ranks") or "").split(",")
    return bool(ranks) and ranks[0] == str(rank)
