"""launch.sweep's command line in-process: which mode a command line means, what reaches the
harness, and one-line refusals of another mode's options (nothing launched, nothing submitted)."""

import json
import shlex

import pytest

from launch import jobscript, sweep
from launch.sweep import main, parse_args

PBS = ["--nodes", "1,2", "--ppn", "4"]


@pytest.mark.parametrize("argv, mode", [
    ([], "local"),
    (["--ranks", "1,2,4", "--collectives", "allreduce", "--", "-e", "16M"], "local"),
    (["--launcher", "torchrun", "--ranks", "2"], "local"),
    (["local", "--ranks", "2"], "local"),
    (["--scheduler", "pbs", *PBS, "--dry-run", "--", "-e", "1G"], "pbs"),
    (["--scheduler=slurm", *PBS], "slurm"),
    ([*PBS, "--queue", "q", "--scheduler", "slurm"], "slurm"),  # anywhere before '--'
    (["pbs", *PBS], "pbs"),
    (["slurm", *PBS], "slurm"),
    (["--ranks", "2", "--", "--scheduler", "pbs"], "local"),  # the harness's words are never read
    (["record-failure", "--json", "r.jsonl", "--sweep-id", "S", "--point", "p", "--collective", "allreduce",
      "--nranks", "2", "--reason", "r"], "record-failure"),
])
def test_argv_names_its_mode(argv, mode):
    args = parse_args(argv)
    assert args.mode == mode
    if mode != "record-failure":
        assert args.scheduler == (None if mode == "local" else mode)


def test_a_legacy_command_line_is_its_mode_spelled_out():
    legacy = parse_args(["--scheduler", "pbs", *PBS, "--queue", "debug", "--", "-e", "1G"])
    spelled = parse_args(["pbs", *PBS, "--queue", "debug", "--", "-e", "1G"])
    assert vars(legacy) == vars(spelled)
    assert vars(parse_args(["--ranks", "2", "--", "-e", "1M"])) == vars(parse_args(["local", "--ranks", "2",
                                                                                    "--", "-e", "1M"]))


def test_everything_after_the_first_double_dash_is_the_harness_s():
    harness = ["-n", "5", "--transport", "mpi", "--nodes", "3", "--", "--ranks", "x", "-h"]
    for argv in (["--ranks", "2", "--", *harness], ["--scheduler", "slurm", *PBS, "--", *harness]):
        assert parse_args(argv).harness == harness
    assert parse_args(["--ranks", "2"]).harness == []


def test_launcher_options_as_values():
    # '--mpi=pmix' is srun's option, not ours: argparse alone would refuse it as a value.
    args = parse_args(["slurm", *PBS, "--launcher-args", "--mpi=pmix", "--directive", "--constraint=gpu",
                       "--directive", "-C a100"])
    assert args.launcher_args == "--mpi=pmix" and args.directive == ["--constraint=gpu", "-C a100"]
    assert parse_args(["--launcher-args=--bind-to core"]).launcher_args == "--bind-to core"


def test_each_mode_has_only_its_own_options():
    local, pbs, slurm = (vars(parse_args(argv)) for argv in ([], ["pbs", *PBS], ["slurm", *PBS]))
    assert {"ranks", "launcher", "point_timeout"} <= set(local) and "nodes" not in local
    assert not {"ranks", "launcher", "point_timeout"} & set(pbs)
    assert pbs["place"] == slurm["place"] == jobscript.JobSpec.place and slurm["select"] is None
    assert {"collectives", "launcher_args", "dir", "json", "sweep_id"} <= set(local) & set(pbs) & set(slurm)
    with pytest.raises(ValueError, match="need --scheduler"):
        parse_args(["--nodes", "2"])


@pytest.mark.parametrize("argv, message", [
    (["--ranks", "2", "--nodes", "4"], "--nodes is for PBS and Slurm sweeps, which need --scheduler pbs|slurm"),
    (["--ranks", "2", "--nodes=4"], "--nodes is for PBS and Slurm sweeps"),
    (["local", "--queue", "debug"], "need --scheduler"),
    (["--dry-run"], "--dry-run is for PBS and Slurm sweeps"),
    (["--select", "system=x"], "--select is PBS's only (--scheduler pbs)"),
    (["--scheduler", "slurm", *PBS, "--select", "system=x"], "--select is PBS's only (--scheduler pbs); for Slurm"),
    (["slurm", *PBS, "--place", "free"], "--place is PBS's only"),
    (["--scheduler", "pbs", *PBS, "--point-timeout", "5"], "--point-timeout is for local sweeps"),
    (["--scheduler", "pbs", *PBS, "--ranks", "2"], "--ranks is for local sweeps"),
    # Not taken for --launcher-args: option names are never abbreviated.
    (["pbs", *PBS, "--launcher", "torchrun"], "--launcher is for local sweeps"),
    (["--coll", "allreduce"], "unrecognized arguments: --coll allreduce"),
    (["--ranks", "2", "-e", "16M"], "harness arguments go after '--' (see python -m launch.sweep local --help)"),
    (["--scheduler", "pbs", "--ppn", "4"], "required: --nodes"),
    (["--scheduler", "pbs", "--nodes", "1,2"], "required: --ppn"),
    (["pbs", "--nodes", "1", "--ppn", "0"], "--ppn 0: ranks per node, at least 1"),
    (["--scheduler", "lsf", *PBS], "--scheduler lsf: expected pbs or slurm"),
    (["--ranks", "2", "--scheduler"], "--scheduler (nothing): expected pbs or slurm"),
    (["pbs", *PBS, "--scheduler", "slurm"], "unrecognized arguments: --scheduler slurm"),  # one or the other
    (["record-failure", "--json", "r.jsonl"], "required: --sweep-id"),
])
def test_a_refused_command_line_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("collscale sweep: error: ") and err.count("\n") == 1
    assert message in err and "usage:" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_help_names_the_modes_and_the_rule_without_one(capsys):
    assert main(["--help"]) == 0  # --help's status, returned (the one run_main of ground.errors)
    out = capsys.readouterr().out
    assert "{local,pbs,slurm}" in out and "without a mode" in out
    assert main(["--scheduler", "slurm", "-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m launch.sweep slurm") and "--select" not in out


def test_legacy_and_spelled_out_dry_runs_write_the_same_scripts(tmp_path, capsys):
    common = [*PBS, "--queue", "debug", "--sweep-id", "S", "--launcher-args", "--cpu-bind depth", "--dry-run",
              "--", "-e", "1G", "--transport", "mpi"]
    assert main(["--scheduler", "pbs", "--dir", str(tmp_path / "a"), *common]) == 0
    assert main(["pbs", "--dir", str(tmp_path / "b"), *common]) == 0
    assert f"qsub {tmp_path / 'b' / 'nodes2.pbs'}" in capsys.readouterr().out
    for name in ("nodes1.pbs", "nodes2.pbs"):
        a, b = ((tmp_path / d / name).read_text() for d in "ab")
        assert a == b.replace(str(tmp_path / "b"), str(tmp_path / "a"))
    script = (tmp_path / "a" / "nodes2.pbs").read_text()
    assert "mpiexec -n 8 --ppn 4 --cpu-bind depth" in script and "-e 1G --transport mpi --json" in script


def test_a_local_sweep_gets_its_options(tmp_path, monkeypatch):
    made = {}

    class FakeSweep:
        def __init__(self, ranks, collectives, harness_args, json_path, log_dir, sweep_id, **kw):
            made.update(kw, ranks=ranks, collectives=collectives, harness=harness_args, json_path=json_path)

        def run(self):
            return 0

    monkeypatch.setattr(sweep, "Sweep", FakeSweep)
    monkeypatch.setattr(sweep, "local_command", lambda *a, **kw: [])  # no mpirun needed
    assert main(["--ranks", "1,3", "--collectives", "allgather", "--launcher-args", "-genv X 1", "--point-timeout",
                 "9", "--json", str(tmp_path / "r.jsonl"), "--", "-e", "1M", "--transport", "shm"]) == 0
    assert made["ranks"] == [1, 3] and made["collectives"] == ["allgather"]
    assert made["harness"] == ["-e", "1M", "--transport", "shm"] and made["transport"] == "shm"
    assert made["launcher"] == "mpirun" and made["launcher_args"] == ["-genv", "X", "1"]
    assert made["point_timeout"] == 9.0 and made["json_path"] == str(tmp_path / "r.jsonl")


def test_the_job_scripts_record_failure_call_parses(tmp_path):
    spec = jobscript.JobSpec(scheduler="slurm", nodes=4, ppn=2, collectives=("allreduce",), sweep_id="S",
                             json_path=str(tmp_path / "r.jsonl"), workdir="/w", log_path="/w/l", python="py",
                             transport="mpi")
    (line,) = [line for line in jobscript.render(spec).splitlines() if "launch.sweep record-failure" in line]
    for var, value in {'"$JSON"': str(tmp_path / "r.jsonl"), '"$COLLSCALE_SWEEP_ID"': "S",
                       '"$point"': "nodes4-allreduce", '"$collective"': "allreduce", '"$1"': "143",
                       '"$2"': "'job stopped'", '${3:+"$3"}': "--unless-wrong"}.items():
        line = line.replace(var, value)
    words = shlex.split(line)
    assert main(words[words.index("launch.sweep") + 1:]) == 0
    (rec,) = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert rec["status"] == "failed" and rec["sweep_point"] == "nodes4-allreduce" and rec["exit_code"] == 143
    assert rec["nranks"] == 8 and rec["nhosts"] == 4 and rec["transport"] == "mpi" and rec["reason"] == "job stopped"
