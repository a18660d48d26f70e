"""The results loader, fabrics, predictions and scaling model."""

import json

import pytest

from analysis import predict, scaling
from analysis.load import points, reader
from facts import fabrics, workloads

pd = pytest.importorskip("pandas")


def _rec(**kw):
    r = {"schema": "collscale.row/1", "kind": "measured", "status": "ok", "collective": "allreduce",
         "transport": "shm", "nranks": 2, "size_bytes": 1024, "time_us": 10.0, "busbw_gbs": 0.1,
         "algbw_gbs": 0.1, "in_place": False}
    r.update(kw)
    return r


def test_loads_jsonl_and_csv_together(tmp_path):
    from collectives.output import CsvWriter, FIELDS

    j = tmp_path / "a.jsonl"
    j.write_text(json.dumps(_rec()) + "\n" + json.dumps(_rec(status="unsupported", time_us=None)) + "\n")
    c = tmp_path / "b.csv"
    w = CsvWriter(str(c))
    w.record({k: None for k in FIELDS} | _rec(in_place=True, size_bytes=2048))
    w.close()
    df = points.load([j, c])
    assert len(df) == 2 and set(df["placement"]) == {"out-of-place", "in-place"}
    assert len(points.load([j, c], all_status=True)) == 3


@pytest.mark.parametrize("content, message, strict", [
    ('{"schema": "collscale.row/1", "status": "ok"\n', "a.jsonl:1: not JSON", False),
    ('{"foo": 1}\n', "a.jsonl:1: not a collscale record", False),
    # A bad line after good records is read around (a warning) unless strict.
    (json.dumps(_rec()) + "\n[1, 2]\n", "a.jsonl:2: not a JSON object", True),
    (json.dumps({"schema": "collscale.row/1"}) + "\n", "a.jsonl:1: collscale record without collective", False),
    ("", "no records", False),
])
def test_malformed_or_foreign_files_name_the_line(tmp_path, content, message, strict):
    p = tmp_path / "a.jsonl"
    p.write_text(content)
    with pytest.raises(reader.ResultsError, match=message):
        points.load(p, strict=True)
    if not strict:
        with pytest.raises(reader.ResultsError, match=message):
            points.load(p)


def test_foreign_csv_and_missing_file(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(reader.ResultsError, match="x.csv:1: not a collscale CSV"):
        points.load(p)
    with pytest.raises(reader.ResultsError, match="no such file"):
        points.load(tmp_path / "nope.jsonl")


def test_every_fabric_figure_has_a_kind_and_a_source():
    for name in fabrics.names():
        fab = fabrics.get(name)
        figs = [fab.up.alpha, fab.up.beta, fab.gamma] + ([fab.out.alpha, fab.out.beta] if fab.out else [])
        for fig in figs:
            assert fig.kind in ("measured", "datasheet", "derived", "assumed") and fig.source
        assert fab.kind == "modelled"


def test_fabric_calibrations():
    # DGX-A100 measured 120.7 GB/s algbw at 8 GPUs, 64 MiB (docs/reference.md, "Fabric figures"):
    # the model must agree.
    a100 = fabrics.get("nvlink3")
    n = 64 * 2 ** 20
    assert n / a100.allreduce_time(n, 8) / 1e9 == pytest.approx(120.7, rel=0.02)
    # Gaudi1: 7 peers x 12.5 GB/s = 87.5 GB/s per direction: large-message busbw tends to it.
    g1 = fabrics.get("gaudi1-roce")
    big = 1 << 34
    assert big / g1.allreduce_time(big, 8) * 2 * 7 / 8 / 1e9 == pytest.approx(87.5, rel=0.01)


def test_hierarchical_beyond_a_node_costs_more_per_byte():
    a100 = fabrics.get("nvlink3")
    n = 256 * 2 ** 20
    assert a100.allreduce_time(n, 16) > a100.allreduce_time(n, 8) * 1.5


def test_predict_table_is_marked_modelled(capsys, tmp_path):
    out = tmp_path / "m.jsonl"
    assert predict.main(["--fabric", "gaudi1-roce", "--collective", "allreduce", "--ranks", "8", "-b", "8",
                         "-e", "1G", "-f", "4", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if not line.startswith("#")]
    assert rows and all(line.endswith("MODELLED") for line in rows)
    assert "MODELLED" in text.splitlines()[0]
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(r["kind"] == "modelled" for r in recs)
    df = points.load(out)
    assert set(df["kind"]) == {"modelled"}


def test_predict_bad_input(capsys):
    assert predict.main(["--fabric", "nope"]) == 2
    assert "unknown fabric 'nope'" in capsys.readouterr().err
    assert predict.main(["--fabric", "nvlink3", "-b", "1G", "-e", "1K"]) == 2


class _Flat:
    """A network with a known allreduce time: t(n, p) = c + n / bw."""

    def __init__(self, c, bw):
        self.c, self.bw = c, bw

    def network(self):
        return scaling.Network("flat", "test", lambda n, p: self.c + n / self.bw)


def test_step_time_overlap_by_hand():
    compute = scaling.Compute(0.01, "test", "given")  # 10 ms per sample
    net = _Flat(0.001, 1e9).network()  # 1 ms + 1 ns/B
    # Two buckets of 1 MB and 3 MB, batch 1: backward 6.67 ms, ready at 1.67 and 6.67 ms.
    s = scaling.step_time([10 ** 6, 3 * 10 ** 6], 1, 4, compute, net)
    backward = 0.01 * 2 / 3
    first_end = backward * 0.25 + 0.001 + 0.001
    second_end = max(backward, first_end) + 0.001 + 0.003
    assert s.comm_s == pytest.approx(0.006)
    assert s.exposed_s == pytest.approx(second_end - backward)
    assert s.step_s == pytest.approx(0.01 + second_end - backward)
    no = scaling.step_time([10 ** 6, 3 * 10 ** 6], 1, 4, compute, net, overlap=False)
    assert no.exposed_s == pytest.approx(0.006)
    assert scaling.step_time([10 ** 6], 1, 1, compute, net).exposed_s == 0.0


def test_efficiency_weak_and_strong():
    w = workloads.get("unet")
    compute = scaling.Compute(0.001, "test", "given")
    net = _Flat(0.0, 1e12).network()  # nearly free communication
    weak = scaling.curve(w, [32], [1, 2, 8], compute, net)
    assert [round(r["efficiency"], 3) for r in weak] == [1.0, 1.0, 1.0]
    slow = _Flat(0.05, 1e8).network()
    weak = scaling.curve(w, [32], [1, 8], compute, slow)
    assert weak[0]["efficiency"] == 1.0 and weak[1]["efficiency"] < 0.5
    strong = scaling.curve(w, [64], [1, 2, 128], compute, net, strong=True)
    assert [r["batch_per_device"] for r in strong] == [64, 32]  # 128 devices: less than one sample each
    assert all(r["kind"] == "modelled" for r in weak + strong)


def test_gradient_accumulation_amortises_communication():
    w = workloads.get("unet")
    compute = scaling.Compute(0.001, "test", "given")
    net = _Flat(0.05, 1e8).network()
    one = scaling.curve(w, [32], [8], compute, net, accum=1)[0]
    four = scaling.curve(w, [32], [8], compute, net, accum=4)[0]
    assert four["efficiency"] > one["efficiency"]


def test_scaling_cli_from_a_fabric(capsys):
    assert scaling.main(["--model", "unet", "--batch", "32,256", "--devices", "1,8", "--fabric", "nvlink3"]) == 0
    out = capsys.readouterr().out
    assert "MODELLED" in out.splitlines()[0] and out.count("MODELLED") >= 5
    assert scaling.main(["--model", "unet", "--fabric", "gaudi1-roce"]) == 2  # no published peak
    assert "no compute speed" in capsys.readouterr().err
