"""One emulated host of :mod:`launch.emulate`: how a process enters it, and what sets it apart.

Entering host ``i`` (:func:`on_host`, and :func:`write_launcher`, Hydra's
stand-in for ``ssh``): the process writes its pid into the host's CPU
cgroup when it has one, then ``ip netns exec`` puts it in the host's
network namespace and ``unshare --uts`` gives it the host's name; the
command is exec'd, never forked, so its parent-death signal holds and
everything it starts inherits namespace and cgroup alike.  The cgroup is
joined *before* ``ip netns exec``, which mounts a fresh ``/sys`` that hides
``/sys/fs/cgroup``.  Hydra runs the launcher from inside ``emu0``, under
that fresh ``/sys``: there the group is reached through the emulation's own
mount namespace, ``/proc/<emulation pid>/root/sys/fs/cgroup/...``.  A
process entering a host without a share goes back to the emulation's own
group, so that it does not stay in the group of the host that started it
(Hydra's ``mpiexec`` runs in ``emu0`` and starts every host's proxy).

What sets one host apart from the others:

* ``--host-rate emu1=100mbit``: that host's link rate
  (:class:`launch.netns.Topology` shapes it; parsed here by :func:`host_values`);
* ``--host-cpu emu2=0.5``: that host's processes get that share of their
  fair CPU, ``share x usable cores / hosts`` cores, as a cgroup v1 CPU quota
  (``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``) in
  ``<the emulation's own cpu cgroup>/collscale-cs<owner pid>-emu2``
  (:class:`HostCPU`; at the top, ``/sys/fs/cgroup/cpu/collscale-...``).
  Usable cores: the affinity, capped by the quotas of the emulation's group
  and those above it; nesting keeps a container's or job's limit.  Only
  cgroup v1's ``cpu`` controller is supported; on a cgroup v2-only machine
  (``cpu.max``) it is refused, naming what is missing;
* ``--host-delay``: refused (:func:`delay_refusal`); the CI kernel has no ``sch_netem``.

Groups carry their owner's pid like the namespaces, so :func:`remove_groups`
finds them wherever :mod:`launch.netns` removes an emulation's namespaces
(its teardown, the reaper after a ``kill -9``, ``--cleanup`` and the stale
sweep of every run); it stops what is still inside, then removes the group.

This module imports nothing of :mod:`launch.netns` (which imports it);
its refusals are :class:`ground.errors.UsageError` (one line, exit 2).
"""

from __future__ import annotations

import math
import os
import re
import shlex
import signal
import stat
import subprocess
import time
from typing import Callable, Dict, List, Optional, Sequence

from ground.errors import UsageError

__all__ = ["HostCPU", "host_values", "parse_share", "cpu_mount", "cpu_missing", "own_group", "usable_cores",
           "find_groups", "remove_groups", "group_owners",
           "delay_refusal", "on_host", "write_launcher", "GROUP_PREFIX", "PERIOD_US", "MIN_QUOTA_US", "NO_NETEM"]

GROUP_PREFIX = "collscale-"  # + the topology's tag (cs<pid>) + "-" + the host name
_GROUP = re.compile(rf"^{GROUP_PREFIX}cs(\d+)-emu\d+$")
PERIOD_US = 100_000  # the kernel's default CFS period: 100 ms
MIN_QUOTA_US = 1_000  # the least quota the kernel takes: 1 ms per period
MODULES = "/proc/modules"  # loaded kernel modules (absent where everything is built in)
NO_NETEM = "this kernel has no sch_netem: --host-delay cannot be emulated"


def host_values(flag: str, items: Optional[Sequence[str]], nhosts: int,
                parse: Callable[[str, str], object]) -> Dict[str, object]:
    """``HOST=VALUE`` items of a repeatable flag as {host: parse(item, value)}; every HOST an
    emulated host of this run (emu0..emu{nhosts-1}), none given twice."""
    out: Dict[str, object] = {}
    names = [f"emu{i}" for i in range(nhosts)]
    for item in items or ():
        name, eq, value = str(item).partition("=")
        name = name.strip()
        if not eq or not name or not value.strip():
            example = {"--host-rate": "emu1=100mbit", "--host-cpu": "emu1=0.5"}.get(flag, "emu1=...")
            raise UsageError(f"{flag} {item!r}: expected HOST=VALUE, e.g. {flag} {example}")
        if name not in names:
            raise UsageError(f"{flag} {item}: {name} is not an emulated host of this run "
                             f"({names[0]}..{names[-1]})" if nhosts > 1 else
                             f"{flag} {item}: {name} is not an emulated host of this run (only emu0)")
        if name in out:
            raise UsageError(f"{flag} {item}: {name} is given twice")
        out[name] = parse(item, value.strip())
    return out


def parse_share(item: str, text: str) -> float:
    """A CPU share: a number in (0, 1], the fraction of the host's fair CPU it may use."""
    try:
        share = float(text)
    except ValueError:
        share = math.nan
    if not (math.isfinite(share) and 0 < share <= 1):
        raise UsageError(f"--host-cpu {item}: the share must be a number above 0 and at most 1 "
                         "(a quota only limits: 1 is the host's fair share of the machine's cores)")
    return share


def own_group(root: Optional[str], pid: Optional[int] = None) -> Optional[str]:
    """The cpu cgroup directory of process ``pid`` (this one) under mount ``root``; ``root`` itself
    where /proc does not say or the path is not there (another cgroup namespace)."""
    if root is None:
        return None
    try:
        with open(f"/proc/{pid or os.getpid()}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if "cpu" in controllers.split(","):
            where = os.path.normpath(os.path.join(root, path.lstrip("/")))
            return where if os.path.isdir(where) and where.startswith(root) else root
    return root


def usable_cores(base: Optional[str], root: Optional[str]) -> float:
    """The cores the emulation may use: its CPU affinity, capped by the CPU quota of its own cgroup
    ``base`` and of every group above it up to ``root`` (a container's or a job's limit)."""
    try:
        cores: float = len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    here = base
    while here and root and here.startswith(root):
        try:
            with open(os.path.join(here, "cpu.cfs_quota_us")) as f:
                quota = int(f.read())
            with open(os.path.join(here, "cpu.cfs_period_us")) as f:
                period = int(f.read())
            if quota > 0 and period > 0:
                cores = min(cores, quota / period)
        except (OSError, ValueError):
            pass
        if here == root:
            break
        here = os.path.dirname(here)
    return cores


def cpu_mount(mounts: Optional[str] = None) -> Optional[str]:
    """Where cgroup v1's ``cpu`` controller is mounted (from /proc/mounts), or None."""
    if mounts is None:
        try:
            with open("/proc/mounts") as f:
                mounts = f.read()
        except OSError:
            return None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "cgroup" and "cpu" in fields[3].split(","):
            return fields[1].replace("\\040", " ")
    return None


def cpu_missing(mounts: Optional[str] = None) -> Optional[str]:
    """Why --host-cpu cannot be applied here, or None."""
    if mounts is None:
        try:
            with open("/proc/mounts") as f:
                mounts = f.read()
        except OSError as exc:
            return f"--host-cpu needs cgroup v1's cpu controller, and /proc/mounts cannot be read ({exc.strerror})"
    where = cpu_mount(mounts)
    if where is None:
        v2 = [line.split()[1] for line in mounts.splitlines() if len(line.split()) > 2 and line.split()[2] == "cgroup2"]
        found = (f"this machine mounts only cgroup v2 ({v2[0]}), whose cpu.max is not supported" if v2 else
                 "no cgroup file system is mounted")
        return f"--host-cpu needs cgroup v1's cpu controller (cpu.cfs_quota_us), and {found}"
    if not os.path.exists(os.path.join(where, "cpu.cfs_quota_us")):
        return (f"--host-cpu needs CPU quotas, and cgroup v1's cpu controller at {where} has no cpu.cfs_quota_us "
                "(a kernel without CFS bandwidth control)")
    if not os.access(where, os.W_OK):
        return f"--host-cpu: cannot create cgroups in {where} (run as root)"
    return None


class HostCPU:
    """The CPU shares of some emulated hosts ({host name: share}) as cgroup v1 CPU quotas."""

    def __init__(self, shares: Dict[str, float], nhosts: int, tag: str, cores: Optional[float] = None,
                 root: Optional[str] = None):
        self.shares, self.nhosts, self.tag = dict(shares), nhosts, tag
        self.owner = os.getpid()  # its mount namespace sees the groups (see the module docstring)
        self.root = root if root is not None else cpu_mount()
        # The groups nest in the emulation's own: a container's or a job's CPU limit still holds.
        self.base = own_group(self.root)
        self.cores = cores or usable_cores(self.base, self.root)
        for name in self.shares:
            if self.quota_us(name) < MIN_QUOTA_US:
                raise UsageError(f"--host-cpu {name}={self.shares[name]:g}: that is {self.cores_of(name):.4f} cores "
                                 f"({self.cores:g} usable cores over {nhosts} hosts), below the kernel's least "
                                 f"quota ({MIN_QUOTA_US / PERIOD_US:g} cores)")

    def cores_of(self, name: str) -> float:
        """The cores host ``name`` may use: its share of the fair cores (usable cores / hosts)."""
        return self.shares[name] * self.cores / self.nhosts

    def quota_us(self, name: str) -> int:
        return int(round(self.cores_of(name) * PERIOD_US))

    def group(self, name: str) -> Optional[str]:
        """Host ``name``'s cgroup directory (None when it has no share)."""
        if name not in self.shares or self.base is None:
            return None
        return os.path.join(self.base, f"{GROUP_PREFIX}{self.tag}-{name}")

    def home(self) -> Optional[str]:
        """The emulation's own cpu cgroup: where the processes of hosts without a share belong."""
        return self.base if self.shares else None

    def procs_file(self, name: str, outside: bool = False) -> Optional[str]:
        """The file a process entering host ``name`` writes its pid to: its group, or the emulation's
        own for a host without a share (None: no host has one); ``outside``: the path as seen from
        inside an emulated host (``ip netns exec`` hides ``/sys/fs/cgroup``)."""
        group = self.group(name) or self.home()
        if not group:
            return None
        return f"/proc/{self.owner}/root{os.path.join(group, 'cgroup.procs')}" if outside else \
            os.path.join(group, "cgroup.procs")

    def describe(self) -> str:
        cells = [f"{name} CPU {share:g} of its fair share ({self.cores_of(name):.2f} of {self.cores:g} cores, "
                 "cgroup cpu quota)" for name, share in sorted(self.shares.items(), key=lambda kv: _index(kv[0]))]
        return "; ".join(cells)

    def create(self) -> None:
        """Make one group per host with a share, its quota set (cgroup v1 ``cpu``)."""
        if not self.shares:
            return
        why = cpu_missing()
        if why:
            raise UsageError(why)
        for name in sorted(self.shares, key=_index):
            group = self.group(name)
            os.mkdir(group)
            with open(os.path.join(group, "cpu.cfs_period_us"), "w") as f:
                f.write(str(PERIOD_US))
            with open(os.path.join(group, "cpu.cfs_quota_us"), "w") as f:
                f.write(str(self.quota_us(name)))


def _index(name: str) -> int:
    return int(name[3:]) if name[3:].isdigit() else 0


def find_groups(tag: str = "") -> List[str]:
    """The emulation cgroups on this machine (of emulation ``tag``, cs<pid>, if given), wherever
    in the cpu hierarchy their emulation ran."""
    root, found = cpu_mount(), []
    if root is None:
        return found
    for top, dirs, _ in os.walk(root):
        mine = [d for d in dirs if _GROUP.match(d)]
        found += [os.path.join(top, d) for d in mine if d.startswith(f"{GROUP_PREFIX}{tag}-" if tag else "")]
        dirs[:] = [d for d in dirs if d not in mine]
    return sorted(found)


def group_owners() -> List[int]:
    """The owner pids of every emulation cgroup on this machine (live owners or not)."""
    return sorted({int(_GROUP.match(os.path.basename(g)).group(1)) for g in find_groups()})


def _members(group: str) -> List[int]:
    try:
        with open(os.path.join(group, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def remove_groups(tag: str, grace: float = 2.0) -> List[str]:
    """Remove the cgroups of emulation ``tag`` (cs<pid>), stopping what is still inside (TERM, then
    KILL after ``grace``); returns what could not be removed."""
    left = []
    for group in find_groups(tag):
        deadline = time.monotonic() + grace
        while True:
            try:
                os.rmdir(group)
                break
            except FileNotFoundError:
                break
            except OSError:
                pass
            late = time.monotonic() > deadline
            if time.monotonic() > deadline + 3:
                left.append(f"cgroup {group}")  # a process stuck in the kernel: give up, do not hang
                break
            for pid in _members(group):
                if pid != os.getpid():
                    try:
                        os.kill(pid, signal.SIGKILL if late else signal.SIGTERM)
                    except OSError:
                        pass
            time.sleep(0.1)
    return left


def delay_refusal() -> str:
    """Why --host-delay is refused: no sch_netem in this kernel where that can be seen (a ``netem``
    qdisc tried in a throw-away network namespace, which goes with the process), else not built yet."""
    try:
        with open(MODULES) as f:
            if any(line.split()[:1] == ["sch_netem"] for line in f):
                return _not_yet()
    except OSError:
        pass
    if os.geteuid() != 0:
        return _not_yet()
    try:
        res = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return _not_yet()
    if res.returncode != 0 and ("unknown" in res.stderr.lower() or "not supported" in res.stderr.lower()):
        return NO_NETEM
    return _not_yet()


def _not_yet() -> str:
    return "--host-delay is not supported yet (emulated hosts differ only in --host-rate and --host-cpu)"


def on_host(topo, i: int, command: Sequence[str], cpu: Optional[HostCPU] = None) -> List[str]:
    """``command`` started inside emulated host ``i`` (in its cgroup first, where it has one)."""
    name = topo.hostname(i)
    inside = ["ip", "netns", "exec", topo.ns(i), "unshare", "--uts", "sh", "-c",
              f'hostname {name} && exec "$@"', "sh", *command]
    procs = cpu.procs_file(name) if cpu else None
    return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', procs, *inside] if procs else inside


def write_launcher(topo, directory: str, cpu: Optional[HostCPU] = None) -> str:
    """Hydra's stand-in for ssh: ``-x HOST COMMAND`` runs COMMAND in HOST's namespace (and cgroup).

    Hydra hands ssh one shell-quoted command string, so it is run with
    ``sh -c`` as a remote shell would.
    """
    cases = "".join(f"  {topo.ip(i)}|{topo.hostname(i)}) ns={topo.ns(i)}; name={topo.hostname(i)}; "
                    f"cg={shlex.quote((cpu.procs_file(topo.hostname(i), outside=True) if cpu else None) or '')};;\n"
                    for i in range(topo.nhosts))
    path = os.path.join(directory, "enter-host")
    with open(path, "w") as f:
        f.write(
            "#!/bin/sh\n"
            "# collscale emulate: enter an emulated host (cgroup, network + UTS namespace) for Hydra\n"
            "while [ $# -gt 0 ]; do case \"$1\" in -x|-q|-T|-n|-t) shift;; *) break;; esac; done\n"
            "host=$1; shift\n"
            "case \"$host\" in\n" + cases +
            "  *) echo \"collscale emulate: unknown emulated host '$host'\" >&2; exit 255;;\n"
            "esac\n"
            "if [ -n \"$cg\" ]; then echo $$ > \"$cg\" || exit 255; fi\n"
            "exec ip netns exec \"$ns\" unshare --uts sh -c \"hostname $name && exec $*\"\n")
    os.chmod(path, stat.S_IRWXU)
    return path
