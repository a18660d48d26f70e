"""launch.sweep's and launch.emulate's command lines in-process: names that cannot be paths,
numbers checked as numbers, paths checked as paths, one line and exit 2 for each refusal,
nothing written before the checks, and exit 3 with one line for a bug (nothing launched)."""

import pytest

from launch import checks, emulate, netns, sweep
from launch.checks import UsageError


def _refused(capsys, code, prog="collscale sweep"):
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert err.startswith(f"{prog}: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working directory two levels down, with a file and a directory in it; no launches."""
    here = tmp_path / "a" / "work"
    here.mkdir(parents=True)
    (here / "file").write_text("x")
    (here / "adir").mkdir()
    monkeypatch.chdir(here)
    monkeypatch.setattr(sweep.Sweep, "run", lambda self: 0)
    return here


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("argv, message", [
    (["--sweep-id", "../../escape"], "--sweep-id '../../escape': use letters"),
    (["--sweep-id", "a/b"], "cannot be a path"),
    (["--sweep-id", ".hidden"], "cannot be a path"),
    (["--sweep-id", ""], "cannot be a path"),
    (["pbs", "--nodes", "1", "--ppn", "1", "--dry-run", "--sweep-id", "../up"], "--sweep-id '../up'"),
    (["record-failure", "--json", "r.jsonl", "--sweep-id", "../s", "--point", "p", "--collective", "allreduce",
      "--nranks", "2", "--reason", "r"], "--sweep-id '../s'"),
    (["record-failure", "--json", "r.jsonl", "--sweep-id", "s", "--point", "../../p", "--collective", "allreduce",
      "--nranks", "2", "--reason", "r"], "--point '../../p'"),
])
def test_identifiers_are_not_paths(work, capsys, argv, message):
    before = _tree(work.parent.parent)
    assert message in _refused(capsys, sweep.main(argv))
    assert _tree(work.parent.parent) == before  # nothing written, here or above


@pytest.mark.parametrize("argv, message", [
    (["--ranks", "1_0"], "whole numbers"),
    (["--ranks", "٣"], "whole numbers"),
    (["--ranks", "2,99999999999"], "at most 1048576"),
    (["--ranks", ","], "comma-separated list"),
    (["--point-timeout", "inf"], "positive number of seconds"),
    (["--point-timeout", "-1"], "positive number of seconds"),
    (["--point-timeout", "1e400"], "positive number of seconds"),
    (["--point-timeout", "1e9"], "at most 1e+07"),
    (["--point-timeout", "soon"], "positive number of seconds"),
    (["pbs", "--nodes", "1", "--ppn", "x"], "--ppn x: ranks per node"),
    (["pbs", "--nodes", "1", "--ppn", "1.5"], "--ppn 1.5: ranks per node"),
    (["pbs", "--nodes", "4096", "--ppn", "4096"], "more than 1048576 ranks"),
    (["pbs", "--nodes", "1", "--ppn", "1", "--walltime", "٣"], "walltime"),
    (["slurm", "--nodes", "1", "--ppn", "1", "--env", "Ä=1"], "NAME=VALUE"),
    (["slurm", "--nodes", "1", "--ppn", "1", "--directive", "--x\nrm -rf /"], "one line each"),
    (["--launcher-args", "'unclosed"], "No closing quotation"),
    (["record-failure", "--json", "r.jsonl", "--sweep-id", "s", "--point", "p", "--collective", "allreduce",
      "--nranks", "two", "--reason", "r"], "--nranks two"),
    (["record-failure", "--json", "r.jsonl", "--sweep-id", "s", "--point", "p", "--collective", "allreduce",
      "--nranks", "2", "--exit-code", "999", "--reason", "r"], "--exit-code 999"),
])
def test_numbers_are_checked_as_numbers(work, capsys, argv, message):
    assert message in _refused(capsys, sweep.main(argv))
    assert _tree(work) == ["adir", "file"]


@pytest.mark.parametrize("argv, message", [
    (["--json", "adir"], "--json adir: is a directory"),
    (["--json", "file/r.jsonl"], "is not a directory"),
    (["--json", "adir/"], "is a directory"),
    (["--json", "new/"], "names a directory"),
    (["--json", "x" * 300 + "/r.jsonl"], "--json"),
    (["--json", "r\0.jsonl"], "not a path"),
    (["--dir", "file"], "--dir file: exists and is not a directory"),
    (["--dir", "file/sub"], "is not a directory"),
    (["--dir", ""], "not a path"),
    (["pbs", "--nodes", "1", "--ppn", "1", "--dry-run", "--dir", "file"], "exists and is not a directory"),
    (["record-failure", "--json", "adir", "--sweep-id", "s", "--point", "p", "--collective", "allreduce",
      "--nranks", "2", "--reason", "r"], "--json adir: is a directory"),
])
def test_paths_are_checked_as_paths(work, capsys, argv, message):
    assert message in _refused(capsys, sweep.main(argv))
    assert _tree(work) == ["adir", "file"]


def test_files_the_sweep_writes_inside_its_directory_are_checked(work, capsys):
    (work / "sw").mkdir()
    (work / "sw" / "logs").write_text("not a directory")
    assert "sw/logs is not a directory" in _refused(capsys, sweep.main(["--dir", "sw"]))
    (work / "pb").mkdir()
    (work / "pb" / "nodes2.pbs").mkdir()
    err = _refused(capsys, sweep.main(["pbs", "--nodes", "1,2", "--ppn", "1", "--dry-run", "--dir", "pb"]))
    assert "pb/nodes2.pbs is a directory" in err
    assert not (work / "pb" / "nodes1.pbs").exists()  # nothing written before the check


def test_a_bug_is_one_line_and_exit_3_and_the_traceback_on_request(work, capsys, monkeypatch):
    def broken(self):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(sweep.Sweep, "run", broken)
    assert sweep.main(["--ranks", "1", "--dir", "sw"]) == 3
    err = capsys.readouterr().err
    assert err == ("collscale sweep: error: TypeError: unsupported operand "
                   "(set COLLSCALE_DEBUG=1 for the traceback)\n")
    monkeypatch.setenv("COLLSCALE_DEBUG", "1")
    assert sweep.main(["--ranks", "1", "--dir", "sw"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("collscale sweep: error: TypeError: unsupported operand")


def test_checks_helpers():
    assert checks.whole("--n", " +7 ") == 7
    assert checks.whole_list("--n", "1, 2,4") == [1, 2, 4]
    assert checks.seconds("--t", "2.5") == 2.5
    assert checks.identifier("--id", "sweep-2024.01_x") == "sweep-2024.01_x"
    for bad in ("0", "-1", "1.0", "1e3", "0x10", "", "1 2"):
        with pytest.raises(UsageError):
            checks.whole("--n", bad)
    for bad in ("0", "nan", "inf", "-inf", "", "1e400", "x"):
        with pytest.raises(UsageError):
            checks.seconds("--t", bad)
    for bad in ("..", ".", "a/b", "/a", "a b", "a\n", "é", "-" * 201, "a\\b"):
        with pytest.raises(UsageError):
            checks.identifier("--id", bad)


# -- launch.emulate -----------------------------------------------------------------------------

@pytest.fixture
def no_emulation(monkeypatch):
    """Everything emulate would build or start replaced: only the command line is exercised."""
    started = []
    monkeypatch.setattr(netns, "requirements_missing", lambda: None)
    monkeypatch.setattr(netns, "sweep_stale", lambda: [])
    monkeypatch.setattr(emulate, "hydra_version", lambda mpirun: "HYDRA")
    monkeypatch.setattr(emulate, "launch_command", lambda *a, **kw: started.append(a) or 0)
    return started


@pytest.mark.parametrize("argv, message", [
    (["--hosts", "two", "--", "mpirun", "-n", "2", "x"], "--hosts two: must be between 1 and 250"),
    (["--hosts", "251", "--", "mpirun", "-n", "2", "x"], "--hosts 251"),
    (["--hosts", "2", "--ppn", "0", "--", "x"], "--ppn 0: must be at least 1"),
    (["--hosts", "2", "--ppn", "2.5", "--", "x"], "--ppn 2.5"),
    (["--hosts", "2", "--timeout", "nan", "--", "x"], "--timeout nan: must be a positive number of seconds"),
    (["--hosts", "2", "--timeout", "0", "--", "x"], "--timeout 0"),
    (["--hosts", "2", "--rate", "fast", "--", "x"], "--rate 'fast'"),
    (["--hosts", "2", "--rate", "10gbps", "--", "x"], "bytes per second"),
    (["--hosts", "2", "--bogus", "--", "x"], "unrecognized arguments: --bogus"),
    (["--hosts"], "expected one argument"),
    (["--cleanup", "--hosts", "2"], "--cleanup runs alone: leave out --hosts"),
    (["--hosts", "2", "--", "mpirun", "-n", "0", "x"], "-n N"),
])
def test_emulate_refusals_are_one_line(no_emulation, capsys, argv, message):
    err = _refused(capsys, emulate.main(argv), prog="collscale emulate")
    assert message in err and "usage:" not in err
    assert no_emulation == []


def test_emulate_passes_checked_numbers(no_emulation):
    assert emulate.main(["--hosts", "3", "--ppn", "2", "--timeout", "7.5", "--rate", "1gbit", "--",
                         "python", "-m", "collectives.allreduce"]) == 0
    ((command, mode, topo, ppn, timeout, _),) = no_emulation
    assert mode == "mpirun" and command[1:3] == ["-n", "6"] and topo.nhosts == 3 and topo.rate_bits == 1e9
    assert ppn == 2 and timeout == 7.5


def test_an_emulate_bug_is_exit_3(no_emulation, monkeypatch, capsys):
    monkeypatch.setattr(emulate, "launch_command", lambda *a, **kw: {}["missing"])
    assert emulate.main(["--hosts", "2", "--", "mpirun", "-n", "2", "x"]) == 3
    err = capsys.readouterr().err
    assert err == "collscale emulate: error: KeyError: 'missing' (set COLLSCALE_DEBUG=1 for the traceback)\n"

