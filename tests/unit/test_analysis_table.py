"""read_table (columns, for results of any size) gives what read_records gives, and the report's straggler table
from per-record summaries equals the one from the ranks frame (analysis.load.table, analysis.stragglers)."""

import json

import pandas as pd

from analysis import stragglers
from analysis.load import points, ranks, reader, record_checks
from facts import per_rank, record


def _rec(run, size, p, t, **extra):
    hosts = {r: f"h{r // 2}" for r in range(p)}
    rec = record.new("measured", "ok", run_id=run, collective="allreduce", transport="shm", nranks=p, size_bytes=size,
                     dtype="float32", op="sum", in_place=False, time_us=t, algbw_gbs=size / t / 1e3,
                     busbw_gbs=size / t / 1e3, busbw_factor=1.0,
                     **per_rank.fields([t * (1 + 0.1 * r) for r in range(p)], hosts))
    rec.update(extra)
    return rec


def _file(tmp_path):
    recs = [_rec("a", 8 << k, p, 1.0 + k) for p in (2, 4) for k in range(3)]
    recs += [_rec("a", 8, 2, 5.0)]  # the same point again: its ranks pooled
    recs += [_rec("b", 64, 3, 2.0, rank_time_us=None, rank_host=None, phase="up")]  # per host only; a phase
    recs += [_rec("b", 128, 2, 3.0, note="extra field")]
    recs += [dict(_rec("c", 8, 2, 1.0), in_place=True, collective="replicate")]
    del recs[1]["algbw_gbs"]  # derived, and said so
    lines = [json.dumps(r, separators=(",", ":")) for r in recs]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines[:3] + ["{not json"] + lines[3:]) + "\n" + lines[0][:40])  # torn last line
    return path


def test_read_table_gives_the_frame_and_warnings_of_read_records(tmp_path):
    path = _file(tmp_path)
    said_records, said_table = [], []
    by_records = points.frame(reader.read_records([path], warn=said_records.append), all_status=True)
    tab = reader.read_table([path], warn=said_table.append, whole=lambda r: r["collective"] == "replicate")
    pd.testing.assert_frame_equal(points.frame(tab, all_status=True), by_records)
    assert said_table == said_records and len(said_table) == 2 and ":4: skipped" in said_table[0]
    assert [r["run_id"] for r in tab.records] == ["c"]
    kept = reader.read_table([path], warn=lambda m: None, drop=per_rank.FIELDS_JSON, keep=("op",))
    assert "rank_time_us" not in kept.columns and "run_id" not in kept.columns and "op" in kept.columns


def test_straggler_table_from_summaries_equals_the_one_from_the_ranks_frame(tmp_path):
    path = _file(tmp_path)
    want = stragglers.series_table(ranks.frame(reader.read_records([path], warn=lambda m: None)))
    tab = reader.read_table([path], warn=lambda m: None, drop=per_rank.FIELDS_JSON, hooks={"s": ranks.summary})
    got = stragglers.points_table(points.frame(tab), "s")
    pd.testing.assert_frame_equal(got, want)
    assert stragglers.section(got) == stragglers.section(ranks.frame(reader.read_records([path], warn=lambda m: None)))


def test_nested_values_are_kept_as_compact_sorted_json():
    value = {"b": [1, 2.5], "a": {"n": 3}}
    assert reader.nested_text(value) == json.dumps(value, sort_keys=True, separators=(",", ":"))


def test_without_orjson_the_same_frame_and_warnings(tmp_path, monkeypatch):
    """orjson is optional: with json alone (orjson absent) the reader gives the same frame and warnings."""
    path = _file(tmp_path)
    said_fast, said_plain = [], []
    fast = points.frame(reader.read_table([path], warn=said_fast.append), all_status=True)
    monkeypatch.setattr(record_checks, "orjson", None)
    plain = points.frame(reader.read_table([path], warn=said_plain.append), all_status=True)
    pd.testing.assert_frame_equal(plain, fast)
    assert said_plain == said_fast and len(said_plain) == 2
