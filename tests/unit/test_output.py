"""The table, JSON Lines and CSV writers share one record format."""

import csv
import json

import pytest

from collectives.output import (FIELDS, CsvWriter, JsonlWriter, format_row, format_time,
                                open_sinks, render_table, table_header)


def _rec(**kw):
    rec = {k: None for k in FIELDS}
    rec.update(schema="collscale.row/1", kind="measured", status="ok", size_bytes=1024, count=256,
               dtype="float32", op="sum", root=None, in_place=False, time_us=12.345,
               algbw_gbs=0.083, busbw_gbs=0.124, wrong=0)
    rec.update(kw)
    return rec


@pytest.mark.parametrize("us, text", [(1.234, "   1.23"), (99.99, "  99.99"), (123.45, "  123.5"),
                                      (12345.6, "  12346")])
def test_time_cell_like_nccl_tests(us, text):
    assert format_time(us) == text


def test_row_has_out_of_place_then_in_place_cells():
    line = format_row([_rec(), _rec(in_place=True, time_us=10.0, wrong=3)])
    fields = line.split()
    assert fields[:5] == ["1024", "256", "float32", "sum", "-1"]
    assert fields[5:9] == ["12.35", "0.08", "0.12", "0"]
    assert fields[9:13] == ["10.00", "0.08", "0.12", "3"]


def test_unsupported_unchecked_and_missing_cells():
    line = format_row([_rec(status="unsupported"), _rec(in_place=True, wrong=None)])
    assert line.split()[5:13] == ["unsup", "-", "-", "-", "12.35", "0.08", "0.12", "N/A"]
    line = format_row([_rec(op=None, root=2)])
    assert line.split()[3:5] == ["none", "2"]
    assert line.split()[9:] == ["n/a", "-", "-", "-"]


def test_header_columns_line_up_with_rows():
    header = table_header()
    row = format_row([_rec(), _rec(in_place=True)])
    names = header[1]
    # Every column title ends where its values end.
    for title, value in zip(names.split()[1:], row.split()):
        assert names.index(title) + len(title) - 1 <= len(row)
    assert names.rstrip().endswith("#wrong") and len(names.rstrip()) == len(row)


def test_footer_ok_and_failed():
    text = render_table({"header_lines": ["# hi"]}, [[_rec()]], {"wrong": 0, "avg_busbw": 1.5})
    assert "# Out of bounds values : 0 OK" in text and "# Avg bus bandwidth    : 1.5" in text
    text = render_table({"header_lines": []}, [], {"wrong": 2, "avg_busbw": None,
                                                   "unsupported": ["x: no way"]})
    assert "# Out of bounds values : 2 FAILED" in text and "N/A" in text and "# unsup: x: no way" in text


def test_jsonl_appends_and_flushes_each_record(tmp_path):
    path = tmp_path / "r.jsonl"
    w = JsonlWriter(str(path))
    w.record(_rec(extra_key=1, time_us=float("nan")))
    # Flushed: readable before close.
    line = json.loads(path.read_text().splitlines()[0])
    assert list(line)[: len(FIELDS)] == list(FIELDS)
    assert line["extra_key"] == 1 and line["time_us"] is None
    w.close()
    w2 = JsonlWriter(str(path))
    w2.record(_rec())
    w2.close()
    assert len(path.read_text().splitlines()) == 2


def test_csv_writes_header_once(tmp_path):
    path = tmp_path / "r.csv"
    for _ in range(2):
        w = CsvWriter(str(path))
        w.record(_rec())
        w.close()
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 2 and rows[0]["size_bytes"] == "1024"
    assert path.read_text().count("schema,") == 1


def test_unwritable_path_names_the_file(tmp_path):
    with pytest.raises(OSError, match="cannot write .*nope/x.jsonl"):
        open_sinks(str(tmp_path / "nope" / "x.jsonl"), None)


def test_pandas_reads_both(tmp_path):
    pd = pytest.importorskip("pandas")
    j, c = tmp_path / "r.jsonl", tmp_path / "r.csv"
    for w in (JsonlWriter(str(j)), CsvWriter(str(c))):
        w.record(_rec())
        w.record(_rec(in_place=True, status="unsupported", reason="no", time_us=None))
        w.close()
    a, b = pd.read_json(j, lines=True), pd.read_csv(c)
    assert list(a["status"]) == list(b["status"]) == ["ok", "unsupported"]
    assert a["size_bytes"].tolist() == b["size_bytes"].tolist() == [1024, 1024]
