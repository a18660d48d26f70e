"""One line of collscale results -> one checked record: what the line reader and the block reader agree on.

:func:`parse_line` parses a JSON Lines line (orjson where it reads it, else
json, whose errors the warnings quote); :func:`check` refuses what is not a
record of ours with sound structural fields and keeps nested values as
compact JSON text (:func:`nested_text`); :func:`complete` derives the
bandwidths of a measured record that lacks them.  Each refusal is a
:class:`Bad`, which the reader turns into a ``file:line`` warning.
"""

from __future__ import annotations

import json
import math
from typing import Callable, Dict, Optional

from analysis import physical
from facts import spec as specs

try:  # optional (the analysis extra): parses a line about twice as fast as json; json reads what it refuses
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

__all__ = ["Bad", "as_float", "nested_text", "check", "complete", "parse_line", "record_of", "nested_of", "STRUCTURE",
           "CHECKED", "MEASURED", "NO_BANDWIDTH", "MAX_RANKS", "MAX_BYTES"]

STRUCTURE = ("schema", "collective", "transport", "nranks", "size_bytes", "status")
CHECKED = ("schema", "kind", "status", "collective", "transport", "nranks", "size_bytes", "time_us", "algbw_gbs",
           "busbw_gbs")  # what check and complete read
MEASURED = physical.TIMED  # statuses that carry a time
NO_BANDWIDTH = ("replicate", "cpu_probe")  # records of a time alone: replicate's steps, the triage's CPU probe
MAX_RANKS = 1 << 24
MAX_BYTES = 1 << 62


class Bad(Exception):
    """One unreadable line (skipped unless strict)."""


def as_float(value) -> float:
    """A JSON or CSV number as a finite float, else NaN (bools, text, 10**400, infinities)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    try:
        value = float(value)
    except OverflowError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def nested_text(value) -> str:
    """A nested value (list or dict) as the loader keeps it: compact JSON text, keys sorted (hashable, and
    decoded by :func:`analysis.load.ranks.decode`)."""
    if orjson is not None:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        except (TypeError, ValueError, orjson.JSONEncodeError):  # an int beyond 64 bits, a NaN: json below
            pass
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _whole_in(value, lo: int, hi: int) -> bool:
    v = as_float(value)
    return v == v and v.is_integer() and lo <= v <= hi


def check(rec, hooks: Optional[Dict[str, Callable[[dict], object]]] = None, drop=frozenset()) -> dict:
    """The record if it has our schema and sound structural fields, else :class:`Bad`; each of ``hooks``
    (name -> function of the record, its nested values still lists and dicts) adds a field of that name;
    nested values of fields in ``drop`` (which the caller will not keep) are left as they are."""
    if not isinstance(rec, dict):
        raise Bad("not a JSON object")
    schema = rec.get("schema")
    if not (isinstance(schema, str) and (schema == "collscale.row" or schema.startswith("collscale.row/"))):
        raise Bad("not a collscale record (no 'schema: collscale.row/...'; keys: "
                   f"{', '.join(str(k) for k in list(rec)[:6])}...)")
    # A sweep's failed point produced no row: it has no size (launch.sweep.failure_record).
    failed = rec.get("status") == "failed"
    if None in map(rec.get, STRUCTURE):
        missing = [k for k in STRUCTURE if rec.get(k) is None and not (failed and k == "size_bytes")]
        if missing:
            raise Bad(f"collscale record without {', '.join(missing)}")
    wrong = [k for k in ("collective", "transport", "status") if not isinstance(rec[k], str) or not rec[k]]
    nranks, size = rec["nranks"], rec.get("size_bytes")  # a failed point may have no size at all
    if not (nranks.__class__ is int and 1 <= nranks <= MAX_RANKS) and not _whole_in(nranks, 1, MAX_RANKS):
        wrong.append("nranks")
    if not (size.__class__ is int and 0 <= size <= MAX_BYTES) and not (failed and size is None) \
            and not _whole_in(size, 0, MAX_BYTES):
        wrong.append("size_bytes")
    if rec.get("kind") is not None and not isinstance(rec["kind"], str):
        wrong.append("kind")
    if wrong:
        raise Bad(f"collscale record with unusable {', '.join(wrong)}")
    if hooks:
        for name, hook in hooks.items():
            rec[name] = hook(rec)
    types = list(map(type, rec.values()))
    if list in types or dict in types:  # a newer writer's nested values stay readable (and hashable); a
        # JSON parser gives no subclasses of list and dict
        for k, t in zip(list(rec), types):
            if (t is list or t is dict) and k not in drop:
                rec[k] = nested_text(rec[k])
    if nranks.__class__ is not int:
        rec["nranks"] = int(nranks)
    if size is not None and size.__class__ is not int:
        rec["size_bytes"] = int(size)
    return rec


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


def complete(rec: dict, derived: Dict[str, list], token) -> dict:
    """A measured record with a usable time and both bandwidths (derived where missing, ``token`` added to
    ``derived[column]``), else Bad."""
    if rec["status"] not in MEASURED:
        return rec
    if not as_float(rec.get("time_us")) >= 0:
        raise Bad(f"measured record without a usable time_us ({_short(rec.get('time_us'))})")
    if rec["collective"] in NO_BANDWIDTH:  # a training step, a CPU probe: no sized transfer, no bandwidth
        return rec
    seconds = as_float(rec["time_us"]) * 1e-6
    if not as_float(rec.get("algbw_gbs")) >= 0:
        rec["algbw_gbs"] = rec["size_bytes"] / seconds / 1e9 if seconds > 0 else 0.0
        derived.setdefault("algbw_gbs", []).append(token)
    if not as_float(rec.get("busbw_gbs")) >= 0:
        factor = rec.get("busbw_factor")
        if not as_float(factor) >= 0:
            spec = specs.find(rec["collective"])
            if spec is None:
                raise Bad(f"measured record without busbw_gbs or busbw_factor, of a collective not in "
                           f"facts.spec ({rec['collective']!r})")
            factor = rec["busbw_factor"] = spec.busbw_factor(rec["nranks"])
        rec["busbw_gbs"] = rec["algbw_gbs"] * factor
        derived.setdefault("busbw_gbs", []).append(token)
    return rec


def _parse_json(text: str, last: bool):
    try:
        return json.loads(text)
    except RecursionError:
        raise Bad("not JSON (nested too deeply)") from None
    except ValueError as exc:
        where = f" ({exc.msg}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else f" ({exc})"
        torn = "; a torn last line (no newline at the end: a run killed mid-write?)" if last else ""
        raise Bad(f"not JSON{where}{torn}") from None


def parse_line(line: bytes):
    """One line's JSON value (orjson where it reads the line; else json, whose errors the warnings quote)."""
    if orjson is not None:
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:  # NaN, a big int, a lone surrogate, bad text: json decides below
            pass
    torn = not line.endswith(b"\n")
    try:
        text = (line if torn else line[:-1]).decode("utf-8")
    except UnicodeDecodeError:
        raise Bad("not UTF-8 text") from None
    return _parse_json(text, torn)


def record_of(line: bytes, hooks: Optional[Dict[str, Callable[[dict], object]]] = None, drop=frozenset()) -> dict:
    """One line's checked record (a measured one completed), or :class:`Bad`."""
    rec = check(parse_line(line), hooks, drop)
    return complete(rec, {}, 0) if rec["status"] in MEASURED else rec


def nested_of(line: bytes, keys) -> list:
    """One line's value of each of ``keys`` as :func:`check` keeps it (lists and dicts as
    :func:`nested_text`), or :class:`Bad`."""
    rec = parse_line(line)
    if not isinstance(rec, dict):
        raise Bad("not a JSON object")
    return [nested_text(v) if isinstance(v, (list, dict)) else v for v in map(rec.get, keys)]
