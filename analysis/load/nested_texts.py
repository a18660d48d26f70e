"""Each line's nested (per-rank) values as the line reader keeps them, for the block reader
(:mod:`analysis.load.arrow_blocks`) where a command keeps them (``analysis.results --csv``).

The line reader keeps a nested value as compact JSON text with sorted keys
(:func:`analysis.load.record_checks.nested_text`).  Where such a value ends
cannot be told from a line's bytes alone, so the block reader parses each
line again for them: from the fields on, where that suffix is sure to give
the whole line's values (:func:`tail`: about 9 us a line against 17 for the
whole line), else the whole line by the line reader's parser.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from analysis.load.record_checks import Bad, nested_of

try:  # optional (the analysis extra)
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

__all__ = ["texts", "tail"]


def texts(buf, starts: np.ndarray, ends: np.ndarray, keys: Sequence[str], scan=None) -> Optional[Dict[str, list]]:
    """Each row's value of each nested field in ``keys`` as the line reader keeps it (its compact JSON
    text, keys sorted).  ``scan``: what the C wrote for these lines (:func:`analysis.load.nested_native.scan`),
    whose rows it left unsure are done here.  Where a nested value ends cannot be told from its bytes
    alone in Python (escapes, brackets in strings, the same key at another depth), so each line is parsed
    again: from the keys on where that suffix is sure to give the line's values (:func:`tail`), else whole
    by the line reader's parser.  None where that parser refuses a line (the block goes to the line
    reader)."""
    if not keys:
        return {}
    if scan is not None:
        columns, rows = scan.columns(), scan.unsure.tolist()
    else:
        columns, rows = {k: [None] * len(starts) for k in keys}, range(len(starts))
    if not len(rows):
        return columns
    marks = [orjson.dumps(k) for k in keys]
    absent = [None] * len(keys)
    loads, dumps, sort = orjson.loads, orjson.dumps, orjson.OPT_SORT_KEYS
    cols = [columns[k] for k in keys]
    lo, hi = int(starts[0]), int(ends[-1])  # what no line of the block has, no line is asked for
    escapes = buf.find(b"\\", lo, hi) >= 0
    odd = buf.find(b"N", lo, hi) >= 0 or buf.find(b"I", lo, hi) >= 0
    first, last = starts.tolist(), ends.tolist()
    try:
        for i in rows:
            line = buf[first[i]:last[i]]
            rec = tail(line, keys, marks, loads, escapes, odd)
            if rec is None:
                values = nested_of(line, keys)
            elif rec is False:
                values = absent
            else:
                values = [dumps(v, option=sort).decode() if type(v) in (list, dict) else v for v in map(rec.get, keys)]
            for col, v in zip(cols, values):
                col[i] = v
    except (Bad, orjson.JSONEncodeError):  # a line its parser refuses; a value orjson does not write
        return None
    return columns


def tail(line, keys: Sequence[str], marks: Sequence[bytes], loads, escapes: bool = True, odd: bool = True):
    """The line's members from the first of the last places of ``marks`` (``keys`` quoted) on, as a dict,
    where that suffix is sure to give each key the value the whole line gives it; False where no mark is
    in the line (nor an escape that could spell one); None where unsure.

    The line is valid JSON (pyarrow parsed it) and has no backslash, so a mark is a whole string, and
    ``{`` + the suffix parses only where the mark starts a key at the top (a value is followed by no
    colon; a key deeper leaves closing brackets over).  A key the suffix holds is its last at the top,
    which is what a parser keeps; a key it lacks whose mark is in the suffix all the same (deeper, or a
    value) may be at the top before it, so the line is unsure unless the mark is not there.  ``escapes``
    and ``odd`` say whether the block holds a backslash, and a capital N or I (of NaN, Infinity) at all."""
    if escapes and b"\\" in line:
        return None
    last = list(map(line.rfind, marks))
    found = [i for i in last if i >= 0]
    if not found:
        return False
    if odd and (b"NaN" in line or b"Inf" in line):  # what orjson refuses, pyarrow reads: the line reader's
        return None                                  # json would read the line, an int beyond 64 bits whole
    p = min(found)
    try:
        rec = loads(b"{" + line[p:])
    except orjson.JSONDecodeError:
        return None
    for key, mark, i in zip(keys, marks, last):
        if i >= 0 and key not in rec and line.find(mark, 0, p) >= 0:
            return None
    return rec
