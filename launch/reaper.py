"""Nothing a sweep or an emulation launched outlives it, even after ``kill -9`` of it.

Killing a launch's process group is not enough: MPICH's Hydra puts its
``hydra_pmi_proxy`` and every rank in sessions of their own, and torchrun
its workers.  What each launcher does when it is stopped (MPICH 5.0.2's
Hydra and torch's torchrun; the times are in docs/results/2026-12.md,
"Launches die with their sweep"):

=========================  =====================================================
SIGKILL of mpiexec         its proxy sees the control socket close and kills
                           the ranks
SIGTERM of mpiexec         mpiexec stops the ranks
SIGKILL of the proxy       mpiexec and the ranks run on
SIGTERM of torchrun        torchrun stops its workers, then itself
SIGKILL of torchrun        the workers run on
kill -9 of the sweep       without this module: mpiexec, proxy and ranks, or
                           torchrun and its workers, run to the point's end
=========================  =====================================================

So two layers, each enough alone for mpirun and torchrun:

1. :func:`parent_death_signal`: every launcher is started with a parent-death
   signal, SIGTERM (``prctl(PR_SET_PDEATHSIG)`` in the child before exec; it
   survives the ``ip netns exec ... unshare ... sh -c 'exec ...'`` chain of
   :mod:`launch.emulate`, which execs without forking).  The kernel sends it
   the moment the process that started the launcher dies, however it died,
   and the launcher stops its own ranks as above.
2. :class:`Reaper`: one small process a sweep or emulation, ``python -m
   launch.reaper TOKEN``, in a session of its own, blocked reading a pipe
   whose only write end the launching process holds.  When that process
   dies, for any reason, the read ends (EOF; an orderly end writes "done"
   first, so a death is told from an end, and said) and the reaper stops every
   process whose environment carries ``COLLSCALE_LAUNCH_TOKEN=TOKEN``
   (:func:`end_marked`: SIGTERM, SIGKILL after :data:`GRACE` seconds), then
   exits.  Every launch gets that variable, and mpiexec, its proxies, ranks,
   torchrun and its workers all inherit it.  A process is only ever signalled
   through a pidfd opened *before* its environment is read, so a pid reused
   by an unrelated process is never hit; the reaper knows no other process.
   With ``--emulation OWNER`` it then removes the dead emulation's
   namespaces (:func:`launch.netns.remove_dead`).

The reaper never outlives its job: it exits on EOF (when the sweep ends,
normally or not) after at most :data:`LIMIT` seconds of stopping.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Callable, Dict, List, Optional

__all__ = ["TOKEN_VAR", "new_token", "marked", "end_marked", "parent_death_signal", "Reaper", "main",
           "GRACE", "LIMIT"]

TOKEN_VAR = "COLLSCALE_LAUNCH_TOKEN"
GRACE = 3.0  # seconds between SIGTERM and SIGKILL: torchrun takes up to 2 s to stop its workers
LIMIT = 8.0  # the most a stop takes, so that "gone within 10 s of the kill" holds
_PR_SET_PDEATHSIG = 1
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def new_token() -> str:
    return uuid.uuid4().hex


def _carries(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return entry in b"\0" + f.read()
    except OSError:  # gone, or another user's
        return False


def _pidfd(pid: int) -> Optional[int]:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def marked(token: str) -> Dict[int, Optional[int]]:
    """The live processes carrying ``token`` (not this one): pid -> a pidfd opened before the
    last look at its environment, so that it is that process (None without pidfds)."""
    entry = f"\0{TOKEN_VAR}={token}\0".encode()
    found: Dict[int, Optional[int]] = {}
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        if pid == os.getpid() or not _carries(pid, entry):
            continue
        fd = _pidfd(pid)
        if _carries(pid, entry):  # again, now that fd holds the process: the pid was not reused
            found[pid] = fd
        elif fd is not None:
            os.close(fd)
    return found


def _signal(pid: int, fd: Optional[int], sig: int) -> None:
    try:
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(pid, sig)
    except (OSError, AttributeError):
        pass


def end_marked(token: str, grace: float = GRACE, limit: float = LIMIT) -> int:
    """Stop every process carrying ``token``: SIGTERM once each (launchers then stop their
    ranks in order), SIGKILL to whatever is left after ``grace``; returns how many there were.
    Gives up after ``limit`` seconds (a process stuck in the kernel cannot be killed)."""
    start = time.monotonic()
    termed: set = set()
    while True:
        procs = marked(token)
        try:
            if not procs or time.monotonic() - start > limit:
                return len(termed | set(procs))
            late = time.monotonic() - start > grace
            for pid, fd in procs.items():
                if late or pid not in termed:
                    _signal(pid, fd, signal.SIGKILL if late else signal.SIGTERM)
                    termed.add(pid)
        finally:
            for fd in procs.values():
                if fd is not None:
                    os.close(fd)
        time.sleep(0.05)


def parent_death_signal(sig: int = signal.SIGTERM) -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` that has the kernel send ``sig`` to the child when this process dies
    (None where prctl is unavailable).  The launching thread must outlive the child: the
    signal follows the thread that forked it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not after the fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl: too late to be told
            os.kill(os.getpid(), sig)
    return arm


class Reaper:
    """``with Reaper(token):`` runs the reaper of this process for the block (see the module
    docstring); ``emulation`` is the owner pid of emulated hosts to remove after a kill."""

    def __init__(self, token: str, what: str = "launch", emulation: Optional[int] = None):
        self.token, self.what, self.emulation = token, what, emulation
        self.proc: Optional[subprocess.Popen] = None
        self._write: Optional[int] = None

    def __enter__(self) -> "Reaper":
        read, self._write = os.pipe()  # neither end is inherited by the launches (close_fds)
        cmd = [sys.executable, "-m", "launch.reaper", self.token, "--what", f"{self.what} (pid {os.getpid()})"]
        if self.emulation is not None:
            cmd += ["--emulation", str(self.emulation)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p))
        env.pop(TOKEN_VAR, None)
        try:
            self.proc = subprocess.Popen(cmd, stdin=read, stdout=subprocess.DEVNULL, env=env, cwd="/",
                                         start_new_session=True)  # no terminal signal reaches it
        except BaseException:
            os.close(self._write)
            raise
        finally:
            os.close(read)
        return self

    def __exit__(self, *exc) -> None:
        try:
            os.write(self._write, b"done")  # an orderly end: what is left (nothing, normally) goes quietly
        except OSError:
            pass  # the reaper is gone (someone killed it): nothing to tell
        os.close(self._write)
        try:
            self.proc.wait(timeout=LIMIT + 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _owner_gone(pid: int, wait: float = 2.0) -> bool:
    """True once ``pid`` has exited (a zombie counts: its pid cannot be reused yet)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launch.reaper",
                                     description="Wait for EOF on stdin, then stop every process "
                                                 f"carrying {TOKEN_VAR}=TOKEN (started by launch.sweep "
                                                 "and launch.emulate; not for direct use).")
    parser.add_argument("token")
    parser.add_argument("--what", default="launch")
    parser.add_argument("--emulation", type=int, help="owner pid of emulated hosts to remove once it is gone")
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    orderly = b""
    while True:  # blocks until the launching process closes its end or dies
        try:
            chunk = os.read(0, 4096)
        except OSError:
            break
        if not chunk:
            break
        orderly += chunk
    stopped = end_marked(args.token)
    removed = False
    if args.emulation is not None and not orderly and _owner_gone(args.emulation):
        from launch import netns

        removed = netns.remove_dead(args.emulation)
    if not orderly or stopped or removed:
        try:
            said = (f"ended leaving {stopped} processes: stopped them" if orderly else
                    f"died: its launch is stopped (the reaper stopped {stopped} processes still running)")
            print(f"collscale: {args.what} {said}" + ("; its emulated hosts are removed" if removed else ""),
                  file=sys.stderr, flush=True)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
