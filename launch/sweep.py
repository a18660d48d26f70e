"""Sweeps: collectives over rank counts here, or over node counts on a batch scheduler.

The command line (modes, options, and the checks of every value before
anything is written) is :mod:`launch.sweep_args`; this module runs a sweep.
A local sweep runs its points one after the other, each one mpirun or
torchrun job in its own process group; a scheduler sweep writes and submits
one job script per node count (:mod:`launch.jobscript`).

No launch outlives the sweep, however it ends (:mod:`launch.reaper`): each
launcher gets a parent-death signal, and a reaper process stops every process
a sweep's launches started once the sweep is gone, even after ``kill -9``.
Ctrl-C, SIGTERM and SIGHUP stop the running point and record it.  When
stderr is a terminal, a progress bar there counts the points and the rows
of the running one (:mod:`ground.progress`); elsewhere nothing is added.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from facts import record
from collectives.output import append_line
from ground import errors, progress
from launch import jobscript, reaper
from launch.checks import UsageError
from launch.sweep_args import RECORD_FAILURE, Plan, check, check_record, new_sweep_id, parse_args

__all__ = ["main", "parse_args", "failure_record", "record_failure", "new_sweep_id", "local_command", "Sweep"]

EXIT_FAILED_POINTS = 1  # some point failed or had wrong elements, as the harness's exit 1


def failure_record(sweep_id: str, point: str, collective: str, nranks: int, transport: str, reason: str,
                   exit_code: Optional[int] = None, nhosts: Optional[int] = None) -> Dict:
    """The record of a point that produced no (or not all) results: ``status: failed``."""
    return record.new("measured", "failed", collective=collective, transport=transport, nranks=nranks,
                      nhosts=nhosts, reason=reason, sweep_id=sweep_id, sweep_point=point, exit_code=exit_code)


def record_failure(path: str, rec: Dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        append_line(f, json.dumps(rec, separators=(",", ":")) + "\n")


def _bin(name: str) -> Optional[str]:
    """``name`` from this interpreter's environment first (the mpich wheel's mpirun), else PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.access(here, os.X_OK) else shutil.which(name)


def local_command(launcher: str, nranks: int, collective: str, harness_args: Sequence[str], json_path: str,
                  launcher_args: Sequence[str] = (), python: str = sys.executable) -> List[str]:
    """One point's command line: ``mpirun -n N`` or ``torchrun --standalone``."""
    program = ["-m", f"collectives.{collective}", *harness_args, "--json", json_path]
    if launcher == "torchrun":
        exe = _bin("torchrun")
        if not exe:
            raise UsageError("--launcher torchrun: torchrun is not installed (pip install -e '.[torch]')")
        return [exe, "--standalone", "--nproc-per-node", str(nranks), *launcher_args, *program]
    exe = _bin("mpirun") or _bin("mpiexec")
    if not exe:
        raise UsageError("no mpirun found: install collscale (pip install -e .) for MPICH's")
    return [exe, "-n", str(nranks), *launcher_args, python, *program]


def _count_rows(path: str, offset: int, point: str, sweep_id: Optional[str] = None) -> Dict[str, int]:
    """Records this point appended to the sweep file (after ``offset``), by status."""
    counts: Dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as f:
            f.seek(offset)
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("sweep_point") == point and sweep_id in (None, rec.get("sweep_id")):
                    counts[rec.get("status")] = counts.get(rec.get("status"), 0) + 1
    except OSError:
        pass
    return counts


def _last_line(path: str) -> str:
    """The last line a failed launch wrote that says something (its error)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return ""
    for line in reversed(lines):
        if "error" in line.lower() or "timeout" in line.lower() or "killed" in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else ""


class Stopped(Exception):
    """Ctrl-C, SIGTERM or SIGHUP (an ssh session closing) reached the sweep."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.code = 128 + signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """End a launch: its process group (the launcher, which stops its ranks), SIGTERM then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


class Sweep:
    """A local sweep: every (rank count, collective) point, one launch each."""

    def __init__(self, ranks, collectives, harness_args, json_path, log_dir, sweep_id, launcher="mpirun",
                 launcher_args=(), point_timeout=None, transport="auto", say=print):
        self.ranks, self.collectives = ranks, collectives
        self.harness_args, self.json_path, self.log_dir = list(harness_args), json_path, log_dir
        self.sweep_id, self.launcher, self.launcher_args = sweep_id, launcher, list(launcher_args)
        self.point_timeout, self.transport, self.say = point_timeout, transport, say
        self.failed: List[str] = []
        self.wrong: List[str] = []
        self.token = reaper.new_token()  # in every launch's environment: what the reaper stops

    def points(self):
        return [(n, c) for n in self.ranks for c in self.collectives]

    def run(self) -> int:
        os.makedirs(self.log_dir, exist_ok=True)
        points = self.points()
        self.say(f"# collscale sweep {self.sweep_id}: {len(points)} points "
                 f"(ranks {','.join(map(str, self.ranks))} x {','.join(self.collectives)}) via {self.launcher}")
        self.say(f"# results: {self.json_path}   logs: {self.log_dir}")
        started = time.monotonic()
        plain = self.say
        # The reaper ends the launches even if this process is killed.  On a terminal, a bar on stderr
        # (points done, the running point's rows so far); the sweep's lines go above it.
        with reaper.Reaper(self.token, "sweep"), progress.bar(len(points), "sweep", unit="point") as bar:
            self.say = bar.say(plain)
            try:
                for k, (nranks, collective) in enumerate(points, 1):
                    bar.step(f"ranks{nranks}-{collective}")
                    self._point(k, len(points), nranks, collective, bar)
                    bar.done()
            finally:
                self.say = plain
        took = time.monotonic() - started
        ok = len(points) - len(self.failed)
        self.say(f"# sweep done in {took:.0f} s: {ok} of {len(points)} points completed"
                 + (f"; failed: {', '.join(self.failed)}" if self.failed else "")
                 + (f"; WRONG ELEMENTS in: {', '.join(self.wrong)}" if self.wrong else ""))
        self.say(f"# report: python -m analysis.report {shlex.quote(self.json_path)} -o "
                 f"{shlex.quote(os.path.join(os.path.dirname(self.json_path) or '.', 'report'))}")
        return EXIT_FAILED_POINTS if self.failed or self.wrong else 0

    def _point(self, k: int, total: int, nranks: int, collective: str, bar: progress.Progress) -> None:
        point = f"ranks{nranks}-{collective}"
        cmd = local_command(self.launcher, nranks, collective, self.harness_args, self.json_path,
                            self.launcher_args)
        log = os.path.join(self.log_dir, f"{point}.log")
        env = dict(os.environ, COLLSCALE_SWEEP_ID=self.sweep_id, COLLSCALE_SWEEP_POINT=point,
                   PYTHONUNBUFFERED="1", **{reaper.TOKEN_VAR: self.token})
        offset = os.path.getsize(self.json_path) if os.path.exists(self.json_path) else 0
        self.say(f"[{k}/{total}] {point}: {' '.join(shlex.quote(w) for w in cmd)}")
        t0 = time.monotonic()
        with open(log, "w") as out:
            # The launcher gets SIGTERM when the sweep dies, however (it then stops its ranks).
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    stdin=subprocess.DEVNULL, preexec_fn=reaper.parent_death_signal())
            try:
                code = self._wait(proc, bar, point, offset)
                reason = None if code == 0 else f"exit status {code}: {_last_line(log) or 'no output'}"
            except subprocess.TimeoutExpired:
                code = 124
                reason = f"did not finish within --point-timeout {self.point_timeout:g} s; stopped"
            except Stopped as stopped:
                self._fail(point, collective, nranks, f"sweep stopped ({stopped})", stopped.code)
                raise
            finally:
                if proc.poll() is None:  # timed out, or the sweep itself was stopped
                    _stop(proc)
                # Whatever the launcher left (a SIGKILLed torchrun leaves its workers) ends with the point.
                reaper.end_marked(self.token)
        took = time.monotonic() - t0
        rows = _count_rows(self.json_path, offset, point)
        summary = ", ".join(f"{n} {s}" for s, n in sorted(rows.items())) or "no rows"
        if code == 1 and rows.get("wrong"):
            # The harness's own status for wrong elements: the rows say so already.
            self.wrong.append(point)
            self.say(f"    WRONG ELEMENTS in {took:.1f} s ({summary})")
        elif reason:
            self._fail(point, collective, nranks, reason, code)
            self.say(f"    FAILED in {took:.1f} s ({summary}): {reason}; log {log}; going on")
        else:
            self.say(f"    ok in {took:.1f} s ({summary})")

    def _wait(self, proc: subprocess.Popen, bar: progress.Progress, point: str, offset: int) -> int:
        """The launch's exit status (TimeoutExpired after --point-timeout); with a bar, its rows so far
        once a second."""
        if not bar.active:
            return proc.wait(timeout=self.point_timeout)
        deadline = None if self.point_timeout is None else time.monotonic() + self.point_timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(proc.args, self.point_timeout)
            try:
                return proc.wait(timeout=1.0 if left is None else min(1.0, left))
            except subprocess.TimeoutExpired:
                bar.note(f"{sum(_count_rows(self.json_path, offset, point).values())} rows")

    def _fail(self, point, collective, nranks, reason, code):
        self.failed.append(point)
        record_failure(self.json_path, failure_record(self.sweep_id, point, collective, nranks,
                                                      self.transport, reason, code))


def _scheduler_sweep(args: argparse.Namespace, plan: Plan, say) -> int:
    nodes, walltime, env, collectives = plan.nodes, plan.walltime, plan.env, plan.collectives
    sweep_dir, json_path, sweep_id, transport = plan.sweep_dir, plan.json_path, plan.sweep_id, plan.transport
    harness_args = args.harness
    os.makedirs(sweep_dir, exist_ok=True)
    submit = jobscript.SUBMIT[args.scheduler]
    have = shutil.which(submit)
    scripts = []
    library = jobscript.mpi_library_of(args.python or sys.executable)
    for n in nodes:
        spec = jobscript.JobSpec(
            scheduler=args.scheduler, nodes=n, ppn=plan.ppn, collectives=tuple(collectives),
            sweep_id=sweep_id, json_path=os.path.abspath(json_path), workdir=os.path.abspath(os.getcwd()),
            log_path=os.path.abspath(os.path.join(sweep_dir, f"nodes{n}.log")),
            python=args.python or sys.executable, transport=transport, harness_args=tuple(harness_args),
            queue=args.queue, account=args.account, walltime=walltime,
            directives=tuple(args.directive or ()), launcher_args=tuple(plan.launcher_args),
            setup=tuple(args.setup or ()), env=tuple(env), select_extra=args.select, place=args.place,
            mpi_library=library)
        path = os.path.join(sweep_dir, f"nodes{n}{jobscript.SUFFIX[args.scheduler]}")
        with open(path, "w") as f:
            f.write(jobscript.render(spec))
        os.chmod(path, 0o755)
        scripts.append((spec, path))
    say(f"# collscale sweep {sweep_id}: {len(scripts)} {args.scheduler} job scripts in {sweep_dir} "
        f"(nodes {','.join(map(str, nodes))} x {plan.ppn} ranks per node; {','.join(collectives)})")
    say(f"# results will collect in {json_path}")
    failed = 0
    if args.dry_run or not have:
        say("# --dry-run: nothing submitted; to submit:" if args.dry_run else
            f"# {submit} is not on PATH here: submit from a login node with")
        for _, path in scripts:
            say(f"{submit} {shlex.quote(path)}")
    else:
        for spec, path in scripts:
            res = subprocess.run([have, path], capture_output=True, text=True, cwd=os.getcwd())
            if res.returncode == 0:
                say(f"submitted {path}: {res.stdout.strip()}")
            else:
                failed += 1
                reason = f"{submit} refused the job: {(res.stderr or res.stdout).strip()[:300]}"
                say(f"FAILED to submit {path}: {reason}; going on")
                for c in collectives:
                    record_failure(json_path, failure_record(sweep_id, spec.point(c), c, spec.nranks,
                                                             transport, reason, res.returncode,
                                                             spec.nodes))
    say(f"# report once the jobs ran: python -m analysis.report {shlex.quote(json_path)} -o "
        f"{shlex.quote(os.path.join(sweep_dir, 'report'))}")
    return EXIT_FAILED_POINTS if failed else 0


def _record_failure_main(a: argparse.Namespace) -> int:
    rec = check_record(a)
    if a.unless_wrong and _count_rows(rec["json"], 0, rec["point"], rec["sweep_id"]).get("wrong"):
        return 0
    try:
        record_failure(rec["json"], failure_record(rec["sweep_id"], rec["point"], rec["collective"], rec["nranks"],
                                                   rec["transport"], rec["reason"], rec["exit_code"], rec["nhosts"]))
    except OSError as exc:
        raise UsageError(f"cannot write {rec['json']}: {exc.strerror}") from None
    return 0


def _make_dir_for(json_path: str) -> None:
    where = os.path.dirname(os.path.abspath(json_path))
    try:
        os.makedirs(where, exist_ok=True)
    except OSError as exc:  # what the checks cannot foresee (/proc, a read-only mount)
        raise UsageError(f"--json {json_path}: cannot create the directory {where}: {exc.strerror or exc}") from None


def _run(argv: Sequence[str], say, previous: Dict) -> int:
    if RECORD_FAILURE not in list(argv)[:1]:  # the job scripts' mode prints nothing
        errors.refuse_closed_stdout("the sweep's progress")  # exit 2 before anything runs (--help too)
    args = parse_args(argv)
    if args.mode == RECORD_FAILURE:
        return _record_failure_main(args)
    previous.update({sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)})
    start = None
    try:
        plan = check(args)  # everything is checked before anything is written
        if args.scheduler:
            _make_dir_for(plan.json_path)
            return _scheduler_sweep(args, plan, say)
        local_command(args.launcher, 1, plan.collectives[0], args.harness, plan.json_path)  # launcher installed?
        _make_dir_for(plan.json_path)
        start = _size(plan.json_path)
        sweep = Sweep(plan.ranks, plan.collectives, args.harness, plan.json_path,
                      os.path.join(plan.sweep_dir, "logs"), plan.sweep_id, launcher=args.launcher,
                      launcher_args=plan.launcher_args, point_timeout=plan.point_timeout, transport=plan.transport,
                      say=say)
        return sweep.run()
    except Stopped as stopped:
        print(f"collscale sweep: stopped by {stopped}; results so far are kept", file=sys.stderr)
        return stopped.code
    except errors.StreamError as exc:  # stdout broke mid-sweep: exit 3 once rows were written (they stay)
        if start is not None and _size(plan.json_path) > start:
            exc.rows = 1
        raise


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit status: 0, 1 (a point failed or found wrong elements), 2 (bad input, or a stdout that is
    closed, broken or full before any row was written: one line), 3 (a bug: one line, the traceback
    with COLLSCALE_DEBUG=1; or stdout failed after rows were written, which stay), 128+N (stopped by
    signal N)."""
    say = lambda *a: print(*a, flush=True)  # noqa: E731
    previous: Dict = {}
    try:
        return errors.run_main("collscale sweep", lambda: _run(sys.argv[1:] if argv is None else argv, say, previous))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
