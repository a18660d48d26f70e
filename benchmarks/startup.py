"""Start-up cost of a small job, with torch importable and with it made unimportable.

    python benchmarks/startup.py [--ranks 3] [--reps 5] [--transports mpi,shm]

Runs ``mpirun -n N python -m collectives.allreduce -b 8 -e 8 -n 1 -w 0 -c 0
--transport T`` (the whole job: MPI start, imports, transport, one
collective, close) alternately with torch installed and with a stand-in
``torch`` package first on PYTHONPATH that raises ImportError, and prints
the median wall time of each, their ratio, and whether any rank imported
torch (from ``PYTHONPROFILEIMPORTTIME``).  Goal (issue 11): a run over mpi
or shm costs no torch import, so the ratio is ~1.  Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mpirun() -> str:
    here = Path(sys.executable).with_name("mpirun")
    return str(here) if here.exists() else "mpirun"


def _cmd(n: int, transport: str):
    return [_mpirun(), "-n", str(n), sys.executable, "-m", "collectives.allreduce", "-b", "8", "-e", "8",
            "-n", "1", "-w", "0", "-c", "0", "--transport", transport]


def _run(cmd, env) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    return took


def _imports_torch(cmd, env) -> bool:
    res = subprocess.run(cmd, env=dict(env, PYTHONPROFILEIMPORTTIME="1"), cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    return any(line.rstrip().endswith(("| torch", "|   torch")) or line.split("|")[-1].strip() == "torch"
               for line in res.stderr.splitlines() if line.startswith("import time:"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--transports", default="mpi,shm")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as stub:
        (Path(stub) / "torch").mkdir()
        (Path(stub) / "torch" / "__init__.py").write_text("raise ImportError('torch made unimportable')\n")
        base = dict(os.environ, PYTHONPATH=str(ROOT))
        without = dict(base, PYTHONPATH=f"{stub}{os.pathsep}{ROOT}")
        print(f"# start-up of a {args.ranks}-rank job (mpirun .. allreduce -b 8 -e 8 -n 1 -w 0 -c 0), "
              f"median of {args.reps} alternating runs, wall seconds (measured)")
        print("# transport  with torch  without torch  ratio  torch imported?")
        for transport in args.transports.split(","):
            cmd = _cmd(args.ranks, transport)
            _run(cmd, base)  # warm the page cache
            with_t, without_t = [], []
            for _ in range(args.reps):
                with_t.append(_run(cmd, base))
                without_t.append(_run(cmd, without))
            a, b = statistics.median(with_t), statistics.median(without_t)
            print(f"  {transport:<9}  {a:10.2f}  {b:13.2f}  {a / b:5.2f}  "
                  f"{'YES' if _imports_torch(cmd, base) else 'no'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
