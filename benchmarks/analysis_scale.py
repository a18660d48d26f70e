"""The analysis at cluster size: seconds and peak memory of each command over a large results file.

    python benchmarks/analysis_scale.py [--rows 1000000] [--keep] [--file PATH] [--commands results,report,predict]

Generates ``--rows`` JSON Lines records of a fixed shape (default 1,000,000;
issue 25): collscale records built by :func:`facts.record.new` with the
per-rank fields of :func:`facts.per_rank.fields` (``slowest_rank``,
``slowest_host``, ``host_time_us``, ``rank_time_us``, ``rank_host``; and
``iter_stats`` for runs of 4 ranks or fewer, as ``--iter-times`` writes
them), 24 sizes (8 B to 64 MiB) per run, runs cycling over 2 transports x 2
collectives x 6 rank counts (2 to 64 ranks, 8 per host), so the per-rank
lists vary from 2 to 64 entries.  One line in the middle is damaged and the
last line is torn (a run killed mid-write): every command must still say
``file:line`` for both.  The file is written in chunks of whole runs, each
run's lines formatted from a template (the shape of ``json.dumps`` of a
real record, checked against it once).

Then it runs each command in a subprocess of its own --
``analysis.results FILE --csv OUT``, ``analysis.report FILE -o DIR`` and
``analysis.predict --results FILE --transport shm --ranks 16`` -- and prints
its wall seconds and peak resident set (the child's ``ru_maxrss`` from
``os.wait4``), that peak over the file's size, and whether each meets the
target: at most 20 s and at most 2x the file's size.  The file and the
outputs are deleted unless ``--keep``; ``--file PATH`` reuses (or writes)
that file.  Prints; asserts nothing (exit 0 unless a command failed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facts import per_rank, record  # noqa: E402  (the script runs from anywhere)

SECONDS = 20.0  # target per command (issue 25)
RSS_OVER_FILE = 2.0
SIZES = [8 << k for k in range(24)]  # 8 B ... 64 MiB
TRANSPORTS = (("shm", 0.4, 9.0), ("mpi", 1.5, 5.0))  # (name, latency us, GB/s per link)
COLLECTIVES = (("allreduce", lambda p: 2 * (p - 1) / p), ("allgather", lambda p: (p - 1) / p))
RANKS = (2, 4, 8, 16, 32, 64)
PER_HOST = 8
SERIES = [(t, c, p) for t in TRANSPORTS for c in COLLECTIVES for p in RANKS]
_SLOT = "\x00{}\x00"
_VARYING = ("run_id", "timestamp", "size_bytes", "count", "time_us", "time_us_min", "time_us_p50", "time_us_p99",
            "time_us_max", "time_us_rank_min", "time_us_rank_max", "slowest_rank", "slowest_host", "algbw_gbs",
            "busbw_gbs", "sweep_point", "host_time_us", "rank_time_us", "iter_stats")  # a point's own values


def _hosts(p: int):
    return {r: f"node{r // PER_HOST:03d}" for r in range(p)}


def _template(transport: str, collective: str, factor: float, p: int, stats: bool):
    """One record of this series as ``json.dumps`` writes it, its varying values as named slots."""
    hosts = _hosts(p)
    slots = {k: _SLOT.format(k) for k in _VARYING}
    rec = record.new(
        "measured", "ok", collective=collective, transport=transport, algo="auto",
        buffer="shared" if transport == "shm" else "host", nranks=p, nhosts=len(set(hosts.values())),
        ranks_per_host=min(p, PER_HOST), oversubscribed=False, dtype="float32", op="sum", in_place=False,
        iters=20, warmup=5, fresh_inputs=False, loop="compiled", aggregation="avg", busbw_factor=factor, wrong=0,
        checks=1, hosts=",".join(f"node{h:03d}:{min(p, PER_HOST)}" for h in range(max(1, p // PER_HOST))),
        sweep_id="scale", transport_version="collscale 0.1.0", collscale_version="0.1.0", python_version="3.11.7",
        numpy_version="2.4.6", mpi4py_version="4.1.2",
        **per_rank.fields([1.0] * p, hosts, [per_rank.rank_iterations([1.0, 2.0], 0, 0, 0)] * p if stats else None))
    rec.pop("iter_us", None)  # samples are what --iter-times=0 leaves out; their summary stays
    rec.update({k: v for k, v in slots.items() if k in rec})
    text = json.dumps(rec, separators=(",", ":"))
    text = text.replace("{", "{{").replace("}", "}}")  # a str.format template: braces doubled, slots single
    for k, v in slots.items():  # "\u0000name\u0000" (a JSON string) -> {name}
        text = text.replace(json.dumps(v), "{" + k + "}")
    return text


def _lists(rng: random.Random, p: int, t: float):
    """(rank times, slowest rank, per-host slowest) of one point: ranks within a few % of the mean."""
    times = [round(t * (1 + 0.05 * rng.random()), 4) for _ in range(p)]
    top = max(range(p), key=times.__getitem__)
    per_host = {}
    for r, v in enumerate(times):
        h = f"node{r // PER_HOST:03d}"
        if h not in per_host or v > per_host[h][1]:
            per_host[h] = [r, v]
    return times, top, per_host


def _run_lines(i: int, rng: random.Random, templates) -> list:
    (transport, lat, gbs), (collective, factor), p = SERIES[i % len(SERIES)]
    tpl = templates[i % len(SERIES)]
    run_id = f"20261206T{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}Z-{i:08x}"
    hosts = _hosts(p)
    slow = 1.0 + 0.2 * rng.random()  # a run's own drift
    out = []
    for k, size in enumerate(SIZES):
        t = (lat * (1 + p.bit_length() / 4) + size * factor(p) / (gbs * 1e3)) * slow * (1 + 0.03 * rng.random())
        times, top, per_host = _lists(rng, p, t)
        algbw = size / t / 1e3
        stats = ""
        if "{iter_stats}" in tpl:
            stats = json.dumps({str(r): {"n": 20, "mean": v, "p50": v, "p95": v * 1.02, "p99": v * 1.04,
                                         "stdev": v * 0.01, "cv": 0.01} for r, v in enumerate(times)},
                               separators=(",", ":"))
        out.append(tpl.format(
            run_id=json.dumps(run_id), timestamp=f'"2026-12-06T{k % 24:02d}:00:00.000+00:00"', size_bytes=size,
            count=size // 4, time_us=repr(t), time_us_min=repr(t * 0.9), time_us_p50=repr(t * 0.98),
            time_us_p99=repr(t * 1.2), time_us_max=repr(t * 1.5), time_us_rank_min=repr(min(times)),
            time_us_rank_max=repr(max(times)), slowest_rank=top, slowest_host=json.dumps(hosts[top]),
            algbw_gbs=repr(algbw), busbw_gbs=repr(algbw * factor(p)), sweep_point=k,
            host_time_us=json.dumps(per_host, separators=(",", ":")),
            rank_time_us=json.dumps(times, separators=(",", ":")), iter_stats=stats))
    return out


def generate(path: Path, rows: int, seed: int = 1) -> int:
    """Write ``rows`` lines to ``path`` (one damaged in the middle, the last torn); returns its size in bytes."""
    rng = random.Random(seed)
    templates = [_template(t, c, f(p), p, p <= 4) for (t, _, _), (c, f), p in SERIES]
    json.loads(templates[0].format(**dict.fromkeys(_VARYING, 0)))  # the template is JSON
    written, run = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < rows:
            chunk = []
            while len(chunk) < 20000 and written + len(chunk) < rows:
                chunk += _run_lines(run, rng, templates)
                run += 1
            chunk = chunk[:rows - written]
            if written <= rows // 2 < written + len(chunk):  # a hand-damaged line in the middle
                chunk[rows // 2 - written] = chunk[rows // 2 - written][:-40] + "}"
            written += len(chunk)
            if written == rows:  # a run killed mid-write: the last line torn, no newline after it
                chunk[-1] = chunk[-1][:len(chunk[-1]) // 2]
                f.write("\n".join(chunk))
            else:
                f.write("\n".join(chunk) + "\n")
    return path.stat().st_size


def measure(cmd, cwd) -> dict:
    """Wall seconds, peak RSS (bytes) and the tail of stderr of one command, in a process of its own."""
    err = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    return {"seconds": took, "rss": usage.ru_maxrss * 1024, "rc": proc.returncode,
            "stderr": err.read().decode("utf-8", "replace")}


def commands(path: Path, out: Path):
    py = [sys.executable, "-m"]
    return {
        "results": py + ["analysis.results", str(path), "--csv", str(out / "points.csv")],
        "report": py + ["analysis.report", str(path), "-o", str(out / "report")],
        "predict": py + ["analysis.predict", "--results", str(path), "--transport", "shm", "--ranks", "16"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="records to generate (default 1,000,000)")
    ap.add_argument("--file", type=Path, help="the results file to use (written if it does not exist)")
    ap.add_argument("--keep", action="store_true", help="keep the file and the commands' outputs")
    ap.add_argument("--commands", default="results,report,predict", help="which commands to time")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="analysis_scale."))
    path = args.file or work / "results.jsonl"
    try:
        if not path.exists():
            t0 = time.perf_counter()
            size = generate(path, args.rows)
            print(f"wrote {args.rows:,} rows, {size / 1e9:.3f} GB to {path} in {time.perf_counter() - t0:.1f} s")
        size = path.stat().st_size
        print(f"file: {path} ({size / 1e9:.3f} GB); targets: <= {SECONDS:g} s and <= {RSS_OVER_FILE:g}x the file")
        print(f"{'command':<10} {'seconds':>8} {'peak RSS':>10} {'RSS/file':>9}  verdict")
        failed = 0
        for name, cmd in commands(path, work).items():
            if name not in args.commands.split(","):
                continue
            m = measure(cmd, ROOT)
            ratio = m["rss"] / size
            ok = m["seconds"] <= SECONDS and ratio <= RSS_OVER_FILE
            verdict = "PASS" if ok else "MISS"
            if m["rc"] != 0:
                verdict, failed = f"FAILED (exit {m['rc']}): {m['stderr'].strip()[-400:]}", failed + 1
            print(f"{name:<10} {m['seconds']:8.1f} {m['rss'] / 1e9:8.2f} GB {ratio:8.2f}x  {verdict}")
            for line in m["stderr"].splitlines():
                if "warning" in line:
                    print(f"           {line[:200]}")
        return 1 if failed else 0
    finally:
        if args.keep:
            print(f"kept {work}" + (f" and {path}" if args.file else ""))
        else:
            shutil.rmtree(work, ignore_errors=True)
            if args.file is None:
                path.unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
