"""The report's plots drawn in a process of their own (analysis.plot_worker) are the plots drawn in the report's."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from analysis import plot_worker, report
from facts import record

pytest.importorskip("matplotlib")


def _results(path):
    recs = []
    for transport in ("shm", "mpi"):
        for p in (2, 3):
            for k in range(3, 20):
                size = 1 << k
                t = 2.0 + size / (3e3 if transport == "shm" else 1e3)
                recs.append(record.new("measured", "ok", run_id="r1", collective="allreduce", transport=transport,
                                       nranks=p, size_bytes=size, dtype="float32", op="sum", in_place=False,
                                       time_us=t, algbw_gbs=size / t / 1e3, busbw_gbs=size / t / 1e3,
                                       busbw_factor=1.0))
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return path


def _drawn(df, outdir, min_rows, monkeypatch):
    monkeypatch.setattr(plot_worker, "MIN_ROWS", min_rows)
    outdir.mkdir()
    with plot_worker.Drawing(df, outdir) as drawing:
        apart = drawing._proc is not None
        drawing.scaling({})
        made, notes = drawing.result()
    return apart, [p.relative_to(outdir) for p in made], notes


def test_plots_drawn_apart_are_the_plots_drawn_here(tmp_path, monkeypatch):
    df = _points()
    one_rank = df.assign(nranks=1, transport="mpi", busbw_gbs=0.0)  # no bus bandwidth: a note says so
    df = pd.concat([df, one_rank], ignore_index=True)
    here = _drawn(df, tmp_path / "here", 1 << 62, monkeypatch)
    apart = _drawn(df, tmp_path / "apart", 0, monkeypatch)
    assert apart[0] and not here[0]
    assert apart[1:] == here[1:] and len(here[1]) == 2 and here[2]
    for name in here[1]:
        assert (tmp_path / "apart" / name).stat().st_size > 0


def _points():
    return pd.DataFrame({"kind": ["measured"] * 4, "collective": ["allreduce"] * 4, "transport": ["shm"] * 4,
                         "nranks": [2] * 4, "size_bytes": [8, 16, 32, 64], "time_us": [1.0, 1.1, 1.2, 1.3],
                         "busbw_gbs": [0.1, 0.2, 0.3, 0.4]}).astype({"kind": object, "collective": object,
                                                                     "transport": object})


def test_a_process_that_fails_leaves_the_plots_to_the_report(tmp_path, monkeypatch):
    monkeypatch.setattr(plot_worker, "MIN_ROWS", 0)
    monkeypatch.setattr(plot_worker.sys, "executable", "/bin/false")
    with plot_worker.Drawing(_points(), tmp_path) as drawing:
        assert drawing._proc is not None
        drawing.scaling({})
        made, notes = drawing.result()
    assert [p.name for p in made] == ["busbw_allreduce.png", "time_allreduce.png"] and notes == []


def test_a_process_that_never_answers_is_given_up(tmp_path, monkeypatch):
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\nexec sleep 60\n")
    silent.chmod(0o755)
    monkeypatch.setattr(plot_worker, "MIN_ROWS", 0)
    monkeypatch.setattr(plot_worker, "GRACE", 0.5)
    monkeypatch.setattr(plot_worker.sys, "executable", str(silent))
    start = time.monotonic()
    with plot_worker.Drawing(_points(), tmp_path) as drawing:
        proc = drawing._proc
        drawing.scaling({})
        made, _ = drawing.result()
    assert time.monotonic() - start < 30 and proc.poll() is not None
    assert [p.name for p in made] == ["busbw_allreduce.png", "time_allreduce.png"]


def test_the_process_does_not_outlive_an_error(tmp_path):
    df = _points()
    with pytest.raises(RuntimeError):
        with plot_worker.Drawing(df, tmp_path, apart=True) as drawing:
            drawing._start()
            proc = drawing._proc
            raise RuntimeError("the report failed")
    assert proc.poll() is not None


def test_columns_travel_whole():
    df = pd.DataFrame({"f": [1.5, math.nan, -0.0, 1e300], "i": np.array([1, 2, 3, 1 << 40]),
                       "b": [True, False, True, True], "s": pd.Series(["shm", None, "é,\n\"", "shm"], dtype=object)})
    for mixed in ([1, "a", None, 2.5], [1, True, "a", None], ["a", float("nan"), None, "b"]):
        with pytest.raises(ValueError):  # 1 and True, NaN and None would arrive as one: drawn in the report
            plot_worker.message("collectives", df.assign(m=pd.Series(mixed, dtype=object)))
    import io
    source = io.BytesIO(plot_worker.message("collectives", df) + plot_worker.message("scaling", {"unet": [{"a": 1}]}))
    what, got = plot_worker.read(source)
    assert what == "collectives"
    assert plot_worker.read(source) == ("scaling", {"unet": [{"a": 1}]}) and plot_worker.read(source) is None
    pd.testing.assert_frame_equal(got, df, check_dtype=True)


def test_the_fields_the_report_does_not_keep_change_nothing_in_it(tmp_path, monkeypatch):
    """report.UNREAD is left out as results are read; read or not, they must not change a line of the report."""
    monkeypatch.setattr(report, "UNREAD", ())
    monkeypatch.setattr(plot_worker.Drawing, "result", lambda self: ([], []))
    plain = _results(tmp_path / "plain.jsonl")
    odd = tmp_path / "odd.jsonl"
    recs = [json.loads(line) for line in plain.read_text().splitlines()]
    for i, rec in enumerate(recs):
        rec.update({k: (f"x{i}" if k.endswith(("_version", "_impl", "level", "aggregation", "host")) else
                        (i % 2 == 0 if k == "fresh_inputs" else 1000.0 + i)) for k in report.UNREAD})
    odd.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    a = report.build([str(plain)], str(tmp_path / "a"))["report.md"].read_text()
    b = report.build([str(odd)], str(tmp_path / "b"))["report.md"].read_text()
    assert a.replace("plain.jsonl", "odd.jsonl") == b


_KILLED_REPORT = """
import os, signal, sys, time
import pandas as pd
from analysis import plot_worker
plot_worker.MIN_ROWS = 0
df = pd.DataFrame({"kind": ["measured"] * 4, "collective": ["allreduce"] * 4, "transport": ["shm"] * 4,
                   "nranks": [2] * 4, "size_bytes": [8, 16, 32, 64], "time_us": [1.0, 1.1, 1.2, 1.3],
                   "busbw_gbs": [0.1, 0.2, 0.3, 0.4]})
df = df.astype({"kind": object, "collective": object, "transport": object})
drawing = plot_worker.Drawing(df, sys.argv[1])
print(drawing._proc.pid, flush=True)
while not drawing._queue.empty():
    time.sleep(0.01)
time.sleep(0.2)  # the frame in the pipe: a process that outlived the report would draw it
os.kill(os.getpid(), signal.SIGKILL)  # no way out runs: the process must end all the same
"""


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_the_process_ends_with_a_killed_report(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _KILLED_REPORT, str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _running(pid)
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive
    assert not list(tmp_path.glob("*.png"))  # killed as it started, not when it had drawn and found no report
