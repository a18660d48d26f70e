"""nccl-tests ``-J`` JSON files and rccl-tests' JSON output (``-x FILE -Z json``) into records.

* nccl-tests (``-J``, 2.17 and later; nccl-tests src/util.cu, JSON file version
  3): one object with ``args`` (argv: its first is the ``*_perf`` binary),
  ``nccl_version`` (NCCL's version code), ``config`` (iterations and
  ``devices``: one entry per rank with hostname and device_info) and
  ``results``: per size ``size count type redop root`` and ``out_of_place`` /
  ``in_place`` objects of ``time`` (or ``cpu_time``) us, ``alg_bw``, ``bus_bw``
  GB/s and ``nwrong``.  A file cut short (a killed run never closes its
  object) is read result by result up to the cut.
* rccl-tests (ROCm/rccl-tests PR #93, 2024): one JSON object per line, ``name``
  (``AllReduce``), ``size``, ``type``, ``redop``, ``inPlace``, ``time`` us,
  ``algBw``, ``busBw`` GB/s, ``#wrong`` and ``gpus`` (the rank count of a
  single-process run); since PR #140 (2025) the same objects in one list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from analysis.load.importers.common import Bad, Given, Parsed, build, dtype_name, hosts_field, join, number
from analysis.load.importers.nccl_tests import COLLECTIVES
from facts import spec as specs

__all__ = ["sniff_json", "parse_json"]

_RCCL_KEYS = {"algBw", "busBw", "name", "size", "time"}
_RCCL_NAMES = {"allreduce": "allreduce", "allgather": "allgather", "reducescatter": "reduce_scatter",
               "broadcast": "broadcast", "reduce": "reduce", "alltoall": "alltoall", "sendrecv": "sendrecv"}


def _is_nccl_doc(payload) -> bool:
    if isinstance(payload, dict):
        return "results" in payload and ("nccl_version" in payload or "config" in payload)
    return isinstance(payload, str) and '"results"' in payload[:1 << 16] and (
        '"nccl_version"' in payload[:1 << 16] or '"config"' in payload[:1 << 16])


def sniff_json(payload) -> Optional[str]:
    if _is_nccl_doc(payload):
        return "nccl-tests JSON (-J)"
    items = payload if isinstance(payload, list) else []
    first = next((x for x in items if isinstance(x, dict)), None)
    if first is not None and _RCCL_KEYS <= set(first):
        return "rccl-tests JSON"
    return None


def parse_json(payload, text: str, path, given: Given) -> Parsed:
    if _is_nccl_doc(payload):
        return _nccl(payload, text, path, given)
    return _rccl(payload, text, path, given)


# -- nccl-tests -J ---------------------------------------------------------------------------

def _results(text: str) -> Iterator[Tuple[int, object]]:
    """(line, result object) for each result, read from the text one object after the other, so that
    a document cut short (a killed run never closes it) yields what it holds, then None at the cut."""
    decoder = json.JSONDecoder()
    pos = text.find('"results"')
    pos = text.find("[", pos) + 1 if pos >= 0 else 0
    while 0 < pos < len(text):
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] != "{":
            return
        try:
            item, end = decoder.raw_decode(text, pos)
        except ValueError:
            yield text.count("\n", 0, pos) + 1, None  # the object the run was writing when it stopped
            return
        yield text.count("\n", 0, pos) + 1, item
        pos = end


def _head(payload, text: str) -> dict:
    """The top-level fields before ``results`` (of a torn document too)."""
    if isinstance(payload, dict):
        return payload
    cut = text.find('"results"')
    head = text[:cut].rstrip().rstrip(",") + "}" if cut > 0 else "{}"
    try:
        return json.loads(head)
    except ValueError:
        return {}


def _library(code) -> Optional[str]:
    if not isinstance(code, int) or code <= 0:
        return None
    return f"NCCL {code // 10000}.{code % 10000 // 100}.{code % 100}" if code >= 10000 else \
        f"NCCL {code // 1000}.{code % 1000 // 100}.{code % 100}"


def _nccl(payload, text: str, path, given: Given) -> Parsed:
    out = Parsed()
    head = _head(payload, text)
    args = head.get("args") if isinstance(head.get("args"), list) else []
    binary = Path(str(args[0])).name if args else ""
    m = re.match(r"(\w+?)_perf", binary)
    collective = COLLECTIVES.get(m.group(1)) if m else None
    config = head.get("config") if isinstance(head.get("config"), dict) else {}
    devices = [d for d in config.get("devices") or [] if isinstance(d, dict) and isinstance(d.get("rank"), int)]
    if collective is None or specs.find(collective) is None:
        out.notes.append(f"{path}: the JSON's args ({binary or 'none'}) name no collective collscale knows: "
                         "nothing loaded")
        return out
    nranks = given.ranks or (max(d["rank"] for d in devices) + 1 if devices else None)
    how = "nranks given on the command line" if given.ranks else ("nranks from config.devices" if devices else None)
    nhosts, hosts, per_host = hosts_field({d["rank"]: str(d.get("hostname")) for d in devices})
    gpus = [str(d.get("device_info")) for d in devices if d.get("device_info")]
    spec = specs.find(collective)
    common = dict(collective=collective, transport=given.transport or "nccl-tests", nranks=nranks, nhosts=nhosts,
                  ranks_per_host=per_host, hosts=hosts, iters=config.get("iterations"),
                  warmup=config.get("warmup_iters"), transport_version=_library(head.get("nccl_version")),
                  run_id=f"{path}#1", gpu=max(set(gpus), key=gpus.count) if gpus else None, inferred=how,
                  busbw_factor=spec.busbw_factor(nranks) if nranks else None)
    for line, item in _results(text):
        try:
            out.records.extend(_nccl_result(item, line, path, common))
        except Bad as bad:
            out.bad.append(bad)
    return out


def _nccl_result(item, line: int, path, common) -> List[dict]:
    if not isinstance(item, dict) or not isinstance(item.get("size"), int) or item["size"] < 0:
        raise Bad(line, "a result without a whole size (cut short?)" if item is None else "a result without a size")
    redop = str(item.get("redop", "")).strip()
    root = str(item.get("root", "")).strip()
    count = item.get("count")
    iters = item.get("actual_iterations", common["iters"])
    base = dict(common, size_bytes=item["size"], count=count if isinstance(count, int) else None,
                dtype=dtype_name(str(item.get("type"))) or item.get("type"),
                op=None if redop in ("", "none") else redop,
                root=int(root) if re.fullmatch(r"-?\d+", root) else None, iters=iters)
    out = []
    for key, in_place in (("out_of_place", False), ("in_place", True)):
        part = item.get(key)
        if not isinstance(part, dict):
            continue
        time = number(str(part.get("time", part.get("cpu_time"))))
        if time is None:
            raise Bad(line, f"{key} without a usable time")
        wrong = number(str(part.get("nwrong")))
        rec = dict(base, in_place=in_place, time_us=time, algbw_gbs=number(str(part.get("alg_bw"))),
                   busbw_gbs=number(str(part.get("bus_bw"))), wrong=None if wrong is None else int(wrong))
        out.append(build("nccl-tests", None, path, line, "wrong" if wrong else "ok", **rec))
    return out


# -- rccl-tests ------------------------------------------------------------------------------

def _rccl(payload, text: str, path, given: Given) -> Parsed:
    out = Parsed()
    all_lines = text.split("\n")
    if text.lstrip().startswith("["):  # one JSON list (PR #140): the line each object starts on
        numbers = [n for n, ln in enumerate(all_lines, 1) if ln.lstrip().lstrip("[").lstrip().startswith("{")]
    else:  # JSON lines
        numbers = [n for n, ln in enumerate(all_lines, 1) if ln.strip()]
    for index, item in enumerate(payload):
        line = numbers[index] if index < len(numbers) else 1
        if not isinstance(item, dict) or not _RCCL_KEYS <= set(item):
            out.bad.append(Bad(line, "not an rccl-tests result (not JSON, or without name/size/time/algBw/busBw)"))
            continue
        name = _RCCL_NAMES.get(str(item["name"]).lower().replace("_", ""))
        size, time = item.get("size"), number(str(item.get("time")))
        if name is None or not isinstance(size, int) or time is None:
            out.bad.append(Bad(line, f"an rccl-tests result of {item['name']!r} without a usable size and time"
                               if name else f"{item['name']!r} is not a collective collscale knows"))
            continue
        ranks = item.get("ranks", item.get("nranks", item.get("gpus")))
        nranks = given.ranks or (ranks if isinstance(ranks, int) and ranks > 0 else None)
        how = "nranks given on the command line" if given.ranks else (
            "nranks from the JSON's rank/gpu count" if nranks else None)
        wrong = number(str(item.get("#wrong")))
        spec = specs.find(name)
        out.records.append(build(
            "rccl-tests", None, path, line, "wrong" if wrong else "ok", collective=name,
            transport=given.transport or "rccl-tests", nranks=nranks, size_bytes=size, dtype=dtype_name(
                str(item.get("type"))), op=None if item.get("redop") in (None, "none") else item.get("redop"),
            in_place=bool(item.get("inPlace")), time_us=time, algbw_gbs=number(str(item.get("algBw"))),
            busbw_gbs=number(str(item.get("busBw"))), wrong=None if wrong is None else int(wrong),
            busbw_factor=spec.busbw_factor(nranks) if nranks else None, run_id=f"{path}#1", inferred=join([how])))
    return out
