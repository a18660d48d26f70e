"""``index.html`` from the report's own Markdown lines: one self-contained page, plots embedded.

Only what the report writes is understood: headings (a contents line is made
from the ``##`` ones), tables, images (embedded as data URIs, so the page
opens offline and can be mailed), ``- `` lists, ``**bold**`` and
```code```, and the ``<details>``/``<summary>`` lines of collapsible
sections, which pass through.  The page never scrolls sideways: text wraps
anywhere it must, a table wider than the page scrolls inside its own box,
and images shrink to the page's width.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import List

__all__ = ["page"]

_STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:0 auto;padding:1em 1.2em;
  line-height:1.45;color:#1b1b1b;overflow-wrap:anywhere}
h1{margin:.3em 0}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
nav{font-size:90%;margin:.4em 0 1em}nav a{margin-right:1em}
.scroll{max-width:100%;overflow-x:auto;margin:.5em 0}
table{border-collapse:collapse;font-size:88%}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;vertical-align:top;overflow-wrap:normal}
td:first-child,th:first-child{text-align:left}th{background:#eee}.n{white-space:nowrap}td.t{text-align:left}
img{max-width:100%;height:auto}figure{margin:1em 0}figcaption{font-size:80%;color:#555}
details{margin:.5em 0;border:1px solid #ddd;border-radius:4px;padding:.3em .8em}
summary{cursor:pointer;font-weight:600}
p.alert{background:#fff4d6;border-left:4px solid #e0a000;padding:.3em .6em}
code{background:#f3f3f3;padding:0 .2em}
""".strip().replace("\n", "")


_SHORT = 16  # a cell this short never wraps (sizes, times, percentages); longer text does


_ESCAPED = re.compile(r"\\([\\|])")


def _cells(line: str) -> List[str]:
    """The cells of a table row, ``\\\\`` and ``\\|`` read back (:func:`analysis.sanitise.cell`)."""
    inner = line.strip()[1:]
    cells = [m.group(1) for m in re.finditer(r"((?:\\.|[^\\|])*)\|", inner + ("" if inner.endswith("|") else "|"))]
    return [_ESCAPED.sub(r"\1", c).strip() for c in cells]


def _inline(text: str) -> str:
    s = html.escape(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", s)


def _slug(text: str, seen: set) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "section"
    slug, k = base, 2
    while slug in seen:
        slug, k = f"{base}-{k}", k + 1
    seen.add(slug)
    return slug


def page(md_lines: List[str], outdir: Path, title: str = "collscale report") -> str:
    """The HTML page of ``md_lines``; images named in them are read from ``outdir``."""
    body: List[str] = []
    contents: List[str] = []
    seen: set = set()
    table_open = list_open = False
    for line in md_lines + [""]:
        if table_open and not line.startswith("|"):
            body.append("</table></div>")
            table_open = False
        if list_open and not line.startswith("- "):
            body.append("</ul>")
            list_open = False
        if line.startswith("|"):
            cells = _cells(line)
            if set("".join(cells)) <= set("-:"):
                continue
            tag = "td" if table_open else "th"
            if not table_open:
                body.append('<div class="scroll"><table>')
                table_open = True
            body.append("<tr>" + "".join(f"<{tag} class={'n' if len(c) <= _SHORT else 't'}>{_inline(c)}</{tag}>"
                                         for c in cells) + "</tr>")
        elif line.startswith("!["):
            name = line[line.index("(") + 1: line.rindex(")")]
            data = base64.b64encode((outdir / name).read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(name)}</figcaption></figure>")
        elif line.startswith("<details") or line == "</details>":
            body.append(line)
        elif line.startswith("<summary>") and line.endswith("</summary>"):
            body.append(f"<summary>{_inline(line[len('<summary>'):-len('</summary>')])}</summary>")
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            text = line.lstrip("#").strip()
            if level == 2:
                slug = _slug(text, seen)
                contents.append(f'<a href="#{slug}">{html.escape(text.split(" (")[0].split(",")[0])}</a>')
                body.append(f'<h2 id="{slug}">{_inline(text)}</h2>')
            else:
                body.append(f"<h{level}>{_inline(text)}</h{level}>")
        elif line.startswith("- "):
            if not list_open:
                body.append("<ul>")
                list_open = True
            body.append(f"<li>{_inline(line[2:])}</li>")
        elif line.strip():
            alert = line.startswith("**") and line.rstrip().endswith("**")
            body.append(f"<p{' class=alert' if alert else ''}>{_inline(line)}</p>")
    if contents and body and body[0].startswith("<h1"):
        body.insert(1, "<nav>" + "".join(contents) + "</nav>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
