"""The block reader (analysis.load.arrow_blocks, pyarrow) gives what the line reader gives: the same columns, the
same warnings naming file:line, the same whole records and per-rank summaries, whatever it has to hand back."""

import json
import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyarrow")
orjson = pytest.importorskip("orjson")

from analysis import report, stragglers  # noqa: E402
from analysis.load import arrow_blocks, nested_texts, points, ranks, reader, record_checks, table  # noqa: E402
from facts import per_rank, record  # noqa: E402


def _rec(i, p=4, **extra):
    t = 1.0 + (i % 24) * 0.5
    hosts = {r: f"node{r // 2}" for r in range(p)}
    rec = record.new("measured", "ok", run_id=f"r{i // 24}", collective="allreduce", transport="shm", nranks=p,
                     size_bytes=8 << (i % 24), dtype="float32", op="sum", in_place=False, time_us=t,
                     algbw_gbs=(8 << (i % 24)) / t / 1e3, busbw_gbs=(8 << (i % 24)) / t / 1e3, busbw_factor=1.5,
                     **per_rank.fields([t * (1 + 0.01 * ((r * 7 + i) % 5)) for r in range(p)], hosts))
    rec.update(extra)
    return rec


def _write(path, recs, damage=(), torn=True):
    lines = [json.dumps(r, separators=(",", ":")) for r in recs]
    for i in damage:
        lines[i] = lines[i][:-30] + "}"
    text = "\n".join(lines) + "\n"
    if torn:
        text += lines[0][:50]
    path.write_text(text)
    return path


@pytest.fixture
def blocks(monkeypatch):
    """Every file by blocks, small ones: a bad line costs a few lines, not the file."""
    monkeypatch.setattr(reader, "ARROW_MIN_BYTES", 0)
    monkeypatch.setattr(arrow_blocks, "BLOCK", 1 << 15)
    monkeypatch.setattr(arrow_blocks, "MIN_LINES", 4)
    read = {"blocks": 0, "rows": 0}
    real = table.Table.add_block

    def counted(self, columns, lines, whole=()):
        read["blocks"] += 1
        read["rows"] += len(lines)
        return real(self, columns, lines, whole)

    monkeypatch.setattr(table.Table, "add_block", counted)
    real_blocks = arrow_blocks.blocks
    monkeypatch.setattr(arrow_blocks, "blocks",
                        lambda f, first_line=1, size=None, buffers=1: real_blocks(f, first_line, 1 << 15, buffers))
    return read


def _plain(col):
    return col.tolist() if isinstance(col, np.ndarray) else list(col)


def _same(a, b):
    """The two tables hold the same rows, lines, whole records and values (nested ones the same text)."""
    assert list(a.lines()) == list(b.lines())
    ca, cb = a.columns, b.columns
    assert list(ca) == list(cb)
    for key in cb:
        x, y = _plain(ca[key]), _plain(cb[key])
        for u, v in zip(x, y):
            assert (u == v and type(u) is type(v)) or (isinstance(u, float) and math.isnan(u) and math.isnan(v)), key
        assert len(x) == len(y)
    assert a.whole == b.whole


def _both(path, monkeypatch, **kw):
    said_blocks, said_lines = [], []
    by_blocks = reader.read_table([path], warn=said_blocks.append, **kw)
    monkeypatch.setattr(reader, "ARROW_MIN_BYTES", 1 << 62)
    by_lines = reader.read_table([path], warn=said_lines.append, **kw)
    assert said_blocks == said_lines
    return by_blocks, by_lines, said_lines


def test_blocks_give_the_line_readers_columns_and_warnings(tmp_path, blocks, monkeypatch):
    recs = [_rec(i, p=2 + i % 5) for i in range(600)]
    recs[100]["note"] = "a field the sample may not see"  # kept only where the sample saw it? the line's block
    recs[101]["root"] = 3  # null elsewhere: that block goes to the line reader
    path = _write(tmp_path / "r.jsonl", recs, damage=(300,))
    a, b, said = _both(path, monkeypatch)
    assert blocks["rows"] > 500, "the blocks were not read by pyarrow"
    cols = [k for k in b.columns if k != "note"]
    a_cols, b_cols = a.columns, b.columns
    assert len(said) == 1 and ":301: skipped: not JSON" in said[0] and "1 more (line 601)" in said[0]
    for key in cols:
        x, y = _plain(a_cols[key]), _plain(b_cols[key])
        if key in per_rank.FIELDS_JSON:
            x = [None if v is None else json.loads(v) for v in x]
            y = [None if v is None else json.loads(v) for v in y]
        assert x == y, key
    pd.testing.assert_frame_equal(points.frame(a, all_status=True).drop(columns=["note"], errors="ignore"),
                                  points.frame(b, all_status=True).drop(columns=["note"], errors="ignore"))


def test_blocks_give_the_reports_summaries_and_whole_records(tmp_path, blocks, monkeypatch):
    recs = [_rec(i, p=2 + i % 7) for i in range(400)]
    recs[50] = dict(_rec(50), collective="replicate")  # kept whole
    recs[60]["slowest_rank"] = None
    recs[61]["rank_time_us"] = [1.0, None, 2.0, 3.0]  # a damaged entry: that row by the per-record summary
    recs[62]["group_ranks"] = "4,5,6,7"
    recs[63]["slowest_rank"] = 6
    recs[62]["slowest_rank"] = 5
    recs[64]["kind"] = "modelled"
    path = _write(tmp_path / "r.jsonl", recs)
    kw = dict(drop=per_rank.FIELDS_JSON, hooks={"s": ranks.summary}, whole=report.read_whole)
    a, b, _ = _both(path, monkeypatch, **kw)
    assert blocks["rows"] > 300
    _same(a, b)
    assert [r["collective"] for r in a.records] == ["replicate"]
    got = stragglers.points_table(points.frame(a), "s")
    pd.testing.assert_frame_equal(got, stragglers.points_table(points.frame(b), "s"))
    assert not got.empty


def test_refused_blocks_go_to_the_line_reader(tmp_path, blocks, monkeypatch):
    """What a block cannot be read for -- a bandwidth to derive, a key inside a string, text where a number
    was, a CR line end, blank lines, another writer's shape -- costs speed only."""
    recs = [_rec(i) for i in range(300)]
    del recs[20]["algbw_gbs"]  # derived, and said so
    recs[40]["rank_host"] = ['"rank_host":', "x", "y", "z"]  # the key inside a string
    recs[80]["nranks"] = "four"  # skipped by the line reader
    recs[120]["time_us"] = -1.0
    path = tmp_path / "r.jsonl"
    lines = [json.dumps(r, separators=(",", ":")) for r in recs]
    lines[150] += "\r"
    lines[160:160] = ["", "   "]
    lines[200] = json.dumps(recs[200], indent=1).replace("\n", "")  # spaces between fields
    path.write_text("\n".join(lines) + "\n")
    a, b, said = _both(path, monkeypatch)
    _same(a, b)
    assert any("algbw_gbs missing in 1" in s for s in said)
    assert blocks["rows"] > 100


def test_nested_values_are_the_line_readers_text(tmp_path, blocks, monkeypatch):
    """Compact, keys sorted (host 10 before host 2): the text the line reader keeps, not the file's."""
    recs = [_rec(i, p=24) for i in range(200)]
    recs[5]["rank_host"] = None
    path = _write(tmp_path / "r.jsonl", recs, torn=False)
    tab = reader.read_table([path], warn=lambda m: None)
    assert blocks["rows"] == 200
    assert tab.columns["rank_host"][5] is None and tab.columns["rank_host"][6] == reader.nested_text(recs[6]["rank_host"])
    assert tab.columns["host_time_us"][7] == reader.nested_text(recs[7]["host_time_us"])
    assert '"node10"' in tab.columns["host_time_us"][7] and tab.columns["host_time_us"][7].index('"node10"') < \
        tab.columns["host_time_us"][7].index('"node2"')


def test_without_pyarrow_the_line_reader(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "ARROW_MIN_BYTES", 0)
    monkeypatch.setattr(arrow_blocks, "pa", None)
    path = _write(tmp_path / "r.jsonl", [_rec(i) for i in range(50)])
    assert not arrow_blocks.usable(table.Table(), None, 1 << 40)
    tab = reader.read_table([path], warn=lambda m: None)
    assert tab.n == 50


def test_the_line_reader_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv(arrow_blocks.LINES_ONLY, "1")
    assert not arrow_blocks.usable(table.Table(), None, 1 << 40)
    monkeypatch.setenv(arrow_blocks.LINES_ONLY, "0")
    assert arrow_blocks.usable(table.Table(), None, 1 << 40)


@pytest.mark.parametrize("buffers", [1, 2])
def test_blocks_are_whole_lines(tmp_path, buffers):
    """Blocks of whole lines, numbered; with two buffers, a block stays whole while the next is read."""
    data = b"".join(b'{"a":%d}\n' % i for i in range(1000)) + b'{"a":' + b"7" * 300 + b"}\n" + b'{"a":'
    path = tmp_path / "x"
    path.write_bytes(data)
    got, lines, last = b"", [], None
    with open(path, "rb") as f:
        for first, buf, n in arrow_blocks.blocks(f, 1, 100, buffers):
            if buffers == 2 and last is not None:
                assert bytes(last[0][:last[1]]) == last[2]  # the block before, untouched
            piece = bytes(buf[:n])
            last = (buf, n, piece)
            assert piece.endswith(b"\n") or piece == b'{"a":'
            lines.append((first, piece.count(b"\n")))
            got += piece
    assert got == data
    assert all(a + n == b for (a, n), (b, _) in zip(lines, lines[1:]))


def _line(rec):
    return json.dumps(rec, separators=(",", ":"))


def _swap(old, new):
    return lambda line: line.replace(old, new, 1)


_MODES = {"all": {}, "report": dict(drop=per_rank.FIELDS_JSON, hooks={"s": ranks.summary}, whole=report.read_whole),
          "predict": dict(drop=per_rank.FIELDS_JSON, keep=("phase", "op", "oversubscribed"))}
_HOSTILE = {  # line 6 (index 5) of 60 rewritten: what pyarrow reads and Python's parsers do not, and the like
    "Inf": _swap('"time_us_p99":', '"time_us_p99":Inf,"x":'),
    "-NaN": _swap('"time_us_p99":', '"time_us_p99":-NaN,"x":'),
    "not UTF-8": lambda line: line.replace('"ok"', '"o\udcff"').encode("utf-8", "surrogateescape").decode("latin-1"),
    "escaped key": _swap('"rank_host":', '"rank_h\\u006fst":'),
    "space before colon": _swap('"rank_host":', '"rank_host" :'),
    "bracket in a host": _swap('"node1"', '"n]{ode1"'),
    "rank_host as text": lambda line: line.replace('"rank_host":[', '"rank_host":"[').replace(']}', ']"}')
    .replace('"node0"', '\\"node0\\"').replace('"node1"', '\\"node1\\"'),
    "slowest true": _swap('"slowest_rank":', '"slowest_rank":true,"y":'),
    "huge time": lambda line: line.replace('"rank_time_us":[', '"rank_time_us":[1.7e308,'),
    "NaN rank time": lambda line: line.replace('"rank_time_us":[', '"rank_time_us":[NaN,'),
    "big int in a list": lambda line: line.replace('"rank_time_us":[', '"rank_time_us":[123456789012345678901234567890,'),
    "surrogate": _swap('"run_id":"', '"run_id":"\\ud800'),
    # where the nested values' suffix starts (nested_texts.tail): a key's name as a value, deeper, twice, in text
    "key name as a value": _swap('"run_id":"r0"', '"run_id":"rank_host"'),
    "key twice": lambda line: line[:-1] + ',"rank_time_us":[2.5,1]}',
    "key in escaped text": _swap('"run_id":"', '"run_id":"\\"rank_host\\":[1],'),
    "unsorted nested keys": lambda line: line[:-1] + ',"host_time_us":{"n1":[1,0.1],"n0":[0,{"y":2,"x":1}]}}',
    "spaces": lambda line: line.replace(",", " , ").replace(":", " : ") + "  ",
}


@pytest.mark.parametrize("case", sorted(_HOSTILE))
@pytest.mark.parametrize("mode", sorted(_MODES))
def test_hostile_lines_read_alike(tmp_path, blocks, monkeypatch, case, mode):
    lines = [_line(_rec(i)) for i in range(60)]
    lines[5] = _HOSTILE[case](lines[5])
    path = tmp_path / "r.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1" if case == "not UTF-8" else "utf-8"))
    a, b, _ = _both(path, monkeypatch, **_MODES[mode])
    _same(a, b)
    pd.testing.assert_frame_equal(points.frame(a, all_status=True), points.frame(b, all_status=True))


_TAILS = [  # (line, whether its suffix from the keys' last places is trusted)
    (b'{"a":1,"rank_host":["n0"],"rank_time_us":[1.5,2]}', True),
    (b'{"rank_time_us":[1,2],"a":{"rank_host":[9]},"rank_host":["n1"]}', True),
    (b'{"a":{"rank_host":[9]},"rank_host":["n1"]}', True),
    (b'{"a":[{"rank_host":[9]}],"rank_host":["n1"]}', True),
    (b'{"rank_host":["n1"],"a":[{"rank_host":[9]}]}', False),  # last found deeper: "]}" left over
    (b'{"rank_host":["n1"],"a":"rank_host"}', False),  # last found a value: no colon after it
    (b'{"a":"rank_host","rank_host":["n1"]}', True),
    (b'{"a":"x\\"rank_host\\":[1]","rank_host":["n1"]}', False),  # an escape: not looked at
    (b'{"rank_h\\u006fst":[3],"rank_host":["n1"]}', False),
    (b'{"a":1}', True),  # neither key: both absent
    (b'{"rank_host" : {"b":1,"a":[{"y":2,"x":1}]} , "rank_host":[4] }  ', True),  # the last of a key twice
    (b'{"rank_host":[1],"rank_time_us":[3],"a":{"rank_host":2}}', False),  # last rank_host deeper, first at top
    (b'{"rank_host":[1],"rank_time_us":[3],"a":"rank_host"}', False),
    (b'{"rank_time_us":[3],"a":{"rank_host":2}}', True),  # no rank_host at the top: none
    (b'{"rank_host":[1],"a":{"rank_time_us":[2]},"rank_time_us":[3]}', True),
]


def test_nested_values_from_a_trusted_suffix_only():
    keys = ["rank_host", "rank_time_us"]
    buf = b"".join(line + b"\n" for line, _ in _TAILS)
    ends = np.cumsum([len(line) + 1 for line, _ in _TAILS]) - 1
    starts = np.concatenate([[0], ends[:-1] + 1])
    got = nested_texts.texts(buf, starts, ends, keys)
    marks = [json.dumps(k).encode() for k in keys]
    for i, (line, trusted) in enumerate(_TAILS):
        assert [got[k][i] for k in keys] == record_checks.nested_of(line, keys)
        assert (nested_texts.tail(line, keys, marks, orjson.loads) is not None) == trusted, line


def test_a_required_column_missing_is_said_by_both(tmp_path, blocks, monkeypatch):
    """Measured records without a time first (the line reader's), then blocks of unsupported points: still
    'missing time_us' (a block of rows without a time must not reset what the line reader saw)."""
    recs = [dict(_rec(i), time_us=None) for i in range(4)]
    recs += [dict(_rec(i), status="unsupported", time_us=None) for i in range(4, 60)]
    path = _write(tmp_path / "r.jsonl", recs, torn=False)
    for limit in (0, 1 << 62):
        monkeypatch.setattr(reader, "ARROW_MIN_BYTES", limit)
        with pytest.raises(reader.ResultsError, match="missing required column"):
            reader.read_table([path], warn=lambda m: None)


def test_a_failed_point_without_a_size_reads(tmp_path, blocks, monkeypatch):
    recs = [_rec(i) for i in range(60)]
    del recs[5]["size_bytes"]
    recs[5]["status"] = "failed"
    a, b, _ = _both(_write(tmp_path / "r.jsonl", recs), monkeypatch)
    _same(a, b)
