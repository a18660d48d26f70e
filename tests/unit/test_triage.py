"""analysis.triage_detect (the detector) and analysis.triage_sim (the schedule and faults on paper): pure."""

import math

import pytest

from analysis import triage_detect as triage, triage_sim
from analysis.triage_detect import Evidence


def _clean(hosts=8, bw=1.0):
    names = [f"emu{i}" for i in range(hosts)]
    pairs = {(a, b): bw * (1 + 0.01 * ((a * 7 + b * 3) % 5 - 2)) for a in range(hosts) for b in range(a + 1, hosts)}
    lat = {k: 10.0 for k in pairs}
    cpu = {i: 1.0 + 0.01 * (i % 3) for i in range(hosts)}
    return Evidence(names, cpu, pairs, lat)


def _kinds(f):
    return {(s.kind, s.who) for s in f.suspects}


def test_a_clean_cluster_has_no_suspect():
    f = triage.detect(_clean())
    assert f.clean and "28 pairs of 8 hosts" in f.notes[-1]


def test_each_verdict_on_its_own_evidence():
    ev = _clean()
    for k in ev.bw_gbs:  # emu3's link: every pair it is in at a fifth
        if 3 in k:
            ev.bw_gbs[k] *= 0.2
    ev.cpu_s[5] *= 2.0  # emu5's CPU at half its share; its pairs a little slower too
    for k in ev.bw_gbs:
        if 5 in k:
            ev.bw_gbs[k] *= 0.8
            ev.lat_us[k] *= 1.5
    ev.bw_gbs[(1, 6)] *= 0.25  # one bad cable
    f = triage.detect(ev)
    assert _kinds(f) == {("slow host link", "emu3"), ("slow host", "emu5"), ("slow link", "emu1-emu6")}
    host = next(s for s in f.suspects if s.kind == "slow host")
    assert "CPU probe 2.0" in host.evidence and "small-message time 1.50x" in host.evidence


def test_a_uniformly_slow_cluster_is_never_blamed_on_a_host():
    ev = _clean(bw=0.31)
    ev.model_gbs = 1.0
    f = triage.detect(ev)
    assert _kinds(f) == {("slow cluster", "all links")}
    assert any("all links at 31 % of the model" in n and "no host is to blame" in n for n in f.notes)


def test_small_differences_are_no_suspects():
    ev = _clean()
    for k in ev.bw_gbs:
        if 2 in k:
            ev.bw_gbs[k] *= 0.8  # 1.25x slower: clear, but below MIN_RATIO
    assert triage.detect(ev).clean


def test_bars():
    assert triage.z_bar(1) == pytest.approx(2.326, abs=1e-3)  # one-sided 1 %
    assert triage.z_bar(1000) > triage.z_bar(10)
    assert triage.robust_sigma([1, 1, 1]) == triage.MIN_SIGMA
    assert triage.robust_sigma([-1.0, 0.0, 1.0]) == pytest.approx(1.4826)


def test_the_simulation_plants_what_it_says():
    planted = triage_sim.Planted(slow_hosts=(1,), slow_host_links=(4,), slow_links=((7, 2),))
    ev = triage_sim.simulate(12, planted, cv=0.0, seed=3)
    assert ev.cpu_s[1] == pytest.approx(2.0) and ev.bw_gbs[(4, 9)] == pytest.approx(0.2)
    assert ev.bw_gbs[(2, 7)] == pytest.approx(0.2) and ev.bw_gbs[(0, 1)] == pytest.approx(1.0)
    assert planted.truth(ev.hosts) == {"h1": "slow host", "h4": "slow host link", "h2-h7": "slow link"}


def test_the_detector_finds_the_planted_faults_under_noise():
    score = triage_sim.trial(64, triage_sim.Planted((5,), (9,), ((20, 30),)), cv=0.05, seed=11)
    assert (score.planted, score.found, score.false) == (3, 3, 0)
    clean = triage_sim.trial(64, triage_sim.Planted(), cv=0.05, seed=12)
    assert clean.false == 0


def test_the_table_counts_rounds_and_messages():
    (row,) = triage_sim.table(sizes=(16,), cvs=(0.05,), trials=2)
    assert (row["rounds"], row["pairs"], row["messages"]) == (15, 120, 480)
    assert 0 <= row["recall"] <= 1 and math.isfinite(row["recall"])


def _triage_records(bw_of, cpu_of, hosts=tuple(f"emu{i}" for i in range(8))):
    from collectives import split
    from facts import record

    recs = [record.new("measured", "ok", collective="cpu_probe", transport="none", nranks=len(hosts), size_bytes=0,
                       time_us=100.0, rank_time_us=[100.0 * cpu_of(h) for h in hosts], rank_host=list(hosts))]
    for rnd in split.pair_rounds(len(hosts)):
        for a, b in rnd:
            for size, t in ((8, 10.0), (1 << 20, None)):
                busbw = bw_of(hosts[a], hosts[b])
                recs.append(record.new("measured", "ok", collective="sendrecv", transport="mpi", nranks=2,
                                       size_bytes=size, time_us=t or size / busbw / 1e3, busbw_gbs=busbw,
                                       split="pairs", group_hosts=f"{hosts[a]},{hosts[b]}"))
    return recs


def test_evidence_from_records_and_the_command(tmp_path, capsys):
    from analysis import triage as cli
    from tests.unit.test_analysis_errors import write_jsonl

    slow = {"emu2"}
    recs = _triage_records(lambda a, b: 0.2 if slow & {a, b} else 1.0 + 0.01 * len(a + b) % 3,
                           lambda h: 2.0 if h == "emu1" else 1.0)
    ev = cli.evidence(recs)
    assert ev.hosts == [f"emu{i}" for i in range(8)] and len(ev.bw_gbs) == 28 and len(ev.lat_us) == 28
    assert ev.cpu_s[1] == pytest.approx(200e-6)
    path = write_jsonl(tmp_path / "t.jsonl", recs)
    assert cli.main([str(path)]) == 4
    out = capsys.readouterr().out
    assert "slow host: emu1" in out and "slow host link: emu2" in out
    clean = write_jsonl(tmp_path / "c.jsonl", _triage_records(lambda a, b: 1.0, lambda h: 1.0))
    assert cli.main([str(clean)]) == 0 and "no suspect" in capsys.readouterr().out


def test_the_command_refuses_files_without_triage_records(tmp_path, capsys):
    from analysis import triage as cli
    from tests.unit.test_analysis_errors import rec, write_jsonl

    path = write_jsonl(tmp_path / "r.jsonl", [rec(2, 1024)])
    assert cli.main([str(path)]) == 2 and "no triage records" in capsys.readouterr().err


def test_the_heatmap_aggregates_many_hosts(tmp_path, monkeypatch):
    from analysis import triage as cli

    monkeypatch.setattr(cli, "HEATMAP_MAX", 4)
    ev = triage_sim.simulate(10, triage_sim.Planted(), cv=0.05, seed=1)
    assert cli.heatmap(ev, tmp_path / "h.png").stat().st_size > 0
