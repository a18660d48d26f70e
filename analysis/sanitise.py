"""Record fields made safe to write: into file names, Markdown and plot labels.

A record's text fields (collective, transport, dtype, a model's name, a
GPU named in a log) are whatever the file said, so before one is written:

* :func:`file_part`, into a file name: only ``A-Z a-z 0-9 . _ + -`` are kept,
  every run of anything else (a path separator, a space, a newline, a NUL)
  and of two dots or more is one ``_``, no leading or trailing dot, at most 80
  characters.
  Where that changed the text, ``-`` and 10 hex digits of its SHA-256 follow,
  as they do for a name that already ends like that: two different fields
  never share a file name (``a/b`` is ``a_b-<hash>``, ``a_b`` stays ``a_b``).
* :func:`text`, into a Markdown line: line breaks of every kind and tabs are a
  space, control characters (C0, DEL, C1, bidirectional overrides) and lone
  surrogates are dropped.
* :func:`cell`, into a Markdown table cell: :func:`text`, then ``\\`` and ``|``
  escaped (``\\\\``, ``\\|``), so a cell never splits a row
  (:mod:`analysis.report_html` reads them back).
* :func:`label`, into a plot's legend or title: :func:`text` with ``$``
  escaped (matplotlib would read ``$...$`` as mathematics, and fail on it).

The HTML page escapes everything it writes (:mod:`analysis.report_html`).
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["file_part", "text", "cell", "label", "MAX_NAME"]

MAX_NAME = 80
_UNSAFE = re.compile(r"(?:[^A-Za-z0-9._+-]|\.{2,})+")
_HASHED = re.compile(r"-[0-9a-f]{10}$")
_BREAKS = re.compile(r"\r\n|[\t\n\v\f\r\x1c-\x1e\x85\u2028\u2029]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def file_part(value) -> str:
    """``value`` as a piece of a file name: readable, no path in it, distinct for distinct values."""
    raw = str(value)
    name = _UNSAFE.sub("_", raw).strip(".")[:MAX_NAME] or "_"
    if name != raw or _HASHED.search(name):
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        name = f"{name}-{digest}"
    return name


def text(value) -> str:
    """``value`` as Markdown text on one line: breaks and tabs a space, control characters dropped."""
    return _CONTROL.sub("", _BREAKS.sub(" ", str(value)))


def cell(value) -> str:
    """``value`` as one Markdown table cell (``\\`` and ``|`` escaped)."""
    return text(value).replace("\\", "\\\\").replace("|", "\\|")


def label(value) -> str:
    """``value`` as matplotlib text: one line, ``$`` escaped."""
    return text(value).replace("$", "\\$")
