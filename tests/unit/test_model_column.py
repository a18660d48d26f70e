"""``--fabric NAME`` on the harness: the %model column of the table and the fields of each record."""

import io

import pytest

from facts import fabrics, percent_of_model
from collectives import cli, model_column, output
from facts import record
from collectives.output import TableWriter
from ground.comm import SelfComm
from tests.unit.fakes import register_fakes

register_fakes()


def _rec(size, busbw, in_place=False, nranks=8):
    algbw = busbw / (2 * (nranks - 1) / nranks)
    return record.new("measured", "ok", collective="allreduce", transport="x", nranks=nranks, size_bytes=size,
                      count=size // 4, dtype="float32", op="sum", root=None, in_place=in_place,
                      time_us=size / algbw / 1e3, algbw_gbs=algbw, busbw_gbs=busbw, wrong=0)


def test_the_sink_adds_the_model_before_the_others_see_the_record():
    sink = model_column.ModelColumn("nvlink3")
    big, small = _rec(64 << 20, 100.0), _rec(8, 0.001)
    sink.record(big)
    sink.record(small)
    want = percent_of_model.share(fabrics.get("nvlink3"), "allreduce", 64 << 20, 8, 100.0)
    assert big["fabric"] == "nvlink3" and big["pct_model"] == pytest.approx(want.pct_model)
    assert big["model_busbw_gbs"] == pytest.approx(want.model_busbw_gbs)
    assert big["pct_link_peak"] == pytest.approx(want.pct_link_peak) and big["model_latency_assumed"] is False
    assert small["model_latency_assumed"] is True
    skipped = record.new("measured", "unsupported", collective="allreduce", nranks=8, size_bytes=8)
    sink.record(skipped)
    assert skipped["fabric"] == "nvlink3" and skipped["pct_model"] is None
    assert model_column.sinks(type("C", (), {"fabric": None})()) == []


def test_the_table_gets_a_model_cell_per_placement():
    recs = [_rec(64 << 20, 100.0), _rec(64 << 20, 90.0, in_place=True)]
    sink = model_column.ModelColumn("nvlink3")
    for r in recs:
        sink.record(r)
    buf = io.StringIO()
    t = TableWriter(buf)
    t.header({"header_lines": ["# run"], "config": type("C", (), {"fabric": "nvlink3"})()})
    t.point(recs)
    lines = buf.getvalue().splitlines()
    assert lines[1].startswith("# %model: busbw as a % of the nvlink3 model")
    titles, row = lines[-3], lines[-1]
    assert titles.split()[-5:] == ["time", "algbw", "busbw", "#wrong", "%model"]
    cells = row.split()
    assert len(cells) == 15 and cells[9] == f"{recs[0]['pct_model']:.1f}" and cells[14] == f"{recs[1]['pct_model']:.1f}"
    # the columns line up under their titles
    assert titles.index("%model") + len("%model") == row.index(cells[9]) + len(cells[9])
    # without --fabric: nccl-tests' 13 columns, as before
    plain = io.StringIO()
    TableWriter(plain).point(recs)
    assert len(plain.getvalue().split()) == 13 and output.table_header()[1].split()[-1] == "#wrong"


def test_harness_in_process_with_fabric(tmp_path):
    out = tmp_path / "r.jsonl"
    buf = io.StringIO()
    recs = cli.run("allreduce", SelfComm(), ["--transport", "loopback", "-e", "64", "-n", "2", "-w", "0",
                                             "--fabric", "NVLink4", "--json", str(out)], [TableWriter(buf)])
    assert all(r["fabric"] == "nvlink4" and r["pct_model"] is None for r in recs)  # one rank: nothing to compare
    assert "%model" in buf.getvalue() and '"fabric":"nvlink4"' in out.read_text()


def test_unknown_fabric_is_a_usage_error():
    from ground.dtypes import ConfigError

    with pytest.raises(ConfigError, match="unknown fabric 'nope': give one of nvlink3, nvlink4"):
        cli.parse_args("allreduce", ["--fabric", "nope"])
