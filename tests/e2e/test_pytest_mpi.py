"""Run the pytest-mpi suite (tests/mpi) under mpirun at 1, 2, 3 and 5 ranks."""

import sys

import pytest

from tests.conftest import mpirun_cmd


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_mpi_suite(runner, n):
    # python -m mpi4py: an uncaught exception on one rank aborts the whole job
    # instead of leaving the others waiting.
    cmd = mpirun_cmd(n, sys.executable, "-m", "mpi4py", "-m", "pytest", "--with-mpi", "-q",
                     "-p", "no:cacheprovider", "tests/mpi")
    res = runner.run(cmd, timeout=280)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and "failed" not in res.stdout
