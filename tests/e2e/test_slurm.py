"""Against a real Slurm: a private single-node cluster (munged, slurmctld, slurmd) per module.

* ``launch.sweep slurm`` as a user writes it: one job, a 2-rank point per
  collective, every size once, correct busbw factors, nothing else.
* ``srun`` without a PMI the MPI understands: every rank refuses in one line
  (exit 2) and nothing is written.

Skipped, with the reason, where the Slurm packages are missing (``.ci/run``
installs them).
"""

import json
import sys
from collections import Counter

import pytest

from facts import spec as specs
from tests.conftest import ROOT
from tests.conftest import test_env as base_env
from tests.e2e.slurm_cluster import SlurmCluster, missing

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _env(cluster, token="slurm"):
    env = base_env(token)
    env.update(cluster.env)
    return env


def test_sweep_on_slurm_runs_one_two_rank_job_per_point(slurm, tmp_path):
    sweep_dir = tmp_path / "sw"
    res = slurm.run([sys.executable, "-m", "launch.sweep", "slurm", "--nodes", "1", "--ppn", "2",
                     "--collectives", "allreduce,allgather", "--queue", "debug", "--dir", str(sweep_dir),
                     "--", "-b", "8", "-e", "1M"], env=_env(slurm), cwd=str(ROOT), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Submitted batch job" in res.stdout
    slurm.wait_idle(timeout=240)
    log = (sweep_dir / "nodes1.log").read_text()
    assert "# collscale: srun --mpi=pmi2 for MPICH" in log, log
    rows = [json.loads(line) for line in (sweep_dir / "results.jsonl").read_text().splitlines()]
    assert rows, log
    assert all(r["status"] == "ok" for r in rows), [r.get("reason") for r in rows if r["status"] != "ok"]
    assert {r["nranks"] for r in rows} == {2}, log
    sizes = [1 << k for k in range(3, 21)]
    for collective in ("allreduce", "allgather"):
        mine = [r for r in rows if r["collective"] == collective]
        keys = Counter((r["size_bytes"], r["in_place"]) for r in mine)
        assert all(n == 1 for n in keys.values()), f"duplicate rows: {keys.most_common(3)}"
        assert len({r["run_id"] for r in mine}) == 1  # one launch, not one per process
        measured = {r["size_bytes"] for r in mine}
        assert measured <= set(sizes) and 1 << 20 in measured and len(measured) >= 15, sorted(measured)
        factor = specs.find(collective).busbw_factor(2)
        for r in mine:
            assert r["busbw_gbs"] == pytest.approx(r["algbw_gbs"] * factor, rel=1e-6)
            assert r["wrong"] == 0
    assert {r["collective"] for r in rows} == {"allreduce", "allgather"}


def test_srun_without_pmi_is_refused_before_measuring(slurm, tmp_path):
    out = tmp_path / "r.jsonl"
    res = slurm.run(["srun", "--mpi=none", "-n", "2", "-p", "debug", sys.executable, "-m", "collectives.allreduce",
                     "-b", "8", "-e", "64", "--json", str(out)], check=False, env=_env(slurm), cwd=str(ROOT),
                    timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if "collscale" in line]
    assert len(lines) == 2, res.stderr  # one line from each process
    assert "srun started 2 processes, but MPI's world has 1" in lines[0]
    assert "--mpi=pmi2" in lines[0] and "MPICH" in lines[0]
    assert "Traceback" not in res.stderr and res.stdout.strip() == ""
    assert not out.exists() or out.read_text() == ""


def test_a_sweep_point_whose_launch_is_refused_is_a_failed_record_with_the_reason(slurm, tmp_path):
    sweep_dir = tmp_path / "sw"
    res = slurm.run([sys.executable, "-m", "launch.sweep", "slurm", "--nodes", "1", "--ppn", "2",
                     "--collectives", "allreduce", "--queue", "debug", "--dir", str(sweep_dir),
                     "--launcher-args", "--mpi=none", "--", "-b", "8", "-e", "64"],
                    env=_env(slurm), cwd=str(ROOT), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    slurm.wait_idle(timeout=120)
    rows = [json.loads(line) for line in (sweep_dir / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["failed"], rows  # no 1-rank rows, one failure
    assert rows[0]["exit_code"] == 2 and rows[0]["sweep_point"] == "nodes1-allreduce"
    assert "srun started 2 processes, but MPI's world has 1" in rows[0]["reason"]
