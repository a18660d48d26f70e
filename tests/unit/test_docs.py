"""The documentation stays usable and the repository stands alone.

* The README is a short front page (at most 300 lines) that links into docs/.
* Every relative link in README.md, docs/**/*.md and benchmarks/README.md
  resolves to a file, and to a heading where it names an anchor (GitHub's
  anchors: lowercase, punctuation other than '-' and '_' dropped, spaces to
  '-', '-1', '-2' ... for repeats).
* No file in the repository cites a notes file that the repository does not
  hold (the private design and reference notes once cited by name).
* The README carries, verbatim, the test command that CI runs (.ci/run).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_README_LINES = 300
# Built from parts, so that this file does not itself name them.
NOTES = tuple(name + ".md" for name in ("REFERENCE", "DESIGN"))
OUTSIDE = "../" + "shared"  # the team's private notes, beside the repository
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "node_modules"}

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _markdown_files() -> List[Path]:
    files = [README, ROOT / "benchmarks" / "README.md"]
    files += sorted((ROOT / "docs").rglob("*.md"))
    return [f for f in files if f.is_file()]


def _prose_lines(text: str) -> Iterator[Tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before de-duplication)."""
    text = _CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    seen: Dict[str, int] = {}
    out = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> Iterator[Tuple[int, str]]:
    """(line number, target) of every link outside code blocks and code spans."""
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        for m in _LINK.finditer(_CODE_SPAN.sub("", line)):
            yield number, m.group(1)


def test_slug_matches_github():
    assert slug("Slurm: which `--mpi`") == "slurm-which---mpi"
    assert slug("Is this log's number good?") == "is-this-logs-number-good"
    assert slug("Small messages: the compiled loop and the MPI thread level") == \
        "small-messages-the-compiled-loop-and-the-mpi-thread-level"
    assert slug("Harness overhead (`benchmarks/overhead.py`)") == "harness-overhead-benchmarksoverheadpy"
    assert slug("Data-parallel replication, measured") == "data-parallel-replication-measured"


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_links_into_docs():
    targets = {t.split("#")[0] for _, t in links(README)}
    for page in ("docs/timing.md", "docs/transports.md", "docs/replicate.md", "docs/report.md",
                 "docs/launch.md", "docs/importers.md", "docs/reference.md", "docs/failures.md",
                 "docs/ARCHITECTURE.md", "benchmarks/README.md"):
        assert page in targets, f"README.md does not link to {page}"


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    bad = []
    for number, target in links(path):
        if _SCHEME.match(target):
            continue  # http:, https:, mailto:
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        if not dest.exists():
            bad.append(f"{where}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{where}: no heading with anchor #{anchor}")
    assert not bad, "\n".join(bad)


def _repo_files() -> Iterator[Path]:
    """Every file of the working tree, without git's, the virtual environment's or build caches."""
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(top) / name
            if path.is_file():
                yield path


def test_no_citation_of_files_the_repo_lacks():
    missing = [name for name in NOTES if not any(p.name == name for p in _repo_files())]
    bad = []
    for path in _repo_files():
        try:
            text = path.read_text(encoding="utf-8", errors="ignore")
        except OSError:
            continue
        for name in missing:
            if name in text:
                bad.append(f"{path.relative_to(ROOT)} cites {name}, which is not in the repository")
        if OUTSIDE in text:
            bad.append(f"{path.relative_to(ROOT)} points outside the repository ({OUTSIDE})")
    assert not bad, "\n".join(bad)


def test_readme_has_the_ci_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    commands = [line.strip() for line in ci if line.strip().startswith("python3 -m venv")]
    assert commands, ".ci/run has no 'python3 -m venv ...' test command"
    readme = README.read_text(encoding="utf-8").splitlines()
    for command in commands:
        assert command in (line.strip() for line in readme), f"README.md lacks CI's command: {command}"
