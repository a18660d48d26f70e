"""nccl-tests and rccl-tests stdout, every generation, into records.

The table has been printed in several shapes since 2018, all read here from
the column header when the log has one, else from the number of fields:

* ``size count type [redop] [root] time algbw busbw error ...`` (2018-2021:
  all_gather had neither redop nor root, broadcast a root but no redop, and
  ``error`` is the largest relative error, kept as the record's ``error``);
* ``size count type redop root time algbw busbw #wrong ...`` (2.13 and later;
  ``#wrong`` may be ``N/A``, and rccl marks errors past its threshold ``12*``);
* 2.19's per-iteration columns (``-I``: i_min i_max i_p99 i_cv% per placement),
  ``cputime`` (``-C``), a trailing timestamp (``-S``), rccl's in-place-only table.

Out-of-place and in-place give one record each.  Around the table a log holds
launcher tags, NCCL INFO/WARN lines (even between the column header and the
rows), headers printed by several processes, several tests one after another
(each its own run), and may be cut short or elided: everything that is not a
row is read for metadata or ignored, a row that cannot be read is reported as
``file:line`` and the rest loads.  What the log says is taken from it: the
collective (``# Collective test starting``, a ``*_perf`` command line, else the
file name, else the columns where they tell), nranks (the rank list's highest
rank + 1, else NCCL's ``nranks N``, else the launcher's command line), hosts
and GPU model (rank list), NCCL/RCCL version, nccl-tests version, iterations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from analysis.load.importers.common import (Bad, Given, Line, Parsed, build, dtype_name, hosts_field, itemsize, join,
                                       number, ranks_from_command, whole)
from facts import spec as specs

__all__ = ["sniff", "parse", "COLLECTIVES", "collective_in"]

COLLECTIVES = {"all_reduce": "allreduce", "all_gather": "allgather", "reduce_scatter": "reduce_scatter",
               "broadcast": "broadcast", "reduce": "reduce", "alltoall": "alltoall", "sendrecv": "sendrecv"}
_BINARIES = set(COLLECTIVES) | {"gather", "scatter", "alltoallv", "hypercube"}
_NAME_IN_TEXT = re.compile(r"(all_?reduce|all_?gather|reduce_?scatter|all_?to_?all|broadcast|bcast|sendrecv|reduce)",
                           re.I)
_HEADER = re.compile(r"^#?\s*size\s+count\s+type\s", re.I)
_NTHREAD = re.compile(r"^#?\s*nThread\s+\d+\s+nGpus\s+\d+")
_VERSION = re.compile(r"nccl-tests version\s+(\S+)(?:.*nccl-library=(\d+))?")
_RCCL_TESTS = re.compile(r"rccl-tests:\s*Version\s+(\S+)")
_STARTING = re.compile(r"Collective test starting:\s*(\w+?)(?:_perf)?\b")
_PERF = re.compile(r"\b(\w+?)_perf(?:_mpi)?\b")
_LIBRARY = re.compile(r"\b([NR]CCL) version\s*:?\s*v?(\d+\.\d+\.\d+)")
_NRANKS_INFO = re.compile(r"\bnranks (\d+)\b")
_RANK = re.compile(r"^#?\s*Rank\s+(\d+)\s+(?:Group\s+\d+\s+)?Pid\s+\d+\s+on\s+(\S+)\s+device\s+\d+\s+"
                   r"\[[^\]]*\]\s*(.*)$")
_ITERS = re.compile(r"warmup iters:\s*(\d+)\s+iters:\s*(\d+)")
_FIELD = {"time": "time_us", "cputime": "time_us", "algbw": "algbw_gbs", "busbw": "busbw_gbs", "i_min": "time_us_min",
          "i_max": "time_us_max", "i_p99": "time_us_p99"}


def sniff(lines: List[Line]) -> bool:
    return any(_HEADER.match(ln.text.strip()) or _NTHREAD.match(ln.text.strip()) or _RCCL_TESTS.search(ln.text)
               or "Collective test starting" in ln.text for ln in lines)


def collective_in(text: str) -> Optional[str]:
    """A collective named in ``text`` (a file name, a command), as collscale calls it."""
    m = _NAME_IN_TEXT.search(text)
    if not m:
        return None
    key = m.group(1).lower().replace("_", "")
    return {"allreduce": "allreduce", "allgather": "allgather", "reducescatter": "reduce_scatter",
            "alltoall": "alltoall", "broadcast": "broadcast", "bcast": "broadcast", "sendrecv": "sendrecv",
            "reduce": "reduce"}[key]


@dataclass
class _Layout:
    lead: List[str]  # size count type [redop] [root]
    groups: List[Tuple[str, Dict[str, int]]]  # (placement, field -> offset in the row)
    width: int
    extra_ok: int = 0  # a trailing timestamp's tokens


@dataclass
class _Block:
    start: int
    meta: Dict[str, object] = field(default_factory=dict)
    ranks: Dict[int, Tuple[str, str]] = field(default_factory=dict)
    repeated_ranks: bool = False
    layout: Optional[_Layout] = None
    in_place_only: bool = False
    rows: List[Tuple[Line, List[str]]] = field(default_factory=list)
    closed: bool = False


def _header_layout(text: str, in_place_only: bool) -> _Layout:
    names = text.lstrip("#").split()
    lead_len = next((i for i, n in enumerate(names) if n in ("time", "cputime")), len(names))
    lead, rest = names[:lead_len], names[lead_len:]
    extra = 2 if rest and rest[-1] == "timestamp" else 0
    rest = rest[:-1] if extra else rest
    groups: List[Tuple[str, Dict[str, int]]] = []
    for offset, name in enumerate(rest, start=lead_len):
        if name in ("time", "cputime"):
            groups.append(("in" if in_place_only or groups else "out", {}))
        groups[-1][1][name] = offset
    return _Layout(lead, groups, lead_len + len(rest), extra)


def _guess_layout(tokens: List[str]) -> Optional[_Layout]:
    """The columns of a row whose table header the log lost (elided, cut)."""
    n = len(tokens)
    if n == 13:
        lead = ["size", "count", "type", "redop", "root"]
    elif n == 12:
        lead = ["size", "count", "type", "root" if number(tokens[3]) is not None else "redop"]
    elif n == 11:
        lead = ["size", "count", "type"]
    else:
        return None
    wrong = "#wrong" if n == 13 else "error"
    return _header_layout(" ".join(lead + ["time", "algbw", "busbw", wrong] * 2), False)


def _library(code: str) -> str:
    c = int(code)
    return f"{c // 10000}.{c % 10000 // 100}.{c % 100}" if c >= 10000 else f"{c // 1000}.{c % 1000 // 100}.{c % 100}"


class _Reader:
    def __init__(self, path, given: Given):
        self.path, self.given = path, given
        self.out = Parsed()
        self.blocks: List[_Block] = []
        self.cur: Dict[Optional[str], Optional[_Block]] = {}
        self.pending: Dict[Optional[str], Dict[str, object]] = {}

    # -- per line ------------------------------------------------------------------------
    def _target(self, stream) -> Dict[str, object]:
        cur = self.cur.get(stream)
        if cur is not None and not cur.rows and not cur.closed:
            return cur.meta
        return self.pending.setdefault(stream, {})

    def _open(self, stream, number: int) -> _Block:
        cur = self.cur.get(stream)
        if cur is None or cur.rows or cur.closed:
            # untagged lines (the launcher's command, before its tags begin) count for every stream
            untagged = dict(self.pending.get(None, {})) if stream is not None else {}
            cur = _Block(number, {**untagged, **self.pending.pop(stream, {})})
            self.cur[stream] = cur
            self.blocks.append(cur)
        return cur

    def line(self, ln: Line) -> None:
        text, s = ln.text.strip(), ln.stream
        if not text:
            return
        if re.search(r"\b[NR]CCL (INFO|WARN)\b", text):
            m = _NRANKS_INFO.search(text)
            if m:
                self._target(s).setdefault("info_nranks", int(m.group(1)))
            lib = _LIBRARY.search(text)
            if lib:
                self._target(s)["library"] = f"{lib.group(1)} {lib.group(2)}"
            return
        m = _VERSION.search(text)
        if m:
            meta = self._target(s)
            meta["version"] = m.group(1)
            if m.group(2):
                meta.setdefault("library", f"NCCL {_library(m.group(2))}")
            return
        m = _RCCL_TESTS.search(text)
        if m:
            self._target(s).update(version=m.group(1), rccl=True)
            return
        m = _LIBRARY.search(text)
        if m:
            meta = self._target(s)
            meta["library"] = f"{m.group(1)} {m.group(2)}"
            if m.group(1) == "RCCL":
                meta["rccl"] = True
            return
        m = None if "concluded" in text else (_STARTING.search(text) or _PERF.search(text))
        if m and m.group(1) in _BINARIES:
            meta = self._target(s)
            meta["collective"] = COLLECTIVES.get(m.group(1), m.group(1))
            ranks = ranks_from_command(text)
            if ranks:
                meta["command_nranks"] = ranks
            return
        if _NTHREAD.match(text):
            block = self._open(s, ln.number)
            it = _ITERS.search(text)
            if it:
                block.meta.update(warmup=int(it.group(1)), iters=int(it.group(2)))
            return
        m = _RANK.match(text)
        if m:
            block = self._open(s, ln.number)
            rank = int(m.group(1))
            block.repeated_ranks |= rank in block.ranks and block.ranks[rank][0] != m.group(2)
            block.ranks[rank] = (m.group(2), m.group(3).strip())
            return
        if "out-of-place" in text or re.fullmatch(r"#?\s*in-place", text):
            block = self._open(s, ln.number)
            block.in_place_only = "out-of-place" not in text
            return
        if _HEADER.match(text):
            block = self._open(s, ln.number)
            block.layout = _header_layout(text, block.in_place_only)
            return
        if text.startswith("#"):
            cur = self.cur.get(s)
            if cur is not None and "Avg bus bandwidth" in text:
                cur.closed = True
            return
        tokens = text.split()
        if len(tokens) >= 3 and whole(tokens[0]) is not None and whole(tokens[1]) is not None:
            cur = self.cur.get(s)
            if cur is None or cur.closed:
                cur = self._open(s, ln.number)
            cur.rows.append((ln, tokens))

    # -- per block -------------------------------------------------------------------------
    def finish(self) -> Parsed:
        for index, block in enumerate(self.blocks, 1):
            if block.rows:
                self._records(index, block)
        return self.out

    def _nranks(self, block: _Block) -> Tuple[Optional[int], Optional[str], Optional[str]]:
        note = None
        if block.ranks:
            top = max(block.ranks) + 1
            if len(block.ranks) < top:
                note = f"rank list elided ({len(block.ranks)} of {top} ranks listed)"
            if block.repeated_ranks:
                note = "several processes printed their own rank list (nccl-tests without MPI? each ran alone)"
        if self.given.ranks:
            return self.given.ranks, "nranks given on the command line", note
        if block.ranks:
            return max(block.ranks) + 1, "nranks from the rank list", note
        for key, how in (("info_nranks", "NCCL INFO"), ("command_nranks", "the launcher's command line")):
            if block.meta.get(key):
                return int(block.meta[key]), f"nranks from {how}", note
        return None, None, note

    def _collective(self, block: _Block, lead: Dict[str, str], nranks: Optional[int]) -> Tuple[Optional[str], str]:
        if block.meta.get("collective"):
            return str(block.meta["collective"]), ""
        named = collective_in(Path(str(self.path)).name)
        if named:
            return named, "collective from the file name"
        redop, root = lead.get("redop"), lead.get("root")
        size, count, isize = whole(lead.get("size", "")), whole(lead.get("count", "")), itemsize(
            dtype_name(lead.get("type")))
        if root is not None and (whole(root) is not None):
            return ("reduce" if redop not in (None, "none") else "broadcast"), "collective from the columns"
        if redop not in (None, "none") and size and count and isize:
            if count * isize == size:
                return "allreduce", "collective from the columns"
            if nranks and count * isize * nranks == size:
                return "reduce_scatter", "collective from the columns"
        return None, ""

    def _records(self, index: int, block: _Block) -> None:
        first_line, first = block.rows[0]
        layout = block.layout or _guess_layout(first)
        if layout is None:
            self.out.bad.append(Bad(first_line.number, f"{len(first)} fields and no table header to say which "
                                    "columns they are"))
            return
        nranks, nranks_how, note = self._nranks(block)
        lead0 = dict(zip(layout.lead, first))
        collective, coll_how = self._collective(block, lead0, nranks)
        if collective is None:
            self.out.notes.append(f"{self.path}:{first_line.number}: the log does not say which collective this "
                                  f"table measured (no '# Collective test starting', no *_perf command, no name in "
                                  f"the file name, and the columns fit several): {len(block.rows)} rows skipped")
            return
        if specs.find(collective) is None:
            self.out.notes.append(f"{self.path}:{first_line.number}: {collective}_perf is not a collective "
                                  f"collscale knows: {len(block.rows)} rows skipped")
            return
        meta = block.meta
        rccl = bool(meta.get("rccl")) or any("AMD" in g or "Instinct" in g for _, g in block.ranks.values())
        tool = "rccl-tests" if rccl else "nccl-tests"
        nhosts, hosts, per_host = hosts_field({r: h for r, (h, _) in block.ranks.items()})
        if note and "elided" in note:
            nhosts = hosts = per_host = None
        gpus = [g for _, g in block.ranks.values() if g]
        common = dict(collective=collective, transport=self.given.transport or tool, nranks=nranks, nhosts=nhosts,
                      ranks_per_host=per_host, hosts=hosts, iters=meta.get("iters"), warmup=meta.get("warmup"),
                      transport_version=meta.get("library"), run_id=f"{self.path}#{index}",
                      gpu=max(set(gpus), key=gpus.count) if gpus else None,
                      inferred=join([nranks_how, coll_how, note]))
        for ln, tokens in block.rows:
            try:
                self.out.records.extend(self._row(ln, tokens, layout, tool, meta.get("version"), nranks, common))
            except Bad as bad:
                self.out.bad.append(bad)

    def _row(self, ln: Line, tokens: List[str], layout: _Layout, tool, version, nranks, common) -> List[dict]:
        if not layout.width <= len(tokens) <= layout.width + layout.extra_ok:
            why = " (a row cut short?)" if len(tokens) < layout.width else ""
            raise Bad(ln.number, f"{len(tokens)} fields where the table has {layout.width}{why}")
        lead = dict(zip(layout.lead, tokens))
        size, count = whole(lead["size"]), whole(lead.get("count", ""))
        if size is None:
            raise Bad(ln.number, f"size {lead['size']!r} is not a whole number of bytes")
        redop, root = lead.get("redop"), lead.get("root")
        base = dict(common, size_bytes=size, count=count, dtype=dtype_name(lead.get("type")) or lead.get("type"),
                    op=None if redop in (None, "none") else redop,
                    root=int(root) if root is not None and re.fullmatch(r"-?\d+", root) else None)
        spec = specs.find(common["collective"])
        out = []
        for placement, cols in layout.groups:
            time = number(tokens[cols["time" if "time" in cols else "cputime"]])
            if time is None:
                if tokens[cols.get("time", cols.get("cputime"))] == "N/A":
                    continue
                raise Bad(ln.number, f"time {tokens[cols.get('time', cols.get('cputime'))]!r} is not a number")
            rec = dict(base, in_place=placement == "in")
            for name, key in _FIELD.items():
                if name in cols and name not in ("time", "cputime"):
                    value = number(tokens[cols[name]])
                    if value is None and name in ("algbw", "busbw"):
                        raise Bad(ln.number, f"{name} {tokens[cols[name]]!r} is not a number")
                    rec[key] = value
            rec["time_us"] = time
            status = "ok"
            if "#wrong" in cols:
                wrong = number(tokens[cols["#wrong"]])
                rec["wrong"] = None if wrong is None else int(wrong)
                status = "wrong" if wrong else "ok"
            if "error" in cols:
                rec["error"] = number(tokens[cols["error"]])
            rec["busbw_factor"] = spec.busbw_factor(nranks) if nranks else None
            out.append(build(tool, version, self.path, ln.number, status, **rec))
        return out


def parse(lines: List[Line], path, given: Given) -> Parsed:
    reader = _Reader(path, given)
    for ln in lines:
        reader.line(ln)
    return reader.finish()
