"""A launcher of another MPI than mpi4py's is refused by every process, in one line, before anything runs.

Open MPI's ``mpirun`` (Debian's, which ``.ci/run`` installs) over the MPICH
wheel this project installs: without the check, MPICH's MPI_Init aborts
with an error stack about PMIx (or, with another pair, every process runs
as rank 0 of a world of one).  The srun case is in test_slurm.py.
"""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, test_env as base_env

OPENMPI_RUN = shutil.which("mpirun.openmpi")


@pytest.mark.skipif(OPENMPI_RUN is None, reason="Debian's Open MPI (openmpi-bin) is not installed")
def test_open_mpi_mpirun_over_the_mpich_wheel_is_refused(tmp_path):
    out = tmp_path / "r.jsonl"
    res = subprocess.run([OPENMPI_RUN, "--oversubscribe", "-n", "2", sys.executable, "-m", "collectives.allreduce",
                          "-b", "8", "-e", "64", "--json", str(out)], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, env=base_env("mismatch"), stdin=subprocess.DEVNULL)
    lines = [line for line in res.stderr.splitlines() if line.startswith("collscale: error:")]
    assert len(lines) == 2, res.stderr
    assert "Open MPI's mpirun started 2 processes, but mpi4py loaded MPICH" in lines[0]
    assert "mpirun" in lines[0].split("Fix:")[0]  # names the mpirun it found
    assert "Traceback" not in res.stderr and "error stack" not in res.stderr
    assert res.stdout.strip() == "" and not out.exists()
    # mpirun reports the first non-zero status of its processes: ours, 2
    assert res.returncode == 2, res.stderr
