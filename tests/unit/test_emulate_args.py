"""launch.emulate / launch.netns without root: rates, names, and how launch commands are rewritten."""

import json

import pytest

from launch.emulate import mpirun_args, rank_env, torchrun_args
from launch.netns import IFACE, EmulationError, Topology, parse_rate


@pytest.mark.parametrize("text, bits", [("1gbit", 1e9), ("100mbit", 1e8), ("10Gbit", 1e10), ("2.5gbit", 2.5e9),
                                        ("500kbit", 5e5)])
def test_rates(text, bits):
    assert parse_rate(text) == bits


@pytest.mark.parametrize("text, message", [("1gbps", "bytes per second"), ("fast", "expected a number"),
                                           ("1", "expected a number"), ("1bit", "between"),
                                           ("900gbit", "between")])
def test_bad_rates(text, message):
    with pytest.raises(EmulationError, match=message):
        parse_rate(text)


def test_names_and_addresses():
    topo = Topology(3, "1gbit", owner=4321)
    assert [topo.ns(i) for i in range(3)] == ["cs4321h0", "cs4321h1", "cs4321h2"]
    assert topo.switch == "cs4321sw" and topo.ip(2) == "10.99.0.3" and topo.hostname(1) == "emu1"
    assert len(f"{topo.tag}p249") <= 15  # interface names are limited to 15 characters
    assert topo.burst_bytes == 125000  # one millisecond at 1 Gbit/s
    assert Topology(2, "10mbit", owner=1).burst_bytes == 32 * 1024
    with pytest.raises(EmulationError, match="--hosts 0"):
        Topology(0)


def test_mpirun_gets_hosts_ppn_and_launcher():
    topo = Topology(2, owner=9)
    cmd = mpirun_args(["mpirun", "-n", "4", "python", "-m", "collectives.allreduce", "-n", "5"], topo, None,
                      "/x/enter-host")
    assert cmd[:12] == ["mpirun", "-ppn", "2", "-hosts", "10.99.0.1,10.99.0.2", "-iface", IFACE,
                        "-launcher", "ssh", "-launcher-exec", "/x/enter-host", "-n"]
    assert cmd[-6:] == ["4", "python", "-m", "collectives.allreduce", "-n", "5"]
    # Rank counts that do not divide: Hydra fills hosts in turn, ppn rounds up.
    assert mpirun_args(["mpiexec", "-np", "3", "a.out"], topo, None, "L")[1:3] == ["-ppn", "2"]
    assert mpirun_args(["mpirun", "-n", "3", "a.out"], topo, 1, "L")[1:3] == ["-ppn", "1"]
    # The user's own -ppn is kept.
    assert mpirun_args(["mpirun", "-n", "4", "-ppn", "3", "a.out"], topo, None, "L").count("-ppn") == 1


@pytest.mark.parametrize("cmd, message", [
    (["mpirun", "-hosts", "a,b", "-n", "2", "x"], "-hosts"),
    (["mpirun", "-f", "hostfile", "-n", "2", "x"], "-f"),
    (["mpirun", "-launcher", "rsh", "-n", "2", "x"], "-launcher"),
    (["mpirun", "x"], "-n N"),
    (["mpirun", "-n"], "needs a value"),
])
def test_mpirun_options_the_emulation_owns(cmd, message):
    with pytest.raises(EmulationError, match=message):
        mpirun_args(cmd, Topology(2, owner=9), None, "L")


def test_torchrun_per_host():
    topo = Topology(3, owner=9)
    cmd = torchrun_args(["torchrun", "-m", "collectives.allreduce"], topo, 2, None)
    assert cmd == ["torchrun", "--nnodes", "3", "--node-rank", "2", "--master-addr", "10.99.0.1",
                   "--master-port", "29500", "--nproc-per-node", "1", "-m", "collectives.allreduce"]
    cmd = torchrun_args(["torchrun", "--nproc-per-node", "2", "x.py"], topo, 0, 4)
    assert cmd.count("--nproc-per-node") == 1
    # The program's own arguments (after -m or the script) are not torchrun's.
    assert torchrun_args(["torchrun", "--nproc-per-node=2", "-m", "tool", "--nnodes", "3"], topo, 0, None)[-2:] \
        == ["--nnodes", "3"]
    for bad in (["torchrun", "--nnodes", "2", "x.py"], ["torchrun", "--standalone", "x.py"],
                ["torchrun", "--master_addr=1.2.3.4", "x.py"],
                ["torchrun", "--nproc-per-node", "2", "--nnodes", "4", "-m", "x"],
                ["torchrun", "--max-restarts", "0", "--standalone", "x.py"]):
        with pytest.raises(EmulationError, match="the emulation sets"):
            torchrun_args(bad, topo, 0, None)


def test_rank_env_points_every_transport_at_the_link():
    said = []
    env = rank_env(Topology(2, "1gbit", owner=9), {"UCX_TLS": "all", "PATH": "/bin"}, say=said.append)
    assert env["UCX_TLS"] == "tcp,self" and env["GLOO_SOCKET_IFNAME"] == IFACE and env["FI_PROVIDER"] == "tcp"
    assert any("UCX_TLS=all replaced" in s for s in said)
    info = json.loads(env["COLLSCALE_EMULATED"])
    assert info["hosts"] == 2 and info["rate_bits"] == 1e9 and "emu0..emu1" in info["describe"]


def test_harness_reads_the_emulation():
    from ground import env as launch_env
    from ground.env import LaunchEnv

    env = rank_env(Topology(2, "1gbit", owner=9), {})
    assert launch_env.emulation(env)["hosts"] == 2
    assert launch_env.emulation({}) is None
    assert launch_env.emulation({"COLLSCALE_EMULATED": "not json"}) == {"describe": "not json"}
    # Emulated hosts share the machine's cores: every rank counts against them.
    launched = LaunchEnv("hydra", 0, 6, 0, 2, "emu0", 3)
    assert launch_env.ranks_sharing_cores(launched, env) == 6
    assert launch_env.ranks_sharing_cores(launched, {}) == 2
