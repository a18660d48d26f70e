"""Latency floor: collscale's small-message times against a C loop of OSU's kind, as ratios.

Run it without mpirun; it launches the jobs itself::

    python benchmarks/latency_floor.py                                  # 2 ranks, allreduce, 8 B 1 KiB 64 KiB 1 MiB
    python benchmarks/latency_floor.py --collectives allreduce,broadcast,barrier,pingpong --ranks 2,4
    python benchmarks/latency_floor.py --thread-levels single,funneled,multiple --sizes 8,1K,1M,16M

Each size runs at the MPI thread level collscale's ``auto`` picks for a
sweep ending there (``-e SIZE``: FUNNELED up to 256 KiB with a core per
rank, else MULTIPLE).  For every rank count and repetition (``--reps``), in
an order that rotates, it runs: the C reference (built from the tiny source
below with the mpicc of the MPI mpi4py uses) as a standalone program at that
level and at MPI_THREAD_SINGLE (not when oversubscribed, where SINGLE's
busy-polling takes milliseconds a call), and one Python job per level that
measures each size in rotating order: the same C loop called in the job on
its communicator ("C in-job"), a raw mpi4py loop, collscale mpi with the
Python loop and compiled, collscale shm with the Python loop and compiled
(``collectives.cli.run`` in-process, ``-n`` fixed, validation off: it runs
outside the timed loop anyway).

Every loop stamps each iteration (the C loops with clock_gettime, a few
tens of ns a read; OSU reads the clock once per loop): time = the loop's total / its
count (the table's ``time``; OSU's average), p50 = the median iteration,
each averaged over ranks (``-a 1``).  Each ratio is the median over
repetitions of (variant / "C in-job" in the same job and repetition), so
drift of a shared machine cancels within each pair; the standalone
programs' columns show that the in-job loop measures what a C program does.

With ``--thread-levels`` the C loop, the raw mpi4py loop and collscale mpi
(compiled and Python) are measured at each listed level instead (the thread
level is fixed at MPI_Init, so one job per level).

Targets (issue 13): collscale mpi compiled <= 1.3x the C loop at 8 B and
1 KiB, 2 ranks; shm compiled <= 1.0 us for 8 B allreduce at 2 ranks, and no
slower than the C loop over MPI at any size up to 64 KiB; no loss at
>= 1 MiB (compiled >= 0.98x the Python loop's busbw, i.e. time <= 1/0.98).
It prints the ratios and whether each target is met; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ground.sizes import parse_size  # noqa: E402

C_SOURCE = r"""
/* A C reference loop of OSU's kind (warm-up, barrier, timed loop), one clock read per iteration.
 * Built twice: a program (main) and, with -DREF_LIBRARY, a shared object whose ref_loop the
 * Python job calls on its own communicator between its other loops. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
/* out: this rank's [time per iteration, median iteration] in us (pingpong: half a round trip). */
int ref_loop(const MPI_Comm *commp, const char *coll, long bytes, long iters, double *out) {
    MPI_Comm comm = *commp;
    int rank;
    MPI_Comm_rank(comm, &rank);
    long n = bytes / 4 > 0 ? bytes / 4 : 1;
    float *x = calloc(n, 4), *y = calloc(n, 4);
    double *t = malloc((iters + 1) * sizeof(double)), *d = malloc(iters * sizeof(double));
    int peer = 1 - rank, ping = !strcmp(coll, "pingpong");
    for (int pass = 0; pass < 2; pass++) { /* pass 0: warm-up, iters/10 */
        long count = pass ? iters : iters / 10 + 1;
        MPI_Barrier(comm);
        t[0] = now();
        for (long i = 1; i <= count; i++) {
            if (!strcmp(coll, "allreduce")) MPI_Allreduce(x, y, n, MPI_FLOAT, MPI_SUM, comm);
            else if (!strcmp(coll, "broadcast")) MPI_Bcast(y, n, MPI_FLOAT, 0, comm);
            else if (!strcmp(coll, "barrier")) MPI_Barrier(comm);
            else if (rank == 0) { MPI_Send(x, n, MPI_FLOAT, peer, 1, comm);
                                  MPI_Recv(y, n, MPI_FLOAT, peer, 1, comm, MPI_STATUS_IGNORE); }
            else { MPI_Recv(y, n, MPI_FLOAT, peer, 1, comm, MPI_STATUS_IGNORE);
                   MPI_Send(x, n, MPI_FLOAT, peer, 1, comm); }
            if (pass) t[i] = now();
        }
    }
    for (long i = 0; i < iters; i++) d[i] = (t[i + 1] - t[i]) * 1e6 / (ping ? 2 : 1);
    qsort(d, iters, sizeof(double), cmp);
    out[0] = (t[iters] - t[0]) * 1e6 / iters / (ping ? 2 : 1);
    out[1] = d[iters / 2];
    free(x); free(y); free(t); free(d);
    return 0;
}
#ifndef REF_LIBRARY
int main(int argc, char **argv) {
    const char *names[] = {"single", "funneled", "serialized", "multiple"};
    int levels[] = {MPI_THREAD_SINGLE, MPI_THREAD_FUNNELED, MPI_THREAD_SERIALIZED, MPI_THREAD_MULTIPLE};
    int want = MPI_THREAD_SINGLE, got, rank, size;
    for (int k = 0; k < 4; k++) if (!strcmp(argv[1], names[k])) want = levels[k];
    MPI_Init_thread(&argc, &argv, want, &got);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm world = MPI_COMM_WORLD;
    for (int a = 3; a + 1 < argc; a += 2) {
        long bytes = atol(argv[a]), iters = atol(argv[a + 1]);
        double mine[2], sum[2];
        ref_loop(&world, argv[2], bytes, iters, mine);
        MPI_Reduce(mine, sum, 2, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        if (!rank) printf("{\"size\": %ld, \"iters\": %ld, \"time_us\": %.6f, \"p50_us\": %.6f, \"level\": \"%s\"}\n",
                          bytes, iters, sum[0] / size, sum[1] / size, names[got]);
    }
    MPI_Finalize();
    return 0;
}
#endif
"""

VARIANTS = ("C in-job", "raw mpi4py", "mpi python", "mpi compiled", "shm python", "shm compiled")
LEVEL_VARIANTS = ("C in-job", "raw mpi4py", "mpi python", "mpi compiled")


def iterations(nbytes: int, seconds: float) -> int:
    """About ``seconds`` of the slowest variant (a Python loop at ~3 us plus ~1 GB/s)."""
    estimate = 3e-6 + nbytes / 1e9
    return int(max(50, min(20000, seconds / estimate)))


# -- the Python job (under mpirun) -----------------------------------------------------------

def _raw(comm, coll: str, nbytes: int, iters: int):
    import numpy as np
    from mpi4py import MPI

    x = np.ones(max(1, nbytes // 4), np.float32)
    y = np.empty_like(x)
    sx, sy = [x, MPI.FLOAT], [y, MPI.FLOAT]
    peer = 1 - comm.rank
    if coll == "allreduce":
        def call():
            comm.Allreduce(sx, sy, MPI.SUM)
    elif coll == "broadcast":
        def call():
            comm.Bcast(sy, 0)
    elif coll == "barrier":
        call = comm.Barrier
    elif comm.rank == 0:
        def call():
            comm.Send(sx, peer, 1)
            comm.Recv(sy, peer, 1)
    else:
        def call():
            comm.Recv(sy, peer, 1)
            comm.Send(sx, peer, 1)
    for _ in range(iters // 10 + 1):
        call()
    comm.Barrier()
    clock, stamps = time.perf_counter, [0.0] * (iters + 1)
    stamps[0] = clock()
    for i in range(1, iters + 1):
        call()
        stamps[i] = clock()
    half = 2 if coll == "pingpong" else 1
    per = sorted((b - a) * 1e6 / half for a, b in zip(stamps, stamps[1:]))
    mine = ((stamps[-1] - stamps[0]) * 1e6 / iters / half, per[iters // 2])
    both = comm.allgather(mine)
    return [sum(v[k] for v in both) / len(both) for k in (0, 1)]


def _c_loop(path: str, comm, coll: str, nbytes: int, iters: int):
    """The C reference loop, in this job, on this job's communicator (averaged over ranks)."""
    import ctypes

    from mpi4py import MPI

    fn = ctypes.CDLL(path).ref_loop
    fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_long, ctypes.c_long, ctypes.c_void_p]
    out = (ctypes.c_double * 2)()
    fn(MPI._addressof(comm), coll.encode(), nbytes, iters, out)
    both = comm.allgather((out[0], out[1]))
    return [sum(v[k] for v in both) / len(both) for k in (0, 1)]


def _ours(comm, coll: str, nbytes: int, iters: int, transport: str, loop: str):
    from collectives import cli

    place = ["--in-place"] if coll == "broadcast" else ["--out-of-place"]
    sizes = [] if coll == "barrier" else ["-b", str(nbytes), "-e", str(nbytes)]
    recs = cli.run(coll, comm, ["--transport", transport, "--loop", loop, *sizes, "-n", str(iters),
                                "-w", str(iters // 10 + 1), "-c", "0", *place])
    rec = recs[0]
    assert rec["loop"] == loop, (rec["loop"], loop, rec.get("reason"))
    return [rec["time_us"], rec["time_us_p50"]]


def worker(args) -> int:
    from ground.comm import world

    comm, _ = world(args.thread_level)  # before mpi4py.MPI is imported: MPI_Init takes the level
    from mpi4py import MPI

    mpi = comm.mpi
    level = ("single", "funneled", "serialized", "multiple")[MPI.Query_thread()]
    variants = LEVEL_VARIANTS if args.levels_only else VARIANTS
    for coll in args.collectives.split(","):
        for nbytes in _sizes(args, coll):
            iters = iterations(nbytes, args.seconds)
            for k in range(len(variants)):
                name = variants[(args.rep + k) % len(variants)]  # rotate: no variant always first
                if name == "C in-job":
                    mean, p50 = _c_loop(args.ref, mpi, coll, nbytes, iters)
                elif name == "raw mpi4py":
                    mean, p50 = _raw(mpi, coll, nbytes, iters)
                else:
                    transport, loop = name.split()
                    mean, p50 = _ours(comm, coll, nbytes, iters, transport, loop)
                if comm.rank == 0:
                    print(json.dumps({"collective": coll, "size": nbytes, "variant": name, "iters": iters,
                                      "time_us": mean, "p50_us": p50, "level": level}), flush=True)
    return 0


# -- the driver ---------------------------------------------------------------------------------

def _sizes(args, coll: str):
    return [0] if coll == "barrier" else [parse_size(s) for s in args.sizes.split(",")]


def _mpirun(args):
    """The launcher words: --mpirun (e.g. a site MPI's ``mpirun --oversubscribe``), else the mpirun
    beside this Python (the mpich wheel's), else the first on PATH."""
    if args.mpirun:
        return shlex.split(args.mpirun)
    beside = Path(sys.executable).parent / "mpirun"
    return [str(beside) if beside.exists() else "mpirun"]


def _groups(args, n: int, oversubscribed: bool):
    """[(level, collectives, sizes)]: one worker job each.  By default every size runs at the level
    collscale's auto picks for a sweep ending there (``-e SIZE``); --thread-levels: every level."""
    from ground.comm import choose_thread_level

    colls = [c for c in args.collectives.split(",") if not (c == "pingpong" and n != 2)]
    if args.thread_levels:
        return [(lv, colls, None) for lv in args.thread_levels.split(",")]
    by_level = {}
    for size in [parse_size(s) for s in args.sizes.split(",")]:
        by_level.setdefault(choose_thread_level(None, oversubscribed, size), []).append(size)
    return [(lv, colls, sizes) for lv, sizes in by_level.items()]


def _jobs(binary: str, args, n: int, rep: int, groups, oversubscribed: bool):
    """(label, level, command) of one repetition's jobs at ``n`` ranks (no SINGLE C program when
    oversubscribed: its busy-polling takes milliseconds a call there)."""
    jobs = []
    for level, colls, sizes in groups:
        size_arg = ",".join(map(str, sizes)) if sizes else args.sizes
        for coll in colls:
            todo = [0] if coll == "barrier" else [parse_size(x) for x in size_arg.split(",")]
            pairs = [str(x) for sz in todo for x in (sz, iterations(sz, args.seconds))]
            extra = [] if args.thread_levels or oversubscribed or level == "single" else ["single"]
            for lv in dict.fromkeys([level] + extra):
                jobs.append(("C program", lv, [*_mpirun(args), "-n", str(n), binary, lv, coll, *pairs]))
        cmd = [*_mpirun(args), "-n", str(n), sys.executable, __file__, "--worker", "--rep", str(rep),
               "--ref", binary + ".so", "--collectives", ",".join(colls), "--sizes", size_arg,
               "--seconds", str(args.seconds), "--thread-level", level]
        jobs.append(("python", level, cmd + (["--levels-only"] if args.thread_levels else [])))
    return jobs


def _run(cmd, label: str):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"latency_floor: {label} failed ({res.returncode}): {res.stderr[-2000:]}")
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", default="2")
    ap.add_argument("--sizes", default="8,1K,64K,1M")
    ap.add_argument("--collectives", default="allreduce")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=0.05, help="timed seconds per loop (about)")
    ap.add_argument("--thread-levels", default="", help="compare these MPI thread levels instead")
    ap.add_argument("--json", help="append the summary rows as JSON lines")
    ap.add_argument("--mpirun", help="launcher command, e.g. 'mpirun.openmpi --oversubscribe' for a site MPI "
                    "(default: the mpirun beside this Python, else the first on PATH)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--levels-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rep", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--thread-level", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ref", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    from ground.native_build import compiler_env
    from transports.native.mpi import mpi_compiler
    from ground.env import affinity, usable_cores

    with tempfile.TemporaryDirectory() as tmp:
        src, binary = Path(tmp, "osu_like.c"), str(Path(tmp, "osu_like"))
        src.write_text(C_SOURCE)
        for flags, out in (([], binary), (["-DREF_LIBRARY", "-fPIC", "-shared"], binary + ".so")):
            subprocess.run([*mpi_compiler(), "-O2", *flags, "-o", out, str(src)], check=True, env=compiler_env())
        cores = usable_cores([affinity()])
        for n in [int(x) for x in args.ranks.split(",")]:
            results = []
            groups = _groups(args, n, n > cores)
            for rep in range(args.reps):
                jobs = _jobs(binary, args, n, rep, groups, n > cores)
                for k in range(len(jobs)):
                    label, level, cmd = jobs[(rep + k) % len(jobs)]
                    for row in _run(cmd, f"{label} at {level}"):
                        coll = row.get("collective") or cmd[5]
                        results.append(dict(row, collective=coll, variant=row.get("variant", label), rep=rep))
            _report(results, n, n > cores, args)
    return 0


COLUMNS = ("C program", "C single", "C in-job", "raw mpi4py", "mpi python", "mpi compiled", "shm python",
           "shm compiled")
LEVEL_COLUMNS = ("C program", "C in-job", "raw mpi4py", "mpi python", "mpi compiled")


def _cell(rows, ref_by_rep, key="time_us"):
    """(median of ``key``, median over repetitions of ``key`` / the reference's)."""
    if not rows:
        return None, None
    ratios = [r[key] / ref_by_rep[r["rep"]][key] for r in rows if r["rep"] in ref_by_rep]
    return statistics.median(r[key] for r in rows), (statistics.median(ratios) if ratios else None)


def _report(results, n: int, oversubscribed: bool, args) -> None:
    """Per collective: rows (size, thread level), time (us) with the median ratio to the C loop run in
    the same job; then p50; then the targets."""
    from mpi4py import MPI  # the library's name only; MPI is not initialised here

    lib = " ".join(MPI.Get_library_version().splitlines()[0].replace("Version:", "").split())
    summary = []
    for coll in dict.fromkeys(r["collective"] for r in results):
        rows = [r for r in results if r["collective"] == coll]
        keys = sorted({(r["size"], r["level"]) for r in rows if r["variant"] != "C program" or
                       any(q["level"] == r["level"] and q["variant"] != "C program" for q in rows)})
        rows_are = ("each at the thread levels given" if args.thread_levels else
                    "rows at the thread level collscale's auto picks for a sweep ending at that size")
        print(f"# latency floor: {coll} at {n} ranks{' (OVERSUBSCRIBED)' if oversubscribed else ''}, {lib}; "
              f"medians of {args.reps} repetitions; {rows_are}")
        for key, title in (("time_us", "time (us): loop total / iterations"), ("p50_us", "p50 (us)")):
            print(f"# {title}; (x): median over repetitions of the ratio to 'C in-job', the C loop run in "
                  "the same job (same level, next to it in time); 'C program': that loop as a standalone program")
            columns = LEVEL_COLUMNS if args.thread_levels else COLUMNS
            print("#" + f"{'size':>9} {'level':>9}" + "".join(f"{c:>17}" for c in columns))
            for size, level in keys:
                here = [r for r in rows if r["size"] == size]
                ref = {r["rep"]: r for r in here if r["variant"] == "C in-job" and r["level"] == level}
                cells, entry = [], {"benchmark": "latency_floor", "kind": "measured", "collective": coll,
                                    "nranks": n, "size_bytes": size, "level": level, "library": lib,
                                    "reps": args.reps, "stat": key}
                for col in columns:
                    name, lv = ("C program", "single") if col == "C single" else (col, level)
                    value, ratio = _cell([r for r in here if r["variant"] == name and r["level"] == lv], ref, key)
                    entry[col] = {"value": value, "ratio": ratio}
                    cells.append("-" if value is None else f"{value:.2f} ({ratio:.2f}x)" if ratio else f"{value:.2f}")
                print(f"{size:>10} {level:>9}" + "".join(f"{c:>17}" for c in cells))
                summary.append(entry)
    if not args.thread_levels:
        for stat in ("time_us", "p50_us"):
            for line in _targets([e for e in summary if e["stat"] == stat], n, stat):
                print(line)
    if args.json:
        with open(args.json, "a") as f:
            for row in summary:
                f.write(json.dumps(row) + "\n")


def _targets(rows, n: int, stat: str):
    """Issue 13's targets, each with the figure it is judged on."""
    lines = [f"# targets (issue 13), judged on {'the time column (mean)' if stat == 'time_us' else 'p50'}:"]

    def judge(text, value, ok):
        if value is not None:
            lines.append(f"#   {text}: {value:.2f} -> {'met' if ok(value) else 'NOT met'}")
    for e in rows:
        coll, size, lv = e["collective"], e["size_bytes"], e["level"]
        ratio = {c: e[c]["ratio"] for c in COLUMNS}
        value = {c: e[c]["value"] for c in COLUMNS}
        if n == 2 and size in (8, 1024):
            judge(f"{coll} {size} B ({lv}): mpi compiled / C loop <= 1.30", ratio["mpi compiled"],
                  lambda v: v <= 1.3)
        if n == 2 and coll == "allreduce" and size == 8:
            judge("allreduce 8 B: shm compiled (us) <= 1.0", value["shm compiled"], lambda v: v <= 1.0)
        if size <= 64 * 1024:
            judge(f"{coll} {size} B ({lv}): shm compiled / C loop over MPI <= 1.00", ratio["shm compiled"],
                  lambda v: v <= 1.0)
        elif size >= 1 << 20:
            for t in ("mpi", "shm"):
                c, p = value[f"{t} compiled"], value[f"{t} python"]
                if c and p:
                    judge(f"{coll} {size} B ({lv}): {t} compiled busbw / python busbw >= 0.98", p / c,
                          lambda v: v >= 0.98)
    return lines


if __name__ == "__main__":
    sys.exit(main())
