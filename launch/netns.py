"""Emulated hosts on one machine: network namespaces, veth links, a bridge, tc tbf.

Topology for ``n`` hosts, all names carrying the owner's PID (``cs<pid>``)
so that concurrent emulations never meet and a dead owner's leftovers can be
found and removed (:func:`sweep_stale`)::

    cs<pid>h0  [csnet0 10.99.0.1/24] --veth-- [cs<pid>p0] \\
    cs<pid>h1  [csnet0 10.99.0.2/24] --veth-- [cs<pid>p1]  >- br0 in cs<pid>sw
    ...                                                    /

Every host namespace names its end ``csnet0``, so one ``--iface csnet0`` /
``GLOO_SOCKET_IFNAME=csnet0`` serves every rank.  With a rate, both ends of
each link get a token-bucket filter (``tc qdisc ... tbf``; ``netem`` is not
available on the CI machine: docs/results/2026-11.md): a host's egress is shaped in
its own namespace and its ingress on the bridge port, like a full-duplex
Ethernet link of that speed.  The bucket holds one millisecond of traffic
(at least 32 KiB), so bursts barely show in multi-megabyte transfers.
``host_rates`` ({"emu1": "100mbit"}, ``--host-rate``) shapes one host's link
at a rate of its own, in both directions, apart from the others.

``/etc/netns/<ns>/hosts`` maps the emulated host names (``emu0``...) to
their addresses; ``ip netns exec`` mounts it over ``/etc/hosts`` for every
process started in the namespace.

Root (CAP_NET_ADMIN and CAP_SYS_ADMIN) is required.  :meth:`Topology.destroy`
removes everything it made and kills any process still inside; it is safe to
call more than once and after a partial :meth:`Topology.create`.  It also
removes the emulation's CPU cgroups (``--host-cpu``, :mod:`launch.emuhost`),
which carry the same owner pid: so do the reaper and :func:`sweep_stale`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from launch import emuhost

__all__ = ["EmulationError", "Topology", "parse_rate", "requirements_missing", "sweep_stale", "remove_dead",
           "namespaces", "IFACE", "SUBNET", "MAX_HOSTS"]

IFACE = "csnet0"
SUBNET = "10.99.0"
MAX_HOSTS = 250
PREFIX = "cs"
_ETC_NETNS = "/etc/netns"
_NAME = re.compile(rf"^{PREFIX}(\d+)(?:h\d+|sw)$")
WORKDIR_PREFIX = "collscale-emulate-"  # + owner pid + "-": the launcher script's folder under the temp dir
_WORKDIR = re.compile(rf"^{WORKDIR_PREFIX}(\d+)-")

_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}


class EmulationError(RuntimeError):
    """Something the user can fix: not root, a tool missing, bad input, a failed step."""


def parse_rate(text: str, what: Optional[str] = None) -> float:
    """A link rate in tc's bit units (``100mbit``, ``1gbit``, ``10gbit``) as bits/s.

    tc's ``bps``/``gbps`` units mean *bytes* per second, a trap when people
    write "1gbps" for gigabit Ethernet, so they are refused with a hint.
    ``what`` names the value in a refusal (default ``--rate 'TEXT'``).
    """
    what = what or f"--rate {text!r}"
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]+)\s*", text or "")
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        hint = ""
        if unit and unit.endswith("bps"):
            hint = (f"; tc reads '{unit}' as bytes per second: write bits, "
                    f"e.g. '{match.group(1)}{unit[:-3]}bit'")
        raise EmulationError(f"{what}: expected a number and one of "
                             f"{', '.join(_UNITS)} (e.g. 1gbit){hint}")
    bits = float(match.group(1)) * _UNITS[unit]
    if not 8e3 <= bits <= 4e11:
        raise EmulationError(f"{what}: must be between 8kbit and 400gbit")
    return bits


def requirements_missing() -> Optional[str]:
    """Why emulation cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN): run as root"
    for tool in ("ip", "tc", "unshare", "hostname"):
        if not shutil.which(tool):
            return f"'{tool}' is not installed (iproute2 / util-linux / hostname)"
    return None


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise EmulationError(f"'{' '.join(cmd)}' failed: {res.stderr.strip() or res.returncode}")
    return res


def namespaces() -> List[str]:
    """Names of the network namespaces on this machine."""
    res = _run("ip", "netns", "list", check=False)
    return [line.split()[0] for line in res.stdout.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie does not (it is dead, and its pid is not reused until reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _kill_inside(ns: str, grace: float = 2.0) -> None:
    """TERM then KILL every process still in namespace ``ns``."""
    deadline = time.monotonic() + grace
    sig = signal.SIGTERM
    while True:
        pids = [int(p) for p in _run("ip", "netns", "pids", ns, check=False).stdout.split()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if sig == signal.SIGKILL and time.monotonic() > deadline + 3:
            return  # unkillable (D state): give up rather than hang the teardown
        time.sleep(0.1)
        if time.monotonic() > deadline:
            sig = signal.SIGKILL


@dataclass
class Topology:
    """``nhosts`` emulated hosts joined through one bridge, optionally rate-limited (every link by
    ``rate``, single hosts' links by ``host_rates``: {host name: rate})."""

    nhosts: int
    rate: Optional[str] = None
    owner: int = field(default_factory=os.getpid)
    host_rates: Dict[str, str] = field(default_factory=dict)
    made: List[str] = field(default_factory=list, repr=False)

    def __post_init__(self):
        if not 1 <= self.nhosts <= MAX_HOSTS:
            raise EmulationError(f"--hosts {self.nhosts}: must be between 1 and {MAX_HOSTS}")
        self.rate_bits = parse_rate(self.rate) if self.rate else None
        self.host_rate_bits: Dict[str, float] = emuhost.host_values(
            "--host-rate", [f"{k}={v}" for k, v in self.host_rates.items()], self.nhosts,
            lambda item, value: parse_rate(value, f"--host-rate {item!r}"))

    def link_bits(self, i: int) -> Optional[float]:
        """Host ``i``'s link rate in bits/s: its own (--host-rate), else every link's; None: unshaped."""
        return self.host_rate_bits.get(self.hostname(i), self.rate_bits)

    # names
    @property
    def tag(self) -> str:
        return f"{PREFIX}{self.owner}"

    @property
    def switch(self) -> str:
        return f"{self.tag}sw"

    def ns(self, i: int) -> str:
        return f"{self.tag}h{i}"

    def ip(self, i: int) -> str:
        return f"{SUBNET}.{i + 1}"

    @staticmethod
    def hostname(i: int) -> str:
        return f"emu{i}"

    def describe(self) -> str:
        link = f"{self.rate} links (tc tbf, both directions)" if self.rate else "unlimited veth links"
        own = [f"{name}'s {self.host_rates[name]}" for name in sorted(self.host_rate_bits, key=lambda n: int(n[3:]))]
        if own:
            link = (f"{link} but {', '.join(own)}" if self.rate else
                    f"unlimited veth links but {', '.join(own)} (tc tbf, both directions)")
        return (f"{self.nhosts} emulated hosts {self.hostname(0)}..{self.hostname(self.nhosts - 1)} "
                f"(network namespaces on one machine), {link}")

    # building and tearing down
    def create(self) -> None:
        """Make the namespaces, links, addresses, hosts files and shapers."""
        try:
            self._make_ns(self.switch)
            _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", self.switch, "link", "set", "br0", "up")
            hosts_file = "127.0.0.1 localhost\n" + "".join(
                f"{self.ip(i)} {self.hostname(i)}\n" for i in range(self.nhosts))
            for i in range(self.nhosts):
                self._make_host(i, hosts_file)
        except BaseException:
            self.destroy()
            raise

    def _make_ns(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self.made.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def _make_host(self, i: int, hosts_file: str) -> None:
        ns, port = self.ns(i), f"{self.tag}p{i}"
        self._make_ns(ns)
        etc = os.path.join(_ETC_NETNS, ns)
        os.makedirs(etc, exist_ok=True)
        with open(os.path.join(etc, "hosts"), "w") as f:
            f.write(hosts_file)
        _run("ip", "link", "add", IFACE, "netns", ns, "type", "veth", "peer", "name", port,
             "netns", self.switch)
        _run("ip", "-n", self.switch, "link", "set", port, "master", "br0", "up")
        _run("ip", "-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", IFACE)
        _run("ip", "-n", ns, "link", "set", IFACE, "up")
        bits = self.link_bits(i)
        if bits:
            for where, dev in ((ns, IFACE), (self.switch, port)):
                _run("ip", "netns", "exec", where, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
                     "rate", f"{int(bits)}bit", "burst", str(_burst(bits)), "latency", "100ms")

    @property
    def burst_bytes(self) -> int:
        return _burst(self.rate_bits) if self.rate_bits else 0

    def link_bytes(self) -> List[tuple]:
        """(bytes sent, bytes received) on each host's link so far: proof that traffic crossed it."""
        out = []
        for i in range(self.nhosts):
            res = _run("ip", "-n", self.ns(i), "-s", "-j", "link", "show", IFACE, check=False)
            try:
                stats = json.loads(res.stdout)[0]["stats64"]
                out.append((stats["tx"]["bytes"], stats["rx"]["bytes"]))
            except (ValueError, LookupError):
                out.append((None, None))
        return out

    def destroy(self) -> List[str]:
        """Remove everything this topology made; returns what could not be removed."""
        return _remove(self.tag)


def _burst(bits: float) -> int:
    """The token bucket: one millisecond of traffic at ``bits``/s, at least 32 KiB."""
    return max(32 * 1024, int(bits / 8 * 1e-3))


def _remove(tag: str) -> List[str]:
    left = []
    ours = [ns for ns in namespaces() if ns.startswith(tag) and _NAME.match(ns)
            and _NAME.match(ns).group(1) == tag[len(PREFIX):]]
    # Hosts first (their veth ends go with them), the switch last.
    for ns in sorted(ours, key=lambda n: n.endswith("sw")):
        _kill_inside(ns)
        if _run("ip", "netns", "del", ns, check=False).returncode != 0 and ns in namespaces():
            left.append(f"namespace {ns}")
    try:
        entries = os.listdir(_ETC_NETNS)
    except OSError:
        entries = []
    for entry in entries:
        if entry.startswith(tag) and _NAME.match(entry) and _NAME.match(entry).group(1) == tag[len(PREFIX):]:
            shutil.rmtree(os.path.join(_ETC_NETNS, entry), ignore_errors=True)
            if os.path.exists(os.path.join(_ETC_NETNS, entry)):
                left.append(f"{_ETC_NETNS}/{entry}")
    return left + emuhost.remove_groups(tag)  # after the namespaces: their processes are stopped


def make_workdir() -> str:
    """A private folder for this emulation's files, named for its owner so a dead one's is found."""
    return tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")


def _workdirs() -> List[tuple]:
    """(owner pid, path) of every emulation folder under the temp dir."""
    root = tempfile.gettempdir()
    try:
        entries = os.listdir(root)
    except OSError:
        return []
    return [(int(m.group(1)), os.path.join(root, e)) for e in entries for m in [_WORKDIR.match(e)] if m]


def _remove_workdirs(owner: int) -> None:
    for pid, path in _workdirs():
        if pid == owner:
            shutil.rmtree(path, ignore_errors=True)


def remove_dead(owner: int) -> bool:
    """Remove the emulation of ``owner`` if that process is gone; True if anything was there."""
    tag = f"{PREFIX}{owner}"
    if _pid_alive(owner):
        return False
    ours = [n for n in namespaces() if _NAME.match(n) and _NAME.match(n).group(1) == str(owner)]
    ours += [str(owner)] if owner in emuhost.group_owners() else []
    _remove_workdirs(owner)
    _remove(tag)
    return bool(ours)


def sweep_stale() -> List[str]:
    """Remove the emulations of owners that are gone (killed with SIGKILL); returns their tags."""
    owners = set()
    names = namespaces()
    try:
        names += os.listdir(_ETC_NETNS)
    except OSError:
        pass
    for name in names:
        match = _NAME.match(name)
        if match:
            owners.add(int(match.group(1)))
    owners.update(emuhost.group_owners())
    removed = []
    for pid in sorted(owners):
        if not _pid_alive(pid):
            _remove(f"{PREFIX}{pid}")
            removed.append(f"{PREFIX}{pid}")
    for pid, path in _workdirs():  # a folder alone (the owner died after tearing its hosts down)
        if not _pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
    return removed
