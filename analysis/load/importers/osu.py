"""OSU micro-benchmarks (OMB) 5.x-7.x output into records.

Each test starts with its banner, ``# OSU MPI[-CUDA|-ROCM] <name> Test v7.5``
(``OSU NCCL-CUDA`` for the xccl tests; no version in old releases; the
leading ``#`` may be lost in a copied log), then 7.x's ``# Datatype: MPI_INT.``,
then the column header (``# Size  Avg Latency(us)``; with ``-f``/``--full``
also ``Min Latency(us) Max Latency(us) Iterations``; ``Validation``; tail
percentiles; barrier has no size) and one row per size.  Warnings and
``#Using NCCL`` lines between rows are skipped; a numeric row with the wrong
number of fields is reported as ``file:line``.

Read here: allreduce, bcast, allgather, reduce_scatter, alltoall, reduce and
barrier (latency tests: the average over ranks of the time per call);
``osu_latency`` becomes ``pingpong`` (OSU's latency is half a round trip, as
collscale's); ``osu_bw``/``osu_bibw`` become ``p2p_bw``/``p2p_bibw``, records
of their own that the fits leave out (no collective formula), their
bandwidth in MB/s = 1e6 B/s (OMB: ``size / 1e6 * iterations * window /
time``), bibw counting both directions.  Other OSU tests (one-sided,
non-blocking, v-variants, gather/scatter, multi-pair) are named in one note
and skipped.

OSU prints latency, not bandwidth: algbw = S / t and busbw = algbw x the
busbw factor are derived with collscale's definitions
(:mod:`facts.spec`), S from OSU's size by
:func:`facts.spec.s_from_foreign_size` (allgather and alltoall print
one rank's block), and the record says so in ``derived``.  OSU never prints
the rank count: it is taken from a launcher command line in the log
(``mpirun -np 144``), else given (``FILE:ranks=N``), else left unknown, which
leaves busbw (and S for allgather/alltoall) unknown too.  Point-to-point
tests run on two ranks by definition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from analysis.load.importers.common import (Bad, Given, Line, Parsed, bandwidths, build, dtype_name, itemsize, join,
                                       number, ranks_from_command, whole)
from facts import spec as specs

__all__ = ["sniff", "parse", "TESTS"]

_TITLE = re.compile(r"^#?\s*OSU\s+(?P<api>[A-Za-z]+)(?:-(?P<accel>[A-Za-z]+))?(?P<name>.*?)\s+Test"
                    r"(?:\s+v(?P<version>\d[\w.]*))?\s*$")
TESTS = {"allreduce latency": "allreduce", "broadcast latency": "broadcast", "bcast latency": "broadcast",
         "allgather latency": "allgather", "reduce_scatter latency": "reduce_scatter",
         "reduce scatter latency": "reduce_scatter", "all-to-all personalized exchange latency": "alltoall",
         "alltoall latency": "alltoall", "reduce latency": "reduce", "barrier latency": "barrier",
         "latency": "pingpong", "bandwidth": "p2p_bw", "bi-directional bandwidth": "p2p_bibw"}
_COLUMNS = (("size", r"Size"), ("avg", r"Avg Latency\s*\(us\)"), ("min", r"Min Latency\s*\(us\)"),
            ("max", r"Max Latency\s*\(us\)"), ("iters", r"Iterations"), ("validation", r"Validation"),
            ("avg", r"Latency\s*\(us\)"), ("bw", r"Bandwidth\s*\(MB/s\)"), ("tail", r"P\d+ Tail \w+\([^)]*\)"),
            ("transmit", r"Transmit Size"))
_ROW_TOKEN = re.compile(r"^(?:-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|Pass|Fail|N/A)$")


@dataclass
class _Test:
    line: int
    name: str
    collective: Optional[str]
    api: str
    accel: Optional[str]
    version: Optional[str]
    nranks: Optional[int]
    nranks_how: Optional[str]
    dtype: Optional[str] = None
    columns: List[str] = field(default_factory=list)
    rows: int = 0


def sniff(lines: List[Line]) -> bool:
    return any(_TITLE.match(ln.text.strip()) for ln in lines)


def _columns(text: str) -> List[str]:
    found: List[Tuple[int, str]] = []
    taken = [False] * len(text)
    for name, pattern in _COLUMNS:
        for m in re.finditer(pattern, text):
            if not any(taken[m.start():m.end()]):
                found.append((m.start(), name))
                taken[m.start():m.end()] = [True] * (m.end() - m.start())
    return [name for _, name in sorted(found)]


def _title(m, ln: Line, command_ranks: Optional[int], given: Given) -> _Test:
    name = " ".join(m.group("name").split()).lower()
    collective = TESTS.get(name)
    if given.ranks:
        nranks, how = given.ranks, "nranks given on the command line"
    elif collective in ("pingpong", "p2p_bw", "p2p_bibw"):
        nranks, how = 2, "nranks 2: OSU's point-to-point tests run on exactly two ranks"
    elif command_ranks:
        nranks, how = command_ranks, "nranks from the launcher's command line"
    else:
        nranks, how = None, None
    title = f"{m.group('api')}{'-' + m.group('accel') if m.group('accel') else ''}{m.group('name')}"
    return _Test(ln.number, title.strip(), collective, m.group("api"), m.group("accel"),
                 m.group("version"), nranks, how)


def parse(lines: List[Line], path, given: Given) -> Parsed:
    out = Parsed()
    test: Optional[_Test] = None
    command_ranks: Optional[int] = None
    skipped: List[str] = []
    unknown_ranks = 0
    index = 0
    for ln in lines:
        text = ln.text.strip()
        if not text:
            continue
        m = _TITLE.match(text)
        if m:
            test, command_ranks = _title(m, ln, command_ranks, given), None
            index += 1
            if test.collective is None:
                skipped.append(f"{test.name} (line {ln.number})")
            continue
        ranks = ranks_from_command(text)
        if ranks:
            command_ranks = ranks
            continue
        if test is None or test.collective is None:
            continue
        body = text.lstrip("#").strip()
        if body.lower().startswith("datatype:"):
            test.dtype = dtype_name(body.split(":", 1)[1])
            continue
        if re.match(r"(Size\s|Avg Latency|Bandwidth|Latency)", body) and not _ROW_TOKEN.match(body.split()[0]):
            test.columns = _columns(body)
            continue
        tokens = text.split()
        if text.startswith("#") or not all(_ROW_TOKEN.match(t) for t in tokens):
            continue  # a warning, a comment, a launcher's message
        if not test.columns:  # the header was lost: OSU's default or -f columns, by count
            test.columns = _default_columns(test.collective, len(tokens))
        try:
            rec = _row(ln, tokens, test, path, given, index)
        except Bad as bad:
            out.bad.append(bad)
            continue
        test.rows += 1
        if rec["nranks"] is None:
            unknown_ranks += 1
        out.records.append(rec)
    if skipped:
        out.notes.append(f"{path}: OSU tests collscale does not read, skipped: {', '.join(skipped)}")
    if unknown_ranks:
        out.notes.append(f"{path}: {unknown_ranks} OSU rows without a rank count (OSU does not print it and no "
                         "launcher command line precedes them): fits, plots and busbw need it: give FILE:ranks=N")
    return out


def _default_columns(collective: str, n: int) -> List[str]:
    if collective in ("p2p_bw", "p2p_bibw"):
        return ["size", "bw"]
    full = ["avg", "min", "max", "iters"] if n in (4, 5) else ["avg"]
    return full if collective == "barrier" else ["size"] + full


def _row(ln: Line, tokens: List[str], test: _Test, path, given: Given, index: int) -> dict:
    cols = test.columns
    if len(tokens) != len(cols):
        cut = " (a row cut short?)" if len(tokens) < len(cols) else ""
        raise Bad(ln.number, f"{len(tokens)} fields where the OSU header has {len(cols)}{cut}")
    values = dict(zip(cols, tokens))
    collective, nranks = test.collective, test.nranks
    size = 0 if "size" not in values else whole(values["size"])
    if size is None:
        raise Bad(ln.number, f"size {values['size']!r} is not a whole number of bytes")
    failed = values.get("validation") == "Fail"
    fields = dict(collective=collective, transport=given.transport or (
        "osu" if test.api.upper() == "MPI" else f"osu-{test.api.lower()}"), nranks=nranks, dtype=test.dtype,
        buffer=(test.accel or "host").lower(), in_place=False, run_id=f"{path}#{index}", iters=whole(
            values.get("iters", "")))
    if "bw" in values:
        bw = number(values["bw"])
        if bw is None:
            raise Bad(ln.number, f"bandwidth {values['bw']!r} is not a number")
        time = size / bw if bw > 0 else None
        rec = build("OSU micro-benchmarks", test.version, path, ln.number, size_bytes=size, time_us=time,
                    algbw_gbs=bw / 1e3, busbw_gbs=bw / 1e3,
                    derived="time_us = size / bandwidth (one message's share of the windowed stream)"
                    + ("; bandwidth counts both directions" if collective == "p2p_bibw" else ""),
                    inferred=test.nranks_how, **fields)
        return rec
    avg = number(values.get("avg", ""))
    if avg is None:
        raise Bad(ln.number, f"latency {values.get('avg')!r} is not a number")
    s = specs.s_from_foreign_size("osu", collective, size, nranks)
    algbw, busbw, factor = bandwidths(collective, s, avg, nranks)
    isize = itemsize(test.dtype)
    derived = ["algbw_gbs = S / time_us" if algbw is not None else None,
               "busbw_gbs = algbw x facts.spec's busbw factor" if busbw is not None else None,
               f"S = OSU size x {nranks} ranks" if s is not None and s != size else None]
    spec = specs.find(collective)
    return build("OSU micro-benchmarks", test.version, path, ln.number, "wrong" if failed else "ok",
                 size_bytes=s, tool_size_bytes=size if s != size else None, time_us=avg,
                 time_us_min=number(values.get("min", "")), time_us_max=number(values.get("max", "")),
                 algbw_gbs=algbw, busbw_gbs=busbw, busbw_factor=factor,
                 count=s // isize if s is not None and isize and spec and spec.sized else None,
                 op="sum" if spec is not None and spec.reduces else None, derived=join(derived),
                 inferred=test.nranks_how, reason="OSU validation failed" if failed else None, **fields)
