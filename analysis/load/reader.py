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
import json
import math
import re
import sys
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from analysis import physical
from analysis.load import importers
from analysis.cli_common import UsageError
from facts import spec as specs

__all__ = ["ResultsError", "read_records", "as_float", "REQUIRED", "REPLICATE", "MEASURED", "NUMERIC", "BOOLEAN",
           "TEXT", "Warn"]

REQUIRED = ("collective", "transport", "nranks", "size_bytes", "time_us", "busbw_gbs", "algbw_gbs")
_STRUCTURE = ("schema", "collective", "transport", "nranks", "size_bytes", "status")
MEASURED = physical.TIMED  # statuses that carry a time
NUMERIC = ("nranks", "nhosts", "ranks_per_host", "size_bytes", "count", "iters", "warmup", "time_us",
            "time_us_min", "time_us_p50", "time_us_p99", "time_us_max", "time_us_rank_min",
            "time_us_rank_max", "algbw_gbs", "busbw_gbs", "busbw_factor", "wrong", "checks", "root",
            "emulated_link_gbs")
BOOLEAN = ("in_place", "oversubscribed", "fresh_inputs", "pipelined")
TEXT = ("schema", "kind", "status", "run_id", "timestamp", "collective", "transport", "algo", "buffer",
         "dtype", "op", "op_impl", "aggregation", "reason", "hosts", "emulated", "sweep_id", "sweep_point",
         "phase", "split", "group_ranks", "group_hosts", "slowest_host")
REPLICATE = "replicate"  # collectives.replicate's training-step records: a frame of their own
NO_BANDWIDTH = (REPLICATE, "cpu_probe")  # records of a time alone: replicate's steps, the triage's CPU probe
_MAX_RANKS = 1 << 24
_MAX_BYTES = 1 << 62
Warn = Callable[[str], None]
_NEITHER = "neither collscale results (JSON Lines or CSV) nor a log of " + ", ".join(importers.TOOLS)
_OPTIONS = re.compile(r"^(?P<path>.+?):(?P<opts>(?:ranks|transport)=[^,:]*(?:,(?:ranks|transport)=[^,:]*)*)$")


class ResultsError(UsageError):
    """A results file that cannot be read as collscale results (names file and line)."""


class _Bad(Exception):
    """One unreadable line (skipped unless strict)."""


# -- one record -----------------------------------------------------------------------------

def as_float(value) -> float:
    """A JSON or CSV number as a finite float, else NaN (bools, text, 10**400, infinities)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    try:
        value = float(value)
    except OverflowError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def _whole_in(value, lo: int, hi: int) -> bool:
    v = as_float(value)
    return v == v and v.is_integer() and lo <= v <= hi


def _check(rec) -> dict:
    """The record if it has our schema and sound structural fields, else :class:`_Bad`."""
    if not isinstance(rec, dict):
        raise _Bad("not a JSON object")
    schema = rec.get("schema")
    if not (isinstance(schema, str) and (schema == "collscale.row" or schema.startswith("collscale.row/"))):
        raise _Bad("not a collscale record (no 'schema: collscale.row/...'; keys: "
                   f"{', '.join(str(k) for k in list(rec)[:6])}...)")
    # A sweep's failed point produced no row: it has no size (launch.sweep.failure_record).
    failed = rec.get("status") == "failed"
    missing = [k for k in _STRUCTURE if rec.get(k) is None and not (failed and k == "size_bytes")]
    if missing:
        raise _Bad(f"collscale record without {', '.join(missing)}")
    wrong = [k for k in ("collective", "transport", "status") if not isinstance(rec[k], str) or not rec[k]]
    if not _whole_in(rec["nranks"], 1, _MAX_RANKS):
        wrong.append("nranks")
    if not (failed and rec["size_bytes"] is None) and not _whole_in(rec["size_bytes"], 0, _MAX_BYTES):
        wrong.append("size_bytes")
    if rec.get("kind") is not None and not isinstance(rec["kind"], str):
        wrong.append("kind")
    if wrong:
        raise _Bad(f"collscale record with unusable {', '.join(wrong)}")
    for k, v in rec.items():  # a newer writer's nested values stay readable (and hashable)
        if isinstance(v, (list, dict)):
            rec[k] = json.dumps(v, sort_keys=True)
    rec["nranks"] = int(rec["nranks"])
    if rec["size_bytes"] is not None:
        rec["size_bytes"] = int(rec["size_bytes"])
    return rec


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


def _complete(rec: dict, derived: Dict[str, List[dict]]) -> dict:
    """A measured record with a usable time and both bandwidths (derived where missing), else _Bad."""
    if rec["status"] not in MEASURED:
        return rec
    if not as_float(rec.get("time_us")) >= 0:
        raise _Bad(f"measured record without a usable time_us ({_short(rec.get('time_us'))})")
    if rec["collective"] in NO_BANDWIDTH:  # a training step, a CPU probe: no sized transfer, no bandwidth
        return rec
    seconds = as_float(rec["time_us"]) * 1e-6
    if not as_float(rec.get("algbw_gbs")) >= 0:
        rec["algbw_gbs"] = rec["size_bytes"] / seconds / 1e9 if seconds > 0 else 0.0
        derived.setdefault("algbw_gbs", []).append(rec)
    if not as_float(rec.get("busbw_gbs")) >= 0:
        factor = rec.get("busbw_factor")
        if not as_float(factor) >= 0:
            spec = specs.find(rec["collective"])
            if spec is None:
                raise _Bad(f"measured record without busbw_gbs or busbw_factor, of a collective not in "
                           f"facts.spec ({rec['collective']!r})")
            factor = rec["busbw_factor"] = spec.busbw_factor(rec["nranks"])
        rec["busbw_gbs"] = rec["algbw_gbs"] * factor
        derived.setdefault("busbw_gbs", []).append(rec)
    return rec


# -- one file -------------------------------------------------------------------------------

def _lines(data: bytes) -> Iterable[Tuple[int, Union[str, _Bad]]]:
    """(line number, text or _Bad) for each non-blank line."""
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            yield number, line.decode("utf-8")
        except UnicodeDecodeError:
            yield number, _Bad("not UTF-8 text")


def _parse_json(text: str, last: bool):
    try:
        return json.loads(text)
    except RecursionError:
        raise _Bad("not JSON (nested too deeply)") from None
    except ValueError as exc:
        where = f" ({exc.msg}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else f" ({exc})"
        torn = "; a torn last line (no newline at the end: a run killed mid-write?)" if last else ""
        raise _Bad(f"not JSON{where}{torn}") from None


def _jsonl_records(path: Path, data: bytes):
    torn_possible = not data.endswith(b"\n")
    last = len(data.split(b"\n"))
    for number, text in _lines(data):
        if isinstance(text, _Bad):
            yield number, text
            continue
        try:
            yield number, _check(_parse_json(text, torn_possible and number == last))
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


def _csv_records(path: Path, data: bytes):
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
            yield number, _check({k: _csv_value(k, v) for k, v in zip(header, row)})
        except _Bad as bad:
            yield number, bad


def _read_bytes(path: Path) -> bytes:
    text = str(path)
    if not text.strip() or "\x00" in text:
        raise ResultsError(f"{text!r}: not a path")
    if not path.exists():
        raise ResultsError(f"{path}: no such file")
    if path.is_dir():
        raise ResultsError(f"{path}: is a directory; give the results files in it")
    if not path.is_file():
        raise ResultsError(f"{path}: not a regular file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read: {exc.strerror or exc}") from None


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


def _read_file(path: Path, strict: bool, warn: Warn, given: importers.Given = importers.Given()) -> List[dict]:
    data = _read_bytes(path)
    if b"\x00" in data[:8192]:
        raise ResultsError(f"{path}: a binary file, not collscale results (JSON Lines or CSV)")
    ours = _collscale_like(data)
    if not ours:
        records = _imported(path, data, given, strict, warn)
        if records is not None:
            return records
    if given != importers.Given():
        raise ResultsError(f"{path}: ranks=/transport= are for other tools' logs; collscale results say both")
    is_csv = path.suffix.lower() == ".csv" or data.startswith(b"schema,")
    good: List[Tuple[int, dict]] = []
    bad: List[Tuple[int, str]] = []
    for number, item in (_csv_records if is_csv else _jsonl_records)(path, data):
        if isinstance(item, _Bad):
            bad.append((number, str(item)))
        else:
            good.append((number, item))
    if not good and bad:
        raise ResultsError(f"{path}:{bad[0][0]}: {bad[0][1]}" + ("" if ours else f"; {_NEITHER}"))
    timed = [r for _, r in good if r["status"] in MEASURED]
    if timed and not any(as_float(r.get("time_us")) >= 0 for r in timed):
        raise ResultsError(f"{path}: missing required column(s): time_us (no measured record has a time)")
    derived: Dict[str, List[dict]] = {}
    out = []
    for number, rec in good:
        try:
            out.append((number, _complete(rec, derived)))
        except _Bad as item:
            bad.append((number, str(item)))
    _skipped(path, bad, len(out), strict, warn)
    out = physical.screen(path, [r for _, r in out], [n for n, _ in out], strict, warn, ResultsError)
    n_timed = sum(r["status"] in MEASURED for r in out)
    kept = {id(r) for r in out}
    for col, recs in sorted(derived.items()):
        count = sum(id(r) in kept for r in recs)
        how = "size_bytes / time_us" if col == "algbw_gbs" else "algbw_gbs x busbw_factor"
        if count:
            warn(f"{path}: {col} missing in {count} of {n_timed} measured records: derived as {how}")
    return out


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


def read_records(paths: Sequence[Union[str, Path]], strict: bool = False, warn: Optional[Warn] = None) -> List[dict]:
    """Every record of every file, in order (CSV by suffix or header, else JSON Lines; another tool's log
    by its content, ``FILE:ranks=N`` telling its rank count).

    ``warn`` (default: a line on stderr) receives one line per file that had
    lines skipped or values derived; ``strict`` makes a skipped line an error.
    """
    warn = warn or (lambda message: print(f"analysis.results: warning: {message}", file=sys.stderr))
    records: List[dict] = []
    if not paths:
        raise ResultsError("no results files given")
    for p in paths:
        path, given = _file_and_options(p)
        records.extend(_read_file(path, strict, warn, given))
    if not records:
        raise ResultsError(f"{', '.join(map(str, paths))}: no records")
    return records
