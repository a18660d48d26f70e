"""Job scripts for PBS Pro and Slurm node-count sweeps: exact lines, quoting, walltime."""

import subprocess

import pytest

from launch.jobscript import JobSpec, launch_command, normalise_walltime, render


def _spec(scheduler, **kw):
    base = dict(scheduler=scheduler, nodes=4, ppn=8, collectives=("allreduce", "allgather"),
                sweep_id="sweep-X", json_path="/work/sw/results.jsonl", workdir="/work",
                log_path="/work/sw/nodes4.log", python="/opt/env/bin/python", transport="mpi",
                harness_args=("-b", "8", "-e", "1G", "--transport", "mpi"), queue="debug",
                account="MYPROJ", walltime="00:45:00")
    base.update(kw)
    return JobSpec(**base)


def test_pbs_script_lines():
    text = render(_spec("pbs", directives=("-l filesystems=home:eagle",)))
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for expected in [
        "#PBS -N collscale-nodes4",
        "#PBS -l select=4:mpiprocs=8",
        "#PBS -l place=scatter:excl",
        "#PBS -l walltime=00:45:00",
        "#PBS -q debug",
        "#PBS -A MYPROJ",
        "#PBS -j oe",
        "#PBS -o /work/sw/nodes4.log",
        "#PBS -l filesystems=home:eagle",
        "cd /work || exit 2",
        "export COLLSCALE_SWEEP_ID=sweep-X",
        "PY=/opt/env/bin/python",
        "JSON=/work/sw/results.jsonl",
        "run_point allreduce",
        "run_point allgather",
    ]:
        assert expected in lines, expected
    launch = [line for line in lines if "COLLSCALE_SWEEP_POINT=" in line]
    assert launch == ['    COLLSCALE_SWEEP_POINT="$point" mpiexec -n 32 --ppn 8 "$PY" -m "collectives.$collective" '
                      '-b 8 -e 1G --transport mpi --json "$JSON" &']
    # Every #PBS directive comes before the first command (PBS stops reading at it).
    first_cmd = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    assert all(i < first_cmd for i, line in enumerate(lines) if line.startswith("#PBS"))
    assert "--nranks 32 --nhosts 4 --transport mpi" in text


def test_slurm_script_lines():
    text = render(_spec("slurm", directives=("--constraint=gpu",), launcher_args=("--mpi=pmix",)))
    lines = text.splitlines()
    for expected in [
        "#SBATCH --job-name=collscale-nodes4",
        "#SBATCH --nodes=4",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --time=00:45:00",
        "#SBATCH --partition=debug",
        "#SBATCH --account=MYPROJ",
        "#SBATCH --output=/work/sw/nodes4.log",
        "#SBATCH --constraint=gpu",
    ]:
        assert expected in lines, expected
    assert not any(line.startswith("#PBS") for line in lines)
    assert ('COLLSCALE_SWEEP_POINT="$point" srun --nodes=4 --ntasks=32 --ntasks-per-node=8 '
            '--kill-on-bad-exit=1 --mpi=pmix "$PY"') in text


def test_pbs_select_extra():
    assert "#PBS -l select=4:mpiprocs=8:system=polaris" in render(_spec("pbs", select_extra="system=polaris"))


def test_optional_lines_left_out_and_values_quoted():
    text = render(_spec("pbs", queue=None, account=None, harness_args=("--transport", "my transport"),
                        workdir="/work/with space", env=(("FI_CXI_X", "a b"),), setup=("module load conda",)))
    assert "#PBS -q" not in text and "#PBS -A" not in text
    assert "cd '/work/with space' || exit 2" in text
    assert "export FI_CXI_X='a b'" in text
    assert "'my transport'" in text
    assert text.index("module load conda") < text.index("set -u") < text.index("cd '/work/with space'")
    assert "#PBS -l place=pack" in render(_spec("pbs", place="pack"))


@pytest.mark.parametrize("scheduler", ["pbs", "slurm"])
def test_scripts_are_valid_bash(scheduler, tmp_path):
    path = tmp_path / "job.sh"
    path.write_text(render(_spec(scheduler)))
    res = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_launch_commands():
    assert launch_command(_spec("pbs", nodes=2, ppn=3)) == ["mpiexec", "-n", "6", "--ppn", "3"]
    assert launch_command(_spec("slurm", nodes=2, ppn=3))[:4] == ["srun", "--nodes=2", "--ntasks=6",
                                                                   "--ntasks-per-node=3"]


@pytest.mark.parametrize("given, expected", [
    ("30", "00:30:00"), ("90", "01:30:00"), ("1:00:00", "01:00:00"), ("05:00", "00:05:00"),
    ("12:00:00", "12:00:00"), ("48:00:00", "48:00:00"),
])
def test_walltime(given, expected):
    assert normalise_walltime(given) == expected


@pytest.mark.parametrize("bad", ["0", "1h", "1:75:00", "", "00:00:00", "-5"])
def test_bad_walltime(bad):
    with pytest.raises(ValueError, match="walltime"):
        normalise_walltime(bad)


def test_unknown_scheduler():
    with pytest.raises(ValueError, match="scheduler"):
        render(_spec("lsf"))
