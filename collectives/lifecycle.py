"""The process lifecycle of one runner: start, guard, end (every runner's ``main`` goes through here).

:func:`process_main` owns the process: it guards the streams
(:mod:`ground.errors`), starts the job's communicator (:func:`ground.comm.world`),
runs the runner's body with the stdout table and the process's watchdog, and
turns the outcome into the exit status (:func:`guarded`): bad input and
failures every rank agrees on end cleanly on all ranks; anything else on one
rank aborts the job (:func:`_abort`).  :func:`_close` ends the process under
-T (closing the control communicator, MPI_Finalize under an alarm, the host's
stragglers reaped).  The flags are :mod:`collectives.cli`'s; the run itself is
:mod:`collectives.runner`'s.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import traceback

from collectives.config import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TIMEOUT, EXIT_USAGE, EXIT_WRONG
from ground.errors import EXIT_BELOW
from ground import errors
from ground.dtypes import ConfigError

__all__ = ["process_main", "guarded", "FINALIZE_GRACE_S"]


def process_main(body, mpi_init=(None, None), judge=None) -> int:
    """Own the process for one runner: guard its streams (:mod:`ground.errors`: a closed stdout
    is exit 2), start the job's communicator, call ``body(comm, env_tweaks, sinks, watchdog)`` (``sinks``:
    the stdout table on rank 0; ``watchdog``: the process's, armed until it ends) and turn its outcome into
    the exit status (:func:`guarded`, :func:`_close`); ``mpi_init``: (--thread-level, largest size);
    ``judge(records)``: what falls below the run's expectation (:mod:`collectives.gates`), one phrase each."""
    from collectives.output import stdout_table
    from collectives.watchdog import Watchdog
    from ground.comm import world
    from ground.mismatch import LaunchMismatch

    errors.guard_stdio()
    try:
        comm, tweaks = world(*mpi_init)
    except Exception as exc:  # MPI could not start, or a launcher of another MPI (every process says it)
        errors.say("collscale", exc)
        return EXIT_USAGE if isinstance(exc, LaunchMismatch) else EXIT_ERROR
    dog = Watchdog(0.0, comm.rank)
    return guarded(comm, lambda: errors.require_stdout(comm, ConfigError)
                   or body(comm, tweaks, [stdout_table()] if comm.rank == 0 else [], dog), dog, judge)


def guarded(comm, body, watchdog=None, judge=None) -> int:
    """Run ``body()`` (which returns the records) and turn its outcome into an exit status.

    Bad input and failures every rank agrees on end cleanly on all ranks (one message from rank
    0); anything else on one rank aborts the job, so no rank is left waiting.  Rank 0's output
    failing (:class:`~ground.errors.StreamError`) is exit 2 before the first row, 3 after.  Wrong
    results are exit 1; else a run ``judge`` finds below expectation is exit 4 (rank 0 says why).
    """
    from collectives.runner import StartupError

    rank = comm.rank
    try:
        records = body()
    except SystemExit as exc:  # --help
        return _close(comm, int(exc.code or 0), watchdog)
    except (ConfigError, StartupError) as exc:  # agreed by all ranks (flags, files; a failed start): no abort
        if rank == 0:
            errors.say("collscale", exc)
        return _close(comm, EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_ERROR, watchdog)
    except errors.StreamError as exc:  # rank 0's stdout or file failed: 2 before the first row, 3 after
        errors.say("collscale", exc)  # the one line: alone, end cleanly; else abort, MPI's own line silenced
        code = EXIT_ERROR if exc.rows else EXIT_USAGE
        return _close(comm, code, watchdog) if comm.size == 1 else _abort(comm, code, quiet=True)
    except TimeoutError as exc:  # a transport's own wait gave up (it names the rank it waited for)
        errors.tell(f"collscale: rank {rank}: timeout: {exc}; aborting the job")
        return _abort(comm, EXIT_TIMEOUT)
    except KeyboardInterrupt:
        errors.tell(f"collscale: rank {rank}: interrupted; aborting the job")
        return _abort(comm, EXIT_INTERRUPTED)
    except BaseException as exc:  # one rank failed: the others may be blocked, so abort them all
        if os.environ.get("COLLSCALE_DEBUG"):
            traceback.print_exc()
        # One write: the launcher may stop forwarding output as soon as the abort lands.
        errors.tell(f"collscale: rank {rank}: error: {type(exc).__name__}: {exc}; aborting the job"
                    + ("" if os.environ.get("COLLSCALE_DEBUG") else " (set COLLSCALE_DEBUG=1 for the traceback)"))
        return _abort(comm, EXIT_ERROR)
    if records and not any(r["status"] in ("ok", "wrong") for r in records):
        if rank == 0:
            reasons = sorted({r["reason"] for r in records if r.get("reason")})
            errors.say("collscale", f"nothing was measured: every point is unsupported by this transport "
                       f"({'; '.join(reasons)})")
        return _close(comm, EXIT_USAGE, watchdog)
    wrong = sum(r["wrong"] or 0 for r in records)
    if wrong:
        return _close(comm, EXIT_WRONG, watchdog)
    low = judge(records) if judge is not None and records else []
    if low and rank == 0:
        errors.say("collscale", "below expectation: " + "; ".join(low))
    return _close(comm, EXIT_BELOW if low else 0, watchdog)


FINALIZE_GRACE_S = 7  # past the watchdog's longest grace (5 s), so a stalled rank reports first


def _reap_stragglers(rank: int, ranks, timeout: float) -> bool:
    """The lowest rank of each host waits, bounded by -T, for the host's other ranks to end.

    Every rank has passed MPI_Finalize when this runs, so the job is done;
    but a rank stopped in its last instant (after finalising, before its
    exit completes) would keep the launcher waiting forever, and no other
    rank is left to notice.  Such a rank is ended with SIGKILL, the launcher
    then ends the job, and the run exits 124.  Only this host's ranks of
    this job are touched (their pids were gathered at start).
    """
    import socket
    import time

    host = socket.gethostname()
    here = [r for r in ranks if r.get("host") == host]
    if timeout <= 0 or not here or min(r["rank"] for r in here) != rank:
        return False
    mine = next(r for r in here if r["rank"] == rank)
    # Only ranks this process can see as themselves: same pid namespace, same start time.
    peers = {r["pid"]: (r["rank"], r.get("start")) for r in here
             if r["rank"] != rank and r.get("pidns") == mine.get("pidns") and r.get("start") is not None}
    deadline = time.monotonic() + timeout
    while peers and time.monotonic() < deadline:
        peers = {pid: p for pid, p in peers.items() if _alive(pid, p[1])}
        if peers:
            time.sleep(0.02)
    for pid, (r, _) in peers.items():
        errors.tell(f"collscale: rank {rank}: timeout: rank {r} (pid {pid}) did not exit within -T {timeout:g} s "
                    "after the job finished; ending it")
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return bool(peers)


def _alive(pid: int, start: int) -> bool:
    """This very process (same start time) is running or stopped; a zombie (exited, not yet
    reaped by the launcher) or a reused pid counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return len(fields) > 19 and fields[0] not in ("Z", "X") and fields[19] == str(start)


def _close(comm, code: int, watchdog=None) -> int:
    """Release the control communicator on a clean end (every rank gets here).

    With a process's ``watchdog`` (an entry point's end), -T still bounds
    this: the communicator is closed and MPI finalised under it (and under
    an alarm: MPI_Finalize holds the GIL), so a rank that stalls on the way
    out ends the job (exit 124) instead of keeping it alive.

    Under torchrun a finished rank sometimes died in the interpreter's final
    teardown with "terminate called without an active exception" (SIGABRT,
    no Python frame left; often enough to fail test runs, even with the
    process group destroyed first), which torchrun reports as a
    failed job although every result was written.  Such communicators ask for
    ``exit_at_close``: the group is destroyed, output flushed, and the
    process ends at once with the harness's status.
    """
    if watchdog is not None:
        watchdog.finishing("finishing the job (closing the control communicator, finalising MPI)")
        if watchdog.requested > 0:
            # MPI_Finalize waits for every rank and holds the GIL while it does,
            # so no Python thread can end it: the kernel does, by SIGALRM's
            # default action, after the other ranks' watchdogs had their turn.
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(int(math.ceil(watchdog.requested)) + FINALIZE_GRACE_S)
    for step in ("close", "finalize"):
        fn = getattr(comm, step, None)
        if fn is not None:
            fn()
    if watchdog is None and not getattr(comm, "exit_at_close", False):
        return code
    if watchdog is not None:
        signal.alarm(0)  # finalised; the wait for stragglers is bounded by itself
        watchdog.close()
        if _reap_stragglers(comm.rank, watchdog.ranks, watchdog.requested):
            code = EXIT_TIMEOUT
        if watchdog.requested > 0:
            signal.alarm(FINALIZE_GRACE_S)  # C's exit() runs MPI's atexit handlers
    errors.flush_stdio()
    if getattr(comm, "exit_at_close", False):
        os._exit(code)
    # End now, without the interpreter's teardown (a rank stopped in it would
    # keep the job alive), but through C's exit(): os._exit right after
    # MPI_Finalize skips MPICH's atexit handlers, and Hydra then killed a rank
    # with SIGKILL in 6 of 30 three-rank jobs here; exit() in 0 of 60.
    ctypes.PyDLL(None).exit(code)  # PyDLL: holds the GIL, no Python thread runs during exit()
    return code


def _abort(comm, code: int, quiet: bool = False) -> int:
    """End the whole job from this rank, leaving nothing behind it can remove (``quiet``: no MPI "Abort" line)."""
    from transports.base import cleanup_all

    cleanup_all()
    if quiet:
        errors.silence_stderr()
    comm.abort(code)
    return code
