"""Streams that fail, as a hostile user makes them fail, through the real command lines.

Every stream failure is one line and a documented status: exit 2 before the
first row of results, 3 after (the rows written stay, whole lines), never 1
(wrong results) and never a traceback; with stderr closed, the status alone.
Covered: a closed stdout or stderr (``>&-``), a broken pipe (``| head``), a
full disk (a small tmpfs, /dev/full) and names too long for the file system,
which are refused before anything runs.  Most runs are one rank without
mpirun (faster); a few go through mpirun at 2 ranks.  The ``runner`` fixture
fails a test that leaves processes or /dev/shm segments behind.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_cmd

PY = sys.executable
ALLREDUCE = [PY, "-m", "collectives.allreduce"]
QUICK = ["-b", "8", "-e", "1K", "-n", "2", "-w", "0"]
LONG = ["-b", "8", "-e", "16M", "-n", "20", "-w", "0"]  # many rows, a second or more
DATA = Path(__file__).resolve().parents[1] / "data" / "a3mega-h100-nccl-tests-2025.txt"


def sh(runner, script, *cmd, timeout=120):
    """``script`` run by bash with ``cmd`` as "$@" (redirections that subprocess cannot make)."""
    return runner.run(["bash", "-c", script, "bash", *map(str, cmd)], timeout=timeout)


def one_error_line(res, text, prog="collscale"):
    """stderr is exactly one line, ``<prog>: error: ...`` containing ``text``."""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"{prog}: error: ") and text in lines[0], res.stderr
    assert "Traceback" not in res.stderr + res.stdout and "Exception ignored" not in res.stderr


def whole_rows(path):
    text = Path(path).read_text()
    assert text.endswith("\n"), text[-200:]
    return [json.loads(line) for line in text.splitlines()]


def too_long_name(directory, suffix=""):
    return "e" * (os.pathconf(directory, "PC_NAME_MAX") + 1 - len(suffix)) + suffix


# -- a closed stdout or stderr -------------------------------------------------------------------

def test_closed_stdout_is_refused_before_anything_runs(runner, tmp_path):
    out = tmp_path / "r.jsonl"
    res = sh(runner, '"$@" >&-', *ALLREDUCE, *QUICK, "--json", out)
    assert res.returncode == 2, res.stderr
    one_error_line(res, "stdout is closed: nowhere to print the table")
    assert not out.exists()


def test_closed_stdout_at_2_ranks_under_mpirun_is_the_launchers(runner, tmp_path):
    # Under mpirun the ranks write into the launcher's pipes, which stay open: mpiexec itself
    # holds the closed stdout.  What collscale controls: rank 0 reports a closed stdout of its own.
    script = 'if [ "$PMI_RANK" = 0 ]; then exec "$@" >&-; else exec "$@"; fi'
    res = runner.run(cli_cmd(2, "allreduce", *QUICK)[:3] + ["bash", "-c", script, "bash"]
                     + cli_cmd(2, "allreduce", *QUICK)[3:], timeout=120)
    assert res.returncode == 2, res.stderr
    one_error_line(res, "stdout is closed")
    assert res.stdout == ""


def test_closed_stderr_is_the_status_alone(runner, tmp_path):
    bad = tmp_path / too_long_name(tmp_path, ".jsonl")
    res = sh(runner, '"$@" 2>&-', *ALLREDUCE, "--json", bad)
    assert res.returncode == 2
    assert res.stdout == "" and res.stderr == ""  # the error did not go to stdout instead
    res = sh(runner, '"$@" >&- 2>&-', *ALLREDUCE, *QUICK)
    assert (res.returncode, res.stdout, res.stderr) == (2, "", "")
    res = sh(runner, '"$@" 2>&-', *ALLREDUCE, *QUICK)  # nothing to say: the run is fine
    assert res.returncode == 0 and "# Avg bus bandwidth" in res.stdout


# -- a broken pipe ----------------------------------------------------------------------------------

# The reader leaves after the first row of the table (whose JSON row was written just before): the
# failure is certain to come after a row.  (`| head -c 100` can leave during the header: exit 2.)
AFTER_FIRST_ROW = '"$@" | grep -m1 -E "^ +[0-9]" >/dev/null; exit ${PIPESTATUS[0]}'


def test_broken_stdout_mid_run_keeps_the_rows_and_exits_3(runner, tmp_path):
    out = tmp_path / "r.jsonl"
    res = sh(runner, AFTER_FIRST_ROW, *ALLREDUCE, *LONG, "--json", out)
    assert res.returncode == 3, res.stderr
    one_error_line(res, ": Broken pipe")
    assert "cannot write the table to stdout after" in res.stderr
    rows = whole_rows(out)
    assert rows and all(r["schema"].startswith("collscale.row") for r in rows)


def test_broken_stdout_with_stderr_closed_is_the_status_alone(runner, tmp_path):
    res = sh(runner, AFTER_FIRST_ROW.replace('"$@"', '"$@" 2>&-'), *ALLREDUCE, *LONG, "--json", tmp_path / "r.jsonl")
    assert res.returncode == 3 and res.stderr == ""


def test_head_of_the_output_is_2_or_3_never_1_and_one_line(runner, tmp_path):
    # `| head -c 100`: the reader may leave during the header (exit 2) or after rows (exit 3).
    out = tmp_path / "r.jsonl"
    res = sh(runner, '"$@" | head -c 100 >/dev/null; exit ${PIPESTATUS[0]}', *ALLREDUCE, *LONG, "--json", out)
    assert res.returncode in (2, 3), res.stderr
    one_error_line(res, "cannot write the table to stdout after")
    assert (res.returncode == 3) == (out.exists() and bool(whole_rows(out)))


# -- a full disk ------------------------------------------------------------------------------------

def test_dev_full_as_stdout_is_exit_2_before_the_first_row(runner, tmp_path):
    out = tmp_path / "r.jsonl"
    res = sh(runner, '"$@" >/dev/full', *ALLREDUCE, *QUICK, "--json", out)
    assert res.returncode == 2, res.stderr
    one_error_line(res, "cannot write the table to stdout after 0 rows: No space left on device")
    assert not out.exists()


def test_dev_full_as_json_is_exit_2(runner):
    res = runner.run([*ALLREDUCE, *QUICK, "--json", "/dev/full"], timeout=120)
    assert res.returncode == 2, res.stderr
    one_error_line(res, "cannot write /dev/full after 0 rows were written to it: No space left on device")


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB tmpfs (root only), unmounted afterwards."""
    where = tmp_path / "fs"
    where.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(fs, leave: int):
    """Fill ``fs`` up to ``leave`` bytes (tmpfs counts whole pages)."""
    with open(fs / "filler", "wb") as f:
        try:
            f.write(b"\0" * (64 * 1024 - leave))
            f.flush()
        except OSError:
            pass


def test_a_full_disk_before_the_first_row_is_exit_2_and_leaves_no_file(runner, small_fs):
    fill(small_fs, 0)
    out = small_fs / "r.jsonl"
    res = runner.run([*ALLREDUCE, *QUICK, "--json", out], timeout=120)
    assert res.returncode == 2, res.stderr
    one_error_line(res, "after 0 rows were written to it: No space left on device")
    assert not out.exists()


def test_a_disk_that_fills_mid_run_keeps_whole_rows_and_exits_3(runner, small_fs):
    fill(small_fs, 4096)  # one page: a few rows
    out = small_fs / "r.jsonl"
    res = runner.run([*ALLREDUCE, *LONG, "--json", out], timeout=120)
    assert res.returncode == 3, res.stderr
    rows = whole_rows(out)
    one_error_line(res, f"after {len(rows)} rows were written to it: No space left on device")
    assert rows


def test_a_disk_that_fills_mid_run_at_2_ranks(runner, small_fs):
    fill(small_fs, 4096)
    out = small_fs / "r.csv"
    res = runner.cli(2, "allreduce", *LONG, "--csv", out, timeout=120)
    assert res.returncode == 3, res.stderr
    lines = out.read_bytes().splitlines(keepends=True)  # the header and whole rows
    assert len(lines) >= 2 and all(line.endswith(b"\r\n") for line in lines)
    one_error_line(res, f"after {len(lines) - 1} rows were written to it: No space left on device")


# -- names too long for the file system ----------------------------------------------------------

@pytest.mark.parametrize("flag, suffix", [("--json", ".jsonl"), ("--csv", ".csv")])
def test_a_name_too_long_is_refused_before_the_header(runner, tmp_path, flag, suffix):
    res = runner.run([*ALLREDUCE, *QUICK, flag, tmp_path / too_long_name(tmp_path, suffix)], timeout=120)
    assert res.returncode == 2, res.stderr
    one_error_line(res, "file name too long for its file system")
    assert f"argument {flag}" in res.stderr and res.stdout == ""
    assert not any(tmp_path.iterdir())


def test_a_name_too_long_at_2_ranks(runner, tmp_path):
    res = runner.cli(2, "allreduce", *QUICK, "--json", tmp_path / too_long_name(tmp_path), timeout=120)
    assert res.returncode == 2, res.stderr
    one_error_line(res, "file name too long")
    assert res.stdout == "" and not any(tmp_path.iterdir())


def test_a_path_too_long_is_refused_before_the_header(runner, tmp_path):
    path_max = os.pathconf(tmp_path, "PC_PATH_MAX")
    deep = str(tmp_path) + ("/" + "d" * 200) * (path_max // 200 + 1) + "/r.jsonl"
    res = runner.run([*ALLREDUCE, *QUICK, "--json", deep], timeout=120)
    assert res.returncode == 2, res.stderr
    one_error_line(res, "path too long for its file system")
    assert res.stdout == "" and not any(tmp_path.iterdir())


def test_weight_stream_and_replicate_refuse_closed_stdout_and_long_names(runner, tmp_path):
    for module in ("collectives.weight_stream", "collectives.replicate"):
        res = sh(runner, '"$@" >&-', PY, "-m", module)
        assert res.returncode == 2, res.stderr
        one_error_line(res, "stdout is closed")
        res = runner.run([PY, "-m", module, "--csv", tmp_path / too_long_name(tmp_path)], timeout=120)
        assert res.returncode == 2, res.stderr
        one_error_line(res, "file name too long")
    assert not any(tmp_path.iterdir())


# -- analysis and launch commands -------------------------------------------------------------------

def test_analysis_with_a_closed_stdout_is_exit_2_before_any_work(runner, tmp_path):
    res = sh(runner, '"$@" >&-', PY, "-m", "analysis.results", DATA)
    assert res.returncode == 2
    one_error_line(res, "stdout is closed", prog="analysis.results")
    res = sh(runner, '"$@" >&-', PY, "-m", "analysis.report", DATA, "-o", tmp_path / "report")
    assert res.returncode == 2
    one_error_line(res, "stdout is closed", prog="analysis.report")
    assert not (tmp_path / "report").exists()
    res = sh(runner, '"$@" >&- 2>&-', PY, "-m", "analysis.results", DATA)
    assert (res.returncode, res.stdout, res.stderr) == (2, "", "")


def test_analysis_output_paths_too_long_are_exit_2(runner, tmp_path):
    res = runner.run([PY, "-m", "analysis.report", DATA, "-o", tmp_path / too_long_name(tmp_path)], timeout=120)
    assert res.returncode == 2
    one_error_line(res, "file name too long for its file system", prog="analysis.report")
    res = runner.run([PY, "-m", "analysis.results", DATA, "--csv", tmp_path / too_long_name(tmp_path)],
                     timeout=120)
    assert res.returncode == 2
    one_error_line(res, "file name too long for its file system", prog="analysis.results")
    assert res.stdout == "" and not any(tmp_path.iterdir())


def test_analysis_broken_or_full_stdout_is_one_line(runner):
    many = [DATA] * 30  # far more than a pipe holds
    res = sh(runner, '"$@" | head -c 100 >/dev/null; exit ${PIPESTATUS[0]}', PY, "-m", "analysis.results", *many)
    assert res.returncode == 2
    one_error_line(res, "cannot write stdout: Broken pipe", prog="analysis.results")
    res = sh(runner, '"$@" >/dev/full', PY, "-m", "analysis.results", DATA)
    assert res.returncode == 2
    one_error_line(res, "cannot write stdout: No space left on device", prog="analysis.results")


def test_launch_commands_with_a_closed_stdout_are_exit_2(runner):
    res = sh(runner, '"$@" >&-', PY, "-m", "launch.sweep", "--help")
    assert res.returncode == 2
    one_error_line(res, "stdout is closed", prog="collscale sweep")
    res = sh(runner, '"$@" >&-', PY, "-m", "launch.emulate", "--hosts", "2", "--", "true")
    assert res.returncode == 2
    one_error_line(res, "stdout is closed", prog="collscale emulate")


def test_a_sweep_whose_stdout_breaks_after_a_point_exits_3_and_keeps_the_rows(runner, tmp_path):
    out = tmp_path / "r.jsonl"
    res = sh(runner, '"$@" | head -n 3 >/dev/null; exit ${PIPESTATUS[0]}', PY, "-m", "launch.sweep", "local",
             "--json", out, "--dir", tmp_path / "sweep", "--ranks", "1,2", "--collectives", "allreduce",
             "--", *QUICK, timeout=180)
    assert res.returncode == 3, res.stderr
    one_error_line(res, "cannot write stdout: Broken pipe", prog="collscale sweep")
    assert whole_rows(out)
