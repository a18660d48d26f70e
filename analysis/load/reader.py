"""Files -> records: collscale results (JSON Lines or CSV) and other tools' logs, read around damage.

The first step of every analysis: :func:`read_records` reads each file into
record dicts (:mod:`facts.record`'s fields); :mod:`analysis.load.points`
makes the points frame of them and :mod:`analysis.load.replicate_runs` the
frame of replication's training steps.

Reading around damage.  A run killed mid-write leaves a torn last line, and
a hand-edited file may hold a bad line in the middle: such lines (not JSON,
not UTF-8, not a record of ours, a measured record without a usable time,
a CSV row with the wrong number of fields) are skipped, and ``warn`` gets
ONE line per file naming ``file:line`` and how many were skipped, as do
non-physical rows of any format (:mod:`analysis.physical`).  With
``strict=True`` the first such line is an error.  A file in which no line
is a collscale record (another tool's file, a binary file) is refused
either way, naming the first line; so is a file that lacks a column the
analysis needs (the error names the file and the columns).  Bandwidths
that are missing but exactly derivable are derived, and ``warn`` says so:
algbw = S / t (S = ``size_bytes``, t = ``time_us``, as the harness computes
it), busbw = algbw x busbw factor (the record's ``busbw_factor``, else
``facts.spec``'s factor at that rank count).

Records of the schema family (``schema: collscale.row/<version>``) load
whatever their version; fields this loader does not know are kept.

:func:`read_table` reads a JSON Lines file of 64 MB or more a block at a
time with pyarrow where it is installed (:mod:`analysis.load.arrow_blocks`),
handing back to this line reader each block it cannot read as it would.

Other tools' logs.  A file that is not collscale results is given to
:mod:`analysis.load.importers`, which recognises nccl-tests/rccl-tests (stdout
and JSON), OSU micro-benchmarks, IMB-MPI1 and hccl_demo output by content and
turns each row into a record (``kind: measured``, with ``source`` and
``source_line``).  ``FILE:ranks=32`` (and ``,transport=NAME``) says what such a
log does not: the rank count, and the label its series carry.  A row that
cannot be read is a ``file:line`` warning (an error with ``strict``); a file
that is none of these formats is refused in one line.
"""


from __future__ import annotations

import csv
import gc
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from analysis import physical
from analysis.load import arrow_blocks, importers, table
from analysis.load.record_checks import CHECKED, MAX_RANKS as _MAX_RANKS, MEASURED, STRUCTURE as _STRUCTURE
from analysis.load.record_checks import Bad as _Bad, as_float, check as _check, complete as _complete
from analysis.load.record_checks import nested_text, parse_line as _parse_line
from analysis.cli_common import UsageError

__all__ = ["ResultsError", "read_records", "read_table", "settled", "as_float", "nested_text", "REQUIRED", "REPLICATE",
           "MEASURED", "NUMERIC", "BOOLEAN", "TEXT", "KEPT", "Warn"]

KEPT = CHECKED + ("in_place",)  # what read_table always keeps: the checks of every file read, a frame's basics
REQUIRED = ("collective", "transport", "nranks", "size_bytes", "time_us", "busbw_gbs", "algbw_gbs")
NUMERIC = ("nranks", "nhosts", "ranks_per_host", "size_bytes", "count", "iters", "warmup", "time_us",
            "time_us_min", "time_us_p50", "time_us_p99", "time_us_max", "time_us_rank_min",
            "time_us_rank_max", "algbw_gbs", "busbw_gbs", "busbw_factor", "wrong", "checks", "root",
            "emulated_link_gbs")
BOOLEAN = ("in_place", "oversubscribed", "fresh_inputs", "pipelined")
TEXT = ("schema", "kind", "status", "run_id", "timestamp", "collective", "transport", "algo", "buffer",
         "dtype", "op", "op_impl", "aggregation", "reason", "hosts", "emulated", "sweep_id", "sweep_point",
         "phase", "split", "group_ranks", "group_hosts", "slowest_host")
REPLICATE = "replicate"  # collectives.replicate's training-step records: a frame of their own
ARROW_MIN_BYTES = arrow_blocks.MIN_BYTES  # JSON Lines files this large are read a block at a time (tests lower it)
Warn = Callable[[str], None]
_NEITHER = "neither collscale results (JSON Lines or CSV) nor a log of " + ", ".join(importers.TOOLS)
_OPTIONS = re.compile(r"^(?P<path>.+?):(?P<opts>(?:ranks|transport)=[^,:]*(?:,(?:ranks|transport)=[^,:]*)*)$")


class ResultsError(UsageError):
    """A results file that cannot be read as collscale results (names file and line)."""


def _jsonl_records(lines: Iterable[bytes], hooks=None, drop=frozenset(),
                   first: int = 1) -> Iterator[Tuple[int, Union[dict, _Bad]]]:
    """(line number, record or _Bad) for each non-blank line of ``lines`` (each with its newline; only the
    last can lack it: a torn line), the first being line ``first``."""
    for number, line in enumerate(lines, first):
        if not line.strip():
            continue
        try:
            yield number, _check(_parse_line(line), hooks, drop)
        except _Bad as bad:
            yield number, bad


def _csv_value(key, value):
    if value == "":
        return None
    if key in TEXT:
        return value
    if key in BOOLEAN and value in ("True", "False"):
        return value == "True"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return None if key in NUMERIC else value


def _csv_records(path: Path, data: bytes, hooks=None):
    # One physical line per row (collscale's CSV rows never hold a newline): a
    # torn row with an open quote cannot swallow the rows after it.
    lines = data.decode("utf-8", "replace").splitlines()
    try:
        header = next(csv.reader(lines[:1]))
    except (StopIteration, csv.Error):
        header = []
    if "schema" not in header:
        raise ResultsError(f"{path}:1: not a collscale CSV (no 'schema' column in the header); {_NEITHER}")
    missing = [k for k in _STRUCTURE + ("time_us",) if k not in header]
    if missing:
        raise ResultsError(f"{path}: missing required column(s): {', '.join(missing)}")
    for number, line in enumerate(lines[1:], start=2):
        try:
            row = next(csv.reader([line]), [])
        except csv.Error as exc:
            yield number, _Bad(f"not a CSV row ({exc})")
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield number, _Bad(f"{len(row)} fields where the header has {len(header)} (a torn row?)")
            continue
        try:
            yield number, _check({k: _csv_value(k, v) for k, v in zip(header, row)}, hooks)
        except _Bad as bad:
            yield number, bad


def _checked_path(path: Path) -> None:
    text = str(path)
    if not text.strip() or "\x00" in text:
        raise ResultsError(f"{text!r}: not a path")
    if not path.exists():
        raise ResultsError(f"{path}: no such file")
    if path.is_dir():
        raise ResultsError(f"{path}: is a directory; give the results files in it")
    if not path.is_file():
        raise ResultsError(f"{path}: not a regular file")


def _read_bytes(path: Path, limit: int = -1) -> bytes:
    """The file's bytes (the first ``limit`` of them, if given)."""
    _checked_path(path)
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _line_stream(path: Path) -> Iterator[bytes]:
    """The file's lines, read as they are parsed (a results file can be larger than the memory it needs)."""
    try:
        with open(path, "rb", buffering=1 << 20) as f:
            yield from f
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read: {exc.strerror or exc}") from None


@contextmanager
def _no_gc():
    """Millions of short-lived dicts and lists trigger the cycle collector over and over; they hold no cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextmanager
def settled():
    """A function that sets everything made so far (a million rows' values, once read) out of the cycle
    collector's walks (``gc.freeze``) until the end of the block: each full collection would walk them all
    again, seconds in all for a report."""
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()


def _skipped(path: Path, bad: List[Tuple[int, str]], n_read: int, strict: bool, warn: Warn) -> None:
    """One warning naming the first bad line (and how many more), or an error when ``strict``."""
    if not bad:
        return
    bad.sort()
    first, why = bad[0]
    if strict:
        raise ResultsError(f"{path}:{first}: {why} (--strict)")
    others = ", ".join(str(n) for n, _ in bad[1:6]) + (", ..." if len(bad) > 6 else "")
    more = "" if len(bad) == 1 else f" and {len(bad) - 1} more (line{'s' if len(bad) > 2 else ''} {others})"
    warn(f"{path}:{first}: skipped: {why}{more}; {n_read} records read (--strict refuses such files)")


def _collscale_like(data: bytes) -> bool:
    first = next((ln for ln in data[:1 << 16].split(b"\n") if ln.strip()), b"")
    return b"collscale.row" in first or first.startswith(b"schema,")


def _imported(path: Path, data: bytes, given: importers.Given, strict: bool, warn: Warn) -> Optional[List[dict]]:
    """The records of another tool's log, or None when ``data`` is none of the known formats."""
    found = importers.read(data.decode("utf-8", "replace"), path, given)
    if found is None:
        return None
    tool, parsed = found
    bad = [(b.number, str(b)) for b in parsed.bad]
    if not parsed.records:
        why = f"{bad[0][1]} (line {bad[0][0]})" if bad else (parsed.notes[0] if parsed.notes else "no rows")
        raise ResultsError(f"{path}: a log of {tool}, but no row could be read: {why}")
    _skipped(path, bad, len(parsed.records), strict, warn)
    for note in parsed.notes:
        warn(note)
    return physical.screen(path, parsed.records, None, strict, warn, ResultsError)


def _read_file(path: Path, strict: bool, warn: Warn, given: importers.Given, sink: "table.Sink", hooks=None) -> None:
    """Every usable record of one file into ``sink`` (streamed: JSON Lines are parsed line by line)."""
    head = _read_bytes(path, 1 << 16)
    if b"\x00" in head[:8192]:
        raise ResultsError(f"{path}: a binary file, not collscale results (JSON Lines or CSV)")
    ours = _collscale_like(head)
    if not ours:
        records = _imported(path, _read_bytes(path), given, strict, warn)
        if records is not None:
            for name, hook in (hooks or {}).items():
                for rec in records:
                    rec[name] = hook(rec)
            sink.extend(records, [physical.line_of(r) for r in records])
            return
    if given != importers.Given():
        raise ResultsError(f"{path}: ranks=/transport= are for other tools' logs; collscale results say both")
    is_csv = path.suffix.lower() == ".csv" or head.startswith(b"schema,")
    start = sink.n
    tally = _Tally()
    if is_csv:
        tally.take(_csv_records(path, _read_bytes(path), hooks), sink)
    elif arrow_blocks.usable(sink, hooks, path.stat().st_size, ARROW_MIN_BYTES):
        _read_blocks(path, sink, hooks or {}, tally)
    else:
        tally.take(_jsonl_records(_line_stream(path), hooks, getattr(sink, "drop", frozenset())), sink)
    good, timed, has_time, bad, derived = tally.good, tally.timed, tally.has_time, tally.bad, tally.derived
    if not good and bad:
        raise ResultsError(f"{path}:{bad[0][0]}: {bad[0][1]}" + ("" if ours else f"; {_NEITHER}"))
    if timed and not has_time:
        raise ResultsError(f"{path}: missing required column(s): time_us (no measured record has a time)")
    sink.flush()
    _skipped(path, bad, sink.n - start, strict, warn)
    keep = physical.screen_columns(path, lambda key: sink.column(key, start), sink.n - start, sink.lines(start),
                                   strict, warn, ResultsError)
    index = None
    if keep is not None:
        index = sink.keep(start, keep)  # old row -> new row, for the rows kept
    n_timed = sum(map(MEASURED.__contains__, sink.column("status", start)))
    for col, rows in sorted(derived.items()):
        count = len(rows) if index is None else sum(r in index for r in rows)
        how = "size_bytes / time_us" if col == "algbw_gbs" else "algbw_gbs x busbw_factor"
        if count:
            warn(f"{path}: {col} missing in {count} of {n_timed} measured records: derived as {how}")


class _Tally:
    """What the reading of one file found: records read, lines skipped (number, why), bandwidths derived."""

    def __init__(self):
        self.good, self.timed, self.has_time, self.bad, self.derived = 0, False, False, [], {}

    def take(self, items: Iterable[Tuple[int, Union[dict, _Bad]]], sink: "table.Sink") -> None:
        """The line reader's records (and bad lines) into ``sink``."""
        for number, item in items:
            if isinstance(item, _Bad):
                self.bad.append((number, str(item)))
                continue
            self.good += 1
            if item["status"] in MEASURED:
                self.timed = True
                self.has_time = self.has_time or as_float(item.get("time_us")) >= 0
                try:
                    item = _complete(item, self.derived, sink.n)
                except _Bad as why:
                    self.bad.append((number, str(why)))
                    continue
            sink.add(number, item)


def _read_blocks(path: Path, sink: "table.Table", hooks: Dict[str, Callable], tally: _Tally) -> None:
    """A large JSON Lines file into ``sink`` a block at a time (:mod:`analysis.load.arrow_blocks`); each
    block it cannot read goes to the line reader."""
    def by_lines(first: int, lines: List[bytes]) -> None:
        tally.take(_jsonl_records(lines, hooks, sink.drop, first), sink)

    try:
        with open(path, "rb", buffering=0) as f:
            for got in arrow_blocks.read_file(f, sink, hooks, NUMERIC, by_lines):
                tally.good += got.n
                if not tally.has_time and any(map(MEASURED.__contains__, set(got.columns["status"]))):
                    tally.timed = tally.has_time = True  # each measured row of a block read there has a time
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _file_and_options(name: Union[str, Path]) -> Tuple[Path, importers.Given]:
    """``FILE:ranks=32,transport=polaris`` -> (FILE, what it says); a file that exists under the whole
    name is that file."""
    text = str(name)
    m = _OPTIONS.match(text)
    if not m or Path(text).exists():
        return Path(name), importers.Given()
    opts = dict(kv.split("=", 1) for kv in m.group("opts").split(","))
    ranks = opts.get("ranks")
    if ranks is not None and not (ranks.isdigit() and 1 <= int(ranks) <= _MAX_RANKS):
        raise ResultsError(f"{text}: ranks={ranks!r} is not a whole number from 1 to {_MAX_RANKS}")
    label = opts.get("transport")
    if label is not None and not re.fullmatch(r"[\w.+-]{1,64}", label):
        raise ResultsError(f"{text}: transport={label!r}: use letters, digits, '.', '+', '-' or '_' (at most 64)")
    return Path(m.group("path")), importers.Given(int(ranks) if ranks else None, label)


def _read(paths, strict: bool, warn: Optional[Warn], sink: "table.Sink", hooks=None) -> None:
    if not paths:
        raise ResultsError("no results files given")
    warn = warn or (lambda message: print(f"analysis.results: warning: {message}", file=sys.stderr))
    with _no_gc():
        for p in paths:
            path, given = _file_and_options(p)
            _read_file(path, strict, warn, given, sink, hooks)
    if not sink.n:
        raise ResultsError(f"{', '.join(map(str, paths))}: no records")


def read_records(paths: Sequence[Union[str, Path]], strict: bool = False, warn: Optional[Warn] = None) -> List[dict]:
    """Every record of every file, in order (CSV by suffix or header, else JSON Lines; another tool's log
    by its content, ``FILE:ranks=N`` telling its rank count).

    ``warn`` (default: a line on stderr) receives one line per file that had
    lines skipped or values derived; ``strict`` makes a skipped line an error.
    """
    sink = table.Records()
    _read(list(paths) if paths else paths, strict, warn, sink)
    return sink.records


def read_table(paths: Sequence[Union[str, Path]], strict: bool = False, warn: Optional[Warn] = None,
               drop: Sequence[str] = (), hooks: Optional[Dict[str, Callable[[dict], object]]] = None,
               whole: Optional[Callable[[dict], bool]] = None, keep: Optional[Sequence[str]] = None
               ) -> "table.Table":
    """:func:`read_records` as columns (:class:`analysis.load.table.Table`), for results of any size: the
    same records, checks and warnings, without a dict per record.  ``drop``: fields not kept;
    ``hooks``: name -> function of a record (its nested values still lists and dicts), kept as a field
    of that name; ``whole``: records for which this is true are also kept whole (``Table.records``);
    ``keep``: the only fields kept (with those the reader checks: :data:`KEPT`)."""
    sink = table.Table(drop, whole, None if keep is None else tuple(keep) + KEPT)
    _read(list(paths) if paths else paths, strict, warn, sink, hooks)
    return sink
