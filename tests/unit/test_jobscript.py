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
                      '-b 8 -e 1G --transport mpi --json "$JSON" 2>"$ERR" &']
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


@pytest.mark.parametrize("library, chosen", [("MPICH Version: 5.0.2", "pmi2"), (None, "pmi2"),
                                             ("Open MPI v4.1.4, package: Debian OpenMPI", "pmix")])
def test_slurm_picks_the_pmi_of_the_mpi_in_use(library, chosen):
    text = render(_spec("slurm", mpi_library=library))
    assert f"SRUN_MPI={chosen}" in text.splitlines()
    assert '--kill-on-bad-exit=1 "--mpi=$SRUN_MPI" "$PY"' in text
    assert "# MPI: " + (library or "the MPI mpi4py loads") in text


def test_launcher_args_naming_a_pmi_win():
    text = render(_spec("slurm", mpi_library="MPICH", launcher_args=("--mpi=pmix",)))
    assert "SRUN_MPI" not in text and "--mpi=pmix" in text


def test_pbs_script_names_the_mpi_its_mpiexec_must_be():
    assert "# mpiexec must be the launcher of MPICH Version: 5.0.2" in render(
        _spec("pbs", mpi_library="MPICH Version: 5.0.2"))


@pytest.mark.parametrize("offered, library, expected", [
    ("pmix none pmi2", "MPICH", "pmi2"), ("pmix none", "MPICH", "pmix"),
    ("pmi2 none", "Open MPI v5", "pmi2"), ("pmix_v4 pmix pmi2", "Open MPI v5", "pmix"),
])
def test_slurm_script_checks_what_srun_offers(tmp_path, offered, library, expected):
    """The script's PMI choice at run time, with a stand-in srun that lists ``offered`` and
    records the arguments it was started with; record-failure is never needed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    listing = "MPI plugin types are...\n" + "".join(f"\t{p}\n" for p in offered.split())
    (bin_dir / "srun").write_text(
        "#!/bin/bash\n"
        f'if [ "$1" = "--mpi=list" ]; then printf "{listing}" >&2; exit 0; fi\n'
        f'echo "$@" >> {tmp_path}/srun.args\n')
    (bin_dir / "srun").chmod(0o755)
    script = tmp_path / "job.sh"
    script.write_text(render(_spec("slurm", mpi_library=library, collectives=("allreduce",),
                                   workdir=str(tmp_path), json_path=str(tmp_path / "r.jsonl"))))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=30)
    assert res.returncode == 0, res.stderr
    assert f"# collscale: srun --mpi={expected} for {library}" in res.stdout
    assert f"--mpi={expected} " in (tmp_path / "srun.args").read_text()
    assert not list(tmp_path.glob("collscale-point.*"))  # the point's stderr file is removed


def test_a_refused_point_records_the_runners_line(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        "#!/bin/bash\n"
        'if [ "$1" = "--mpi=list" ]; then echo pmi2 >&2; exit 0; fi\n'
        'echo "collscale: error: srun started 2 processes, but MPI\'s world has 1" >&2; exit 2\n')
    (bin_dir / "srun").chmod(0o755)
    fake_py = bin_dir / "py"
    fake_py.write_text(f'#!/bin/bash\necho "$@" >> {tmp_path}/failures\n')
    fake_py.chmod(0o755)
    script = tmp_path / "job.sh"
    script.write_text(render(_spec("slurm", collectives=("allreduce",), workdir=str(tmp_path),
                                   python=str(fake_py), json_path=str(tmp_path / "r.jsonl"))))
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp_path)})
    assert res.returncode == 0
    assert "world has 1" in res.stderr  # the point's stderr reaches the job log
    failure = (tmp_path / "failures").read_text()
    assert "--exit-code 2" in failure and "exit status 2: collscale: error: srun started 2 processes" in failure
