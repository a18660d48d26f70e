"""Records -> the points frame: one tidy pandas row per measured point of a size sweep.

One row per measured point: run id, transport, collective, nranks, nhosts,
size, dtype, op, placement, times, bandwidths, and ``kind`` (``measured``
or ``modelled``).  Only rows that hold a time (status ``ok`` or ``wrong``)
are kept unless ``all_status=True``; unsupported and timed-out rows stay
available for the report's notes.  Every column of :data:`facts.record.FIELDS`
is present.  Replication's training-step records are not points: they load
with :mod:`analysis.load.replicate_runs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union

from analysis.load import reader, table
from facts import record

__all__ = ["load", "frame", "placement", "split_replicate"]


def placement(rec: dict) -> str:
    """out-of-place / in-place, or down / up for weight streaming."""
    if rec.get("phase"):
        return str(rec["phase"])
    return "in-place" if rec.get("in_place") else "out-of-place"


def split_replicate(records: List[dict]) -> Tuple[List[dict], List[dict]]:
    """(collective points, replicate training-step records): the latter are not points of a size sweep
    and load with :func:`analysis.load.replicate_runs.load`.  The triage's CPU probe (``cpu_probe``) is
    neither: :mod:`analysis.triage` reads it."""
    points = [r for r in records if r.get("collective") not in (reader.REPLICATE, "cpu_probe")]
    return points, [r for r in records if r.get("collective") == reader.REPLICATE]


def _without(tab, collectives) -> Dict[str, list]:
    """The table's columns without the rows of ``collectives``."""
    from itertools import compress

    coll = tab.columns.get("collective", [])
    if not any(map(set(collectives).__contains__, set(coll))):
        return tab.columns
    flags = [c not in collectives for c in coll]
    return {k: list(compress(v, flags)) for k, v in tab.columns.items()}


def _column(values):
    """A column as the frame holds it: text (and text with gaps) as Python objects -- pandas' own text type
    cannot hold every string JSON can (a lone surrogate) -- numbers and yes/no as pandas infers them."""
    import numpy as np
    import pandas as pd

    if isinstance(values, np.ndarray):
        return pd.Series(values, dtype=object, copy=False) if values.dtype == object else values
    if set(map(type, values)) <= {str, type(None)} and len(values):
        return pd.Series(values, dtype=object)
    return values


def frame(records, all_status: bool = False):
    """The DataFrame of :func:`read_records`' records (or :func:`~analysis.load.reader.read_table`'s
    table); measured points only unless ``all_status``.

    Replicate records (training steps, not collective points) are left out: see
    :mod:`analysis.load.replicate_runs`."""
    import numpy as np
    import pandas as pd
    from pandas.api.types import infer_dtype

    if isinstance(records, table.Table):
        cols = _without(records, (reader.REPLICATE, "cpu_probe"))
    else:
        records = split_replicate(records)[0]
        cols = {k: [r.get(k) for r in records] for k in dict.fromkeys(k for r in records for k in r)}
    n = len(next(iter(cols.values()))) if cols else 0
    cols = dict(cols)
    for c in record.FIELDS:  # every record the project writes has them all: code may rely on them
        if c not in cols:  # as the loop below would leave a column of None: NaN for a number, else None
            cols[c] = np.full(n, np.nan) if c in reader.NUMERIC else np.full(n, None, dtype=object)

    def listed(c):
        v = cols.get(c)
        return [None] * n if v is None else v.tolist() if isinstance(v, np.ndarray) else v

    cols["placement"] = [str(ph) if ph and ph == ph else "in-place" if ip and ip == ip else "out-of-place"
                         for ph, ip in zip(listed("phase"), listed("in_place"))]  # placement() (NaN: none)
    df = pd.DataFrame({k: _column(v) for k, v in cols.items()}, copy=False)  # at once: inserts fragment it
    kinds = df["kind"].tolist()
    if not all(map(str.__instancecheck__, kinds)):
        df["kind"] = [k if isinstance(k, str) else "measured" for k in kinds]
    for col in reader.NUMERIC:
        if col in df:
            dtype = df[col].dtype
            if isinstance(dtype, np.dtype) and dtype.kind in "iuf":  # numbers already: infinities out, if any
                if dtype.kind == "f" and np.isinf(df[col].to_numpy()).any():
                    df[col] = df[col].replace([np.inf, -np.inf], np.nan)
                continue
            if dtype == object and len(df) and df[col].isna().all():  # None in every row (a field never written)
                df[col] = np.full(len(df), np.nan)
                continue
            try:
                df[col] = pd.to_numeric(df[col], errors="coerce")
            except OverflowError:  # an integer beyond any float (10**400)
                df[col] = pd.Series([reader.as_float(v) for v in df[col]], index=df.index, dtype=float)
            df[col] = df[col].replace([np.inf, -np.inf], np.nan)
    # Text or None, so that any column can be grouped and sorted; True, False or None for yes/no.
    for cols, keep, fine in ((reader.TEXT, lambda v: str(v) if isinstance(v, (str, int, float)) and v == v else None,
                              {str, type(None)}),
                             (reader.BOOLEAN, lambda v: v if isinstance(v, bool) else None, {bool, type(None)})):
        for col in cols:
            if col in df:
                dtype = df[col].dtype
                if str in fine and isinstance(dtype, np.dtype) and dtype.kind in "iu":  # whole numbers as text
                    df[col] = pd.Series(list(map(str, df[col].tolist())), index=df.index, dtype=object)
                    continue
                if dtype == object and str in fine and infer_dtype(df[col].to_numpy(), skipna=False) == "string":
                    continue  # text in every row (a C pass over the column, not a type per row)
                values = df[col].tolist()
                if not set(map(type, values)) <= fine:
                    values = [keep(v) for v in values]
                elif df[col].dtype == object:
                    continue
                df[col] = pd.Series(values, index=df.index, dtype=object)
    if not all_status:
        df = df[df["status"].isin(reader.MEASURED)].reset_index(drop=True)
    return df


def load(paths: Union[str, Path, Iterable[Union[str, Path]]], all_status: bool = False, strict: bool = False,
         warn: Optional[reader.Warn] = None):
    """A DataFrame of the records in ``paths``; measured points only unless ``all_status``."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return frame(reader.read_table(list(paths), strict, warn), all_status)
