"""Progress of long work: a bar on stderr when it is a terminal (a pseudo-terminal here), nothing when piped.

``launch.sweep`` and ``analysis.report`` run outside mpirun for minutes; on
a terminal they show tqdm's bar on stderr (ground/progress.py), and in a
pipe, a file or CI stderr stays as it was.
"""

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytest.importorskip("tqdm")

LOG = Path(__file__).resolve().parents[1] / "data" / "polaris-nccl2.18-n2-all_reduce_output.dat"
SWEEP_ARGS = ["--ranks", "1,2", "--collectives", "allreduce", "--", "-e", "64", "-n", "2", "-w", "0", "--transport",
              "shm"]


def _in_pty(runner, cmd, tmp_path, timeout=120):
    """(exit status, stdout, what was written to the terminal) of ``cmd`` with stderr on a pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    out_path = tmp_path / "stdout.txt"
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=slave, env=runner.env, cwd=ROOT)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, out_path.read_text(), seen.decode("utf-8", "replace")


def test_report_shows_progress_on_a_terminal_only(runner, tmp_path):
    cmd = [sys.executable, "-m", "analysis.report", str(LOG), "-o"]
    code, stdout, term = _in_pty(runner, cmd + [str(tmp_path / "a")], tmp_path)
    assert code == 0 and "wrote" in stdout, term
    assert "report" in term and "/6" in term and "%|" in term, term  # tqdm: "report: ... 17%|#  | 1/6 ..."
    assert "plots" in term and "scaling curves" in term  # the bar names the phase it is in
    piped = runner.run(cmd + [str(tmp_path / "b")], timeout=120)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr


def test_sweep_shows_progress_on_a_terminal_only(runner, tmp_path):
    cmd = [sys.executable, "-m", "launch.sweep", *SWEEP_ARGS[:4]]
    code, stdout, term = _in_pty(runner, cmd + ["--dir", str(tmp_path / "a"), *SWEEP_ARGS[4:]], tmp_path)
    assert code == 0, stdout + term
    assert "[2/2] ranks2-allreduce" in stdout and "2 of 2 points completed" in stdout  # the lines, unchanged
    assert "/2" in term and "point" in term and "%|" in term, term
    assert "ranks1-allreduce" in term and "ranks2-allreduce" in term  # the point running, named
    piped = runner.run(cmd + ["--dir", str(tmp_path / "b"), *SWEEP_ARGS[4:]], timeout=120)
    assert piped.returncode == 0 and "%|" not in piped.stderr and "point/s" not in piped.stderr, piped.stderr
    assert "2 of 2 points completed" in piped.stdout


def test_results_csv_shows_progress_on_a_terminal_only(runner, tmp_path):
    cmd = [sys.executable, "-m", "analysis.results", str(LOG), "--csv"]
    code, stdout, term = _in_pty(runner, cmd + [str(tmp_path / "a.csv")], tmp_path)
    assert code == 0 and "wrote" in stdout, term
    assert "analysis.results" in term and "/2" in term and "reading results" in term, term
    piped = runner.run(cmd + [str(tmp_path / "b.csv")], timeout=120)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
