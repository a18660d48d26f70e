"""The report's shape: a summary people read first (with % of a fabric's model), the plots, then the
details folded away; sizes as nccl-tests users read them; nothing cut off."""

import json
import re

import pytest

from analysis import report
from facts import fabrics, percent_of_model
from facts import record
from ground import sizes

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

SIZES = [8 << (2 * i) for i in range(13)]  # 8 B .. 128 MiB
NV3 = fabrics.get("nvlink3")


def _rec(transport, size, share_of_model, nranks=8, **kw):
    model = percent_of_model.share(NV3, "allreduce", size, nranks, 1.0).model_busbw_gbs
    busbw = share_of_model * model
    algbw = busbw / (2 * (nranks - 1) / nranks)
    return record.new("measured", "ok", collective="allreduce", transport=transport, nranks=nranks, size_bytes=size,
                      time_us=size / algbw / 1e3, algbw_gbs=algbw, busbw_gbs=busbw, dtype="float32", op="sum",
                      in_place=False, run_id=transport, **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("layout")
    src = d / "r.jsonl"
    recs = [_rec("slow", s, 0.4) for s in SIZES] + [_rec("good", s, 0.9, fabric="nvlink3") for s in SIZES]
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    paths = report.build([str(src)], str(d / "rep"), fabric="nvlink3")
    return paths["report.md"].read_text(), paths["index.html"].read_text()


def _glance(md):
    lines = md.splitlines()
    start = lines.index("## At a glance (measured)") + 2
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, [c.strip() for c in line.strip("|").split("|")])))
    return rows


def test_summary_first_then_plots_then_the_appendix(built):
    md, _ = built
    order = [md.index(h) for h in ("**What was measured.**", "## At a glance (measured)", "## Plots", "![busbw_allreduce]",
                                   "## Fits", "## Data-parallel scaling", "## Appendix")]
    assert order == sorted(order)
    appendix = md[md.index("## Appendix"):]
    for title in ("Measured: time and bus bandwidth at every size", "Fabric models", "scaling tables"):
        assert "<summary>" in appendix and title in appendix, title
    assert md.count("<details>") == md.count("</details>") >= 4
    assert "**nvlink4** — NVIDIA H100" in appendix and "**nvlink4** — NVIDIA H100" not in md[:md.index("## Appendix")]


def test_glance_gives_percent_of_model_and_says_below_half(built):
    md, _ = built
    rows = {r["transport"]: r for r in _glance(md)}
    assert rows["slow"]["% of model"] == "40.0 %" and rows["slow"]["verdict"] == "below half"
    assert rows["good"]["% of model"] == "90.0 %" and rows["good"]["verdict"] == ""
    assert rows["slow"]["sizes"] == "8 B – 128 MiB" and rows["slow"]["peak busbw (GB/s)"].endswith(" at 128 MiB")
    assert float(rows["slow"]["% of link peak"].rstrip(" %")) < 40.0
    assert "**slow allreduce on 8 ranks reaches 40.0 % of the nvlink3 model at 128 MiB" in md
    assert "below half of its model.**" in md and "good allreduce on 8 ranks reaches" not in md


def test_sizes_read_as_people_read_them(built):
    md, html = built
    assert not re.search(r"\b\d{5,} B\b", md)  # never 16777216 B
    table = md[md.index("**slow allreduce, 8 ranks**"):]
    assert "| 8 B |" in table and "| 32 MiB |" in table and "| 128 MiB |" in table
    assert "% of nvlink3 model" in table
    small = next(line for line in table.splitlines() if line.startswith("| 8 B |"))
    large = next(line for line in table.splitlines() if line.startswith("| 128 MiB |"))
    assert "40.0 % (assumed latency)" in small and "40.0 % |" in large and "assumed" not in large


def test_the_html_page(built):
    _, html = built
    assert html.index("At a glance") < html.index("data:image/png") < html.index("<details")
    assert '<nav><a href="#at-a-glance-measured">' in html
    assert "<p class=alert><b>slow allreduce" in html
    assert html.count("<details") == html.count("</details>")
    assert "<summary>Measured: time and bus bandwidth at every size, per series</summary>" in html


@pytest.mark.parametrize("n, text", [(0, "0 B"), (8, "8 B"), (1023, "1023 B"), (1024, "1 KiB"), (1536, "1.5 KiB"),
                                     (64 << 20, "64 MiB"), (3 << 30, "3 GiB"), (1000000, "977 KiB")])
def test_human_size(n, text):
    assert sizes.human_size(n) == text


def test_no_compute_column_cut_off(tmp_path):
    """The scaling tables give a short compute cell and every compute assumption written out in full."""
    from analysis import report_appendix

    rows = {"unet": [{"devices": 8, "network": "n", "batch": 32, "step_ms": 1.0, "exposed_ms": 0.1,
                      "efficiency": 0.9, "note": "", "compute": "72 GFLOP/sample at 312 TFLOP/s x 35% utilisation "
                      "(NVIDIA A100 SXM: 312 TFLOP/s dense FP16/BF16, a long source text that the old table cut)"}]}
    md = "\n".join(report_appendix.scaling_tables(rows))
    assert "| 312 TFLOP/s x 35% utilisation |" in md
    assert "a long source text that the old table cut)" in md
