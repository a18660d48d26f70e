"""Emulated hosts that differ (root only): --host-rate shapes one host's link (tc tbf at its
rate, on both ends of that link only), --host-cpu puts every process of one host in a cgroup
with the right CPU quota, and the groups go with the namespaces on every exit path (normal end,
kill -9 of the emulation, --cleanup).  What is checked is the configuration the kernel holds,
never a timing."""

import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from launch import emuhost, netns

EMULATE = [sys.executable, "-m", "launch.emulate"]


def _problem():
    """Root is not always enough (some containers refuse namespaces or cgroups): try one of each."""
    why = netns.requirements_missing()
    if why:
        return f"emulated hosts need network namespaces: {why}"
    topo = netns.Topology(1, owner=os.getpid())
    try:
        topo.create()
    except netns.EmulationError as exc:
        return f"emulated hosts need network namespaces: {exc}"
    finally:
        topo.destroy()
    return emuhost.cpu_missing()


PROBLEM = _problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=str(PROBLEM))

# Each rank writes what its host looks like from inside, then waits for the test to look from outside.
PROBE = """\
import json, os, socket, subprocess, sys, time
out = sys.argv[1]
host = socket.gethostname()
seen = {"host": host, "pid": os.getpid(),
        "cgroup": [l for l in open("/proc/self/cgroup").read().splitlines() if "cpu" in l.split(":")[1].split(",")],
        "tc": subprocess.run(["tc", "qdisc", "show", "dev", "csnet0"], capture_output=True, text=True).stdout,
        "emulated": json.loads(os.environ["COLLSCALE_EMULATED"])}
with open(os.path.join(out, host + ".tmp"), "w") as f:
    json.dump(seen, f)
os.rename(os.path.join(out, host + ".tmp"), os.path.join(out, host + ".json"))
deadline = time.time() + 60
while not os.path.exists(os.path.join(out, "go")) and time.time() < deadline:
    time.sleep(0.05)
"""


def _groups(owner):
    return [os.path.basename(g) for g in emuhost.find_groups(f"cs{owner}")]


def _left(owner):
    """What emulation ``owner`` left behind: namespaces, /etc/netns entries, links, cgroups, its folder."""
    tag = f"cs{owner}"
    names = [n for n in netns.namespaces() if n.startswith(tag)]
    try:
        etc = [e for e in os.listdir("/etc/netns") if e.startswith(tag)]
    except OSError:
        etc = []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    veths = [line.split(":")[1].strip() for line in links.splitlines() if f": {tag}" in line]
    folders = glob.glob(os.path.join(tempfile.gettempdir(), f"{netns.WORKDIR_PREFIX}{owner}-*"))
    return names + etc + veths + _groups(owner) + folders


@pytest.fixture
def owners():
    """The emulations a test starts (their pids); fails the test if any left something behind."""
    started = []
    yield started
    deadline = time.time() + 10
    while time.time() < deadline and any(_left(o) for o in started):
        time.sleep(0.2)
    left = [x for o in started for x in _left(o)]
    assert not left, f"left behind: {left}"


def _probe(tmp_path, *args, hosts=3):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    return [*EMULATE, "--hosts", str(hosts), *args, "--timeout", "90", "--",
            "mpirun", "-n", str(hosts), sys.executable, str(script), str(tmp_path)]


def _seen(tmp_path, proc, hosts):
    deadline = time.time() + 60
    while time.time() < deadline and len(glob.glob(str(tmp_path / "*.json"))) < hosts:
        assert proc.poll() is None, proc.communicate(timeout=30)
        time.sleep(0.1)
    files = sorted(glob.glob(str(tmp_path / "*.json")))
    assert len(files) == hosts, f"only {files} within 60 s"
    return {os.path.basename(f)[:-5]: json.load(open(f)) for f in files}


def _qdisc(ns, dev):
    return subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "show", "dev", dev],
                          capture_output=True, text=True, timeout=30).stdout


def test_one_slow_link_and_one_slow_cpu(runner, owners, tmp_path):
    proc = runner.popen(_probe(tmp_path, "--host-rate", "emu1=100mbit", "--host-cpu", "emu2=0.5"))
    owners.append(proc.pid)
    tag = f"cs{proc.pid}"
    try:
        seen = _seen(tmp_path, proc, 3)
        # The link: tbf at 100 Mbit/s on both ends of emu1's link, nothing on the others'.
        assert "tbf" in seen["emu1"]["tc"] and "rate 100Mbit" in seen["emu1"]["tc"], seen["emu1"]["tc"]
        assert "rate 100Mbit" in _qdisc(f"{tag}sw", f"{tag}p1")
        for i in (0, 2):
            assert "tbf" not in seen[f"emu{i}"]["tc"] and "tbf" not in _qdisc(f"{tag}sw", f"{tag}p{i}")
        # The CPU: one group, emu2's, with 0.5 x (usable cores / 3) cores per period ...
        assert _groups(proc.pid) == [f"collscale-{tag}-emu2"]
        (group,) = emuhost.find_groups(tag)
        root = emuhost.cpu_mount()
        # Nested in the group the emulation runs in (this test's: it inherits it), whose limits count.
        assert os.path.dirname(group) == emuhost.own_group(root)
        cores = emuhost.usable_cores(emuhost.own_group(root), root)
        period = int(open(os.path.join(group, "cpu.cfs_period_us")).read())
        quota = int(open(os.path.join(group, "cpu.cfs_quota_us")).read())
        assert period == 100_000 and quota == round(0.5 * cores / 3 * period)
        # ... holding every process of emu2 (its Hydra proxy and its rank) and nothing else.
        members = {int(p) for p in open(os.path.join(group, "cgroup.procs")).read().split()}
        inside = {int(p) for p in subprocess.run(["ip", "netns", "pids", f"{tag}h2"], capture_output=True,
                                                 text=True, timeout=30).stdout.split()}
        assert members == inside and seen["emu2"]["pid"] in members and len(members) >= 2, (members, inside)
        assert seen["emu2"]["cgroup"][0].endswith(f"/collscale-{tag}-emu2")
        for i in (0, 1):  # emu1's proxy is started by mpiexec in emu0: it must not stay in any host's group
            assert "collscale-" not in seen[f"emu{i}"]["cgroup"][0], seen[f"emu{i}"]["cgroup"]
        # What the ranks (and so the records) are told.
        emulated = seen["emu0"]["emulated"]
        assert emulated["host_rates"] == {"emu1": 1e8} and emulated["host_cpu"] == {"emu2": 0.5}
        assert emulated["host_cpu_cores"] == {"emu2": round(0.5 * cores / 3, 4)}
        assert "emu1's 100mbit" in emulated["describe"] and "emu2 CPU 0.5 of its fair share" in emulated["describe"]
        (tmp_path / "go").write_text("")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    assert "unlimited veth links but emu1's 100mbit (tc tbf, both directions); emu2 CPU 0.5" in out
    assert not _groups(proc.pid)  # gone at once, not only within the fixture's grace


def test_kill_9_removes_the_groups_too(runner, owners, tmp_path):
    proc = runner.popen(_probe(tmp_path, "--host-cpu", "emu1=0.5", hosts=2))
    owners.append(proc.pid)
    try:
        _seen(tmp_path, proc, 2)
        assert _groups(proc.pid) == [f"collscale-cs{proc.pid}-emu1"]
        proc.kill()
        proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline and (_left(proc.pid) or runner.strays()):
            time.sleep(0.1)
        assert not _left(proc.pid) and not runner.strays(), (_left(proc.pid), runner.strays())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_cleanup_removes_a_dead_emulations_group(runner, owners):
    dead = subprocess.Popen(["true"])
    dead.wait()
    owners.append(dead.pid)
    emuhost.HostCPU({"emu0": 0.5}, 1, f"cs{dead.pid}").create()
    assert _groups(dead.pid) == [f"collscale-cs{dead.pid}-emu0"]
    res = runner.run([*EMULATE, "--cleanup"], timeout=60)
    assert res.returncode == 0 and f"cs{dead.pid}" in res.stdout, res.stdout + res.stderr
    assert not _groups(dead.pid)


def test_host_delay_is_refused_before_anything(runner, owners):
    res = runner.run([*EMULATE, "--hosts", "2", "--host-delay", "emu1=5ms", "--", "true"], timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stdout + res.stderr
    netem = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                           capture_output=True, text=True, timeout=30)
    if netem.returncode != 0 and "unknown" in netem.stderr.lower():
        assert "this kernel has no sch_netem: --host-delay cannot be emulated" in res.stderr, res.stderr
    else:
        assert "--host-delay is not supported yet" in res.stderr, res.stderr
