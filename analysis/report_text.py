"""The report's Markdown pieces: tables, numbers, sizes as people read them, collapsible sections.

Shared by :mod:`analysis.report` and its section modules; the HTML page is
made from these lines by :mod:`analysis.report_html`.
"""

from __future__ import annotations

import math
from typing import Iterable, List, Sequence

from analysis import sanitise
from ground.sizes import human_size

__all__ = ["fmt", "table", "size_range", "details"]



def fmt(v, pct: bool = False, digits: int = 3) -> str:
    """A table cell: '-' for nothing, ``12.3 %`` for a fraction with ``pct``, 3 significant digits."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if pct:
        return f"{100 * v:.1f} %"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def table(headers: Sequence[str], rows: Iterable[Sequence]) -> List[str]:
    """A Markdown table: every cell on one line, without control characters, ``\\`` and ``|`` escaped
    (:func:`analysis.sanitise.cell`), so that each row has as many cells as the header."""
    cell = sanitise.cell
    out = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return out


def size_range(sizes) -> str:
    """``8 B – 64 MiB`` (one size alone: that size)."""
    sizes = [s for s in sizes if s is not None and s == s]
    if not sizes:
        return "-"
    lo, hi = min(sizes), max(sizes)
    return human_size(lo) if lo == hi else f"{human_size(lo)} – {human_size(hi)}"


def details(title: str, lines: List[str], open_: bool = False) -> List[str]:
    """A collapsible section (HTML ``<details>``, which GitHub's Markdown shows folded too)."""
    if not lines:
        return []
    return [f"<details{' open' if open_ else ''}>", f"<summary>{title}</summary>", "", *lines, "", "</details>", ""]
