"""Writers for the one record format: the nccl-tests table, JSON Lines, CSV.

A *record* (:mod:`facts.record`) is a flat dict, one per measured
(point, placement); every writer sees the same records.  JSON Lines and CSV write each record the
moment it exists and flush it, so a crash or a kill loses nothing already
measured.  The table prints one line per point (out-of-place then in-place
columns, as nccl-tests does) as soon as the point is complete.

Only rank 0 writes.  Files are appended to, so a sweep of several runs
collects in one file; ``run_id`` tells runs apart.  A sink that cannot write
(a closed or broken stdout, a full disk) raises
:class:`~ground.errors.StreamError`, one line naming the stream and
the rows written before (:func:`rows_written`: exit 2 before the first, 3
after); the rows written stay, whole lines, and a file whose first row did
not fit is removed.  Names too long for their file system are refused when
the sink is made (:func:`ground.errors.path_too_long`).
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import math
import os
import stat
import sys
from typing import IO, Dict, Iterable, List, Optional, Sequence

from facts.record import FIELDS, SCHEMA
from ground.errors import StreamError, path_too_long

__all__ = [
    "FIELDS",
    "SCHEMA",
    "write_all",
    "Sink",
    "TableWriter",
    "JsonlWriter",
    "CsvWriter",
    "format_time",
    "format_row",
    "table_header",
    "open_sinks",
    "rows_written",
    "StreamError",
]

_ROWS = [0]  # rows of results written by this process's sinks (table lines and file lines)


def rows_written() -> int:
    """How many rows of results this process's sinks have written so far: a stream that fails
    before the first is bad input (exit 2), after it the run is cut short (exit 3)."""
    return _ROWS[0]


class Sink:
    """What the harness talks to; every method is optional."""

    def header(self, info: Dict) -> None: ...
    def record(self, rec: Dict) -> None: ...
    def point(self, recs: Sequence[Dict]) -> None: ...
    def footer(self, summary: Dict) -> None: ...
    def note(self, text: str) -> None: ...
    def text(self, line: str) -> None: ...
    def close(self) -> None: ...


# -- the table ---------------------------------------------------------------

def format_time(us: float) -> str:
    """nccl-tests' time cell: fewer decimals as the number grows."""
    if us >= 10000.0:
        return "%7.0f" % us
    if us >= 100.0:
        return "%7.1f" % us
    return "%7.2f" % us


def _pct_model(rec: Optional[Dict]) -> str:
    """The ``%model`` cell (``--fabric``): busbw as a % of the fabric's model, ``*`` on an assumed latency."""
    pct = None if rec is None else rec.get("pct_model")
    if pct is None or pct != pct:
        return "  %6s" % "-"
    return "  %6s" % (("%.1f" % pct) + ("*" if rec.get("model_latency_assumed") else ""))


def _cells(rec: Optional[Dict], model: bool = False) -> str:
    extra = _pct_model(rec) if model else ""
    if rec is None:
        return "  %7s  %6s  %6s  %6s" % ("n/a", "-", "-", "-") + extra
    status = rec["status"]
    if status == "unsupported":
        return "  %7s  %6s  %6s  %6s" % ("unsup", "-", "-", "-") + extra
    wrong = "N/A" if rec.get("wrong") is None else str(rec["wrong"])
    return "  %7s  %6.2f  %6.2f  %6s" % (
        format_time(rec["time_us"]), rec["algbw_gbs"], rec["busbw_gbs"], wrong
    ) + extra


def format_row(recs: Sequence[Dict], model: bool = False) -> str:
    """One table line from a point's records (out-of-place and/or in-place); ``model``: with the
    ``%model`` cells of ``--fabric``."""
    # Weight streaming puts its down phase left and its up phase right.
    by_place = {(r["phase"] == "up") if r.get("phase") else r["in_place"]: r for r in recs}
    first = recs[0]
    root = first["root"] if first["root"] is not None else -1
    op = next((r["op"] for r in recs if r.get("op")), None)
    return "%12d  %12d  %8s  %6s  %6d%s%s" % (
        first["size_bytes"], first["count"], first["dtype"] or "none", op or "none",
        root, _cells(by_place.get(False), model), _cells(by_place.get(True), model),
    )


_KEYS = "%11s  %12s  %8s  %6s  %6s"
_CELLS = "  %7s  %6s  %6s  %6s"


def table_header(columns=("out-of-place", "in-place"), model: bool = False) -> List[str]:
    """The column titles; ``model``: with ``--fabric``'s ``%model`` cell in each group."""
    extra = "  %6s" if model else ""
    width = len((_CELLS + extra) % (("",) * (5 if model else 4)))
    left = "#" + " " * len(_KEYS % ("", "", "", "", ""))
    return [
        (left + columns[0].center(width) + columns[1].center(width)).rstrip(),
        "#" + _KEYS % ("size", "count", "type", "redop", "root")
        + ((_CELLS + extra) % (("time", "algbw", "busbw", "#wrong") + (("%model",) if model else ()))) * 2,
        "#" + _KEYS % ("(B)", "(elements)", "", "", "")
        + ((_CELLS + extra) % (("(us)", "(GB/s)", "(GB/s)", "") + (("",) if model else ()))) * 2,
    ]


class TableWriter(Sink):
    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.model = None  # the fabric of --fabric: a %model cell per group (collectives.model_column)
        self.rows = 0

    def _say(self, lines: Iterable[str], rows: int = 0) -> None:
        """Write ``lines`` (``rows`` of them rows of results); a stream that fails (closed, a broken
        pipe, a full disk) raises :class:`StreamError`, one line naming it."""
        try:
            if self.stream is None:
                raise OSError("it is closed")
            for line in lines:
                self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError) as exc:
            name = str(getattr(self.stream, "name", None) or "stdout").strip("<>")
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
            raise StreamError(f"cannot write the table to {name} after {self.rows} rows: {reason}",
                              rows=rows_written(), reason=reason) from None
        self.rows += rows
        _ROWS[0] += rows

    def header(self, info):
        if info.get("columns") is False:  # a runner with columns of its own (in its header lines)
            self._say(info["header_lines"])
            return
        self.model = getattr(info.get("config"), "fabric", None)
        model = [f"# %model: busbw as a % of the {self.model} model at this size and rank count (facts.fabrics); "
                 "* where that model rests on an assumed latency"] if self.model else []
        self._say(info["header_lines"] + model + ["#"]
                  + table_header(info.get("columns", ("out-of-place", "in-place")), bool(self.model)))

    def text(self, line):
        self._say([line], rows=1)

    def point(self, recs):
        self._say([format_row(recs, bool(self.model))], rows=1)

    def note(self, text):
        self._say([f"# {text}"])

    def footer(self, summary):
        lines = []
        for note in summary.get("unsupported", []):
            lines.append(f"# unsup: {note}")
        bad = summary["wrong"]
        if bad is None:
            lines.append("# Out of bounds values : N/A (nothing here is validated element by element)")
        else:
            lines.append(f"# Out of bounds values : {bad} {'OK' if bad == 0 else 'FAILED'}")
        avg = summary["avg_busbw"]
        lines.append("# Avg bus bandwidth    : %s" % ("%g" % avg if avg is not None else "N/A"))
        lines.append("#")
        self._say(lines)


# -- files -------------------------------------------------------------------

def _clean(value):
    # JSON has no NaN or infinity; pandas reads null as NaN.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_line(file, line: str, header: Optional[str] = None) -> None:
    """Append one whole line under an exclusive lock, on a line of its own.

    The jobs of a scheduler sweep run at once on different nodes and append
    to one sweep file; POSIX record locks (honoured over NFS and Lustre) keep
    their lines from interleaving.  Where locking is unsupported the line is
    still written, as one write of an append-mode file.  If the file does not
    end with a newline (a killed writer's torn last line, a hand-edited
    file), one is added first, under the same lock, so that a record is never
    glued onto what was there; ``header`` (a CSV header) is written first if
    the file is still empty then, so two jobs starting at once write it once.
    If the write fails (a full disk), what was written of the line is cut off
    again, as far as the file allows.
    """
    try:
        fcntl.lockf(file, fcntl.LOCK_EX)
        locked = True
    except OSError:
        locked = False
    try:
        file.flush()
        end = _regular_size(file)
        if end and _last_byte(file, end) not in (b"\n", None):
            line = "\n" + line
        if header is not None and not end:  # empty, or a pipe/device (its writer passes it once)
            line = header + line
        try:
            write_all(file.fileno(), line.encode("utf-8"))
        except OSError:
            _truncate(file, end or 0)
            raise
    finally:
        if locked:
            fcntl.lockf(file, fcntl.LOCK_UN)


def _last_byte(file, end: int) -> Optional[bytes]:
    try:
        return os.pread(file.fileno(), 1, end - 1)
    except OSError:  # opened write-only ("a"): read it through the path instead
        try:
            with open(file.name, "rb") as f:
                f.seek(end - 1)
                return f.read(1)
        except (OSError, TypeError):
            return None


def write_all(fd: int, data: bytes) -> None:
    """Straight to the file (no buffer that could hold a half-written line after a failure)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _regular_size(file) -> Optional[int]:
    """The size of a regular file; None for a pipe, a terminal or a device."""
    try:
        st = os.fstat(file.fileno())
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _truncate(file, size: int) -> None:
    """Drop a partly written line (best effort)."""
    try:
        if _regular_size(file) is not None:
            os.ftruncate(file.fileno(), size)
    except OSError:
        pass


def _first_line(path: str) -> Optional[bytes]:
    """The first line of a non-empty regular file (at most 1 MiB of it), else None."""
    try:
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            return None
        with open(path, "rb") as f:
            return f.readline(1 << 20)
    except OSError:
        return None


_OURS = b'{"schema":"collscale.row'


def _check_jsonl(path: str) -> None:
    """Refuse to append to a file that is not collscale JSON Lines (records of our schema
    family, newer fields included, are fine)."""
    first = _first_line(path)
    if first is None or first.startswith(_OURS):  # ours, possibly a torn first line
        return
    try:
        rec = json.loads(first)
    except ValueError:
        rec = None
    if not (isinstance(rec, dict) and str(rec.get("schema", "")).startswith("collscale.row")):
        raise ValueError(f"{path} is not a collscale JSON Lines file (line 1 is not a collscale record); "
                         "give a new --json file")


def _check_csv(path: str, fields: Sequence[str] = FIELDS) -> None:
    first = _first_line(path)
    if first is not None and first.rstrip(b"\r\n").decode("utf-8", "replace") != ",".join(fields):
        raise ValueError(f"{path} has another CSV header than collscale's (another file, or another "
                         "collscale version); give a new --csv file")


class _FileSink(Sink):
    """One output file, appended to; every record is one line, written and flushed at once.

    The file is checked when the sink is made (before anything runs) and
    created only by the first record, so a run that measures nothing leaves
    no empty file behind.
    """

    check = staticmethod(lambda path: None)
    header_line: Optional[str] = None  # written first into an empty file

    def __init__(self, path: str):
        if os.path.isdir(path):
            raise ValueError(f"{path} is a directory; give a file name")
        self.check(path)
        _check_writable(path)
        self.path = path
        self.rows = 0
        self.file = None

    def _append(self, line: str) -> None:
        try:
            if self.file is None:
                # Read access too (the newline repair reads the last byte), where the file can seek.
                self._created = not os.path.exists(self.path)
                regular = self._created or os.path.isfile(self.path)
                self.file = open(self.path, "a+" if regular else "a", encoding="utf-8", newline="")
            append_line(self.file, line, self.header_line if self.rows == 0 else None)
        except OSError as exc:
            self._drop_if_empty()
            reason = exc.strerror or str(exc)
            raise StreamError(f"cannot write {self.path} after {self.rows} rows were written to it: {reason}",
                              rows=rows_written(), reason=reason) from None
        self.rows += 1
        _ROWS[0] += 1

    def _drop_if_empty(self) -> None:
        """A file this sink created whose first row did not fit (a full disk) is removed again."""
        if self.rows == 0 and getattr(self, "_created", False):
            try:
                if os.path.getsize(self.path) == 0:
                    os.unlink(self.path)
            except OSError:
                pass

    def close(self):
        try:
            if self.file is not None:
                self.file.close()
        except OSError:
            pass  # a failed write was reported when it happened


def _check_writable(path: str) -> None:
    """Raise the OSError that opening ``path`` for appending would, without creating it (a name
    too long for its file system included)."""
    why = path_too_long(path)
    if why:
        raise OSError(errno.ENAMETOOLONG, why, path)
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)


class JsonlWriter(_FileSink):
    check = staticmethod(_check_jsonl)

    def record(self, rec):
        ordered = {k: _clean(rec.get(k)) for k in FIELDS}
        ordered.update({k: _clean(v) for k, v in rec.items() if k not in ordered})
        self._append(json.dumps(ordered, separators=(",", ":")) + "\n")


class CsvWriter(_FileSink):
    """``fields``: the columns, FIELDS unless a runner adds summary columns of its own (replicate)."""

    def __init__(self, path: str, fields: Sequence[str] = FIELDS):
        self.fields = tuple(fields)
        self.header_line = ",".join(self.fields) + "\r\n"
        self.check = lambda p: _check_csv(p, self.fields)
        super().__init__(path)

    def record(self, rec):
        buf = io.StringIO()
        # One physical line per row, whatever a field holds (the loader reads line by line).
        row = {k: _clean(rec.get(k)) for k in self.fields}
        row = {k: " ".join(v.split()) if isinstance(v, str) else v for k, v in row.items()}
        csv.DictWriter(buf, fieldnames=self.fields, extrasaction="ignore").writerow(row)
        self._append(buf.getvalue())


def open_sinks(json_path: Optional[str], csv_path: Optional[str], table: Optional[IO[str]] = None,
               csv_fields: Sequence[str] = FIELDS):
    """The writers rank 0 uses.

    Raises OSError (with the path) when a file cannot open, ValueError when
    it must not be appended to (not ours, another CSV header, a directory).
    """
    sinks: List[Sink] = []
    if table is not None:
        sinks.append(TableWriter(table))
    for path, make in ((json_path, JsonlWriter), (csv_path, lambda p: CsvWriter(p, csv_fields))):
        if path:
            try:
                sinks.append(make(path))
            except (OSError, ValueError) as exc:
                for s in sinks:
                    s.close()
                if isinstance(exc, OSError):
                    raise OSError(f"cannot write {path}: {exc.strerror or exc}") from None
                raise
    return sinks


def render_table(info: Dict, points: Sequence[Sequence[Dict]], summary: Dict) -> str:
    """The whole table as a string (tests and reports)."""
    buf = io.StringIO()
    t = TableWriter(buf)
    t.header(info)
    for recs in points:
        t.point(recs)
    t.footer(summary)
    return buf.getvalue()


def stdout_table() -> TableWriter:
    return TableWriter(sys.stdout)
