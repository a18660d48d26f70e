"""Harness results (JSON Lines or CSV) -> one tidy pandas DataFrame.

One row per measured point: run id, transport, collective, nranks, nhosts,
size, dtype, op, placement, times, bandwidths, and ``kind`` (``measured``
or ``modelled``).  Only rows that hold a time (status ``ok`` or ``wrong``)
are kept unless ``all_status=True``; unsupported and timed-out rows stay
available for the report's notes.

Errors name the file and the line: a line that is not JSON, a record that
is not a collscale record (no ``schema`` starting with ``collscale.row``),
a CSV without the harness's columns.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterable, List, Sequence, Union

__all__ = ["ResultsError", "load", "read_records", "REQUIRED", "placement"]

REQUIRED = ("collective", "transport", "nranks", "size_bytes", "time_us", "busbw_gbs", "algbw_gbs")
_NUMERIC = ("nranks", "nhosts", "ranks_per_host", "size_bytes", "count", "iters", "warmup", "time_us",
            "time_us_min", "time_us_p50", "time_us_p99", "time_us_max", "time_us_rank_min",
            "time_us_rank_max", "algbw_gbs", "busbw_gbs", "busbw_factor", "wrong", "checks", "root",
            "emulated_link_gbs")


class ResultsError(ValueError):
    """A results file that cannot be read as collscale results (names file and line)."""


def _check(rec: dict, where: str) -> dict:
    if not isinstance(rec, dict):
        raise ResultsError(f"{where}: not a JSON object")
    schema = str(rec.get("schema", ""))
    if not schema.startswith("collscale.row"):
        raise ResultsError(f"{where}: not a collscale record (no 'schema: collscale.row/...'; "
                           f"keys: {', '.join(list(rec)[:6])}...)")
    missing = [k for k in ("collective", "transport", "nranks", "size_bytes", "status") if k not in rec]
    if missing:
        raise ResultsError(f"{where}: collscale record without {', '.join(missing)}")
    return rec


def _read_jsonl(path: Path) -> List[dict]:
    out = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ResultsError(f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})") from None
            out.append(_check(rec, f"{path}:{number}"))
    return out


def _read_csv(path: Path) -> List[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "schema" not in reader.fieldnames:
            raise ResultsError(f"{path}:1: not a collscale CSV (no 'schema' column in the header)")
        out = []
        for number, row in enumerate(reader, 2):
            rec = {k: _from_csv(v) for k, v in row.items() if k is not None}
            out.append(_check(rec, f"{path}:{number}"))
    return out


def _from_csv(value):
    if value in (None, ""):
        return None
    if value in ("True", "False"):
        return value == "True"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def read_records(paths: Sequence[Union[str, Path]]) -> List[dict]:
    """Every record of every file, in order (JSON Lines by content, CSV by suffix)."""
    records: List[dict] = []
    if not paths:
        raise ResultsError("no results files given")
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise ResultsError(f"{path}: no such file")
        if path.suffix.lower() == ".csv":
            records.extend(_read_csv(path))
        else:
            records.extend(_read_jsonl(path))
    if not records:
        raise ResultsError(f"{', '.join(map(str, paths))}: no records")
    return records


def placement(rec: dict) -> str:
    """out-of-place / in-place, or down / up for weight streaming."""
    if rec.get("phase"):
        return str(rec["phase"])
    return "in-place" if rec.get("in_place") else "out-of-place"


def load(paths: Union[str, Path, Iterable[Union[str, Path]]], all_status: bool = False):
    """A DataFrame of the records in ``paths``; measured points only unless ``all_status``."""
    import pandas as pd

    if isinstance(paths, (str, Path)):
        paths = [paths]
    records = read_records(list(paths))
    df = pd.DataFrame.from_records(records)
    for col in REQUIRED:
        if col not in df:
            df[col] = None
    if "kind" not in df:
        df["kind"] = "measured"
    df["kind"] = df["kind"].fillna("measured")
    df["placement"] = [placement(r) for r in records]
    for col in _NUMERIC:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    if not all_status:
        df = df[df["status"].isin(["ok", "wrong"])].reset_index(drop=True)
    return df
