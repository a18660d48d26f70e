"""Issue 18: a record's text fields reach file names and Markdown only sanitised (analysis.sanitise).

A collective named ``../../escaped_plot`` is drawn into a file inside the
report's directory; a transport holding ``\\n| x |`` leaves report.md's tables
whole; control characters never reach report.md; the HTML stays escaped.
The properties drive the functions that turn fields into names and Markdown
(fast); one test builds a whole report from hostile records (slow: plots).
"""

import re
import unicodedata
from pathlib import Path

import tests.unit.hypothesis_profile  # noqa: F401  (the project's profile: derandomized, no deadline)
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from analysis import report, report_appendix, report_html, report_summary, sanitise
from analysis.load import points
from analysis.report_text import table
from tests.unit.test_analysis_errors import SIZES, rec, write_jsonl

pytest.importorskip("pandas")

NASTY = ["../../escaped_plot", "..", ".", "", "/", "a/b", "a_b", "\n| x |", "x\r\ny", "nul\x00byte", "tab\tbed",
         "\u2028sep\u2029", "\x1b[31mred", "$\\frac{$", "<script>alert(1)</script>", "back\\slash|", "C:\\x\\..\\y",
         "\u202eevil", "a" * 300, "emoji \U0001F600", "-0123456789"]
FIELD = st.one_of(st.sampled_from(NASTY), st.text(max_size=40))


def cells(line: str) -> list:
    """A Markdown table row's cells as GitHub reads them: a backslash escapes the next character."""
    assert line.startswith("|") and line.endswith("|"), line
    return re.findall(r"(?:\\.|[^\\|])*\|", line[1:])


def control(text: str) -> list:
    return [c for c in text if c != "\n" and unicodedata.category(c) in ("Cc", "Cs")]


def check_markdown(lines):
    """One line each, no control characters, every table's rows as wide as its header."""
    width = None
    for line in lines:
        assert "\n" not in line and "\r" not in line and not control(line), repr(line)
        if line.startswith("|"):
            width = width or len(cells(line))
            assert len(cells(line)) == width, (line, width)
        else:
            width = None


# -- file names ----------------------------------------------------------------------------------

def test_file_part_keeps_plain_names_and_confines_the_rest():
    assert sanitise.file_part("allreduce") == "allreduce" and sanitise.file_part("nccl2.18") == "nccl2.18"
    name = sanitise.file_part("../../escaped_plot")
    assert re.fullmatch(r"_escaped_plot-[0-9a-f]{10}", name)
    assert sanitise.file_part("a/b") != sanitise.file_part("a_b") == "a_b"
    literal = sanitise.file_part("a/b")  # a field spelled like another's sanitised name gets its own hash
    assert sanitise.file_part(literal) not in (literal, "a_b")
    assert len(sanitise.file_part("a" * 300)) <= sanitise.MAX_NAME + 11


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(a=FIELD, b=FIELD)
def test_any_field_names_a_file_inside_the_directory_and_distinct_fields_distinct_files(tmp_path, a, b):
    for value in (a, b):
        part = sanitise.file_part(value)
        assert re.fullmatch(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*", part) and ".." not in part, part
        path = tmp_path / f"busbw_{part}.png"
        assert path.resolve().parent == tmp_path.resolve() and len(path.name) < 255
    assert (sanitise.file_part(a) == sanitise.file_part(b)) == (a == b)


# -- Markdown --------------------------------------------------------------------------------------

def test_a_transport_with_a_newline_and_pipes_leaves_the_table_whole():
    lines = table(["transport", "collective", "ranks"], [["evil\n| x |", "allreduce", 2], ["a\\|b\\", "x|", 4]])
    check_markdown(lines)
    assert lines[2] == "| evil \\| x \\| | allreduce | 2 |"
    html = report_html.page(["# t"] + lines, Path("."))
    assert "<td class=n>evil | x |</td>" in html and "<td class=n>a\\|b\\</td>" in html  # read back as written


def frame_of(transport, collective, dtype):
    recs = [rec(p, s, transport=transport, collective=collective, dtype=dtype, run_id=transport)
            for p in (1, 2) for s in SIZES[:4]]
    return points.frame(recs), points.frame(recs, all_status=True)


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(transport=FIELD, collective=FIELD, dtype=FIELD)
def test_any_field_gives_one_line_markdown_with_whole_tables(transport, collective, dtype):
    df, allrec = frame_of(transport, collective, dtype)
    md = report_summary.summary([f"{transport}.jsonl"], df, allrec, df, None, [])
    md += report_appendix.appendix(df, allrec, [], {}, None)
    md = [sanitise.text(line) for line in md]  # as report.build writes them
    check_markdown(md)
    page = report_html.page(md, Path("."))
    assert not control(page.replace("\n", ""))
    assert "<script" not in page  # the HTML escapes what the Markdown holds


@given(value=FIELD)
@settings(max_examples=40)
def test_labels_are_one_line_and_never_mathematics(value):
    out = sanitise.label(value)
    assert not control(out) and "\n" not in out
    assert re.search(r"(?<!\\)\$", out) is None  # every $ escaped


# -- one whole report from hostile records -----------------------------------------------------

def test_a_report_of_hostile_records_stays_in_its_directory(tmp_path, monkeypatch, capsys):
    """collective "../../escaped_plot", a transport with a newline, pipes and mathtext, a dtype with a NUL,
    and a row of 1e308 us: exit 0, every file inside -o, report.md's tables whole, no numpy warning."""
    hostile = [rec(p, s, collective="../../escaped_plot", transport="evil\n| x |$\\frac{$", dtype="f\x00\r\n|",
                   run_id="h") for p in (2, 4) for s in SIZES]
    hostile.insert(3, rec(2, 4096, time_us=1e308))
    src = write_jsonl(tmp_path / "in.jsonl", hostile + [rec(p, s) for p in (2, 4) for s in SIZES])
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = {p for p in tmp_path.rglob("*")}
    code = report.main([str(src), "-o", "rep"])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert "RuntimeWarning" not in err and f"{src}:4: 1 non-physical row left out (time_us 1e+308" in err
    new = {p for p in tmp_path.rglob("*")} - before
    out = work / "rep"
    assert new and all(p == out or p.parent == out for p in new), sorted(map(str, new))
    names = {p.name for p in out.iterdir()}
    plot = f"busbw_{sanitise.file_part('../../escaped_plot')}.png"
    assert plot in names and "busbw_allreduce.png" in names
    md = (out / "report.md").read_text(encoding="utf-8")
    check_markdown(md.splitlines())
    assert f"]({plot})" in md and "| evil \\| x \\|$\\\\frac{$ | ../../escaped_plot | 2 |" in md
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "evil | x |$\\frac{$" in page and "<script" not in page
