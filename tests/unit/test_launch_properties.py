"""Property-based tests of launch.sweep's and launch.emulate's command lines, in-process:
whatever the flags, numbers and strings, main returns 0 or 2, a refusal is exactly one stderr
line without a traceback, no exception escapes, a refusal writes nothing, and nothing is
ever written outside the working directory.  Nothing is launched: Sweep.run, the scheduler
submission, the Hydra check and emulate's namespaces are replaced; scheduler modes run with
--dry-run."""

import tests.unit.hypothesis_profile  # noqa: F401  (derandomized, no deadline)

import contextlib
import io
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from launch import emulate, jobscript, netns, sweep

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
NUMBERS = st.one_of(
    st.integers(-3, 2 ** 70).map(str),
    st.floats().map(repr),
    st.sampled_from(["", " ", "1_0", "٣", "0x10", "1e3", "+2", "2,", ",", "1,,2", "nan", "inf", "-inf", "1e400",
                     "3.5", "0", "1", "2", "1,2,4", "1048577"]),
    TEXT,
)
NAMES = st.one_of(st.sampled_from(["../../escape", "..", ".", ".hidden", "a/b", "/abs", "ok-id_1.2", "", " ",
                                   "x" * 300, "a\nb", "a\0b", "S"]), TEXT)
# Relative paths only, so that a wrongly accepted value still lands in the working directory.
PATHS = st.sampled_from(["out", "out/r.jsonl", "file", "file/x", "adir", "adir/", "", " ", "\0", "a" * 300,
                         "adir/deep/er/r.jsonl", "file/", "./x.jsonl", "../../escape", "x" * 300 + "/r"])
WORDS = st.one_of(TEXT, st.sampled_from(["--", "-e", "1M", "--json", "--transport", "gloo", "--nodes", "--ranks",
                                         "--scheduler", "pbs", "--queue", "-h"]))


def _options(draw, table):
    """Each (flag, good values, how often given) of ``table``: a good value three times in four,
    else any number or string; as ``--flag value`` or ``--flag=value``."""
    argv = []
    for flag, good, often in table:
        if draw(st.floats(0, 1)) < often:
            value = draw(good if draw(st.integers(0, 3)) else st.one_of(NUMBERS, NAMES, PATHS))
            argv += [f"{flag}={value}"] if draw(st.integers(0, 4)) == 0 else [flag, value]
    return argv


COUNTS = st.sampled_from(["1", "2", "1,2", "3,1", " 4", "+2"])
SECONDS = st.sampled_from(["1", "0.5", "30", "1e3"])
GOOD_PATHS = st.sampled_from(["out", "out/r.jsonl", "adir/r.jsonl", "adir", "new/deeper/x", "./x.jsonl"])
GOOD_NAMES = st.sampled_from(["S", "sweep-1", "a.b_c-d", "ranks2-allreduce"])


@st.composite
def sweep_argv(draw):
    mode = draw(st.sampled_from(["local", "pbs", "slurm", "record-failure", "legacy-local", "legacy-pbs"]))
    shared = [("--collectives", st.sampled_from(["allreduce", "allreduce,barrier", "allgather"]), 0.3),
              ("--launcher-args", st.sampled_from(["-genv A 1", "--mpi=pmix", "'x"]), 0.2),
              ("--dir", GOOD_PATHS, 0.6), ("--json", GOOD_PATHS, 0.4), ("--sweep-id", GOOD_NAMES, 0.4)]
    local = [("--ranks", COUNTS, 0.6), ("--point-timeout", SECONDS, 0.4),
             ("--launcher", st.sampled_from(["mpirun", "torchrun"]), 0.3)]
    scheduler = [("--nodes", COUNTS, 0.9), ("--ppn", COUNTS.filter(lambda c: "," not in c), 0.9),
                 ("--walltime", st.sampled_from(["1:00:00", "30", "00:10"]), 0.3),
                 ("--queue", GOOD_NAMES, 0.3), ("--account", GOOD_NAMES, 0.3),
                 ("--directive", st.sampled_from(["-l filesystems=home", "--constraint=gpu"]), 0.2),
                 ("--setup", st.sampled_from(["module load x", "true"]), 0.2),
                 ("--env", st.sampled_from(["A=1", "B_2=x y"]), 0.2), ("--python", st.just("python3"), 0.2)]
    if mode == "record-failure":
        table = [("--json", GOOD_PATHS, 0.9), ("--sweep-id", GOOD_NAMES, 0.9), ("--point", GOOD_NAMES, 0.9),
                 ("--collective", st.just("allreduce"), 0.9), ("--nranks", COUNTS, 0.9),
                 ("--nhosts", COUNTS, 0.3), ("--exit-code", st.sampled_from(["1", "143", "-9"]), 0.5),
                 ("--reason", TEXT, 0.9)]
        return ["record-failure", *_options(draw, table)]
    if mode.endswith("local"):
        argv = _options(draw, shared + local)
    else:
        argv = _options(draw, shared + scheduler + [("--select", GOOD_NAMES, 0.1), ("--place", GOOD_NAMES, 0.1)])
        argv.append("--dry-run")
    if draw(st.integers(0, 5)) == 0:
        argv.append(draw(WORDS))  # a stray word or flag now and then
    if draw(st.booleans()):
        argv += ["--", *draw(st.lists(WORDS, max_size=3))]
    lead = {"local": ["local"], "pbs": ["pbs"], "slurm": ["slurm"], "legacy-local": [],
            "legacy-pbs": ["--scheduler", "pbs"]}[mode]
    return lead + argv


@contextlib.contextmanager
def _workdir():
    """A fresh working directory two levels down, with a file and a directory in it."""
    with tempfile.TemporaryDirectory() as top:
        here = Path(top) / "a" / "work"
        here.mkdir(parents=True)
        (here / "file").write_text("x")
        (here / "adir").mkdir()
        old = os.getcwd()
        os.chdir(here)
        try:
            yield Path(top), here
        finally:
            os.chdir(old)


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _run(main, argv, prog):
    out, err = io.StringIO(), io.StringIO()
    with _workdir() as (top, here):
        before = _tree(top)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # --help
                assert exc.code == 0 and "usage:" in out.getvalue(), (argv, exc.code)
                return
        after = _tree(top)
    lines = err.getvalue().splitlines()
    assert code in (0, 2), (argv, code, err.getvalue())
    assert "Traceback" not in err.getvalue(), (argv, err.getvalue())
    assert all(p.startswith("a/work") or p == "a" for p in after), (argv, after)  # nothing above the cwd
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), (argv, lines)
        assert after == before, (argv, sorted(set(after) - set(before)))  # refused: nothing written


@pytest.fixture(scope="module")
def nothing_launched():
    def refuse(*a, **kw):
        raise AssertionError(f"a process was started: {a}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep.Sweep, "run", lambda self: 0)
        mp.setattr(jobscript, "mpi_library_of", lambda python: "MPICH Version: 5.0.2")  # probes a python
        mp.setattr(subprocess, "run", refuse)  # qsub/sbatch, were they on PATH (--dry-run anyway)
        mp.setattr(subprocess, "Popen", refuse)
        mp.setattr(netns, "requirements_missing", lambda: None)
        mp.setattr(netns, "sweep_stale", lambda: [])
        mp.setattr(emulate, "hydra_version", lambda mpirun: "HYDRA")
        mp.setattr(emulate, "launch_command", lambda *a, **kw: 0)
        yield


@given(sweep_argv())
def test_sweep_command_lines(nothing_launched, argv):
    _run(sweep.main, argv, "collscale sweep")


@st.composite
def emulate_argv(draw):
    argv = _options(draw, [("--hosts", COUNTS.filter(lambda c: "," not in c), 0.8),
                           ("--ppn", COUNTS.filter(lambda c: "," not in c), 0.3), ("--timeout", SECONDS, 0.3),
                           ("--rate", st.sampled_from(["1gbit", "10gbps", "0.5kbit", "100mbit", "2.5Gbit"]), 0.3)])
    if draw(st.integers(0, 9)) == 0:
        argv.append("--cleanup")
    argv += draw(st.lists(st.sampled_from(["--bogus", "-h", "x"]), max_size=1))
    command = draw(st.sampled_from([[], ["mpirun", "-n", "2", "python", "x"], ["torchrun", "-m", "x"],
                                    ["python", "-m", "x"], ["mpirun", "-hosts", "a", "-n", "2", "x"],
                                    ["torchrun", "--nnodes", "2", "x"], ["mpirun", "-n"], ["mpiexec", "-np", "0"],
                                    ["mpirun", "-n", "4", "-ppn", "2", "x"], ["torchrun", "--nproc-per-node", "2",
                                                                            "-m", "x"]]))
    return argv + (["--", *command, *draw(st.lists(WORDS, max_size=2))] if command or draw(st.booleans()) else [])


@given(emulate_argv())
def test_emulate_command_lines(nothing_launched, argv):
    _run(emulate.main, argv, "collscale emulate")
