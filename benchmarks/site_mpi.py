"""A site MPI end to end: every collective over ``--transport mpi --loop compiled``, then the latency floor.

Run it with the Python whose mpi4py was built against the site MPI, naming
that MPI's launcher (it launches the jobs itself)::

    MPICC=mpicc.openmpi pip install --no-binary mpi4py mpi4py   # in a venv of its own
    pip install --no-deps -e .                                   # collscale beside it
    python benchmarks/site_mpi.py --mpirun "mpirun.openmpi --oversubscribe" --ranks 2,3

For every collective and rank count it runs the real CLI (``-b 8 -e 64K``,
validation on) and checks the launch: exit 0, every record from the compiled
loop, at the rank count asked for, 0 wrong elements.  Any failure is exit 1
with the command and what was wrong.  Then, unless ``--no-floor``, it runs
:mod:`benchmarks.latency_floor` at 2 ranks, 8 B, over the same launcher and
prints collscale's compiled loop against a C loop over the same MPI, with
the target (<= 1.3x); that figure is printed, not asserted (a shared machine
is noisy).  ``.ci/site_mpi`` runs this against Debian's Open MPI.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facts import spec as specs  # noqa: E402

TIMEOUT_S = 180


def _launcher(text: str):
    words = shlex.split(text)
    if not words or not (shutil.which(words[0]) or os.path.exists(words[0])):
        raise SystemExit(f"site_mpi: launcher {text!r} not found")
    return words


def check_collective(mpirun, n: int, collective: str, out: Path):
    """Problems with one launch (empty: all good)."""
    sized = getattr(specs.get(collective), "sized", True)
    exact = specs.get(collective).exact_ranks
    if exact is not None and exact != n:
        return None  # pingpong: 2 ranks only
    cmd = [*mpirun, "-n", str(n), sys.executable, "-m", f"collectives.{collective}", "--transport", "mpi",
           "--loop", "compiled", "--json", str(out)] + (["-b", "8", "-e", "64K"] if sized else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=ROOT, env=env,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return [f"{' '.join(cmd)}: no end after {TIMEOUT_S} s"]
    problems = []
    if res.returncode != 0:
        ours = [ln for ln in res.stderr.splitlines() if ln.startswith("collscale")]
        problems.append(f"exit {res.returncode}: " + (" | ".join(dict.fromkeys(ours))[:1200] if ours else
                                                     res.stderr.strip()[-1200:]))
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    rows = [r for r in rows if r["status"] != "unsupported"]  # broadcast out of place: MPI has none
    if not rows:
        problems.append("no records")
    loops = {r.get("loop") for r in rows}
    if loops - {"compiled"}:
        note = [ln for ln in res.stdout.splitlines() if "timed loop" in ln]
        problems.append(f"loops {sorted(map(str, loops))}, not compiled ({' '.join(note)[:300]})")
    if {r["nranks"] for r in rows} - {n}:
        problems.append(f"rank counts {sorted({r['nranks'] for r in rows})}, not {n}: a launcher/MPI mismatch")
    wrong = sum(r.get("wrong") or 0 for r in rows)
    if wrong:
        problems.append(f"{wrong} wrong elements")
    return [f"{collective} at {n} ranks: {p}" for p in problems]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mpirun", default="mpirun", help="the site MPI's launcher, e.g. 'mpirun.openmpi --oversubscribe'")
    ap.add_argument("--ranks", default="2,3")
    ap.add_argument("--collectives", default=",".join(specs.names()))
    ap.add_argument("--no-floor", action="store_true", help="skip the latency floor against the C loop")
    ap.add_argument("--reps", type=int, default=5, help="latency floor repetitions")
    args = ap.parse_args(argv)
    mpirun = _launcher(args.mpirun)
    from mpi4py import MPI  # the library's name; MPI is not initialised here

    library = " ".join(MPI.Get_library_version().replace("\x00", " ").splitlines()[0].split())
    print(f"# site MPI check: {library}; launcher: {' '.join(mpirun)}; python: {sys.executable}", flush=True)
    problems, runs = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in args.ranks.split(",")]:
            for k, collective in enumerate(args.collectives.split(",")):
                found = check_collective(mpirun, n, collective, Path(tmp, f"{collective}-{n}.jsonl"))
                if found is None:
                    continue
                runs += 1
                print(f"{collective:>15} at {n} ranks: " + ("ok (compiled loop, 0 wrong)" if not found else
                                                             "FAILED"), flush=True)
                problems += found
    for p in problems:
        print(f"# FAILED: {p}")
    print(f"# {runs - len({p.split(':')[0] for p in problems})} of {runs} launches ok")
    if problems:
        return 1
    if not args.no_floor:
        floor = [sys.executable, str(ROOT / "benchmarks" / "latency_floor.py"), "--ranks", "2", "--sizes", "8",
                 "--collectives", "allreduce", "--reps", str(args.reps), "--mpirun", args.mpirun]
        print(f"# latency floor over this MPI: {' '.join(map(shlex.quote, floor))}", flush=True)
        res = subprocess.run(floor, cwd=ROOT, text=True, timeout=900,
                             env=dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1"))
        if res.returncode != 0:
            print(f"# latency floor failed (exit {res.returncode}); the functional check above passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
