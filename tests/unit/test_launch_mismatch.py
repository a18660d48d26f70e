"""ground.mismatch: a launcher whose process count differs from MPI's world is named, with the fix."""

from ground import mismatch
from ground.env import detect

MPICH = "MPICH Version:      5.0.2\nMPICH Release date: ..."
OPENMPI = "Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, repo rev: v4.1.4, May 26, 2022\x00"

SRUN_2 = {"SLURM_PROCID": "1", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "2",
          "SLURM_NODEID": "0", "SLURM_STEP_TASKS_PER_NODE": "2"}


def test_srun_without_pmi_over_mpich_is_refused_with_pmi2():
    line = mismatch.check(1, MPICH, env=SRUN_2)
    assert line is not None and "\n" not in line
    assert "srun started 2 processes" in line and "world has 1" in line
    assert "MPICH Version: 5.0.2" in line and "--mpi=pmi2" in line


def test_srun_counts_the_step_not_the_allocation():
    # A 2-task step inside a 4-task allocation that MPI sees whole is fine.
    assert mismatch.check(2, MPICH, env=SRUN_2) is None


def test_srun_over_openmpi_suggests_pmix():
    line = mismatch.check(1, OPENMPI, env=SRUN_2)
    assert "--mpi=pmix" in line and "Open MPI v4.1.4" in line and "\x00" not in line


def test_open_mpi_mpirun_over_the_mpich_wheel_is_refused():
    env = {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_LOCAL_SIZE": "3"}
    line = mismatch.check(1, MPICH, env=env)
    assert "Open MPI's mpirun started 3 processes" in line and "mpirun" in line.split("Fix:")[1]


def test_hydra_and_pals_mismatches_are_refused():
    hydra = {"PMI_RANK": "0", "PMI_SIZE": "2", "MPI_LOCALRANKID": "0", "MPI_LOCALNRANKS": "2"}
    assert "Hydra" in mismatch.check(1, OPENMPI, env=hydra)
    pals = {"PALS_RANKID": "0", "PMI_SIZE": "8", "PALS_LOCAL_SIZE": "4"}
    line = mismatch.check(1, MPICH, env=pals)
    assert "PALS mpiexec started 8" in line and "--no-binary mpi4py" in line


def test_matching_launches_and_non_mpi_launches_pass():
    assert mismatch.check(1, MPICH, env={}) is None  # plain python
    hydra = {"PMI_RANK": "0", "PMI_SIZE": "2", "MPI_LOCALRANKID": "0", "MPI_LOCALNRANKS": "2"}
    assert mismatch.check(2, MPICH, env=hydra) is None
    torchrun = {"RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "4",
                "TORCHELASTIC_RUN_ID": "x"}
    assert detect(torchrun).launcher == "torchrun"
    assert mismatch.check(1, MPICH, env=torchrun) is None


def test_a_batch_script_itself_is_not_a_launch():
    # sbatch's script has SLURM_NTASKS of the allocation but no step: one process, no refusal.
    assert mismatch.check(1, MPICH, env={"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "3"}) is None


def test_family():
    assert mismatch.mpi_family(MPICH) == "mpich"
    assert mismatch.mpi_family(OPENMPI) == "openmpi"
    assert mismatch.mpi_family("Intel(R) MPI Library 2021.10") == "mpich"
    assert mismatch.mpi_family("Something else") == "unknown"


def test_a_launcher_of_another_family_is_refused_before_mpi_init():
    ompi = {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
    line = mismatch.before_init(MPICH, env=ompi)
    assert "Open MPI's mpirun started 2 processes, but mpi4py loaded MPICH Version: 5.0.2" in line
    hydra = {"PMI_RANK": "0", "PMI_SIZE": "3", "MPI_LOCALRANKID": "0", "MPI_LOCALNRANKS": "3"}
    assert "Hydra) started 3 processes, but mpi4py loaded Open MPI v4.1.4" in mismatch.before_init(OPENMPI, env=hydra)


def test_same_family_or_a_neutral_launcher_goes_on_to_mpi_init():
    ompi = {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
    assert mismatch.before_init(OPENMPI, env=ompi) is None
    assert mismatch.before_init(MPICH, env=SRUN_2) is None  # srun serves either: checked after init
    assert mismatch.before_init("Some Vendor MPI 1.0", env=ompi) is None  # unknown: let MPI_Init decide
    assert mismatch.before_init(MPICH, env={}) is None
