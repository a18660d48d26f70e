"""Other tools' logs -> collscale records: nccl-tests/rccl-tests, OSU, IMB, hccl_demo.

Pure Python (no MPI, no torch).  :func:`detect` chooses an importer from a
file's content (never from its name); :func:`read` runs it.  Each importer
module has ``sniff(lines) -> bool`` and ``parse(lines, path, given) ->
Parsed`` (text logs), or ``sniff_json``/``parse_json`` (JSON outputs).
Every record comes from :func:`facts.record.new` through
:func:`analysis.load.importers.common.build` (see there for the fields an import
adds), so the analysis reads them like the harness's own.

Order matters only where formats could look alike: JSON outputs first (a
text sniffer never sees JSON), then hccl_demo, IMB and OSU (whose banners are
specific), then nccl-tests (its table header).
"""

from __future__ import annotations

import json
from typing import Callable, Optional, Tuple

from analysis.load.importers import common, hccl_demo, imb, nccl_json, nccl_tests, osu
from analysis.load.importers.common import Bad, Given, Parsed

__all__ = ["detect", "read", "Given", "Parsed", "Bad", "TOOLS", "EXTRA_FIELDS"]

EXTRA_FIELDS = common.EXTRA_FIELDS
_TEXT = (("hccl_demo", hccl_demo), ("IMB-MPI1", imb), ("OSU micro-benchmarks", osu),
         ("nccl-tests/rccl-tests", nccl_tests))
TOOLS = ("nccl-tests (stdout and -J JSON)", "rccl-tests (stdout and JSON)", "OSU micro-benchmarks 5.x-7.x",
         "Intel MPI Benchmarks (IMB-MPI1)", "hccl_demo")
_SNIFF_CHARS = 1 << 20  # banners sit near the top; a huge log is not scanned twice


def _json_payload(text: str):
    """The decoded JSON document, or the list of JSON lines, or None."""
    stripped = text.lstrip()
    if stripped[:1] != "{" and not (stripped[:1] == "[" and stripped[1:].lstrip()[:1] in ("{", "]")):
        return None  # not JSON ("[1,0]<stdout>:" is a launcher's tag)
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        pass
    docs = []
    for line in stripped.splitlines():
        if line.strip():
            try:
                docs.append(json.loads(line))
            except (ValueError, RecursionError):
                docs.append(None)
    return docs if docs and isinstance(docs[0], dict) else stripped  # a torn document: the text itself


def detect(text: str) -> Optional[Tuple[str, Callable[..., Parsed]]]:
    """(the tool's name, a function of ``(path, given)`` that parses it) when ``text`` is a log of a
    known tool, else None."""
    payload = _json_payload(text)
    if payload is not None:
        which = nccl_json.sniff_json(payload)
        if which:
            return which, lambda path, given: nccl_json.parse_json(payload, text, path, given)
        return None
    lines = list(common.lines_of(text))
    head = lines if len(text) <= _SNIFF_CHARS else list(common.lines_of(text[:_SNIFF_CHARS]))
    for name, module in _TEXT:
        if module.sniff(head):
            return name, lambda path, given, module=module: module.parse(lines, path, given)
    return None


def read(text: str, path, given: Given = Given()) -> Optional[Tuple[str, Parsed]]:
    """(tool, parsed) for a log of a known tool, else None."""
    found = detect(text)
    if found is None:
        return None
    name, run = found
    return name, run(path, given)
