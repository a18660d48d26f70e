"""The default sweep's MPI thread level and collective selection against the forced levels and a C loop.

    python benchmarks/thread_level.py                 # 7 alternating repetitions, 2 ranks, allreduce
    python benchmarks/thread_level.py --reps 9 --collectives allreduce,broadcast,reduce

Per repetition, in an order that rotates: the plain sweep ``mpirun -n 2
python -m collectives.allreduce --transport mpi -b 8 -e 64M`` (the thread
level left to auto: with MPICH, FUNNELED and its intra-node selection
re-routed above 256 KiB, ground.mpich_tuning), the same sweep with
``--thread-level funneled`` and with ``--thread-level multiple`` (each the
library's own selection), and a C loop of OSU's kind
(benchmarks/latency_floor.py's source, a standalone program at
MPI_THREAD_FUNNELED with the library's defaults: what an OSU user measures)
at 8 B, 1 MiB and 16 MiB.  Each figure is the median over repetitions of
the out-of-place time (the table's time: the loop's average).

Targets (issue 25), allreduce at 2 ranks: 8 B at most 1.3x the C loop, and
at 1 MiB and 16 MiB at least 0.98x the better of the two forced levels
(as a bandwidth: the better forced time over the default's).  Other
collectives (``--collectives``) are printed for information.  Prints;
asserts nothing.  Timing measurements: run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.latency_floor import C_SOURCE, iterations  # noqa: E402

SIZES = (8, 1 << 20, 16 << 20)
VARIANTS = ("default (auto)", "funneled", "multiple")
TARGET_SMALL, TARGET_LARGE = 1.3, 0.98
C_NAME = {"allreduce": "allreduce", "broadcast": "broadcast"}  # the C loop's collectives


def _mpirun():
    beside = Path(sys.executable).parent / "mpirun"
    return str(beside) if beside.exists() else "mpirun"


def _sweep(coll: str, variant: str, out: Path) -> dict:
    """{size: out-of-place time (us)} of one plain sweep."""
    out.unlink(missing_ok=True)
    cmd = [_mpirun(), "-n", "2", sys.executable, "-m", f"collectives.{coll}", "--transport", "mpi", "-b", "8",
           "-e", "64M", "--json", str(out)]
    if variant != "default (auto)":
        cmd += ["--thread-level", variant]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"thread_level: {' '.join(cmd[3:])} failed ({res.returncode}): {res.stderr[-1500:]}")
    got, placed = {}, {}
    for line in out.read_text().splitlines():
        r = json.loads(line)
        if r.get("status") == "ok" and r.get("size_bytes") in SIZES:
            # out of place where the collective has both (allreduce), else its one form (broadcast: in place)
            if r["size_bytes"] not in placed or placed[r["size_bytes"]] and not r.get("in_place"):
                got[r["size_bytes"]], placed[r["size_bytes"]] = r["time_us"], bool(r.get("in_place"))
            got["level"] = r.get("thread_level")
    got["selection"] = "collective selection" in res.stdout
    return got


def _c_loop(binary: str, coll: str) -> dict:
    pairs = [str(x) for s in SIZES for x in (s, iterations(s, 0.05))]
    res = subprocess.run([_mpirun(), "-n", "2", binary, "funneled", coll, *pairs], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"thread_level: the C loop failed ({res.returncode}): {res.stderr[-1500:]}")
    return {r["size"]: r["time_us"] for r in (json.loads(x) for x in res.stdout.splitlines() if x.startswith("{"))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--collectives", default="allreduce")
    a = ap.parse_args(argv)
    from ground.native_build import compiler_env
    from transports.native.mpi import mpi_compiler

    colls = [c.strip() for c in a.collectives.split(",") if c.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        src, binary = Path(tmp, "osu_like.c"), str(Path(tmp, "osu_like"))
        src.write_text(C_SOURCE)
        subprocess.run([*mpi_compiler(), "-O2", "-o", binary, str(src)], check=True, env=compiler_env())
        for coll in colls:
            runs = {v: [] for v in VARIANTS + ("C loop (FUNNELED)",)}
            for rep in range(a.reps):
                order = list(runs)
                for k in range(len(order)):
                    v = order[(rep + k) % len(order)]
                    if v.startswith("C loop"):
                        if coll in C_NAME:
                            runs[v].append(_c_loop(binary, C_NAME[coll]))
                    else:
                        runs[v].append(_sweep(coll, v, Path(tmp, "r.jsonl")))
                print(f"# {coll}: repetition {rep + 1} of {a.reps} done", flush=True)
            _report(coll, runs, a.reps)
    return 0


def _med(rows, size):
    vals = [r[size] for r in rows if size in r]
    return statistics.median(vals) if vals else None


def _report(coll: str, runs: dict, reps: int) -> None:
    print(f"\n# {coll} at 2 ranks, median time (us; out of place where there is both) over {reps} alternating "
          "repetitions")
    print(f"#  {'variant':<20} {'level':>9} " + " ".join(f"{s:>12}" for s in ("8 B", "1 MiB", "16 MiB")))
    for v, rows in runs.items():
        if not rows:
            continue
        level = rows[0].get("level", "funneled" if v.startswith("C") else "?")
        sel = " (MPICH selection re-routed)" if rows[0].get("selection") else ""
        print(f"   {v:<20} {str(level):>9} " + " ".join(
            f"{_med(rows, s):12.2f}" if _med(rows, s) is not None else f"{'-':>12}" for s in SIZES) + sel)
    default = runs["default (auto)"]
    c = runs["C loop (FUNNELED)"]
    if c and coll == "allreduce":
        ratio = _med(default, 8) / _med(c, 8)  # noqa: the C loop is allreduce out of place too
        print(f"# target: 8 B default / C loop = {ratio:.2f}x (<= {TARGET_SMALL}: "
              f"{'MET' if ratio <= TARGET_SMALL else 'MISSED'})")
    for s, name in ((1 << 20, "1 MiB"), (16 << 20, "16 MiB")):
        forced = [m for m in (_med(runs["funneled"], s), _med(runs["multiple"], s)) if m is not None]
        if not forced or _med(default, s) is None:
            print(f"# {name}: no figure to compare")
            continue
        best = min(forced)
        ratio = best / _med(default, s)  # bandwidth of the default over the better forced level's
        tag = (f"{'MET' if ratio >= TARGET_LARGE else 'MISSED'}" if coll == "allreduce" else "for information")
        print(f"# {name}: default bandwidth / the better forced level's = {ratio:.2f}x (>= {TARGET_LARGE}: {tag})")


if __name__ == "__main__":
    raise SystemExit(main())
