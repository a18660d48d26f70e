"""Large JSON Lines results read a block at a time by pyarrow's JSON reader, into :class:`~analysis.load.table.Table`.

The line reader (:mod:`analysis.load.reader`) checks each record in Python:
about 30 us a record, so 30 s for a million.  With pyarrow installed (the
``analysis`` extra), a file of at least :data:`MIN_BYTES` is read in blocks
of whole lines (:data:`BLOCK` bytes); each block is parsed by pyarrow's
multi-threaded JSON reader into columns, and the reader's checks run on the
columns at once.  A block that anything is wrong with -- a line that is not
JSON, not UTF-8, not an object or not ours, a value of an unexpected type,
a field missing, a measured record without a usable time or bandwidth --
is halved, each half tried again, down to :data:`MIN_LINES` lines, which
the line reader reads as it reads any file: skipping the bad lines with
their ``file:line``, deriving missing bandwidths.  Both give the same
records; a block read here just costs far less.  The next block is read
and parsed in a thread while the last one is finished.

Which fields a block has is taken from a sample of its lines (the first, the
last and every :data:`SAMPLE`-th, parsed in full): pyarrow is told those
fields, with the types the sample shows, and ignores any other.  A field
that appears in no line of the sample is therefore not kept from that
block; records of one writer have the same fields, so this drops nothing
from collscale's own results (``COLLSCALE_READ_BY_LINES=1`` reads a file
that mixes writers line by line).

Nested values (per-rank lists and dicts) that a command keeps are the
line reader's compact JSON text with sorted keys: written in C (in the
main thread, the GIL let go, while the next block is parsed) where a
line's bytes tell them exactly
(:mod:`analysis.load.nested_native`), else by parsing the line again
(:mod:`analysis.load.nested_texts`).  Hooks (:func:`analysis.load.reader.read_table`) run on whole
blocks when they carry a ``columns`` function (:func:`analysis.load.ranks.summary`
does), and the predicate choosing whole records when it names its ``fields``;
otherwise the file goes to the line reader.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from analysis.load import nested_native, nested_texts
from analysis.load.record_checks import CHECKED, MAX_BYTES, MAX_RANKS, MEASURED, NO_BANDWIDTH, Bad, record_of

try:  # optional (the analysis extra)
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
except ImportError:  # pragma: no cover - depends on the environment
    pa = None

try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

__all__ = ["BLOCK", "MIN_BYTES", "SAMPLE", "LINES_ONLY", "available", "usable", "blocks", "read_file", "Block"]

LINES_ONLY = "COLLSCALE_READ_BY_LINES"  # =1: every file by the line reader (a file that mixes writers' fields)
BLOCK = 32 << 20  # bytes of whole lines parsed at once
MIN_BYTES = 64 << 20  # smaller files: the line reader (a fraction of a second for them)
SAMPLE = 16  # every SAMPLE-th line of a block is parsed in full to learn its fields
MIN_LINES = 512  # a refused block is halved down to this many lines
TYPED_LISTS = {"rank_time_us": "double", "rank_host": "string"}  # nested fields a hook may read as columns


def available() -> bool:
    """Whether pyarrow (and orjson, which samples each block) can be imported."""
    return pa is not None and orjson is not None


def usable(sink, hooks, size: int, min_bytes: int = MIN_BYTES) -> bool:
    """Whether a JSON Lines file of ``size`` bytes read into ``sink`` with ``hooks`` can take this path."""
    if not available() or size < min_bytes or not hasattr(sink, "add_block") or os.environ.get(LINES_ONLY) == "1":
        return False
    if any(getattr(h, "columns", None) is None for h in (hooks or {}).values()):
        return False
    return sink.whole_rule is None or getattr(sink.whole_rule, "fields", None) is not None


def blocks(f, first_line: int = 1, size: int = BLOCK, buffers: int = 1) -> Iterator[Tuple[int, bytearray, int]]:
    """(number of its first line, buffer, length) of each block of whole lines of the open binary file
    ``f``: the block is ``buffer[:length]``, valid until ``buffers`` more blocks are asked for (the
    buffers are reused in turn).  The last block is what follows the last newline (a torn line), if
    anything."""
    bufs = [bytearray(size) for _ in range(buffers)]
    turn = 0
    buf = bufs[0]
    have = 0  # bytes in buf: the carry of the previous read, then what this read added
    number = first_line
    while True:
        if have == len(buf):  # a line longer than the buffer
            buf = bufs[turn] = buf + bytearray(len(buf))
        got = f.readinto(memoryview(buf)[have:])
        if not got:
            break
        have += got
        cut = buf.rfind(b"\n", 0, have) + 1
        if not cut:
            continue
        yield number, buf, cut
        number += buf.count(b"\n", 0, cut)
        turn = (turn + 1) % buffers
        nxt = bufs[turn]
        if len(nxt) < have - cut:
            nxt = bufs[turn] = bytearray(len(buf))
        nxt[:have - cut] = buf[cut:have]
        buf, have = nxt, have - cut
    if have:
        yield number, buf, have


def read_file(f, sink, hooks: Dict[str, Callable], numeric: Sequence[str],
              by_lines: Callable[[int, List[bytes]], None]) -> Iterator["Block"]:
    """Every block of the open binary file ``f`` into ``sink`` (a :class:`~analysis.load.table.Table`),
    yielding each :class:`Block` read; each region refused goes to ``by_lines(its first line number, its
    lines)`` (the line reader).  ``hooks``: name -> hook with a ``columns`` function (of the pyarrow table
    and the block's fields); ``numeric``: the fields the line reader reads as numbers (whose ints and
    floats may mix in a block)."""
    how = _Reading(sink.drop, hooks, sink.whole_rule, frozenset(numeric), {})
    source = blocks(f, buffers=2)

    def ahead():  # in a thread of its own: the next block read and parsed while the last one is finished
        nxt = next(source, None)
        if nxt is None:
            return None
        try:
            return nxt, _parse(nxt[1], 0, nxt[2], nxt[0], how)
        except _Refused:
            return nxt, None

    with ThreadPoolExecutor(1) as pool:  # pyarrow's parse lets go of the GIL: one block's parse overlaps
        pending = pool.submit(ahead)    # the Python work on the one before
        while True:
            got = pending.result()
            if got is None:
                break
            (first, buf, length), parsed = got
            pending = pool.submit(ahead)  # into the other buffer: this one is read until the next turn
            try:
                if parsed is None:
                    raise _Refused
                done: Iterator = iter([_finish(parsed, how)])
            except _Refused:
                done = _halves(buf, 0, length, first, how)
            for block in done:
                if isinstance(block, Block):
                    sink.add_block(block.columns, block.lines, block.whole)
                    yield block
                else:
                    by_lines(block[0], _lines_of(block[1]))


def _lines_of(data: bytes) -> List[bytes]:
    """The lines of ``data``, each with its newline (the last may lack it), split as a file is: at \\n only."""
    lines = [line + b"\n" for line in data.split(b"\n")]
    last = lines.pop()
    if last != b"\n":
        lines.append(last[:-1])
    return lines


class _Reading(NamedTuple):
    """How one file is read: the fields the sink drops, the hooks, the predicate of records kept whole
    (with its ``fields``), the numeric fields, and field -> {text: text} (repeated text one object)."""

    drop: object
    hooks: Dict[str, Callable]
    whole: Optional[Callable[[dict], bool]]
    numeric: frozenset
    memo: Dict[str, dict]

    def keep(self, key: str) -> bool:
        return key not in self.drop


class Block:
    """One block read as columns: ``columns`` (field -> its values: a list or a numpy array), ``lines``
    (each row's line number) and ``whole`` ((row, record) of the rows the predicate chose)."""

    def __init__(self, columns: Dict[str, list], lines: np.ndarray, whole: List[tuple]):
        self.columns = columns
        self.lines = lines
        self.whole = whole

    @property
    def n(self) -> int:
        return len(self.lines)


class _Refused(Exception):
    """This block goes to the line reader."""


def _read_block(buf, lo: int, hi: int, first_line: int, how: _Reading) -> Iterator[Union[Block, Tuple[int, bytes]]]:
    """The block ``buf[lo:hi]`` (whole lines, the first being line ``first_line``): a :class:`Block` of
    columns, or, where it cannot be read so, (first line, bytes) for the line reader -- a block refused
    is halved, and each half tried, down to :data:`MIN_LINES` lines (a bad line costs only its
    neighbours the line reader's pace)."""
    try:
        yield _finish(_parse(buf, lo, hi, first_line, how), how)
        return
    except _Refused:
        pass
    yield from _halves(buf, lo, hi, first_line, how)


def _halves(buf, lo, hi, first_line, how: _Reading) -> Iterator[Union[Block, Tuple[int, bytes]]]:
    """:func:`_read_block` of each half of a refused block, or the block for the line reader when small."""
    count = buf.count(b"\n", lo, hi)
    mid = buf.find(b"\n", lo + (hi - lo) // 2, hi) + 1
    if count < 2 * MIN_LINES or not lo < mid < hi:
        yield first_line, bytes(buf[lo:hi])
        return
    yield from _read_block(buf, lo, mid, first_line, how)
    yield from _read_block(buf, mid, hi, first_line + buf.count(b"\n", lo, mid), how)


class _Parsed(NamedTuple):
    """A block parsed by pyarrow and checked: what :func:`_finish` makes columns of."""

    buf: bytearray
    tab: object
    starts: np.ndarray
    ends: np.ndarray
    lines: np.ndarray
    fields: Dict[str, type]
    nested: set


def _parse(buf, lo, hi, first_line, how: _Reading) -> _Parsed:
    """The block parsed and checked (:func:`_checked`), or :class:`_Refused`."""
    if hi <= lo or buf[hi - 1] != 10:
        raise _Refused  # a torn last line: the line reader says so
    raw = np.frombuffer(buf, np.uint8, hi - lo, lo)
    ends = np.flatnonzero(raw == 10) + lo
    starts = np.empty_like(ends)
    starts[0] = lo
    starts[1:] = ends[:-1] + 1
    filled = ends > starts
    rows = np.arange(len(ends)) if filled.all() else np.flatnonzero(filled)  # blank lines are skipped
    starts, ends = starts[rows], ends[rows]
    if not len(rows) or not (raw[starts - lo] == 0x7B).all():
        raise _Refused  # a line that is not an object, or starts with white space (blank-looking lines too)
    _text_checked(buf, lo, hi, raw)
    lines = rows + first_line
    fields, nested = _sample(buf, starts, ends, how.numeric)
    read = set(CHECKED)  # what the checks, the hooks and the whole-record predicate read as columns
    for hook in how.hooks.values():
        read.update(getattr(hook, "fields", ()))
    if how.whole is not None:
        read.update(how.whole.fields)
    schema = pa.schema([(k, _arrow_type(k, fields[k])) for k in fields
                        if (k in read or how.keep(k)) and (k not in nested or k in TYPED_LISTS and k in read)])
    try:
        tab = pj.read_json(pa.BufferReader(pa.py_buffer(memoryview(buf)[lo:hi])),
                           read_options=pj.ReadOptions(block_size=max(1 << 20, (hi - lo) // 2 + 1)),
                           parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
                           memory_pool=pa.system_memory_pool())  # malloc gives a freed block's columns back
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise _Refused from None
    n = len(rows)
    if tab.num_rows != n:
        raise _Refused
    _checked(tab, n)
    return _Parsed(buf, tab, starts, ends, lines, fields, nested)


def _finish(parsed: _Parsed, how: _Reading) -> Block:
    """A parsed block's columns, hooks and whole records, or :class:`_Refused`."""
    buf, tab, starts, ends, lines, fields, nested = parsed
    n = len(lines)
    columns: Dict[str, list] = {}
    kept = [k for k in fields if k in nested and how.keep(k)]
    scan = nested_native.scan(buf, starts, ends, kept) if kept else None  # in C, the GIL let go
    texts = nested_texts.texts(buf, starts, ends, kept, scan)
    if texts is None:  # a line the line reader's parser refuses
        raise _Refused
    for k in fields:
        if how.keep(k):
            columns[k] = texts[k] if k in nested else _values(tab.column(k), how.memo.setdefault(k, {}))
    for name, hook in how.hooks.items():
        values = hook.columns(tab, fields)
        if values is None:
            raise _Refused
        columns[name] = values
    chosen: List[tuple] = []
    whole = how.whole
    if whole is not None:
        cols = [columns[k] if k in columns else _values(tab.column(k), {}) if k in tab.column_names else
                [None] * n for k in whole.fields]
        try:
            for i in _chosen(whole, cols):
                chosen.append((i, record_of(bytes(buf[starts[i]:ends[i] + 1]), how.hooks, how.drop)))
        except Bad:  # pyarrow read what Python's parsers do not (nested 1,000 deep): the line reader says so
            raise _Refused from None
    return Block(columns, lines, chosen)


def _chosen(whole: Callable[[dict], bool], cols: list) -> List[int]:
    """The rows for which ``whole`` (a function of ``whole.fields`` alone: ``cols``) is true, asked once
    per distinct combination of values (a few in a block), not per row."""
    keys = list(zip(*cols))
    try:
        yes = {k for k in set(keys) if whole(dict(zip(whole.fields, k)))}
    except TypeError:  # a value that cannot be hashed: each row asked
        return [i for i, k in enumerate(keys) if whole(dict(zip(whole.fields, k)))]
    return [i for i, k in enumerate(keys) if k in yes] if yes else []


def _sample(buf, starts: np.ndarray, ends: np.ndarray, numeric: frozenset) -> Tuple[Dict[str, type], set]:
    """The fields of a sample of the block's lines, in their order, each with its type (NoneType when only
    null was seen), and the fields whose values are lists or dicts.  Ints and floats of one field make it
    a float where the field is ``numeric`` (the line reader's frame reads both as the same number)."""
    n = len(starts)
    picks = sorted(set(range(0, n, SAMPLE)) | {n - 1})
    fields: Dict[str, type] = {}
    nested = set()
    seen = set()
    s_list, e_list = starts.tolist(), ends.tolist()
    for i in picks:
        try:
            rec = orjson.loads(buf[s_list[i]:e_list[i]])
        except orjson.JSONDecodeError:
            raise _Refused from None
        if rec.__class__ is not dict:
            raise _Refused
        shape = (tuple(rec), tuple(map(type, rec.values())))
        if shape in seen:
            continue
        seen.add(shape)
        for k, t in zip(*shape):
            have = fields.get(k)
            if have is None or have is type(None):
                fields[k] = t
            elif t is not have and t is not type(None):
                if {t, have} == {int, float} and k in numeric:
                    fields[k] = float
                else:
                    raise _Refused  # text here, a number there: the line reader keeps each as it is
            if t is list or t is dict:
                nested.add(k)
    return fields, nested


_NOT_JSON = re.compile(rb"[:,\[]\s*(?:-NaN|-?Inf(?!inity))")  # numbers pyarrow reads, Python's parsers refuse


def _text_checked(buf, lo: int, hi: int, raw: np.ndarray) -> None:
    """Refuse a block that is not UTF-8, or that spells a number as only pyarrow reads it (Inf, -NaN):
    the line reader skips such lines, with their line numbers."""
    if raw.max() >= 0x80:  # a reduction: 7x a comparison's pace
        try:
            str(memoryview(buf)[lo:hi], "utf-8")
        except UnicodeDecodeError:
            raise _Refused from None
    if (buf.find(b"I", lo, hi) >= 0 or buf.find(b"N", lo, hi) >= 0) and \
            _NOT_JSON.search(memoryview(buf)[lo:hi]):  # one byte is found at memchr's pace: 20x a word
        raise _Refused


def _arrow_type(key: str, t: type):
    if key in TYPED_LISTS and t is list:
        return pa.list_(pa.float64() if TYPED_LISTS[key] == "double" else pa.string())
    return {str: pa.string(), bool: pa.bool_(), int: pa.int64(), float: pa.float64()}.get(t, pa.null())


def _checked(tab, n: int) -> None:
    """The line reader's checks (:func:`~analysis.load.record_checks.check` and ``complete``) of every
    row at once: a row it would skip, or complete, sends the block to it."""
    def col(name):
        return tab.column(name) if name in tab.column_names else pa.nulls(n)

    def texts(name):  # the distinct values of a text column (None among them where it has nulls)
        c = col(name)
        if not (pa.types.is_string(c.type) or pa.types.is_null(c.type)):
            raise _Refused
        return set(pc.unique(c).to_pylist())

    if not all(isinstance(v, str) and (v == "collscale.row" or v.startswith("collscale.row/"))
               for v in texts("schema")):
        raise _Refused
    for name in ("collective", "transport", "status"):
        if not all(isinstance(v, str) and v for v in texts(name)):
            raise _Refused
    status = col("status")
    nranks, size = col("nranks"), col("size_bytes")
    if not pa.types.is_int64(nranks.type) or nranks.null_count or \
            pc.min(nranks).as_py() < 1 or pc.max(nranks).as_py() > MAX_RANKS:
        raise _Refused
    if not pa.types.is_int64(size.type) or pc.min(size).as_py() is not None and (
            pc.min(size).as_py() < 0 or pc.max(size).as_py() > MAX_BYTES):
        raise _Refused
    if size.null_count and not pc.all(pc.or_(pc.is_valid(size), pc.equal(status, "failed"))).as_py():
        raise _Refused
    kind = col("kind")
    if not (pa.types.is_string(kind.type) or pa.types.is_null(kind.type)):
        raise _Refused
    timed = pc.is_in(status, pa.array(list(MEASURED)))
    if not pc.any(timed).as_py():
        return
    ok = _usable(col("time_us"))
    sized = pc.and_(timed, pc.invert(pc.is_in(col("collective"), pa.array(list(NO_BANDWIDTH)))))
    for name in ("algbw_gbs", "busbw_gbs"):
        c = _usable(col(name))
        ok = pc.and_(ok, pc.or_(pc.invert(sized), c))
    if not pc.all(pc.or_(pc.invert(timed), ok)).as_py():
        raise _Refused  # a time to skip, or a bandwidth to derive: the line reader does both, and says so


def _usable(c):
    """True where a column holds a finite number >= 0 (as ``record_checks.as_float(v) >= 0``)."""
    if pa.types.is_null(c.type):
        return pa.array(np.zeros(len(c), bool))
    if not (pa.types.is_floating(c.type) or pa.types.is_integer(c.type)):
        raise _Refused
    c = pc.cast(c, pa.float64())
    return pc.fill_null(pc.and_(pc.is_finite(c), pc.greater_equal(c, 0)), False)


def _values(col, memo: dict):
    """A column's values as the line reader gives them (int, float, bool, str or None): a numpy array
    where it has no gap (numbers, booleans) or holds text (an object array, text repeated from row to row
    one object: ``memo``), else a list."""
    t = col.type
    n = len(col)
    if pa.types.is_null(t):
        return [None] * n
    if pa.types.is_string(t):
        enc = pc.dictionary_encode(col).combine_chunks()
        words = [memo.setdefault(w, w) for w in enc.dictionary.to_pylist()]
        if len(memo) > (1 << 16):
            memo.clear()
        table = np.empty(len(words) + 1, object)
        table[:-1] = words
        table[-1] = None
        return table[enc.indices.fill_null(len(words)).to_numpy(zero_copy_only=False)]
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
        arr = col.combine_chunks() if hasattr(col, "combine_chunks") else col
        if not arr.null_count:
            return arr.to_numpy(zero_copy_only=False)
        values = arr.fill_null(False if pa.types.is_boolean(t) else 0).to_numpy(zero_copy_only=False).tolist()
        for i in np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False)).tolist():
            values[i] = None
        return values
    raise _Refused
