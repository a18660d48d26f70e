"""launch.reaper with real processes: it stops exactly the processes carrying its token
(never an unrelated one, not even one of the same command line), it exits with its
owner whether the owner ends normally or is killed with SIGKILL, and a parent-death
signal reaches a launcher whose parent dies."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from launch import reaper
from tests.conftest import ROOT


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _sleeper(token=None):
    env = dict(os.environ)
    if token:
        env[reaper.TOKEN_VAR] = token
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env)


def _gone_within(pids, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


def test_end_marked_stops_only_its_token():
    token, other = reaper.new_token(), reaper.new_token()
    ours, theirs, plain = _sleeper(token), _sleeper(other), _sleeper()
    try:
        time.sleep(0.3)  # exec'd: the environment is the new one
        assert set(reaper.marked(token)) == {ours.pid}
        assert reaper.end_marked(token) == 1
        assert ours.wait(timeout=10) == -signal.SIGTERM
        assert theirs.poll() is None and plain.poll() is None
        assert reaper.end_marked(token) == 0  # nothing left: returns at once
    finally:
        for p in (ours, theirs, plain):
            p.kill()
            p.wait()


def test_sigkill_follows_a_process_that_ignores_sigterm():
    token = reaper.new_token()
    env = dict(os.environ, **{reaper.TOKEN_VAR: token})
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"], env=env,
                                stdout=subprocess.PIPE, text=True)
    try:
        assert stubborn.stdout.readline() == "ready\n"
        t0 = time.monotonic()
        assert reaper.end_marked(token, grace=0.5) == 1
        assert stubborn.wait(timeout=10) == -signal.SIGKILL and time.monotonic() - t0 < 5
    finally:
        stubborn.kill()
        stubborn.wait()


OWNER = textwrap.dedent("""\
    import subprocess, sys, time
    from launch import reaper
    token = sys.argv[1]
    with reaper.Reaper(token, "test owner"):
        env = dict(__import__("os").environ, **{reaper.TOKEN_VAR: token})
        # No parent-death signal here: only the reaper can stop this child.
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env,
                                 start_new_session=True)
        print(child.pid, flush=True)
        time.sleep(float(sys.argv[2]))
        child.kill()
        child.wait()
""")


def _owner(token, seconds):
    proc = subprocess.Popen([sys.executable, "-c", OWNER, token, str(seconds)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    reapers = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
               if b"launch.reaper\0" + token.encode() in _cmdline(pid)]
    assert len(reapers) == 1, reapers
    return proc, child, reapers[0]


def test_the_reaper_ends_with_its_owner():
    proc, child, reaper_pid = _owner(reaper.new_token(), 0.2)
    assert proc.wait(timeout=30) == 0
    assert not _alive(child) and _gone_within([reaper_pid], 10)
    assert proc.stderr.read() == ""  # nothing to stop, nothing said


def test_kill_9_of_the_owner_stops_its_launch_and_the_reaper_within_10_s():
    token = reaper.new_token()
    bystander = _sleeper()  # same command line as the child, no token: must survive
    try:
        proc, child, reaper_pid = _owner(token, 120)
        proc.kill()
        proc.wait()
        t0 = time.monotonic()
        assert _gone_within([child, reaper_pid], 10), "the launch or the reaper outlived the owner"
        took = time.monotonic() - t0
        assert took < 10
        said = proc.stderr.read()
        assert "collscale: test owner (pid" in said and "died: its launch is stopped" in said, said
        assert "stopped 1 processes" in said and bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_parent_death_signal_reaches_the_child():
    code = textwrap.dedent("""\
        import subprocess, sys
        from launch import reaper
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                 preexec_fn=reaper.parent_death_signal(), start_new_session=True)
        print(child.pid, flush=True)
        child.wait()
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    parent.wait()
    assert _gone_within([child], 5)
