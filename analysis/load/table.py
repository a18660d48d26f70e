"""Where the reader puts records: a list of dicts (:class:`Records`) or columns (:class:`Table`).

:func:`analysis.load.reader.read_records` gives a dict per record, what
most code wants.  A results file of a cluster's sweeps holds a million
records, and a dict per record costs several times the file in memory:
:func:`analysis.load.reader.read_table` gives the same records as
:class:`Table`, one list per field, filled a chunk of records at a time.
Text values repeated from record to record (transport, collective, dtype,
run id, hosts ...) are kept once per distinct value; fields a command does
not need can be dropped as they are read.  :func:`analysis.load.points.frame`
takes either.

Both are *sinks*: ``add(line, record)``, ``extend``, ``flush``, ``n``,
``column(key, start)``, ``lines(start)`` and ``keep(start, mask)``, which is
all the reader asks of them.
"""

from __future__ import annotations

from array import array
from itertools import compress
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set

import numpy as np

__all__ = ["Records", "Table", "Sink"]

CHUNK = 8192  # records held as dicts before they become columns
_UNIQUE = 1 << 16  # a text field with more distinct values than this in a chunk is not deduplicated


class Records:
    """The records as a list of dicts (and each one's line)."""

    def __init__(self):
        self.records: List[dict] = []
        self._lines = array("q")

    @property
    def n(self) -> int:
        return len(self.records)

    def add(self, line: int, rec: dict) -> None:
        self.records.append(rec)
        self._lines.append(line)

    def extend(self, recs: Sequence[dict], lines: Iterable[int]) -> None:
        self.records.extend(recs)
        self._lines.extend(lines)

    def flush(self) -> None:
        pass

    def column(self, key: str, start: int = 0) -> list:
        return [r.get(key) for r in self.records[start:]]

    def lines(self, start: int = 0) -> Sequence[int]:
        return self._lines[start:]

    def keep(self, start: int, mask) -> Set[int]:
        kept = [i for i, k in enumerate(mask.tolist(), start) if k]
        self.records[start:] = [self.records[i] for i in kept]
        self._lines[start:] = array("q", (self._lines[i] for i in kept))
        return set(kept)


class Table:
    """The records as columns: ``columns[field]`` holds every record's value (None where it has none), in
    the order the fields first appeared, but for the fields in ``drop`` (or, given ``keep``, any other);
    ``records`` holds, whole, the records ``whole`` chose.  A column is a list, or a numpy array where
    every value came from :mod:`analysis.load.arrow_blocks` as numbers or text without a gap."""

    def __init__(self, drop: Sequence[str] = (), whole: Optional[Callable[[dict], bool]] = None,
                 keep: Optional[Sequence[str]] = None):
        self._chunks: Dict[str, list] = {}  # field -> its chunks (lists, arrays), together self._rows long
        self.drop = frozenset(drop) if keep is None else _AllBut(frozenset(keep) - frozenset(drop))
        self._whole = whole
        self._pending: List[dict] = []
        self._lines = array("q")
        self._memo: Dict[str, Optional[dict]] = {}
        self._rows = 0
        self.whole: List[tuple] = []

    @property
    def n(self) -> int:
        return self._rows + len(self._pending)

    @property
    def records(self) -> List[dict]:
        """The records ``whole`` chose, in order."""
        return [r for _, r in self.whole]

    @property
    def whole_rule(self) -> Optional[Callable[[dict], bool]]:
        """The predicate that chooses the records kept whole (None: none are)."""
        return self._whole

    @property
    def columns(self) -> Dict[str, Sequence]:
        """field -> its values (a list or a numpy array), every row's."""
        self.flush()
        for key, chunks in self._chunks.items():
            if len(chunks) > 1:
                chunks[:] = [_joined(chunks)]
        return {key: chunks[0] if chunks else [] for key, chunks in self._chunks.items()}

    def add(self, line: int, rec: dict) -> None:
        if self._whole is not None and self._whole(rec):
            self.whole.append((self.n, rec))
        self._pending.append(rec)
        self._lines.append(line)
        if len(self._pending) >= CHUNK:
            self.flush()

    def extend(self, recs: Sequence[dict], lines: Iterable[int]) -> None:
        for rec, line in zip(recs, lines):
            self.add(line, rec)
        self.flush()

    def _append(self, cols: Dict[str, Sequence], n: int) -> None:
        """``n`` rows as columns (lists or arrays) after those held; a field they lack is None there."""
        for key, values in cols.items():
            if key in self.drop:
                continue
            have = self._chunks.get(key)
            if have is None:
                self._chunks[key] = ([[None] * self._rows] if self._rows else []) + [values]
            else:
                have.append(values)
        for key, have in self._chunks.items():
            if key not in cols:
                have.append([None] * n)
        self._rows += n

    def flush(self) -> None:
        recs, self._pending = self._pending, []
        if not recs:
            return
        runs: List[tuple] = []  # (fields, records) of each run of records with the same fields in the same order
        for rec in recs:
            shape = tuple(rec)
            if runs and runs[-1][0] == shape:
                runs[-1][1].append(rec)
            else:
                runs.append((shape, [rec]))
        if len(runs) == 1:
            cols = dict(zip(runs[0][0], map(list, zip(*map(dict.values, recs)))))
        else:
            cols = {k: [] for k in dict.fromkeys(k for shape, _ in runs for k in shape)}
            for shape, run in runs:
                for key, values in zip(shape, zip(*map(dict.values, run))):
                    cols[key].extend(values)
                if len(shape) < len(cols):
                    for key in cols.keys() - set(shape):
                        cols[key].extend([None] * len(run))
        for key, values in cols.items():
            if key in self.drop:
                continue
            memo = self._memo.setdefault(key, {} if _is_text(values) else None)
            if memo is not None:  # one object per distinct text: a run id, a host list
                cols[key] = list(map(memo.setdefault, values, values))
                if len(memo) > _UNIQUE:
                    self._memo[key] = None
        self._append(cols, len(recs))

    def add_block(self, columns: Dict[str, Sequence], lines: Sequence[int], whole: Sequence[tuple] = ()) -> None:
        """Rows already as columns (:mod:`analysis.load.arrow_blocks`: each of ``columns`` as long as
        ``lines``, text already one object per distinct value); ``whole``: (row in the block, record) of the
        rows kept whole."""
        self.flush()
        self.whole.extend((self._rows + i, rec) for i, rec in whole)
        self._lines.extend(lines.tolist() if hasattr(lines, "tolist") else lines)
        self._append(columns, len(lines))

    def column(self, key: str, start: int = 0) -> Sequence:
        self.flush()
        col = self.columns.get(key)
        return [None] * (self._rows - start) if col is None else col[start:]

    def lines(self, start: int = 0) -> Sequence[int]:
        return self._lines[start:]

    def keep(self, start: int, mask) -> Set[int]:
        self.flush()
        flags = mask.tolist()
        for key, col in self.columns.items():
            head, tail = col[:start], col[start:]
            if isinstance(col, np.ndarray):
                self._chunks[key] = [head, tail[np.asarray(mask, bool)]]
            else:
                self._chunks[key] = [head, list(compress(tail, flags))]
        self._lines[start:] = array("q", compress(self._lines[start:], flags))
        kept = [i for i, k in enumerate(flags, start) if k]
        new = {old: new for new, old in enumerate(kept, start)}
        self.whole = [(i if i < start else new[i], r) for i, r in self.whole if i < start or i in new]
        self._rows = start + len(kept)
        return set(kept)


def _joined(chunks: list):
    """One column of its chunks: an array where every chunk is an array of one dtype, else a list."""
    chunks = [c for c in chunks if len(c)]
    if not chunks:
        return []
    arrays = [c for c in chunks if isinstance(c, np.ndarray)]
    if arrays and len({c.dtype for c in arrays}) == 1:  # the lists too, where their values are of that dtype
        dtype = arrays[0].dtype
        same = {"i": {int}, "f": {float}, "b": {bool}}.get(dtype.kind)
        try:
            if dtype == object:
                return np.concatenate([c if isinstance(c, np.ndarray) else np.fromiter(c, object, len(c))
                                       for c in chunks])
            if same is not None and all(isinstance(c, np.ndarray) or set(map(type, c)) <= same for c in chunks):
                return np.concatenate([np.asarray(c, dtype) for c in chunks])
        except OverflowError:  # an int beyond 64 bits
            pass
    out: list = []
    for c in chunks:
        out.extend(c.tolist() if isinstance(c, np.ndarray) else c)
    return out


Sink = object  # Records or Table: what reader._read_file writes into


class _AllBut:
    """Every field but these (``in`` as a set's)."""

    def __init__(self, keep: frozenset):
        self.keep = keep

    def __contains__(self, key) -> bool:
        return key not in self.keep


def _is_text(values: list) -> bool:
    """Whether a field's first value (not None) is text (and so worth keeping once per distinct value)."""
    first = next((v for v in values if v is not None), None)
    return first.__class__ is str and not first.startswith(("[", "{"))  # nested JSON text is rarely repeated
