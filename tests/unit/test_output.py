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


# -- appends that cannot glue or lose a row ------------------------------------------------

def _write_one(cls, path, **kw):
    w = cls(str(path))
    w.record(_rec(**kw))
    w.close()


@pytest.mark.parametrize("cls", [JsonlWriter, CsvWriter])
def test_a_record_never_glues_onto_a_line_without_newline(tmp_path, cls):
    path = tmp_path / ("r.jsonl" if cls is JsonlWriter else "r.csv")
    _write_one(cls, path, size_bytes=8)
    with open(path, "a") as f:  # a killed writer's torn last line
        f.write('{"schema":"collscale.row/1","kind":"meas' if cls is JsonlWriter else "schema,kind,stat")
    _write_one(cls, path, size_bytes=16)
    lines = path.read_text().splitlines()
    assert lines[-1].startswith('{"schema"' if cls is JsonlWriter else "collscale.row/1")
    assert lines[-2].endswith("meas" if cls is JsonlWriter else "stat")
    if cls is JsonlWriter:
        assert json.loads(lines[-1])["size_bytes"] == 16 and json.loads(lines[0])["size_bytes"] == 8


def test_a_foreign_jsonl_file_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text('{"partial": tru')
    with pytest.raises(ValueError, match="not a collscale JSON Lines file"):
        open_sinks(str(path), None)
    assert path.read_text() == '{"partial": tru'
    path.write_text('{"schema": "other/1"}\n')
    with pytest.raises(ValueError, match="not a collscale"):
        JsonlWriter(str(path))


def test_our_schema_family_and_newer_fields_may_be_appended_to(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"schema": "collscale.row/2", "new_field": 1}) + "\n")
    _write_one(JsonlWriter, path)
    assert len(path.read_text().splitlines()) == 2


def test_csv_with_another_header_is_refused(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="another CSV header"):
        open_sinks(None, str(path))
    assert path.read_text() == "a,b\n1,2\n"


def test_a_directory_is_no_output_file(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        open_sinks(str(tmp_path), None)


def test_a_full_disk_names_the_file_and_the_rows_written(tmp_path):
    w = JsonlWriter("/dev/full")
    with pytest.raises(OSError, match=r"cannot write /dev/full after 0 rows"):
        w.record(_rec())
    w.close()


def test_a_failed_write_leaves_no_partial_line(tmp_path, monkeypatch):
    import collectives.output as output

    path = tmp_path / "r.jsonl"
    w = JsonlWriter(str(path))
    w.record(_rec(size_bytes=8))
    real_write = output.os.write

    def half_then_full(fd, data):  # a disk that fills up halfway through the line
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(output.os, "write", half_then_full)
    with pytest.raises(OSError, match="after 1 rows were written"):
        w.record(_rec(size_bytes=16))
    monkeypatch.setattr(output.os, "write", real_write)
    w.record(_rec(size_bytes=32))
    w.close()
    assert [json.loads(x)["size_bytes"] for x in path.read_text().splitlines()] == [8, 32]


def test_a_pipe_can_be_the_output(tmp_path):
    import os

    r, w = os.pipe()
    try:
        sink = JsonlWriter(f"/proc/self/fd/{w}")
        sink.record(_rec(size_bytes=8))
        sink.record(_rec(size_bytes=16))
        sink.close()
        os.close(w)
        w = None
        lines = os.read(r, 1 << 16).decode().splitlines()
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
    assert [json.loads(x)["size_bytes"] for x in lines] == [8, 16]


def test_two_csv_writers_starting_together_write_one_header(tmp_path):
    path = str(tmp_path / "r.csv")
    a, b = CsvWriter(path), CsvWriter(path)  # both saw an empty (missing) file
    a.record(_rec(size_bytes=8))
    b.record(_rec(size_bytes=16))
    a.close()
    b.close()
    rows = list(csv.DictReader(open(path)))
    assert [r["size_bytes"] for r in rows] == ["8", "16"]


def test_no_file_is_created_until_a_record_exists(tmp_path):
    path = tmp_path / "r.jsonl"
    sink = JsonlWriter(str(path))
    sink.close()
    assert not path.exists()
    with pytest.raises(OSError):
        open_sinks(str(tmp_path / "missing" / "r.jsonl"), None)


def test_a_sweep_failure_record_starts_on_its_own_line(tmp_path):
    from launch.sweep import failure_record, record_failure

    path = tmp_path / "s.jsonl"
    path.write_text('{"schema":"collscale.row/1","kind":"meas')  # the killed point's torn row
    record_failure(str(path), failure_record("S", "p1", "allreduce", 2, "mpi", "killed"))
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["status"] == "failed"
