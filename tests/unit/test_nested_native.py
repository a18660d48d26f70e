"""The C pass over nested values (analysis.load.nested_native, nested_json.c): where it says a line is sure, its
text is exactly the line reader's (orjson's compact text, keys sorted); what it cannot tell, it leaves to Python."""

import json
import random
import struct

import numpy as np
import pytest

pytest.importorskip("pyarrow")
orjson = pytest.importorskip("orjson")

from analysis.load import nested_native, nested_texts, record_checks  # noqa: E402

KEYS = ["rank_host", "rank_time_us", "iter_stats"]


@pytest.fixture(scope="module")
def native():
    if nested_native.library() is None:
        pytest.skip(f"the C pass cannot be built here: {nested_native.library.why}")
    return nested_native


def _scan(lines, keys=KEYS):
    buf = bytearray(b"".join(line + b"\n" for line in lines))
    ends = np.cumsum([len(line) + 1 for line in lines]) - 1
    starts = np.concatenate([[0], ends[:-1] + 1])
    got = nested_native.scan(buf, starts, ends, keys)
    return got.columns(), set(got.unsure.tolist())


def _expected(line, keys=KEYS):
    return record_checks.nested_of(line, keys)


_SURE = [  # lines the C writes itself: compact or not, keys in any order, every number in its shortest form
    b'{"a":1,"rank_host":["n0","n1"],"rank_time_us":[1.5,2,0.6831760000000001,-0.0,0.0001,123456789012345.0]}',
    b'{ "rank_time_us" : [ 1.25 , 3 ] , "rank_host" : null }  ',
    b'{"iter_stats":{"10":{"n":20,"mean":1.5,"cv":0.01},"2":{"p99":0.9011600000000001,"n":1}},"x":[1,{"y":2}]}',
    b'{"rank_host":[],"iter_stats":{},"rank_time_us":[[1,[2,[true,false,null]]],{"b":{},"a":[]}]}',
    b'{"rank_host":["a"],"rank_host":["b"]}',  # a key twice: the last, as the parsers keep
    b'{"a":"\xc3\xa9","b":1e-9,"c":-2E+5,"rank_host":["n"]}',  # any text and number outside the fields
    b'{}',
    b'{"a":{"rank_host":[9]},"rank_host":["top"]}',  # the same key deeper is not the field
    b'{"rank_time_us":[0.1,0.2,0.30000000000000004,100.5]}',
    b'{"rank_time_us":[9007199254740993,-12,999999999999999999]}',
]
_UNSURE = [  # lines whose text the C cannot tell from their bytes: Python parses them
    b'{"rank_time_us":[1.50]}',  # a trailing zero: not the shortest text
    b'{"rank_time_us":[0.00001]}',  # below 1e-4: the shortest text has an exponent
    b'{"rank_time_us":[1e-05]}',
    b'{"rank_time_us":[1E5]}',
    b'{"rank_time_us":[0.10000000000000001]}',  # 17 digits where 1 does
    b'{"rank_time_us":[1234567890123456.5]}',
    b'{"rank_time_us":[-0]}',
    b'{"rank_time_us":[1234567890123456789]}',
    b'{"rank_host":["n\\u0030"]}',  # an escape
    b'{"a":"\\"","rank_host":["n"]}',  # an escape anywhere
    b'{"rank_host":["\xc3\xa9"]}',  # not ASCII in a nested text
    b'{"rank_host":["a\x7f"]}',
    b'{"iter_stats":{"a":1,"a":2}}',  # a key twice inside
    b'{"rank_host":"n0"}',  # a scalar where a nested value was seen
    b'{"rank_host":[NaN]}',
    b'{"x":Infinity,"rank_host":["n"]}',
    b'{"rank_host":["n"]} x',
    b'[1,2]',
    b'{"rank_host":' + b"[" * 70 + b"]" * 70 + b"}",  # deeper than the C goes
]


def test_sure_lines_are_the_line_readers_text(native):
    cols, unsure = _scan(_SURE)
    assert not unsure
    for i, line in enumerate(_SURE):
        assert [cols[k][i] for k in KEYS] == _expected(line), line


def test_unsure_lines_are_left_to_python(native):
    lines = _UNSURE + _SURE[:1]
    cols, unsure = _scan(lines)
    assert unsure == set(range(len(_UNSURE)))
    assert [cols[k][len(_UNSURE)] for k in KEYS] == _expected(_SURE[0])
    assert all(cols[k][i] is None for k in KEYS for i in unsure)


def test_texts_fill_the_unsure_rows(native):
    lines = [line for pair in zip(_SURE, _UNSURE) for line in pair if b"[[[[" not in line]
    lines = [line for line in lines if line.startswith(b"{") and not line.endswith(b"x") and b"NaN]" not in line
             and b"Infinity" not in line]
    buf = b"".join(line + b"\n" for line in lines)
    ends = np.cumsum([len(line) + 1 for line in lines]) - 1
    starts = np.concatenate([[0], ends[:-1] + 1])
    scan = nested_native.scan(buf, starts, ends, KEYS)
    assert len(scan.unsure)
    got = nested_texts.texts(buf, starts, ends, KEYS, scan)
    for i, line in enumerate(lines):
        assert [got[k][i] for k in KEYS] == _expected(line), line


def _double(rng):
    kind = rng.random()
    if kind < 0.4:
        return struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
    if kind < 0.8:
        return rng.uniform(-1, 1) * 10.0 ** rng.randint(-8, 17)
    return round(rng.uniform(0, 1000), rng.randint(0, 6))


def test_every_number_sure_only_where_its_text_is_the_shortest(native):
    """Random doubles as repr writes them, and as texts of the same value that are not the shortest."""
    rng = random.Random(25)
    lines, sure_expected = [], 0
    for _ in range(3000):
        x = _double(rng)
        if x != x or x in (float("inf"), float("-inf")):
            continue
        for text in (repr(x), "%.17g" % x, "%.16g" % x, "%.15f" % x, json.dumps(x)):
            if text in ("inf", "-inf", "nan") or "." not in text and "e" not in text:
                continue
            lines.append(b'{"rank_time_us":[%s,1]}' % text.encode())
            sure_expected += text == repr(x) and "e" not in text
    cols, unsure = _scan(lines, ["rank_time_us"])
    for i, line in enumerate(lines):
        if i not in unsure:
            assert cols["rank_time_us"][i] == _expected(line, ["rank_time_us"])[0], line
    assert len(lines) - len(unsure) >= sure_expected  # every repr in fixed notation is written by the C


def test_random_values_in_random_layouts(native):
    rng = random.Random(7)

    def value(depth=0):
        r = rng.random()
        if depth < 3 and r < 0.25:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        if depth < 3 and r < 0.45:
            return {rng.choice(["a", "b", "n", "p99", "10", "2", "node1", "é"]): value(depth + 1)
                    for _ in range(rng.randint(0, 4))}
        return rng.choice([rng.randint(-10**6, 10**6), _double(rng), round(rng.random(), 4), "h", True, None])

    lines = []
    for _ in range(1500):
        rec = {k: value() for k in KEYS if rng.random() < 0.8}
        rec["z"] = value()
        items = list(rec.items())
        rng.shuffle(items)
        layout = rng.choice([dict(separators=(",", ":")), {}, dict(indent=1), dict(sort_keys=True)])
        text = json.dumps(dict(items), ensure_ascii=rng.random() < 0.5, **layout).replace("\n", " ")
        if "NaN" in text or "Infinity" in text:
            continue
        lines.append(text.encode())
    cols, unsure = _scan(lines)
    for i, line in enumerate(lines):
        if i not in unsure:
            assert [cols[k][i] for k in KEYS] == _expected(line), line
    assert len(lines) - len(unsure) > 100  # the comparison is not empty (most lines hold some unsure value)


def test_no_compiler_means_python_alone(monkeypatch, tmp_path):
    """Where the C cannot be built the block reader parses every line in Python (the same texts)."""
    monkeypatch.setattr(nested_native, "library", lambda: None)
    buf = b"".join(line + b"\n" for line in _SURE)
    ends = np.cumsum([len(line) + 1 for line in _SURE]) - 1
    starts = np.concatenate([[0], ends[:-1] + 1])
    assert nested_native.scan(buf, starts, ends, KEYS) is None
    got = nested_texts.texts(buf, starts, ends, KEYS)
    assert [got[k][0] for k in KEYS] == _expected(_SURE[0])


def test_bad_calls_are_refused(native):
    buf = b'{"rank_host":["a"]}\n{"rank_host":\n'
    with pytest.raises(ValueError, match="twice"):
        nested_native.scan(buf, np.array([0]), np.array([19]), ["rank_host", "rank_host"])
    with pytest.raises(ValueError, match="in order"):
        nested_native.scan(buf, np.array([20, 0]), np.array([33, 19]), ["rank_host"])
    cols, unsure = _scan([b'{"rank_host":', b'{"rank_host": '])  # a line that ends at a wanted key's colon
    assert unsure == {0, 1}
