"""Habana/Intel Gaudi ``hccl_demo`` results into records.

hccl_demo (github.com/HabanaAI/hccl_demo, hccl_demo.cpp) prints, for one size::

    [BENCHMARK] hcclAllReduce(src!=dst, data_size=33554432, count=8388608, dtype=float, iterations=1000)
    [BENCHMARK]     NW Bandwidth   : 258.209121 GB/s
    [BENCHMARK]     Algo Bandwidth : 147.548069 GB/s

(``dataSize=`` in some releases, only ``count=`` in early ones; ``Host
Latency``/``Device Latency`` in ms with ``--measure latency``), and for a size
range a ``[BANDWIDTH SUMMARY REPORT]`` (older: ``[SUMMARY REPORT]``) table
``size count type [redop] time algoBW nw_bw`` with time in ms, cells possibly
carrying their unit (``0.123 ms``, ``1.2 GB/s``).

Facts from hccl_demo.cpp: algo bandwidth = data_size / time, where
data_size is each rank's input buffer, and NW bandwidth = algo x factor with
factor 2(n-1)/n (all_reduce), (n-1)/n (reduce_scatter, all2all), n-1
(all_gather: its input is one rank's block) and 1 (broadcast, reduce): NW
bandwidth is nccl-tests' busbw, so it is the record's busbw as printed.  The
time is derived (data_size / algo bandwidth), and S and algbw by collscale's
definitions (all_gather: S = data_size x n).  hccl_demo prints no rank count:
it is given (``FILE:ranks=N``), else read from ``--nranks N`` or ``-np N`` in
the log, else from NW/algo bandwidth where that ratio fixes it (all_reduce,
reduce_scatter, all2all, all_gather).
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

from analysis.load.importers.common import Bad, Given, Line, Parsed, bandwidths, build, dtype_name, itemsize, join, \
    number, ranks_from_command, whole
from facts import spec as specs

__all__ = ["sniff", "parse", "NAMES"]

NAMES = {"hcclallreduce": "allreduce", "all_reduce": "allreduce", "hcclallgather": "allgather",
         "all_gather": "allgather", "hcclreducescatter": "reduce_scatter", "reduce_scatter": "reduce_scatter",
         "hcclbroadcast": "broadcast", "broadcast": "broadcast", "hcclreduce": "reduce", "reduce": "reduce",
         "hcclalltoall": "alltoall", "all2all": "alltoall"}
_STAT = re.compile(r"\[BENCHMARK\]\s+(hccl\w+)\((.*)\)")
_BW = re.compile(r"\[BENCHMARK\]\s+(NW|Algo) Bandwidth\s*:\s*([-\d.eE+]+)\s*GB/s")
_LAT = re.compile(r"\[BENCHMARK\]\s+Host Latency\s*:\s*([-\d.eE+]+)\s*ms")
_SUMMARY = re.compile(r"\[(?:BANDWIDTH )?SUMMARY REPORT\]")
_SUMMARY_OF = re.compile(r"collective=(\w+)")
_NRANKS = re.compile(r"--nranks[= ](\d+)")


def sniff(lines: List[Line]) -> bool:
    return any(_STAT.search(ln.text) or _SUMMARY.search(ln.text) for ln in lines)


def _ranks(collective: str, nw: Optional[float], algo: Optional[float]) -> Optional[int]:
    """n from NW/algo bandwidth, where the factor fixes it (and rounds to a whole n within 1 %)."""
    if not nw or not algo:
        return None
    f = nw / algo
    guess = {"allreduce": 2 / (2 - f) if f < 2 else None, "reduce_scatter": 1 / (1 - f) if f < 1 else None,
             "alltoall": 1 / (1 - f) if f < 1 else None, "allgather": f + 1}.get(collective)
    if guess is None or guess < 1.5 or abs(guess - round(guess)) > 0.01 * guess:
        return None
    return int(round(guess))


def parse(lines: List[Line], path, given: Given) -> Parsed:
    out = Parsed()
    command = None
    pending: Optional[Tuple[Line, str, int, Optional[str], Optional[int]]] = None
    bws = {}
    summary: Optional[str] = None
    header: List[str] = []
    table = 0
    for ln in lines:
        text = ln.text.strip()
        m = _NRANKS.search(text)
        if m or ranks_from_command(text):
            command = int(m.group(1)) if m else ranks_from_command(text)
        m = _STAT.search(text)
        if m:
            name, args = m.group(1).lower(), dict(re.findall(r"(\w+)=([^,\s)]+)", m.group(2)))
            dtype = dtype_name(args.get("dtype"))
            size = whole(args.get("data_size", args.get("dataSize", "")))
            count = whole(args.get("count", ""))
            if size is None and count is not None and itemsize(dtype):
                size = count * itemsize(dtype)
            pending, bws, summary = (ln, NAMES.get(name), size, dtype, whole(args.get("iterations", ""))), {}, None
            if pending[1] is None:
                out.notes.append(f"{path}:{ln.number}: {m.group(1)} is not a collective collscale reads: skipped")
                pending = None
            continue
        m = _BW.search(text) or _LAT.search(text)
        if m and pending is not None:
            if m.re is _LAT:
                bws["time_ms"] = number(m.group(1))
            else:
                bws[m.group(1)] = number(m.group(2))
            if ("NW" in bws and "Algo" in bws) or "time_ms" in bws:
                try:
                    out.records.append(_record(pending, bws, command, path, given))
                except Bad as bad:
                    out.bad.append(bad)
                pending = None
            continue
        if _SUMMARY.search(text):
            summary, header, pending, table = "", [], None, ln.number
            continue
        if summary is not None:
            m = _SUMMARY_OF.search(text)
            if m:
                summary = NAMES.get(m.group(1).lower(), "")
                continue
            if text.startswith("size"):
                header = text.split()
                continue
            tokens = [t for t in text.split() if t not in ("ms", "GB/s", "us")]
            if header and tokens and whole(tokens[0]) is not None and summary:
                try:
                    out.records.append(dict(_summary_row(ln, tokens, header, summary, command, path, given),
                                            run_id=f"{path}#{table}"))
                except Bad as bad:
                    out.bad.append(bad)
    return out


def _record(pending, bws, command, path, given: Given) -> dict:
    ln, collective, size, dtype, iters = pending
    if size is None:
        raise Bad(ln.number, "a [BENCHMARK] line without data_size or count and dtype")
    algo, nw = bws.get("Algo"), bws.get("NW")
    time_us = bws["time_ms"] * 1e3 if bws.get("time_ms") else (size / (algo * 1e9) * 1e6 if algo else None)
    return _make(ln, collective, size, None, dtype, None, time_us, nw, algo, iters, command, path, given,
                 "time_us = data_size / Algo Bandwidth" if "time_ms" not in bws else None)


def _summary_row(ln: Line, tokens: List[str], header: List[str], collective: str, command, path,
                 given: Given) -> dict:
    if len(tokens) != len(header):
        raise Bad(ln.number, f"{len(tokens)} fields where the summary header has {len(header)}")
    v = dict(zip(header, tokens))
    size, time_ms = whole(v.get("size", "")), number(v.get("time", ""))
    if size is None or time_ms is None:
        raise Bad(ln.number, "no whole size or no time")
    return _make(ln, collective, size, whole(v.get("count", "")), dtype_name(v.get("type")), v.get("redop"),
                 time_ms * 1e3, number(v.get("nw_bw", "")), number(v.get("algoBW", v.get("algo_bw", ""))), None,
                 command, path, given, None)


def _make(ln, collective, size, count, dtype, redop, time_us, nw, algo, iters, command, path, given: Given,
          derived_time) -> dict:
    if given.ranks:
        nranks, how = given.ranks, "nranks given on the command line"
    elif command:
        nranks, how = command, "nranks from the command line in the log"
    else:
        nranks = _ranks(collective, nw, algo)
        how = "nranks from NW / Algo Bandwidth" if nranks else None
    s = specs.s_from_foreign_size("hccl_demo", collective, size, nranks)
    algbw, busbw, factor = bandwidths(collective, s, time_us, nranks)
    spec = specs.find(collective)
    return build("hccl_demo", None, path, ln.number, collective=collective, transport=given.transport or "hccl_demo",
                 nranks=nranks, size_bytes=s, tool_size_bytes=size if s != size else None,
                 count=count if count is not None else (s // itemsize(dtype) if s and itemsize(dtype) else None),
                 dtype=dtype, op=(redop or "sum") if spec.reduces else None, in_place=False, iters=iters,
                 time_us=time_us, algbw_gbs=algbw, busbw_gbs=nw if nw is not None else busbw, busbw_factor=factor,
                 run_id=f"{path}#{ln.number}", inferred=how,
                 derived=join([derived_time, "algbw_gbs = S / time_us" if algbw is not None else None,
                               None if nw is not None else "busbw_gbs = algbw x facts.spec's busbw factor"]))
