"""A DataFrame as CSV: what pandas' ``to_csv(index=False)`` writes, byte for byte, many times faster for a
million rows.

The text is pandas': numbers as Python's ``repr`` writes them, ``True`` and
``False``, an empty cell for a missing value (None, NaN, NA), quotes only
where :mod:`csv` puts them (the cells it would quote, found by asking it),
``\\n`` line ends.  With pyarrow (the analysis extra) each chunk of rows is
formatted column by column in Arrow's kernels and joined into lines there
(:func:`_chunk_text`); the few float cells whose Arrow text is not ``repr``'s
(exponents, magnitudes under 1e-4) are formatted by ``repr`` itself.  Without
pyarrow, or for a column of mixed Python values, the cells go through
:mod:`csv` (:func:`_cells`).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Union

import numpy as np

try:  # optional (the analysis extra)
    import pyarrow as pa
    import pyarrow.compute as pc
except ImportError:  # pragma: no cover - depends on the environment
    pa = pc = None

__all__ = ["write", "floats_text", "CHUNK", "THREADS", "FEW"]

CHUNK = 1 << 15  # rows a chunk
THREADS = 2  # chunks formatted at once
FEW = 8  # a text column with at most one distinct value in FEW rows is quoted once per value


def write(df, path: Union[str, Path], chunk: int = CHUNK, arrow: bool = True) -> None:
    """``df`` (its columns in order, no index) as CSV at ``path``; ``arrow=False`` formats through
    :mod:`csv` alone (what happens without pyarrow)."""
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of rows, not {chunk}")
    if not _plain(df):  # what collscale's frames never are: pandas writes it
        df.to_csv(path, index=False)
        return
    cols = [str(c) for c in df.columns]
    by_arrow = arrow and pa is not None and len(cols) > 1  # csv quotes a lone empty cell: one column goes through csv
    spans = [(lo, lo + chunk) for lo in range(0, len(df), chunk)]
    with open(path, "wb") as f:
        f.write(_rows_text([cols]).encode())
        if by_arrow:
            few = [_few_texts(df.iloc[:, j], chunk) for j in range(len(cols))]
            with ThreadPoolExecutor(THREADS) as pool:  # Arrow's kernels let go of the interpreter
                for text in _in_order(pool, lambda span: _chunk_text(df, few, *span), spans, THREADS + 1):
                    f.write(text)
        else:
            for part in (df.iloc[lo:hi] for lo, hi in spans):
                f.write(_rows_text(zip(*(_cells(part.iloc[:, j]) for j in range(len(cols))))).encode())


def _in_order(pool, fn, items, ahead: int):
    """``fn`` of each item, in order, at most ``ahead`` of them under way or done and not yet taken."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _plain(df) -> bool:
    """Whether the frame is one this module writes as pandas does: columns named by text, a column level of
    one, no dates or times (pandas writes those in its own formats)."""
    import pandas as pd

    return (len(df.columns) > 0 and not isinstance(df.columns, pd.MultiIndex)
            and all(isinstance(c, str) for c in df.columns)
            and not any(isinstance(t, np.dtype) and t.kind in "mM" or not isinstance(t, np.dtype)
                        and getattr(t, "kind", "") in "mM" for t in df.dtypes))


def _rows_text(rows) -> str:
    """Rows of Python values as :mod:`csv` writes them."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _cells(series) -> list:
    """A column's values as csv writes them as pandas does: missing values (None, NaN, NA) as None."""
    kind = series.dtype.kind
    if kind in "iub" and isinstance(series.dtype, np.dtype):
        return series.to_numpy().tolist()
    if kind == "f" and isinstance(series.dtype, np.dtype):
        values = series.to_numpy()
        cells = values.tolist() if values.dtype == np.float64 else values.astype(str).tolist()  # float32's digits
        for i in np.flatnonzero(np.isnan(values)).tolist():
            cells[i] = None
        return cells
    values = series.to_numpy(dtype=object)
    cells = values.tolist()
    missing = series.isna().to_numpy()
    if missing.any():
        for i in np.flatnonzero(missing).tolist():
            cells[i] = None
    return cells


def _quoted_chars() -> str:
    """The characters that make :mod:`csv` quote a cell, asked of this Python's csv (a carriage return is
    quoted by some versions and not by others)."""
    return "".join(c for c in ',"\r\n\t' if _rows_text([[f"a{c}b", "x"]]).startswith('"'))


if pa is not None:
    _NEEDS_QUOTES = "[" + re.escape(_quoted_chars()) + "]"
    _TEXT = pa.large_string()
    _EMPTY = pa.scalar("", _TEXT)
    _QUOTE = pa.scalar('"', _TEXT)
    _TRUE, _FALSE = pa.scalar("True", _TEXT), pa.scalar("False", _TEXT)


def _few_texts(series, chunk: int):
    """``(each distinct value's cell, each row's code)`` of a text column of few distinct values (its first
    chunk has at most one in :data:`FEW` distinct): each text is quoted once, and a chunk's cells are taken
    from them.  None for any other column (each chunk formats its own cells)."""
    import pandas as pd

    if not (series.dtype == object and len(series) > chunk):
        return None
    try:
        head = pd.unique(series.iloc[:chunk].to_numpy())
        if len(head) * FEW > chunk:
            return None
        codes, values = pd.factorize(series.to_numpy(), use_na_sentinel=True)  # None, NaN, NA: -1, a missing cell
    except Exception:  # noqa: BLE001 - a cell that cannot be hashed (a list, a dict, any other): each chunk
        return None      # formats its own cells, as before
    if len(values) * FEW > len(series) or not all(type(v) is str for v in values):  # True == 1 to a hash:
        return None                                                                 # text alone is sure
    cells = pa.concat_arrays([_texts(pa.array(list(values), _TEXT)), pa.array([""], _TEXT)])
    codes[codes < 0] = len(values)
    return cells, codes


def _chunk_text(df, few, lo: int, hi: int) -> bytes:
    """Rows ``lo:hi`` as CSV lines: each column as Arrow text (taken from its distinct values' cells where
    ``few`` has them), the columns joined by commas, a newline after each row."""
    part = df.iloc[lo:hi]
    cols = [_column_text(part.iloc[:, j]) if few[j] is None else pc.take(few[j][0], pa.array(few[j][1][lo:hi]))
            for j in range(part.shape[1])]
    rows = pc.binary_join_element_wise(*cols, pa.scalar(",", _TEXT))
    lines = pc.binary_join_element_wise(rows, _EMPTY, pa.scalar("\n", _TEXT))
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    if not len(lines):
        return b""
    offsets = np.frombuffer(lines.buffers()[1], np.int64)[lines.offset:lines.offset + len(lines) + 1]
    return memoryview(lines.buffers()[2])[int(offsets[0]):int(offsets[-1])].tobytes()


def _column_text(series):
    """One column's cells as Arrow text, no nulls: what :mod:`csv` writes of each (see :func:`_cells`)."""
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "b":
        return pc.if_else(pa.array(series.to_numpy()), _TRUE, _FALSE)
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return pc.cast(pa.array(series.to_numpy()), _TEXT)
    if dtype == np.float64:
        return floats_text(series.to_numpy())
    cells = series.to_numpy(dtype=object).tolist()
    kinds = set(map(type, cells))
    if not kinds <= {str, bool, int, type(None)}:  # NaN, NA, NaT: missing, as _cells says
        cells = _cells(series)
        kinds = set(map(type, cells))
    kinds.discard(type(None))
    if kinds <= {str}:
        return _texts(pa.array(cells, _TEXT))
    if kinds <= {bool}:
        flags = pa.array(cells, pa.bool_())
        return pc.fill_null(pc.if_else(flags, _TRUE, _FALSE), _EMPTY)
    if kinds <= {int}:
        try:
            return pc.fill_null(pc.cast(pa.array(cells, pa.int64()), _TEXT), _EMPTY)
        except (OverflowError, pa.ArrowInvalid):  # beyond 64 bits: csv below
            pass
    elif kinds <= {float}:
        return floats_text(np.array([math.nan if c is None else c for c in cells], np.float64))
    if any(isinstance(c, str) and ("\n" in c or "\r" in c) for c in cells):  # a line break: a cell at a time
        return pa.array([_rows_text([[c, None]])[:-2] for c in cells], _TEXT)
    return pa.array([line[:-1] for line in _rows_text([c, None] for c in cells).split("\n")[:-1]], _TEXT)


def _texts(text):
    """Text cells (nulls empty), quoted as csv quotes them."""
    quote = pc.match_substring_regex(text, _NEEDS_QUOTES)
    quoted = pc.sum(quote).as_py() or 0
    if quoted:
        inner = pc.replace_substring(text, '"', '""') if pc.any(pc.match_substring(text, '"')).as_py() else text
        wrapped = pc.binary_join_element_wise(_QUOTE, inner, _QUOTE, _EMPTY)
        text = wrapped if quoted == len(text) - text.null_count else pc.if_else(quote, wrapped, text)
    return pc.fill_null(text, _EMPTY)


def floats_text(values: np.ndarray):
    """Float cells as ``repr`` writes them, NaN as an empty cell: Arrow's shortest digits where they are
    ``repr``'s (``2`` given ``.0``), ``repr`` itself for cells Arrow writes with an exponent or ``repr``
    would (magnitudes under 1e-4 or from 1e16)."""
    text = pc.cast(pa.array(values), _TEXT)
    with np.errstate(invalid="ignore"):
        size = np.abs(values)
        odd = (size != 0) & ((size < 1e-4) | (size >= 1e16))
        whole = values == np.trunc(values)  # 2, -0, 0 (not inf: it is not finite, below)
    odd |= pc.match_substring(text, "e").to_numpy(zero_copy_only=False)
    odd &= np.isfinite(values)
    whole &= np.isfinite(values) & ~odd
    if whole.any():
        text = pc.if_else(pa.array(whole), pc.binary_join_element_wise(text, pa.scalar(".0", _TEXT), _EMPTY), text)
    if odd.any():
        text = pc.replace_with_mask(text, pa.array(odd), pa.array([repr(v) for v in values[odd].tolist()], _TEXT))
    nan = np.isnan(values)
    if nan.any():
        text = pc.if_else(pa.array(nan), _EMPTY, text)
    return text

