"""The report of real logs as a person sees it: what it says, and index.html in a real headless browser.

A report built with ``--fabric auto`` from real logs (a published nccl-tests
log of ALCF Polaris and a published OSU log) has fits, scaling curves and
the nccl-tests series compared with the guessed fabric's model.  Opened in
headless Chromium, its screenshot is not blank, the page does not scroll
sideways at a desktop or a narrow width (with every collapsible section
opened), and the at-a-glance table shows every column without scrolling at
a desktop width.  The browser tests skip, saying why, where no Chromium is
installed (``apt-get install chromium-headless-shell`` or ``chromium``
brings one; the project's test command does not install it).
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

DATA = Path(__file__).resolve().parents[1] / "data"
LOGS = [DATA / "polaris-nccl2.18-n2-all_reduce_output.dat", DATA / "osu-5.8-metrics-operator-2023.txt"]
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DESKTOP, NARROW = 1280, 640

# Opens every <details>, then writes the page's widths into the title for --dump-dom to show.
PROBE = """<script>
window.addEventListener("load", function () {
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  var root = document.documentElement, glance = document.querySelector(".scroll");
  document.title = "PROBE" + JSON.stringify({page: root.scrollWidth, view: root.clientWidth,
    glance: glance ? glance.scrollWidth : 0, glanceBox: glance ? glance.clientWidth : 0,
    images: Array.prototype.map.call(document.images, function (i) { return i.naturalWidth > 0; })});
});
</script>"""


def _browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser, width, height, *args):
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--window-size={width},{height}", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from analysis import report

    out = tmp_path_factory.mktemp("browser") / "rep"
    report.build([str(p) for p in LOGS], str(out), fabric="auto", warn=lambda m: None, note=lambda m: None)
    return out


@pytest.fixture(scope="module")
def browser():
    found = _browser()
    if found is None:
        pytest.skip("no headless browser installed (looked for " + ", ".join(BROWSERS) + "); "
                    "apt-get install chromium-headless-shell brings one")
    return found


def test_real_logs_get_fits_scaling_curves_and_percent_of_model(built):
    from tests.e2e.test_analysis import _md_tables

    md = (built / "report.md").read_text()
    tables = _md_tables(md)
    glance = {(r[0], r[1]): dict(zip(h, r)) for h, rows in tables if "% of model" in h for r in rows}
    nccl = glance[("nccl-tests", "allreduce")]
    assert nccl["fabric"] == "nvlink3 (guessed)" and nccl["verdict"] == "below half"
    assert 5.0 < float(nccl["% of model"].rstrip(" %")) < 15.0  # 9.45 GB/s over 2 Polaris nodes
    assert glance[("osu", "allreduce")]["% of model"] == "-"  # OSU's log names no GPU: no guess
    assert "nvlink3 from NVIDIA A100-SXM4-40GB" in md and "2 hosts x 4 ranks" in md
    fits = next(rows for h, rows in tables if h[:3] == ["transport", "collective", "algorithm"])
    assert {(r[0], r[1]) for r in fits} == {("nccl-tests", "allreduce"), ("osu", "allreduce")}
    assert "measured nccl-tests allreduce" in md and (built / "scaling_unet.png").exists()
    by_size = next(rows for h, rows in tables if "% of nvlink3 model" in h)
    assert by_size[0][0] == "4 B" and by_size[-1][0] == "1 GiB" and by_size[-1][3].endswith(" %")


def _probe(browser, built, width, tmp_path):
    page = tmp_path / f"probe{width}.html"
    page.write_text((built / "index.html").read_text().replace("</body>", PROBE + "</body>"))
    res = _run(browser, width, 900, "--dump-dom", page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    start = res.stdout.index("PROBE") + len("PROBE")
    return json.loads(res.stdout[start:res.stdout.index("</title>", start)].replace("&quot;", '"'))


@pytest.mark.parametrize("width", [DESKTOP, NARROW])
def test_no_horizontal_overflow(browser, built, width, tmp_path):
    seen = _probe(browser, built, width, tmp_path)
    assert seen["page"] <= seen["view"], seen  # the page never scrolls sideways, every section open
    assert seen["images"] and all(seen["images"]), seen  # every embedded plot decodes
    if width == DESKTOP:
        assert seen["glance"] <= seen["glanceBox"], seen  # no column of the summary table hidden


def test_screenshot_is_not_blank(browser, built, tmp_path):
    import matplotlib.image

    shot = tmp_path / "shot.png"
    res = _run(browser, DESKTOP, 1600, f"--screenshot={shot}", (built / "index.html").as_uri())
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    pixels = matplotlib.image.imread(str(shot))[..., :3]
    assert pixels.shape[:2] == (1600, DESKTOP)
    ink = (pixels < 0.85).any(axis=2)  # anything darker than a light grey: text, lines, table borders
    assert ink.mean() > 0.02, ink.mean()
    # Text near the top (the summary leads) and a plot within the first screen: colour below the summary.
    assert ink[:300].mean() > 0.01
    colour = pixels.max(axis=2) - pixels.min(axis=2) > 0.3
    assert colour[600:].sum() > 500, colour[600:].sum()
