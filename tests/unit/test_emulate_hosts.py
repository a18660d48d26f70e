"""launch.emulate's per-host flags without root: --host-rate, --host-cpu, --host-delay parsed and
refused before anything is built, the quota arithmetic, how a process enters a host's cgroup, and
what the ranks are told (COLLSCALE_EMULATED: host_rates, host_cpu, host_cpu_cores, describe)."""

import json
import os

import pytest

from ground.errors import UsageError
from launch import emuhost, emulate, netns
from launch.emuhost import HostCPU, cpu_missing, cpu_mount, host_values, parse_share
from launch.netns import EmulationError, Topology

V1 = ("cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
      "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n")
V2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"


def _refused(capsys, code):
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert err.startswith("collscale emulate: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def no_emulation(monkeypatch):
    """Everything emulate would build or start replaced: only the command line is exercised."""
    started = []
    monkeypatch.setattr(netns, "requirements_missing", lambda: None)
    monkeypatch.setattr(netns, "sweep_stale", lambda: [])
    monkeypatch.setattr(emuhost, "cpu_missing", lambda mounts=None: None)
    monkeypatch.setattr(emulate, "hydra_version", lambda mpirun: "HYDRA")
    monkeypatch.setattr(emulate, "launch_command", lambda *a, **kw: started.append((a, kw)) or 0)
    return started


# -- HOST=VALUE ---------------------------------------------------------------------------------

def test_host_values_map_hosts_to_parsed_values():
    assert host_values("--host-cpu", ["emu2=0.5", " emu0 = 1"], 3, parse_share) == {"emu2": 0.5, "emu0": 1.0}
    assert host_values("--host-rate", None, 3, lambda item, v: v) == {}


@pytest.mark.parametrize("items, message", [
    (["emu3=1"], "emu3 is not an emulated host of this run (emu0..emu2)"),
    (["node1=1"], "node1 is not an emulated host"),
    (["emu1"], "expected HOST=VALUE, e.g. --host-cpu emu1=0.5"),
    (["=0.5"], "expected HOST=VALUE"),
    (["emu1="], "expected HOST=VALUE"),
    (["emu1=0.5", "emu1=0.25"], "emu1 is given twice"),
])
def test_host_values_refusals(items, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        host_values("--host-cpu", items, 3, parse_share)


@pytest.mark.parametrize("text", ["0", "-0.5", "1.01", "nan", "inf", "half", ""])
def test_shares_are_above_0_and_at_most_1(text):
    with pytest.raises(UsageError, match="above 0 and at most 1"):
        parse_share(f"emu0={text}", text)


# -- --host-rate --------------------------------------------------------------------------------

def test_one_host_shaped_apart_from_the_others():
    topo = Topology(3, owner=9, host_rates={"emu1": "100mbit"})
    assert [topo.link_bits(i) for i in range(3)] == [None, 1e8, None]
    assert topo.host_rate_bits == {"emu1": 1e8} and topo.rate_bits is None
    assert topo.describe().endswith("unlimited veth links but emu1's 100mbit (tc tbf, both directions)")
    topo = Topology(3, "1gbit", owner=9, host_rates={"emu2": "200mbit", "emu0": "10gbit"})
    assert [topo.link_bits(i) for i in range(3)] == [1e10, 1e9, 2e8]
    assert topo.describe().endswith("1gbit links (tc tbf, both directions) but emu0's 10gbit, emu2's 200mbit")
    assert "but" not in Topology(2, "1gbit", owner=9).describe()


def test_a_host_rate_is_checked_like_rate():
    with pytest.raises(EmulationError, match="--host-rate 'emu1=1gbps'.*bytes per second"):
        Topology(2, owner=9, host_rates={"emu1": "1gbps"})
    with pytest.raises(EmulationError, match="--host-rate 'emu0=1bit': must be between"):
        Topology(2, owner=9, host_rates={"emu0": "1bit"})
    with pytest.raises(UsageError, match="emu2 is not an emulated host of this run"):
        Topology(2, owner=9, host_rates={"emu2": "1gbit"})


# -- --host-cpu ---------------------------------------------------------------------------------

def test_quota_is_the_share_of_the_fair_cores():
    cpu = HostCPU({"emu5": 0.5, "emu1": 1.0}, 8, "cs77", cores=16, root="/cg")
    assert cpu.cores_of("emu5") == 1.0 and cpu.quota_us("emu5") == 100_000  # 0.5 x 16/8 cores
    assert cpu.quota_us("emu1") == 200_000
    assert cpu.group("emu5") == "/cg/collscale-cs77-emu5" and cpu.group("emu0") is None
    assert cpu.procs_file("emu5") == "/cg/collscale-cs77-emu5/cgroup.procs"
    # Inside a host, ip netns exec hides /sys/fs/cgroup: the emulation's mount namespace is used.
    assert cpu.procs_file("emu5", outside=True) == f"/proc/{os.getpid()}/root/cg/collscale-cs77-emu5/cgroup.procs"
    assert cpu.describe() == ("emu1 CPU 1 of its fair share (2.00 of 16 cores, cgroup cpu quota); "
                              "emu5 CPU 0.5 of its fair share (1.00 of 16 cores, cgroup cpu quota)")
    assert HostCPU({"emu2": 0.5}, 3, "cs1", cores=2, root="/cg").quota_us("emu2") == 33_333


def test_a_quota_below_the_kernels_least_is_refused():
    with pytest.raises(UsageError, match=r"--host-cpu emu0=0.01: that is 0.0002 cores .*below the kernel's least"):
        HostCPU({"emu0": 0.01}, 100, "cs1", cores=2, root="/cg")


def test_hosts_without_a_share_go_back_to_the_emulations_group(tmp_path):
    cpu = HostCPU({"emu1": 0.5}, 2, "cs1", cores=2, root=str(tmp_path))
    home = cpu.procs_file("emu0")
    assert home and "collscale" not in home and home.endswith("cgroup.procs")
    assert HostCPU({}, 2, "cs1", cores=2, root=str(tmp_path)).procs_file("emu0") is None


def test_groups_nest_in_the_emulations_own_and_its_limits_count(tmp_path):
    root = tmp_path / "cpu"
    step = root / "job" / "step"
    step.mkdir(parents=True)
    for where, quota in ((root, -1), (root / "job", 150_000), (step, -1)):
        (where / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        (where / "cpu.cfs_period_us").write_text("100000\n")
    assert emuhost.usable_cores(str(step), str(root)) == min(len(os.sched_getaffinity(0)), 1.5)
    assert emuhost.usable_cores(str(root), str(root)) == len(os.sched_getaffinity(0))
    # A cgroup path /proc names that this mount does not show (another cgroup namespace): the top.
    assert emuhost.own_group(str(root), pid=os.getpid()) in (str(root), str(step), str(root / "job"))
    assert emuhost.own_group(None) is None


def test_where_the_cpu_controller_is():
    assert cpu_mount(V1) == "/sys/fs/cgroup/cpu,cpuacct"
    assert cpu_mount(V2) is None and cpu_mount("") is None
    assert cpu_mount("cgroup /sys/fs/cgroup/cpuset cgroup rw,cpuset 0 0\n") is None  # cpuset is not cpu
    why = cpu_missing(V2)
    assert why == ("--host-cpu needs cgroup v1's cpu controller (cpu.cfs_quota_us), and this machine mounts "
                   "only cgroup v2 (/sys/fs/cgroup), whose cpu.max is not supported")
    assert "no cgroup file system is mounted" in cpu_missing("proc /proc proc rw 0 0\n")


def test_entering_a_host_joins_its_group_first(tmp_path):
    topo = Topology(2, owner=9)
    cpu = HostCPU({"emu1": 0.5}, 2, "cs9", cores=2, root="/cg")
    cmd = emuhost.on_host(topo, 1, ["python", "x.py"], cpu)
    assert cmd[:4] == ["sh", "-c", 'echo $$ > "$0" && exec "$@"', "/cg/collscale-cs9-emu1/cgroup.procs"]
    assert cmd[4:8] == ["ip", "netns", "exec", "cs9h1"] and cmd[-2:] == ["python", "x.py"]
    assert emuhost.on_host(topo, 1, ["x"])[:4] == ["ip", "netns", "exec", "cs9h1"]  # no shares: as before
    script = open(emuhost.write_launcher(topo, str(tmp_path), cpu)).read()
    assert f"cg=/proc/{os.getpid()}/root/cg/collscale-cs9-emu1/cgroup.procs;;" in script
    assert 'echo $$ > "$cg" || exit 255' in script
    assert "cg='';;" in open(emuhost.write_launcher(topo, str(tmp_path))).read()


# -- what the ranks are told --------------------------------------------------------------------

def test_ranks_are_told_each_hosts_rate_and_share():
    topo = Topology(3, owner=9, host_rates={"emu1": "100mbit"})
    cpu = HostCPU({"emu2": 0.5}, 3, "cs9", cores=3, root="/cg")
    info = json.loads(emulate.rank_env(topo, {}, cpu=cpu)["COLLSCALE_EMULATED"])
    assert info["host_rates"] == {"emu1": 1e8} and info["host_cpu"] == {"emu2": 0.5}
    assert info["host_cpu_cores"] == {"emu2": 0.5} and info["rate_bits"] is None
    assert "emu1's 100mbit" in info["describe"] and "emu2 CPU 0.5 of its fair share" in info["describe"]
    plain = json.loads(emulate.rank_env(Topology(2, owner=9), {})["COLLSCALE_EMULATED"])
    assert plain["host_rates"] == {} and plain["host_cpu"] == {} and plain["host_cpu_cores"] == {}


# -- the command line ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--host-rate", "emu3=200mbit"], "--host-rate emu3=200mbit: emu3 is not an emulated host of this run (emu0..emu2)"),
    (["--host-rate", "emu1=fast"], "--host-rate 'emu1=fast': expected a number"),
    (["--host-rate", "emu1=1gbps"], "bytes per second"),
    (["--host-rate", "emu1"], "expected HOST=VALUE, e.g. --host-rate emu1=100mbit"),
    (["--host-rate", "emu1=1gbit", "--host-rate", "emu1=2gbit"], "emu1 is given twice"),
    (["--host-cpu", "emu5=0.5"], "emu5 is not an emulated host"),
    (["--host-cpu", "emu1=2"], "above 0 and at most 1"),
    (["--host-cpu", "emu1=0.000001"], "below the kernel's least quota"),
])
def test_per_host_refusals_are_one_line_before_anything(no_emulation, capsys, argv, message):
    err = _refused(capsys, emulate.main(["--hosts", "3", *argv, "--", "mpirun", "-n", "3", "x"]))
    assert message in err
    assert no_emulation == []


def test_host_cpu_where_cgroups_cannot_be_used(no_emulation, monkeypatch, capsys):
    monkeypatch.setattr(emuhost, "cpu_missing", lambda mounts=None: cpu_missing(V2))
    err = _refused(capsys, emulate.main(["--hosts", "2", "--host-cpu", "emu1=0.5", "--", "mpirun", "-n", "2", "x"]))
    assert "needs cgroup v1's cpu controller" in err and "cgroup v2" in err and no_emulation == []
    # Without --host-cpu, cgroups are not needed.
    assert emulate.main(["--hosts", "2", "--", "mpirun", "-n", "2", "x"]) == 0


def test_checked_host_flags_reach_the_launch(no_emulation):
    assert emulate.main(["--hosts", "3", "--host-rate", "emu1=100mbit", "--host-cpu", "emu2=0.5", "--",
                         "mpirun", "-n", "3", "x"]) == 0
    ((args, kw),) = no_emulation
    topo, cpu = args[2], kw["cpu"]
    assert topo.host_rate_bits == {"emu1": 1e8} and cpu.shares == {"emu2": 0.5} and cpu.tag == topo.tag


def test_cleanup_runs_alone(no_emulation, capsys):
    err = _refused(capsys, emulate.main(["--cleanup", "--host-cpu", "emu0=0.5"]))
    assert "--cleanup runs alone: leave out --host-cpu" in err


class _Ran:
    def __init__(self, code, err):
        self.returncode, self.stderr, self.stdout = code, err, ""


@pytest.mark.parametrize("code, err, expected", [
    (2, "Error: Specified qdisc kind is unknown.\n", emuhost.NO_NETEM),
    (0, "", "--host-delay is not supported yet"),
])
def test_host_delay_is_refused(no_emulation, monkeypatch, capsys, tmp_path, code, err, expected):
    ran = []
    monkeypatch.setattr(emuhost, "MODULES", str(tmp_path / "no-modules"))
    monkeypatch.setattr(emuhost.os, "geteuid", lambda: 0)
    monkeypatch.setattr(emuhost.subprocess, "run", lambda cmd, **kw: ran.append(cmd) or _Ran(code, err))
    out = _refused(capsys, emulate.main(["--hosts", "2", "--host-delay", "emu1=5ms", "--", "mpirun", "-n", "2", "x"]))
    assert expected in out and no_emulation == []
    assert ran and ran[0][:2] == ["unshare", "--net"] and "netem" in ran[0]  # a throw-away namespace


def test_host_delay_where_netem_is_a_loaded_module(monkeypatch, tmp_path):
    modules = tmp_path / "modules"
    modules.write_text("sch_tbf 16384 0 - Live 0x0\nsch_netem 20480 0 - Live 0x0\n")
    monkeypatch.setattr(emuhost, "MODULES", str(modules))
    monkeypatch.setattr(emuhost.subprocess, "run", lambda *a, **kw: pytest.fail("no probe needed"))
    assert emuhost.delay_refusal().startswith("--host-delay is not supported yet")
