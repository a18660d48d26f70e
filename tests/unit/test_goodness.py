""""Is my number good?": busbw as a % of a fabric's model, the link peak, assumed latencies, guesses."""

import math

import pytest
from hypothesis import given, settings, strategies as st

import tests.unit.hypothesis_profile  # noqa: F401  (the project's profile: derandomized, no deadline)
from analysis import model_share, results
from analysis.load import points
from facts import fabrics, percent_of_model
from facts import record

NV3 = fabrics.get("nvlink3")
MiB = 1 << 20


def _ring_busbw(n, p, alpha, beta):
    """nccl-tests busbw of the ring allreduce model, by hand: t = 2(p-1) alpha + 2(p-1)/p n / beta."""
    t = 2 * (p - 1) * alpha + 2 * (p - 1) / p * n / beta
    return n / t * 2 * (p - 1) / p / 1e9


def test_ring_allreduce_inside_a_node_by_hand():
    s = percent_of_model.share(NV3, "allreduce", 64 * MiB, 8, 100.0)
    model = _ring_busbw(64 * MiB, 8, 1e-6, 216.6e9)
    assert s.model_busbw_gbs == pytest.approx(model)
    assert s.pct_model == pytest.approx(100 * 100.0 / model)
    # Without latency a ring allreduce's busbw is beta itself, at every rank count: the link peak.
    assert s.link_peak_gbs == pytest.approx(216.6)
    assert percent_of_model.share(NV3, "allreduce", 8, 4, 1.0).link_peak_gbs == pytest.approx(216.6)
    assert s.pct_link_peak == pytest.approx(100 * 100.0 / 216.6)


def test_beyond_a_node_the_two_level_model_and_its_slow_link():
    n, p, g = 64 * MiB, 16, 8
    s = percent_of_model.share(NV3, "allreduce", n, p, 10.0)
    # reduce-scatter + allgather on 8 GPUs over NVLink, an allreduce of n/8 between 2 nodes over HDR.
    t0 = 2 * (g - 1) / g * n / 216.6e9 + 2 * (2 - 1) / 2 * (n / g) / 25e9
    assert s.link_peak_gbs == pytest.approx(n / t0 * 2 * (p - 1) / p / 1e9)
    assert s.link_peak_gbs < 216.6
    assert s.model_busbw_gbs < s.link_peak_gbs


def test_a_percentage_resting_on_an_assumed_latency_says_so():
    small = percent_of_model.share(NV3, "allreduce", 8, 8, 1e-4)
    large = percent_of_model.share(NV3, "allreduce", 1 << 30, 8, 150.0)
    assert small.latency_assumed and small.assumed_latency_share > 0.99
    assert small.label().endswith("(assumed latency)")
    assert not large.latency_assumed and large.label() == f"{large.pct_model:.1f} %"
    # The boundary: at least LATENCY_SHARE of the model's time comes from the assumed alpha.
    n = 14e-6 * 216.6e9 / (2 * 7 / 8) * (1 / percent_of_model.LATENCY_SHARE - 1)  # alpha term = 10 % of t
    assert percent_of_model.share(NV3, "allreduce", n * 0.99, 8, 1.0).latency_assumed
    assert not percent_of_model.share(NV3, "allreduce", n * 1.01, 8, 1.0).latency_assumed


def test_a_measured_latency_is_never_labelled_assumed():
    from analysis.fit import ModelFit

    fit = ModelFit("shm", "allreduce", "ring", (2, 4), 5e-6, 2e9, None, "", 10, 0.01, 0.02, 0.99)
    s = percent_of_model.share(fabrics.from_fit(fit), "allreduce", 8, 4, 1e-6)
    assert s.assumed_latency_share == 0.0 and not s.latency_assumed


@pytest.mark.parametrize("pct, words", [(40, "below half"), (49.9, "below half"), (50, ""), (100, ""),
                                        (120, "above model")])
def test_verdict(pct, words):
    model = percent_of_model.share(NV3, "allreduce", 1 << 30, 8, 1.0).model_busbw_gbs
    assert percent_of_model.verdict(percent_of_model.share(NV3, "allreduce", 1 << 30, 8, model * pct / 100)) == words
    assert percent_of_model.verdict(None) == ""


@pytest.mark.parametrize("collective, size, p, busbw", [
    ("allreduce", MiB, 1, 0.0),  # one rank moves nothing
    ("allreduce", 0, 8, 1.0),
    ("allreduce", MiB, float("nan"), 1.0),  # a log without a rank count
    ("allreduce", MiB, 8, float("nan")),
    ("allreduce", MiB, 8, None),
    ("barrier", 0, 8, 0.0),  # no size
    ("p2p_bw", MiB, 2, 1.0),  # no cost model
    ("pingpong", MiB, 3, 1.0),  # pingpong is two ranks
    ("nope", MiB, 8, 1.0),
])
def test_nothing_to_compare(collective, size, p, busbw):
    assert percent_of_model.share(NV3, collective, size, p, busbw) is None


def test_every_collective_with_a_cost_model_compares():
    for name in ("allreduce", "allgather", "reduce_scatter", "broadcast", "reduce", "alltoall", "sendrecv"):
        for fab in fabrics.FABRICS.values():
            s = percent_of_model.share(fab, name, 16 * MiB, 8, 1.0)
            assert s is not None and s.model_busbw_gbs > 0, (name, fab.name)
    assert percent_of_model.share(NV3, "pingpong", MiB, 2, 1.0) is not None


@settings(max_examples=80)
@given(name=st.sampled_from(sorted(fabrics.FABRICS)),
       collective=st.sampled_from(["allreduce", "allgather", "reduce_scatter", "broadcast", "alltoall"]),
       size=st.integers(1, 1 << 34), p=st.integers(2, 4096), busbw=st.floats(0, 1e4))
def test_model_never_above_its_link_peak(name, collective, size, p, busbw):
    s = percent_of_model.share(fabrics.get(name), collective, size, p, busbw)
    assert s is not None
    assert 0 < s.model_busbw_gbs <= s.link_peak_gbs * (1 + 1e-9)
    assert 0.0 <= s.assumed_latency_share <= 1.0
    assert s.pct_model >= s.pct_link_peak * (1 - 1e-9)
    assert math.isclose(s.pct_model, 100 * busbw / s.model_busbw_gbs, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("gpu, hosts, per_host, ranks, name, per_node", [
    ("NVIDIA A100-SXM4-40GB", 2, 4, 8, "nvlink3", 4),  # Polaris: 4 GPUs a node
    ("A100-SXM4-40GB", 2, 8, 16, "nvlink3", 8),  # a DGX A100 pair
    ("NVIDIA H100 80GB HBM3", 2, 8, 16, "nvlink4", 8),
    ("NVIDIA H200", 1, 8, 8, "nvlink4", 8),
    ("AMD Instinct MI250X", None, None, 8, "mi250x-if", 8),
    ("AMD Instinct MI300X", 1, 8, 8, "mi300x-if", 8),
    ("HL-225", 1, 8, 8, "gaudi2-roce", 8),
    ("NVIDIA A100-SXM4-80GB", 1, 12, 12, "nvlink3", 12),  # one host holds them all: no hop between nodes
])
def test_guess(gpu, hosts, per_host, ranks, name, per_node):
    g = percent_of_model.guess(gpu, hosts, per_host, ranks)
    assert g.fabric.name == name and g.fabric.devices_per_node == per_node
    assert gpu in g.why
    if hosts is None:
        assert "no host count" in g.why


@pytest.mark.parametrize("gpu, why", [(None, "names no GPU model"), ("", "names no GPU model"),
                                      ("Tesla V100-SXM3-32GB", "no fabric model"),
                                      ("NVIDIA A100-PCIE-40GB", "PCIe"), ("NVIDIA H800", "no fabric model")])
def test_no_guess(gpu, why):
    g = percent_of_model.guess(gpu, 1, 8, 8)
    assert g.fabric is None and why in g.why


def _rec(transport, size, busbw, nranks=8, kind="measured", **kw):
    return record.new(kind, "ok", collective="allreduce", transport=transport, nranks=nranks, size_bytes=size,
                      time_us=max(1.0, size / busbw / 1e3) if busbw else 1.0, algbw_gbs=busbw,
                      busbw_gbs=busbw, **kw)


def _names(df):
    return [v if isinstance(v, str) else None for v in df["fabric"]]


def test_annotate_names_given_and_guessed():
    recs = [_rec("mine", 64 * MiB, 100.0, fabric="nvlink4"),  # measured with --fabric nvlink4: keeps it
            _rec("log", 64 * MiB, 100.0, gpu="NVIDIA A100-SXM4-40GB", nhosts=1, ranks_per_host=8),
            _rec("cpu", 64 * MiB, 1.0),
            _rec("nvlink3", 64 * MiB, 200.0, kind="modelled", fabric="nvlink3")]
    df = points.frame(recs)
    given, notes = model_share.annotate(df, "eth-100g")
    assert _names(given) == ["nvlink4", "eth-100g", "eth-100g", "nvlink3"] and notes == []
    assert given["pct_model"].iloc[0] == pytest.approx(percent_of_model.share(fabrics.get("nvlink4"), "allreduce",
                                                                      64 * MiB, 8, 100.0).pct_model)
    assert given["pct_model"].isna().iloc[3]  # a modelled row is not compared
    auto, notes = model_share.annotate(df, "auto")
    assert _names(auto)[:3] == ["nvlink4", "nvlink3", None]
    assert notes == ["cpu allreduce at 8 ranks: no guess: the log names no GPU model",
                     "log allreduce at 8 ranks: nvlink3 from NVIDIA A100-SXM4-40GB "
                     "(A100 SXM: NVLink3 + NVSwitch), 1 host"]
    plain, notes = model_share.annotate(df, None)
    assert _names(plain)[:3] == ["nvlink4", None, None] and notes == []


def test_headline_is_the_peak_busbw():
    assert percent_of_model.headline([8, 1024, MiB, 4 * MiB], [0.1, 5.0, 9.0, 8.0]) == 2
    assert percent_of_model.headline([8, MiB, 4 * MiB], [0.1, 9.0, 9.0]) == 2  # a tie: the larger size
    assert percent_of_model.headline([8], [float("nan")]) is None
    df = points.frame([_rec("log", s, b) for s, b in ((MiB, 50.0), (4 * MiB, 90.0), (8 * MiB, 80.0))])
    (choice, s, size), = model_share.headlines(df, "nvlink3").values()
    assert choice.how == "given" and size == 4 * MiB and s.busbw_gbs == 90.0


def test_fabric_argument():
    assert percent_of_model.check_arg("NVLink3") == "nvlink3" and percent_of_model.check_arg("auto") == "auto"
    with pytest.raises(ValueError, match="unknown fabric 'nope': give one of nvlink3, .*, or auto"):
        percent_of_model.check_arg("nope")


def test_results_cli_prints_the_percentages(tmp_path, capsys):
    import json

    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(_rec("log", s, 100.0, gpu="NVIDIA A100-SXM4-40GB", nhosts=2,
                                            ranks_per_host=4)) + "\n" for s in (8, 1 << 30)))
    assert results.main([str(path), "--fabric", "auto"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [err.strip()] and "fabric auto: log allreduce at 8 ranks: nvlink3" in err
    header, small, large = out.splitlines()[:3]
    assert header.split()[-3:] == ["fabric", "%model", "%peak"]
    assert small.split()[-3] == "nvlink3" and small.split()[-2].endswith("*")  # 8 B: all assumed latency
    assert not large.split()[-2].endswith("*") and out.splitlines()[-1].startswith("# %model")
    assert results.main([str(path), "--fabric", "nope"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("analysis.results: error: argument --fabric: unknown fabric 'nope'") and err.count("\n") == 1
    out_csv = tmp_path / "o.csv"
    assert results.main([str(path), "--fabric", "nvlink3", "--csv", str(out_csv)]) == 0
    import csv

    rows = list(csv.DictReader(out_csv.open()))
    assert float(rows[1]["pct_model"]) == pytest.approx(
        percent_of_model.share(fabrics.get("nvlink3"), "allreduce", 1 << 30, 8, 100.0).pct_model)
    assert rows[0]["model_latency_assumed"] == "True"


def test_choices_made_once_give_what_annotate_and_headlines_choose(monkeypatch):
    recs = [_rec("mine", 64 * MiB, 100.0, fabric="nvlink4"),
            _rec("log", 64 * MiB, 100.0, gpu="NVIDIA A100-SXM4-40GB", nhosts=1, ranks_per_host=8),
            _rec("cpu", 64 * MiB, 1.0)]
    df = points.frame(recs)
    for arg in ("auto", "eth-100g", None):
        chosen, notes = model_share.choices(df, arg)
        plain, plain_notes = model_share.annotate(df, arg)
        given, given_notes = model_share.annotate(df, arg, chosen)
        assert notes == plain_notes and given_notes == []
        assert given.equals(plain)
        assert model_share.headlines(df, arg, chosen) == model_share.headlines(df, arg)
    chosen, _ = model_share.choices(df, "auto")
    guessed = []
    monkeypatch.setattr(percent_of_model, "guess", lambda *a: guessed.append(a))
    model_share.annotate(df, "auto", chosen)
    model_share.headlines(df, "auto", chosen)
    assert guessed == []  # the choices made once are used, no guess made again
