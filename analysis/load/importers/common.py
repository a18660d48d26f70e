"""What the importers share: cleaning a log's lines, reading numbers, and building records.

Every imported row becomes a record through :func:`facts.record.new`
(``kind: measured``), with the fields collscale's own records carry where
the log says them and None where it does not, plus:

* ``source``: the tool and its version (``nccl-tests 2.20.0``; ``(version not
  printed)`` when the log does not say);
* ``source_line``: ``file:line`` of the row;
* ``derived``: the values computed here rather than read (``algbw_gbs
  busbw_gbs from time_us and facts.spec``), else None;
* ``inferred``: metadata the table itself does not print and where it came
  from (``nranks from the rank list``, ``collective from the file name``);
* ``gpu``: the device model where the log names one;
* ``tool_size_bytes``: the size as the tool printed it, where it is not S.

Logs pass through launchers and terminals: :func:`clean` removes Open MPI's
``[1,0]<stdout>:`` tags, Slurm's ``--label`` (`` 0: ``), MPICH's
``-prepend-rank`` (``[0] ``), terminal colours and carriage returns, and says
which rank's stream a line came from.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from facts import record, spec as specs
from ground.dtypes import DTYPES

__all__ = ["Line", "Bad", "Given", "Parsed", "lines_of", "clean", "number", "whole", "dtype_name", "ranks_from_command",
           "build", "bandwidths", "EXTRA_FIELDS"]

EXTRA_FIELDS = ("source", "source_line", "derived", "inferred", "gpu", "tool_size_bytes")

_PREFIXES = (
    re.compile(r"^\[(?:\d+),(\d+)\]<(?:stdout|stderr)>:\s?"),  # Open MPI --tag-output
    re.compile(r"^\s{0,8}(\d+):\s"),  # srun --label, flux --label-io
    re.compile(r"^\[(\d+)\]\s"),  # MPICH -prepend-rank
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ITEMSIZE = {name: d.itemsize for name, d in DTYPES.items()}
_DTYPE_NAMES = {
    "float": "float32", "float32": "float32", "half": "float16", "float16": "float16", "double": "float64",
    "float64": "float64", "bfloat16": "bfloat16", "int8": "int8", "char": "int8", "uint8": "uint8", "int32": "int32",
    "int": "int32", "uint32": "uint32", "int64": "int64", "uint64": "uint64",
    "mpi_char": "int8", "mpi_signed_char": "int8", "mpi_byte": "uint8", "mpi_int": "int32", "mpi_float": "float32",
    "mpi_double": "float64", "mpi_long": "int64", "mpi_unsigned": "uint32",
}


@dataclass(frozen=True)
class Line:
    """One line of a log: its number in the file, the rank stream it came from, its text without tags."""

    number: int
    stream: Optional[str]
    text: str


class Bad(Exception):
    """A row that looks like data but cannot be read (reported as file:line, skipped unless strict)."""

    def __init__(self, number: int, why: str):
        super().__init__(why)
        self.number = number


@dataclass(frozen=True)
class Given:
    """What the user said about a file (``FILE:ranks=32,transport=polaris``)."""

    ranks: Optional[int] = None
    transport: Optional[str] = None


@dataclass
class Parsed:
    """An importer's answer for one file: records, bad rows, and notes for one warning each."""

    records: List[dict] = field(default_factory=list)
    bad: List[Bad] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def clean(text: str) -> Tuple[Optional[str], str]:
    """(the rank a launcher tagged the line with or None, the line without tags, colours or CR)."""
    text = _ANSI.sub("", text).replace("\r", "")
    for prefix in _PREFIXES:
        m = prefix.match(text)
        if m:
            return m.group(1), text[m.end():]
    return None, text


def lines_of(data: str) -> Iterator[Line]:
    for number, raw in enumerate(data.split("\n"), 1):
        stream, text = clean(raw)
        yield Line(number, stream, text)


def number(token: str) -> Optional[float]:
    """A finite float, or None (``N/A``, text, nan, inf)."""
    try:
        value = float(token.rstrip("*"))
    except (ValueError, AttributeError):
        return None
    return value if math.isfinite(value) else None


def whole(token: str) -> Optional[int]:
    return int(token) if re.fullmatch(r"\d{1,19}", token or "") else None


def dtype_name(text: Optional[str]) -> Optional[str]:
    """collscale's name for a tool's type name (``float``, ``MPI_INT.``), or None when unknown."""
    if not text:
        return None
    return _DTYPE_NAMES.get(text.strip().rstrip(".").lower())


def itemsize(dtype: Optional[str]) -> Optional[int]:
    return _ITEMSIZE.get(dtype) if dtype else None


_LAUNCHER = re.compile(r"(?:^|[\s/$])(mpirun|mpiexec|orterun|srun|jsrun|aprun|flux\s+run|prun)\b(.*)$")


def ranks_from_command(text: str) -> Optional[int]:
    """The rank count a launcher command line asks for (``mpirun -np 8``, ``srun -N 4
    --ntasks-per-node=8``), or None.  Open MPI's ``-N`` is per node, Slurm's and Flux's
    ``-N`` is nodes: only the latter multiply a tasks-per-node count."""
    m = _LAUNCHER.search(text)
    if not m:
        return None
    launcher, args = m.group(1), m.group(2)
    n = re.search(r"(?:^|\s)(?:-np|--np|-n|--n|--ntasks)[= ]?\s*(\d+)\b", args)
    if n and n.group(1):
        return int(n.group(1))
    if launcher.startswith(("srun", "flux")):
        nodes = re.search(r"(?:^|\s)(?:-N\s*|--nodes[= ])(\d+)\b", args)
        per = re.search(r"--(?:ntasks|tasks)-per-node[= ](\d+)\b", args)
        if nodes and per:
            return int(nodes.group(1)) * int(per.group(1))
    return None


def bandwidths(collective: str, s_bytes: Optional[int], time_us: Optional[float],
               nranks: Optional[int]) -> Tuple[Optional[float], Optional[float], Optional[float]]:
    """(algbw, busbw, busbw_factor) by collscale's definitions: algbw = S/t, busbw = algbw x factor(n)
    (:mod:`facts.spec`); None where S, t or n is unknown."""
    spec = specs.find(collective)
    if s_bytes is None or not time_us or time_us <= 0:
        return None, None, None
    algbw = s_bytes / (time_us * 1e-6) / 1e9
    if spec is None:
        return algbw, None, None
    if nranks:
        factor = spec.busbw_factor(nranks)
    elif spec.busbw_factor(2) == spec.busbw_factor(1 << 20):  # the factor does not depend on the rank count
        factor = spec.busbw_factor(2)
    else:
        return algbw, None, None
    return algbw, algbw * factor, factor


def build(tool: str, version: Optional[str], path, line: int, status: str = "ok", **fields) -> dict:
    """One imported record: :func:`facts.record.new` with the import's own fields."""
    fields.setdefault("timestamp", None)  # the log's time is rarely printed; import time would mislead
    rec = record.new("measured", status, source=f"{tool} {version}" if version else f"{tool} (version not printed)",
                     source_line=f"{path}:{line}", **fields)
    for key in EXTRA_FIELDS:
        rec.setdefault(key, None)
    return rec


def join(parts: Iterable[Optional[str]]) -> Optional[str]:
    text = "; ".join(p for p in parts if p)
    return text or None


def hosts_field(host_of_rank: Dict[int, str]) -> Tuple[Optional[int], Optional[str], Optional[int]]:
    """(nhosts, ``host:ranks,...``, ranks on the busiest host) from a rank -> host map."""
    if not host_of_rank:
        return None, None, None
    counts: Dict[str, int] = {}
    for rank in sorted(host_of_rank):
        counts[host_of_rank[rank]] = counts.get(host_of_rank[rank], 0) + 1
    return len(counts), ",".join(f"{h}:{n}" for h, n in counts.items()), max(counts.values())
