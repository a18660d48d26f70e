"""Intel MPI Benchmarks (IMB-MPI1) output into records.

IMB prints a banner (``Intel(R) MPI Benchmarks 2021.6, MPI-1 part``; 2018
wrote ``Intel (R)``), its settings (``MPI_Datatype``, ``MPI_Datatype for
reductions``, ``MPI_Op``), then per benchmark and process count a table::

    # Benchmarking Allreduce
    # #processes = 144
           #bytes #repetitions  t_min[usec]  t_max[usec]  t_avg[usec]

(PingPong: ``t[usec] Mbytes/sec``, half a round trip as OSU's and
collscale's pingpong; Barrier: no ``#bytes``; ``-check`` adds ``defects``).
Read here: Allreduce, Reduce, Reduce_scatter, Allgather, Alltoall, Bcast,
Barrier, PingPong (as ``pingpong``) and Sendrecv (IMB's periodic chain, as
``sendrecv``); other benchmarks are named in one note and skipped.  The time
of a record is ``t_avg`` (the average over processes, as nccl-tests and OSU
report) with ``t_min``/``t_max`` kept; algbw and busbw are derived with
collscale's definitions, S from IMB's ``#bytes`` by
:func:`facts.spec.s_from_foreign_size` (Allgather and Alltoall count
one process's block).  The rank count is IMB's own ``#processes``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Dict, List, Optional

from analysis.load.importers.common import Bad, Given, Line, Parsed, bandwidths, build, dtype_name, itemsize, join, \
    number, whole
from facts import spec as specs

__all__ = ["sniff", "parse", "BENCHMARKS"]

BENCHMARKS = {"allreduce": "allreduce", "reduce": "reduce", "reduce_scatter": "reduce_scatter",
              "allgather": "allgather", "alltoall": "alltoall", "bcast": "broadcast", "barrier": "barrier",
              "pingpong": "pingpong", "sendrecv": "sendrecv"}
_BANNER = re.compile(r"Intel\s*\(R\)\s*MPI Benchmarks\s+(\S+?),?\s+MPI-1")
_BENCH = re.compile(r"^#\s*Benchmarking\s+(\S+)\s*$")
_PROCS = re.compile(r"^#\s*#processes\s*=\s*(\d+)")
_SETTING = re.compile(r"^#\s*(MPI_Datatype for reductions|MPI_Datatype|MPI_Op|Date)\s*:\s*(.*?)\s*$")
_COLUMN = {"#bytes": "size", "#repetitions": "iters", "t_min[usec]": "min", "t_max[usec]": "max",
           "t_avg[usec]": "avg", "t[usec]": "avg", "Mbytes/sec": "mbps", "Msg/sec": "msgs", "defects": "defects"}


def sniff(lines: List[Line]) -> bool:
    return any(_BANNER.search(ln.text) for ln in lines) or (
        any(_BENCH.match(ln.text.strip()) for ln in lines) and any(_PROCS.match(ln.text.strip()) for ln in lines))


def _date(text: str) -> Optional[str]:
    try:
        return datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y").replace(
            tzinfo=timezone.utc).isoformat()
    except ValueError:
        return None


def parse(lines: List[Line], path, given: Given) -> Parsed:
    out = Parsed()
    settings: Dict[str, str] = {}
    version: Optional[str] = None
    bench: Optional[str] = None
    nranks: Optional[int] = None
    columns: List[str] = []
    skipped: List[str] = []
    table = 0
    for ln in lines:
        text = ln.text.strip()
        m = _BANNER.search(text)
        if m:
            version, settings = m.group(1), {}
            continue
        m = _SETTING.match(text)
        if m:
            settings[m.group(1)] = m.group(2)
            continue
        m = _BENCH.match(text)
        if m:
            bench, nranks, columns = m.group(1), None, []
            table += 1
            if bench.lower() not in BENCHMARKS:
                skipped.append(f"{bench} (line {ln.number})")
            continue
        m = _PROCS.match(text)
        if m:
            nranks = int(m.group(1))
            continue
        if text.startswith("#bytes") or text.startswith("#repetitions"):
            columns = [_COLUMN.get(name, name) for name in text.split()]
            continue
        tokens = text.split()
        if not tokens or text.startswith("#") or bench is None or bench.lower() not in BENCHMARKS or not columns:
            continue
        if not all(number(t) is not None for t in tokens):
            continue  # a message between rows
        try:
            out.records.append(_row(ln, tokens, columns, BENCHMARKS[bench.lower()], nranks, settings, version,
                                    path, given, table))
        except Bad as bad:
            out.bad.append(bad)
    if skipped:
        out.notes.append(f"{path}: IMB benchmarks collscale does not read, skipped: {', '.join(skipped)}")
    return out


def _row(ln: Line, tokens: List[str], columns: List[str], collective: str, nranks: Optional[int],
         settings: Dict[str, str], version: Optional[str], path, given: Given, table: int) -> dict:
    if len(tokens) != len(columns):
        raise Bad(ln.number, f"{len(tokens)} fields where the IMB header has {len(columns)}"
                  + (" (a row cut short?)" if len(tokens) < len(columns) else ""))
    values = dict(zip(columns, tokens))
    size = whole(values.get("size", "0"))
    avg = number(values.get("avg", ""))
    if size is None or avg is None:
        raise Bad(ln.number, "no whole #bytes or no time")
    ranks = given.ranks or nranks
    how = "nranks given on the command line" if given.ranks else None
    spec = specs.find(collective)
    dtype = dtype_name(settings.get("MPI_Datatype for reductions" if spec.reduces else "MPI_Datatype"))
    s = specs.s_from_foreign_size("imb", collective, size, ranks)
    algbw, busbw, factor = bandwidths(collective, s, avg, ranks)
    isize = itemsize(dtype)
    defects = number(values.get("defects", ""))
    op = settings.get("MPI_Op", "").replace("MPI_", "").lower() or None
    return build("IMB-MPI1", version, path, ln.number, "wrong" if defects else "ok", collective=collective,
                 transport=given.transport or "imb", nranks=ranks, size_bytes=s,
                 tool_size_bytes=size if s != size else None, count=s // isize if s and isize and spec.sized else None,
                 dtype=dtype, op=op if spec.reduces else None, in_place=False, iters=whole(values.get("iters", "")),
                 time_us=avg, time_us_min=number(values.get("min", "")), time_us_max=number(values.get("max", "")),
                 algbw_gbs=algbw, busbw_gbs=busbw, busbw_factor=factor, run_id=f"{path}#{table}",
                 timestamp=_date(settings.get("Date", "")), inferred=how,
                 derived=join(["algbw_gbs = S / t_avg" if algbw is not None else None,
                               "busbw_gbs = algbw x facts.spec's busbw factor" if busbw is not None else None,
                               f"S = IMB #bytes x {ranks} processes" if s is not None and s != size else None]))
