"""From the harness under mpirun to the report, and the fabric-only tools, as a user runs them."""

import json
import re
import sys

import pytest

from tests.conftest import read_jsonl

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

SMALL = ["-b", "8", "-e", "1M", "-f", "4", "-w", "1", "--time-budget", "0.004", "--transport", "shm"]


def _md_tables(text):
    """Every Markdown table in the report as (header, rows); fails on a ragged table."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        if current:
            header, rule, *rows = current
            assert set("".join(rule)) <= set("-:"), current
            for row in rows:
                assert len(row) == len(header), (header, row)
            tables.append((header, rows))
            current = []
    return tables


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """allreduce and allgather at 2 and 3 ranks, appended to one JSON Lines file."""
    from tests.conftest import Runner

    r = Runner()
    out = tmp_path_factory.mktemp("analysis") / "r.jsonl"
    for collective in ("allreduce", "allgather"):
        for n in (2, 3):
            res = r.cli(n, collective, *SMALL, "--json", out, timeout=120)
            assert res.returncode == 0, res.stderr
    assert not r.strays()
    return out


def test_report_from_harness_results(runner, measured, tmp_path):
    out = tmp_path / "report"
    res = runner.run([sys.executable, "-m", "analysis.report", str(measured), "-o", str(out)], timeout=300)
    assert res.returncode == 0, res.stderr
    md = (out / "report.md").read_text()
    html = (out / "index.html").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    for name in ("busbw_allreduce.png", "time_allreduce.png", "busbw_allgather.png", "scaling_unet.png"):
        assert name in pngs, pngs
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000, p
    # Self-contained: every plot embedded, nothing fetched from elsewhere.
    assert html.count("data:image/png;base64,") == len(pngs)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    tables = _md_tables(md)
    headers = [h for h, _ in tables]
    assert ["transport", "collective", "algorithm", "ranks", "alpha (us)", "beta (GB/s)", "gamma (ns/B)",
            "median err", "max err", "note"] in headers
    fits = next(rows for h, rows in tables if h[:3] == ["transport", "collective", "algorithm"])
    assert {(r[0], r[1]) for r in fits} == {("shm", "allreduce"), ("shm", "allgather")}
    assert all(r[3] == "2,3" for r in fits)
    for r in fits:
        assert float(r[4]) >= 0 and float(r[5]) > 0
    head, seed = next((h, rows) for h, rows in tables if h[:2] == ["network", "weak, batch 32"])
    assert any(r[0].startswith("measured") or "shm" in r[0] for r in seed), seed
    a100 = next(r for r in seed if "NVLink3" in r[0])
    got = dict(zip(head, a100))  # strong scaling with the per-step cost fitted to the seed's batch 32
    assert got["strong, batch 32"] == "18.8 %" and 40 < float(got["strong, batch 256"][:-2]) < 55, got
    assert "fitted" in got["strong: per-step cost"] and got["seed batch 256"] == "52.0 %"
    for _, rows in tables:
        for row in rows:
            for cell in row:
                if cell.endswith(" %"):
                    float(cell[:-2])
    assert "MODELLED" in md


def test_report_names_a_malformed_file_and_line(runner, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"schema": 1}\nnot json\n')
    res = runner.run([sys.executable, "-m", "analysis.report", str(bad), "-o", str(tmp_path / "o")], timeout=120)
    assert res.returncode == 2
    assert "bad.jsonl:" in res.stderr and "Traceback" not in res.stderr


def test_predict_from_a_published_fabric_alone(runner, tmp_path):
    out = tmp_path / "m.jsonl"
    res = runner.run([sys.executable, "-m", "analysis.predict", "--fabric", "gaudi1-roce", "--collective",
                      "allreduce", "--ranks", "8", "-b", "8", "-e", "1G", "--json", str(out)], timeout=120)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert all("MODELLED" in ln or "modelled" in ln.lower() or ln.startswith("#") for ln in lines)
    rows = [ln.split() for ln in lines if not ln.startswith("#")]
    assert len(rows) == 28  # 8 B .. 1 GiB by x2
    assert all(r[-1] == "MODELLED" for r in rows)
    sizes = [int(r[0]) for r in rows]
    times = [float(r[5]) for r in rows]
    assert sizes[0] == 8 and sizes[-1] == 1 << 30 and times == sorted(times)
    recs = read_jsonl(out)
    assert len(recs) == 28 and all(r["kind"] == "modelled" for r in recs)


def test_scaling_from_a_published_fabric_alone(runner):
    res = runner.run([sys.executable, "-m", "analysis.scaling", "--model", "unet", "--batch", "32,256",
                      "--devices", "1,2,4,8", "--fabric", "nvlink3"], timeout=120)
    assert res.returncode == 0, res.stderr
    rows = [ln.split() for ln in res.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(rows) == 8 and all(r[-1] == "MODELLED" for r in rows)
    assert all(r[-2] == "aaaaaaaa/e" for r in rows)  # no calibration: every term assumed, readiness from FLOPs
    eff = {(int(r[0]), int(r[2])): float(r[-3].rstrip("%")) for r in rows}
    assert eff[(32, 1)] == pytest.approx(100.0) and eff[(256, 1)] == pytest.approx(100.0)
    assert 0 < eff[(32, 8)] <= eff[(256, 8)] <= 100.0


def test_scaling_from_measured_results(runner, measured):
    res = runner.run([sys.executable, "-m", "analysis.scaling", "--model", "gpt2-small", "--batch", "8",
                      "--devices", "1,2,4", "--results", str(measured), "--samples-per-second", "50"],
                     timeout=120)
    assert res.returncode == 0, res.stderr
    assert "shm" in res.stdout
    rows = [ln.split() for ln in res.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(rows) == 3 and all(r[10] == "MODELLED" for r in rows)
    assert "extrapolated beyond the measured 3 ranks" in " ".join(rows[2][11:])
    eff = [float(r[8].rstrip("%")) for r in rows]
    # The fitted algorithm may be a log2(p) one (recursive doubling, binomial), whose cost steps only at
    # powers of two and, with the buckets overlapped, can round to the same efficiency: never higher.
    assert eff[0] == 100.0 and eff[2] <= eff[1] < 100.0


def test_report_reads_modelled_records_beside_measured(runner, measured, tmp_path):
    model = tmp_path / "m.jsonl"
    res = runner.run([sys.executable, "-m", "analysis.predict", "--fabric", "eth-10g", "--ranks", "3",
                      "-b", "8", "-e", "1M", "--json", str(model)], timeout=120)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "rep"
    res = runner.run([sys.executable, "-m", "analysis.report", str(measured), str(model), "-o", str(out)],
                     timeout=300)
    assert res.returncode == 0, res.stderr
    md = (out / "report.md").read_text()
    assert re.search(r"\d+ modelled points read from files", md)
    # Modelled records never enter the fits of measurements.
    assert json.loads(model.read_text().splitlines()[0])["kind"] == "modelled"


def _one_error_line(res, prog, *words):
    """Exit 2 and one stderr line, ``analysis.<prog>: error: ...``, never a traceback."""
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"analysis.{prog}: error: "), res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_report_of_a_one_rank_run(runner, tmp_path):
    """A run without mpirun is one rank: busbw 0 everywhere. The report draws what it can and says why."""
    one = tmp_path / "one.jsonl"
    res = runner.run([sys.executable, "-m", "collectives.allreduce", "-e", "1K", "-n", "3", "--transport", "shm",
                      "--json", str(one)], timeout=120)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "new" / "rep"
    res = runner.run([sys.executable, "-m", "analysis.report", str(one), "-o", str(out)], timeout=300)
    assert res.returncode == 0 and not res.stderr, res.stderr
    assert (out / "time_allreduce.png").exists() and not (out / "busbw_allreduce.png").exists()
    md = (out / "report.md").read_text()
    assert "ran on 1 rank" in md and "busbw_allreduce.png: not drawn" in md


def test_torn_last_line_warns_and_strict_refuses(runner, measured, tmp_path):
    torn = tmp_path / "torn.jsonl"
    torn.write_text(measured.read_text() + '{"schema":"collscale.row/1","kind":"measu')
    last = len(torn.read_text().splitlines())
    cmd = [sys.executable, "-m", "analysis.predict", "--results", str(torn), "--transport", "shm", "-e", "1M"]
    res = runner.run(cmd, timeout=120)
    assert res.returncode == 0 and "MODELLED" in res.stdout, res.stderr
    assert res.stderr.splitlines() == [line for line in res.stderr.splitlines()
                                       if line.startswith(f"analysis.predict: warning: {torn}:{last}: skipped")]
    assert len(res.stderr.splitlines()) == 1
    _one_error_line(runner.run(cmd + ["--strict"], timeout=120), "predict", f"{torn}:{last}", "--strict")


def test_bad_paths_and_numbers_are_one_line(runner, measured, tmp_path):
    binary = tmp_path / "x.bin"
    binary.write_bytes(bytes(range(256)))
    taken = tmp_path / "taken"
    taken.write_text("")
    report = [sys.executable, "-m", "analysis.report"]
    _one_error_line(runner.run(report + [str(tmp_path), "-o", str(tmp_path / "o")]), "report", "is a directory")
    _one_error_line(runner.run(report + [str(binary), "-o", str(tmp_path / "o")]), "report", "binary")
    _one_error_line(runner.run(report + [str(measured), "-o", str(taken)]), "report", "not a directory")
    _one_error_line(runner.run([sys.executable, "-m", "analysis.scaling", "--fabric", "nvlink3", "--devices",
                                "1,,x"]), "scaling", "--devices", "'1,,x'")
    _one_error_line(runner.run([sys.executable, "-m", "analysis.predict", "--fabric", "nvlink3", "-f", "nan"]),
                    "predict", "-f", "finite")
