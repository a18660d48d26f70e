"""Launcher detection (docs/reference.md, "Launcher variables") and oversubscription handling."""

import pytest

from ground import env


@pytest.mark.parametrize(
    "variables, expected",
    [
        ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
          "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, ("openmpi", 3, 8, 1, 2)),
        ({"PMI_RANK": "5", "PMI_SIZE": "6", "MPI_LOCALRANKID": "2", "MPI_LOCALNRANKS": "3"},
         ("hydra", 5, 6, 2, 3)),
        ({"PALS_RANKID": "7", "PMI_SIZE": "16", "PALS_LOCAL_RANKID": "3", "PALS_LOCAL_SIZE": "4",
          "PMI_RANK": "7"}, ("pals", 7, 16, 3, 4)),
        ({"SLURM_PROCID": "9", "SLURM_NTASKS": "12", "SLURM_LOCALID": "1", "SLURM_NODEID": "2",
          "SLURM_STEP_ID": "0", "SLURM_STEP_TASKS_PER_NODE": "4(x3)"}, ("slurm", 9, 12, 1, 4)),
        ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
          "TORCHELASTIC_RUN_ID": "x"}, ("torchrun", 1, 4, 1, 4)),
        ({}, ("none", None, None, None, None)),
    ],
)
def test_detect(variables, expected):
    got = env.detect(variables)
    assert (got.launcher, got.rank, got.size, got.local_rank, got.local_size) == expected


@pytest.mark.parametrize(
    "variables, nhosts",
    [
        ({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}, 2),
        ({"PMI_RANK": "0", "PMI_SIZE": "6", "MPI_LOCALRANKID": "0", "MPI_LOCALNRANKS": "4"}, 2),
        ({"SLURM_PROCID": "0", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "12", "SLURM_NNODES": "3"}, 3),
        ({"RANK": "0", "WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "4", "GROUP_WORLD_SIZE": "4",
          "TORCHELASTIC_RUN_ID": "x"}, 4),
        ({}, 1),
    ],
)
def test_host_count(variables, nhosts):
    assert env.detect(variables).nhosts == nhosts


def test_pbs_nodefile_hosts(tmp_path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("x1\nx1\nx2\nx3\nx3\n")
    got = env.detect({"PALS_RANKID": "0", "PMI_SIZE": "5", "PALS_LOCAL_SIZE": "2",
                      "PBS_NODEFILE": str(nodefile)})
    assert got.launcher == "pals" and got.nhosts == 3


def test_usable_cores_is_the_union_of_affinities():
    assert env.usable_cores([[0], [0]]) == 1
    assert env.usable_cores([[0], [1]]) == min(2, env.host_cores())


def test_mpirun_inside_slurm_allocation_prefers_the_mpi_launcher():
    # sbatch leaves SLURM_PROCID=0 in every rank that mpirun starts.
    got = env.detect({"SLURM_PROCID": "0", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "8",
                      "PMI_RANK": "6", "PMI_SIZE": "8", "MPI_LOCALRANKID": "2", "MPI_LOCALNRANKS": "4"})
    assert got.launcher == "hydra" and got.rank == 6


def test_torchrun_inside_slurm_prefers_torchrun():
    got = env.detect({"SLURM_PROCID": "0", "SLURM_STEP_ID": "0", "RANK": "3", "WORLD_SIZE": "4",
                      "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "4", "TORCHELASTIC_RUN_ID": "r"})
    assert got.launcher == "torchrun" and got.rank == 3


@pytest.mark.parametrize("text, node, count", [("4(x3)", 2, 4), ("2(x2),1", 2, 1), ("8", 0, 8),
                                               ("3,5", 1, 5), ("2(x2)", 5, None), ("bad", 0, None)])
def test_slurm_tasks_per_node(text, node, count):
    assert env.slurm_tasks_on_node(text, node) == count


def test_oversubscription():
    assert env.is_oversubscribed(8, cores=2)
    assert not env.is_oversubscribed(2, cores=2)
    assert not env.is_oversubscribed(None, cores=2)
    assert env.host_cores() >= 1


def test_settings_never_override_the_user():
    mine = {"MPIR_CVAR_CH4_PROGRESS_THROTTLE": "0"}
    applied = env.apply_oversubscription_settings(mine)
    assert mine["MPIR_CVAR_CH4_PROGRESS_THROTTLE"] == "0"
    assert "MPIR_CVAR_CH4_PROGRESS_THROTTLE" not in applied
    assert mine["OMPI_MCA_mpi_yield_when_idle"] == "1"
