"""Shared helpers: find mpirun, run the real CLI, parse its table, catch leaks."""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def find_mpirun() -> str:
    # The MPI that came with this interpreter's install (the mpich wheel)
    # before any other on PATH.
    for candidate in (BIN / "mpirun", BIN / "mpiexec"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("mpirun") or shutil.which("mpiexec")
    if not found:
        pytest.skip("no mpirun: install collscale (pip install -e .) to get the MPICH wheel")
    return found


def test_env(token: str) -> dict:
    env = dict(os.environ)
    env.update(
        COLLSCALE_TEST_TOKEN=token,
        PYTHONUNBUFFERED="1",
        # Open MPI as root (harmless for MPICH).
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        # The jobs of the suite share 2 cores with pytest and the launchers: MPICH's selection as the
        # library gives it (the auto thread level as before it), which keeps the suite within its time;
        # tests/e2e/test_native_cli.py runs the re-routed default on purpose.
        COLLSCALE_MPICH_TUNING="0",
    )
    return env


def mpirun_cmd(n: int, *args) -> list:
    return [find_mpirun(), "-n", str(n), *map(str, args)]


def cli_cmd(n: int, collective: str, *args) -> list:
    return mpirun_cmd(n, sys.executable, "-m", f"collectives.{collective}", *args)


def parse_table(stdout: str):
    """Rows of the nccl-tests table as dicts (cells as strings)."""
    rows = []
    for line in stdout.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split()
        assert len(f) == 13, line
        rows.append({
            "size": int(f[0]), "count": int(f[1]), "type": f[2], "redop": f[3], "root": int(f[4]),
            "out": dict(zip(("time", "algbw", "busbw", "wrong"), f[5:9])),
            "in": dict(zip(("time", "algbw", "busbw", "wrong"), f[9:13])),
        })
    return rows


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _ours(token: str):
    """PIDs of live processes whose environment carries this test's token."""
    pids = []
    needle = f"COLLSCALE_TEST_TOKEN={token}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def _shm():
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()


class Runner:
    """Runs the real CLI in subprocesses with timeouts, tagged for leak checks."""

    def __init__(self):
        self.token = uuid.uuid4().hex
        self.env = test_env(self.token)

    def run(self, cmd, timeout=180, **kw):
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout,
                              cwd=kw.pop("cwd", ROOT), **kw)

    def cli(self, n, collective, *args, timeout=180):
        return self.run(cli_cmd(n, collective, *args), timeout=timeout)

    def popen(self, cmd, **kw):
        return subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=ROOT, **kw)

    def strays(self):
        return _ours(self.token)


@pytest.fixture
def runner():
    """A Runner; fails the test if it leaves processes or /dev/shm segments behind."""
    before = _shm()
    r = Runner()
    yield r
    import time

    deadline = time.time() + 10
    while r.strays() and time.time() < deadline:
        time.sleep(0.2)
    strays = r.strays()
    leaked = _shm() - before
    for pid in strays:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    assert not strays, f"processes left behind: {strays}"
    assert not leaked, f"/dev/shm segments left behind: {sorted(leaked)}"
