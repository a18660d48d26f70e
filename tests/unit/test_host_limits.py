"""Nothing beyond the host: threads against the usable cores, a step's memory against what is
available, checked with fake core and memory counts (facts.host_limits, collectives.replicate)."""

import json

import pytest

from facts import host_limits as hl
from facts import workloads

GB = 10**9


# -- cores --------------------------------------------------------------------------------------

def test_threads_above_the_usable_cores_are_refused_in_one_line():
    msg = hl.threads_refusal(999, 2)
    assert msg == "--threads 999: this host has 2 usable cores; add --oversubscribe to run anyway"
    assert hl.threads_refusal(2, 2) is None and hl.threads_refusal(1, 1) is None
    assert "has 1 usable core;" in hl.threads_refusal(2, 1)


def test_threads_times_ranks_above_the_cores_is_a_note():
    note = hl.threads_note(2, 2, 2)
    assert note and "2 ranks x 2 threads = 4 threads on this host's 2 usable cores" in note
    assert hl.threads_note(1, 2, 2) is None and hl.threads_note(2, 1, 2) is None
    # Ranks alone above the cores (one thread each) are the header's oversubscription warning, not this.
    assert hl.threads_note(1, 4, 2) is None


def test_usable_cores_are_the_affinity_capped_by_a_cgroup_quota(tmp_path):
    assert hl.usable_cores(affinity=8, quota=2.5) == 3
    assert hl.usable_cores(affinity=2, quota=16.0) == 2
    assert hl.usable_cores(affinity=4, root=str(tmp_path)) == 4  # no cgroup files: no quota
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert hl.usable_cores(affinity=4, root=str(tmp_path)) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert hl.usable_cores(affinity=4, root=str(tmp_path)) == 4
    assert hl.usable_cores() >= 1


# -- memory -------------------------------------------------------------------------------------

def _meminfo(tmp_path, kib):
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       32000000 kB\nMemFree:        1000 kB\nMemAvailable:   {kib} kB\n")
    return str(path)


def test_available_memory_is_memavailable_capped_by_a_cgroup_limit(tmp_path):
    cg = tmp_path / "cg"
    cg.mkdir()
    meminfo = _meminfo(tmp_path, 20_000_000)
    assert hl.available_memory(meminfo, str(cg)) == 20_000_000 * 1024
    (cg / "memory.max").write_text("max\n")
    assert hl.available_memory(meminfo, str(cg)) == 20_000_000 * 1024
    (cg / "memory.max").write_text(f"{8 * GB}\n")
    (cg / "memory.current").write_text(f"{3 * GB}\n")
    assert hl.available_memory(meminfo, str(cg)) == 5 * GB
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text(f"{2 * GB}\n")
    (v1 / "memory" / "memory.usage_in_bytes").write_text(f"{GB}\n")
    assert hl.available_memory(meminfo, str(v1)) == GB
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1: no limit
    assert hl.available_memory(meminfo, str(v1)) == 20_000_000 * 1024
    assert hl.available_memory(str(tmp_path / "none"), str(tmp_path / "none")) is None


def test_every_torch_workload_has_a_measured_activation_figure():
    for name in workloads.names():
        w = workloads.get(name)
        if w.builder is None:
            continue
        value, unit = hl.ACTIVATION_BYTES[name]
        assert value > 0 and unit == ("token" if w.model_input.kind == "tokens" else "sample"), name
        assert hl.activation_bytes(w, 2) == pytest.approx(2 * hl.activation_bytes(w, 1), abs=1)
    gpt = workloads.get("gpt2-small")
    assert hl.activation_bytes(gpt, 1, 256) == pytest.approx(2 * hl.activation_bytes(gpt, 1, 128), abs=1)
    unet = workloads.get("unet")
    assert hl.activation_bytes(unet, 4, element_bytes=2) == pytest.approx(hl.activation_bytes(unet, 2), abs=1)
    # Bigger models need more per sample within a family.
    assert hl.ACTIVATION_BYTES["gpt2-xl"][0] > hl.ACTIVATION_BYTES["gpt2-small"][0]


def test_a_batch_that_cannot_fit_is_refused_with_its_figures():
    msg = hl.memory_refusal("unet", 100000, 10**8, 0.79e6, 2, int(20.1 * GB))
    assert msg == ("--batch 100000: unet needs about 79.1 GB per rank (0.79 MB activations per sample), "
                   "2 ranks on this host: 158 GB > 20.1 GB available")
    assert hl.memory_refusal("unet", 2, 10**8, 0.79e6, 2, int(20.1 * GB)) is None
    assert hl.memory_refusal("unet", 10**9, 10**8, 0.79e6, 2, None) is None  # memory unknown: no check
    # The model state alone: named after the model, not the batch.
    msg = hl.memory_refusal("genslm-25b", 2, 700 * GB, 1e6, 1, 20 * GB, params=25_076_188_032)
    assert msg.startswith("--model genslm-25b is too big for this host: about 700 GB per rank")
    assert "(25,076,188,032 parameters)" in msg and "700 GB > 20 GB available" in msg
    assert hl.size_text(29_500 * GB) == "29,500 GB" and hl.size_text(0.1678e6, "MB") == "0.168 MB"


# -- replicate: its checks before anything is built ------------------------------------------------

def _cfg(*argv):
    from collectives.replicate import parse_args

    return parse_args(list(argv))


def _share(ranks=2, hosts=1, cores=2, available=20 * GB, emulated=False):
    from collectives.replicate_host import HostShare

    return HostShare(ranks, hosts, cores, available, emulated)


def test_replicate_refuses_threads_above_the_cores_unless_oversubscribed():
    from collectives.replicate_host import host_limits

    w = workloads.get("braggnn")
    threads, refusals, notes = host_limits(_cfg("--threads", "999"), w, _share())
    assert refusals == ["--threads 999: this host has 2 usable cores; add --oversubscribe to run anyway"]
    threads, refusals, notes = host_limits(_cfg("--threads", "999", "--oversubscribe"), w, _share())
    assert threads == 999 and refusals == [] and "oversubscribed" in notes[0]
    threads, refusals, notes = host_limits(_cfg("--threads", "2"), w, _share())  # fits alone, not with 2 ranks
    assert threads == 2 and refusals == [] and "2 ranks x 2 threads = 4 threads" in notes[0]
    threads, refusals, notes = host_limits(_cfg(), w, _share(ranks=2, cores=16))
    assert threads == 8 and refusals == notes == []
    # Not the CPU: torch's threads do not run the model, and the device's memory is not this host's.
    assert host_limits(_cfg("--threads", "999", "--batch", "99999999"), w, _share(), cpu=False)[1] == []


def test_emulated_hosts_share_the_machines_cores():
    from collectives.replicate_host import host_limits, share_of, threads_line

    ctx = {"ranks": [{"host": "emu0", "affinity": [0, 1]}, {"host": "emu1", "affinity": [0, 1]}]}
    share = share_of(ctx, ["emulated:m1", "emulated:m1"], 1, 20 * GB)
    assert (share.ranks, share.hosts, share.cores, share.emulated) == (2, 2, 2, True)
    cfg = _cfg()
    threads, refusals, notes = host_limits(cfg, workloads.get("braggnn"), share)
    assert threads == 1 and refusals == notes == []
    assert threads_line(cfg, share, threads) == \
        "# threads: 2 ranks on 2 emulated hosts share this machine's 2 cores: 1 thread each"
    assert "this machine has 2 usable cores" in host_limits(_cfg("--threads", "3"), workloads.get("braggnn"),
                                                            share)[1][0]
    # Real hosts: only the ranks of one host share its cores.
    ctx = {"ranks": [{"host": "a", "affinity": [0, 1]}, {"host": "b", "affinity": [0, 1]}]}
    share = share_of(ctx, ["a", "b"], 0, 20 * GB)
    assert (share.ranks, share.hosts, share.cores, share.emulated) == (1, 1, 2, False)
    assert threads_line(cfg, share, 2) == "# threads: 1 rank on this host, its 2 usable cores: 2 threads"
    share = share_of({"ranks": ctx["ranks"] * 2}, ["a", "b", "a", "b"], 0, 20 * GB)
    assert threads_line(_cfg("--threads", "1"), share, 1) == \
        "# threads: 2 ranks on this host share its 2 usable cores: 1 thread each (--threads)"


def test_emulate_tells_its_ranks_which_machine_they_share():
    from launch.emulate import rank_env
    from launch.netns import Topology

    info = json.loads(rank_env(Topology(2, "1gbit", owner=9), {})["COLLSCALE_EMULATED"])
    assert info["hosts"] == 2 and info["machine_id"] and info["machine"]


def test_replicate_refuses_a_batch_that_cannot_fit_before_building():
    from collectives.replicate_host import host_limits

    w = workloads.get("unet")
    per_sample = hl.ACTIVATION_BYTES["unet"][0]
    _, refusals, _ = host_limits(_cfg("--model", "unet", "--batch", "2,100000"), w, _share(available=int(20.1 * GB)))
    (msg,) = refusals
    assert msg.startswith("--batch 100000: unet needs about ") and "2 ranks on this host: " in msg
    assert f"({hl.size_text(per_sample, 'MB')} activations per sample)" in msg and msg.endswith("20.1 GB available")
    assert host_limits(_cfg("--model", "unet", "--batch", "2"), w, _share(available=int(20.1 * GB)))[1] == []
    # bfloat16 halves weights, state and activations: a batch twice as large fits.
    need = 2 * (7_763_041 * 28 + 10 * per_sample)
    assert host_limits(_cfg("--model", "unet", "--batch", "10"), w, _share(available=int(need * 0.75)))[1]
    assert not host_limits(_cfg("--model", "unet", "--batch", "10", "--dtype", "bfloat16"), w,
                           _share(available=int(need * 0.75)))[1]


# -- analysis.scaling --measure-cpu -----------------------------------------------------------------

def test_scaling_refuses_threads_above_the_cores_unless_oversubscribed():
    from analysis.compute_cost import checked_threads

    with pytest.raises(ValueError, match=r"^--threads 999: this host has 2 usable cores; add --oversubscribe"):
        checked_threads(999, False, [1, 2], cores=2)
    assert checked_threads(999, True, [1, 2], cores=2) == 999
    assert checked_threads(None, False, [1, 2], cores=8) == 4
    assert checked_threads(2, False, [1], cores=2) == 2


def test_scaling_cli_refusal_is_one_line(capsys, monkeypatch):
    from analysis import scaling

    monkeypatch.setattr(hl, "usable_cores", lambda *a, **k: 2)
    code = scaling.main(["--model", "braggnn", "--fabric", scaling_fabric(), "--measure-cpu", "--threads", "999"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--threads 999: this host has 2 usable cores" in err


def scaling_fabric():
    from facts import fabrics

    return fabrics.names()[0]
