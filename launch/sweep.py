"""Sweeps: collectives over rank counts here, or over node counts on a batch scheduler.

    python -m launch.sweep --ranks 1,2,4,8 --collectives allreduce,allgather -- -b 8 -e 64M
    python -m launch.sweep --launcher torchrun --ranks 2,4 -- --transport gloo -e 1M
    python -m launch.sweep --scheduler pbs --nodes 1,2,4,8 --ppn 4 --queue debug \\
        --account MYPROJ --walltime 00:30:00 -- -b 8 -e 1G --transport mpi
    python -m launch.sweep --scheduler slurm --nodes 2,4 --ppn 8 --dry-run

Arguments after ``--`` go to every launch of the harness (the nccl-tests
flags and ours); the sweep owns ``--json``.  Every launch appends to one
JSON Lines file per sweep (default ``DIR/results.jsonl``, DIR being
``./<sweep id>``), each record carrying ``sweep_id`` and ``sweep_point``;
``python -m analysis.report DIR/results.jsonl -o DIR/report`` reads it as
it is.  A point that fails (a launch error, a crash, a timeout) is recorded
with ``status: failed`` and its reason, and the sweep goes on.

Locally each point is one ``mpirun`` (MPICH's, installed with collscale) or
``torchrun --standalone`` job; its full output goes to ``DIR/logs``.  On a
scheduler, each node count is one job script (:mod:`launch.jobscript`),
submitted with ``qsub``/``sbatch`` when they are on PATH, or printed as the
commands to run when they are not (and always with ``--dry-run``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Dict, List, Optional, Sequence

from collectives import spec as specs
from collectives.output import FIELDS, SCHEMA, append_line
from launch import jobscript

__all__ = ["main", "failure_record", "record_failure", "new_sweep_id", "local_command", "Sweep"]

EXIT_FAILED_POINTS = 1  # some point failed or had wrong elements, as the harness's exit 1


def new_sweep_id() -> str:
    return "sweep-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def failure_record(sweep_id: str, point: str, collective: str, nranks: int, transport: str, reason: str,
                   exit_code: Optional[int] = None, nhosts: Optional[int] = None) -> Dict:
    """The record of a point that produced no (or not all) results: ``status: failed``."""
    rec = dict.fromkeys(FIELDS)
    rec.update(
        schema=SCHEMA, kind="measured", status="failed",
        timestamp=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        collective=collective, transport=transport, nranks=nranks, nhosts=nhosts, reason=reason,
        sweep_id=sweep_id, sweep_point=point, exit_code=exit_code,
    )
    return rec


def record_failure(path: str, rec: Dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        append_line(f, json.dumps(rec, separators=(",", ":")) + "\n")


def _list(text: str, what: str, convert=str) -> List:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ValueError(f"--{what}: give a comma-separated list")
    try:
        values = [convert(t) for t in items]
    except ValueError:
        raise ValueError(f"--{what} {text!r}: expected comma-separated whole numbers") from None
    if convert is int and any(v < 1 for v in values):
        raise ValueError(f"--{what} {text!r}: every count must be at least 1")
    return values


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
            raise ValueError("--launcher torchrun: torchrun is not installed (pip install -e '.[torch]')")
        return [exe, "--standalone", "--nproc-per-node", str(nranks), *launcher_args, *program]
    exe = _bin("mpirun") or _bin("mpiexec")
    if not exe:
        raise ValueError("no mpirun found: install collscale (pip install -e .) for MPICH's")
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
    """End a launch and everything it started (its own process group)."""
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

    def points(self):
        return [(n, c) for n in self.ranks for c in self.collectives]

    def run(self) -> int:
        os.makedirs(self.log_dir, exist_ok=True)
        points = self.points()
        self.say(f"# collscale sweep {self.sweep_id}: {len(points)} points "
                 f"(ranks {','.join(map(str, self.ranks))} x {','.join(self.collectives)}) via {self.launcher}")
        self.say(f"# results: {self.json_path}   logs: {self.log_dir}")
        started = time.monotonic()
        for k, (nranks, collective) in enumerate(points, 1):
            self._point(k, len(points), nranks, collective)
        took = time.monotonic() - started
        ok = len(points) - len(self.failed)
        self.say(f"# sweep done in {took:.0f} s: {ok} of {len(points)} points completed"
                 + (f"; failed: {', '.join(self.failed)}" if self.failed else "")
                 + (f"; WRONG ELEMENTS in: {', '.join(self.wrong)}" if self.wrong else ""))
        self.say(f"# report: python -m analysis.report {shlex.quote(self.json_path)} -o "
                 f"{shlex.quote(os.path.join(os.path.dirname(self.json_path) or '.', 'report'))}")
        return EXIT_FAILED_POINTS if self.failed or self.wrong else 0

    def _point(self, k: int, total: int, nranks: int, collective: str) -> None:
        point = f"ranks{nranks}-{collective}"
        cmd = local_command(self.launcher, nranks, collective, self.harness_args, self.json_path,
                            self.launcher_args)
        log = os.path.join(self.log_dir, f"{point}.log")
        env = dict(os.environ, COLLSCALE_SWEEP_ID=self.sweep_id, COLLSCALE_SWEEP_POINT=point,
                   PYTHONUNBUFFERED="1")
        offset = os.path.getsize(self.json_path) if os.path.exists(self.json_path) else 0
        self.say(f"[{k}/{total}] {point}: {' '.join(shlex.quote(w) for w in cmd)}")
        t0 = time.monotonic()
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True, stdin=subprocess.DEVNULL)
            try:
                code = proc.wait(timeout=self.point_timeout)
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

    def _fail(self, point, collective, nranks, reason, code):
        self.failed.append(point)
        record_failure(self.json_path, failure_record(self.sweep_id, point, collective, nranks,
                                                      self.transport, reason, code))


def _scheduler_plan(args) -> Dict:
    """Check the scheduler options; returns the checked values."""
    if not args.nodes:
        raise ValueError("--nodes N,N,... is required with --scheduler")
    nodes = _list(args.nodes, "nodes", int)
    if not args.ppn or args.ppn < 1:
        raise ValueError("--ppn N (ranks per node, at least 1) is required with --scheduler")
    if args.launcher != "mpirun" or args.point_timeout is not None:
        raise ValueError("--launcher and --point-timeout are for local sweeps; jobs launch with "
                         "mpiexec (PBS) or srun (Slurm), limited by --walltime")
    if args.select and args.scheduler != "pbs":
        raise ValueError("--select is PBS's (-l select=N:...); for Slurm use --directive '--constraint=...'")
    for value, name in ((args.queue, "--queue"), (args.account, "--account"), (args.select, "--select"),
                        (args.place, "--place"), (os.path.abspath(args.dir or "."), "--dir")):
        if value and any(c.isspace() for c in value):
            raise ValueError(f"{name} {value!r}: scheduler directives cannot hold spaces")
    env = []
    for item in args.env or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--env {item!r}: expected NAME=VALUE")
        env.append((key, value))
    return {"nodes": nodes, "walltime": jobscript.normalise_walltime(args.walltime), "env": env}


def _scheduler_sweep(args, plan, collectives, harness_args, sweep_dir, json_path, sweep_id, transport, say) -> int:
    nodes, walltime, env = plan["nodes"], plan["walltime"], plan["env"]
    os.makedirs(sweep_dir, exist_ok=True)
    submit = jobscript.SUBMIT[args.scheduler]
    have = shutil.which(submit)
    scripts = []
    for n in nodes:
        spec = jobscript.JobSpec(
            scheduler=args.scheduler, nodes=n, ppn=args.ppn, collectives=tuple(collectives),
            sweep_id=sweep_id, json_path=os.path.abspath(json_path), workdir=os.path.abspath(os.getcwd()),
            log_path=os.path.abspath(os.path.join(sweep_dir, f"nodes{n}.log")),
            python=args.python or sys.executable, transport=transport, harness_args=tuple(harness_args),
            queue=args.queue, account=args.account, walltime=walltime,
            directives=tuple(args.directive or ()), launcher_args=tuple(shlex.split(args.launcher_args or "")),
            setup=tuple(args.setup or ()), env=tuple(env), select_extra=args.select, place=args.place)
        path = os.path.join(sweep_dir, f"nodes{n}{jobscript.SUFFIX[args.scheduler]}")
        with open(path, "w") as f:
            f.write(jobscript.render(spec))
        os.chmod(path, 0o755)
        scripts.append((spec, path))
    say(f"# collscale sweep {sweep_id}: {len(scripts)} {args.scheduler} job scripts in {sweep_dir} "
        f"(nodes {','.join(map(str, nodes))} x {args.ppn} ranks per node; {','.join(collectives)})")
    say(f"# results will collect in {json_path}")
    failed = 0
    if args.dry_run or not have:
        if not args.dry_run:
            say(f"# {submit} is not on PATH here: submit from a login node with")
        else:
            say("# --dry-run: nothing submitted; to submit:")
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.sweep",
        description="Run collectives over rank counts here (one mpirun or torchrun job per point) or "
                    "over node counts on PBS Pro / Slurm (one job script per node count). Arguments "
                    "after '--' go to every harness launch.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m launch.sweep --ranks 1,2,4 --collectives allreduce,allgather -- -e 16M\n"
               "  python -m launch.sweep --scheduler pbs --nodes 1,2,4,8 --ppn 4 --queue debug "
               "--account P --walltime 30 -- -e 1G\n"
               "  python -m launch.sweep record-failure ...   (used by the job scripts)")
    p.add_argument("--collectives", default="allreduce,broadcast,allgather",
                   help="comma-separated (default allreduce,broadcast,allgather)")
    p.add_argument("--ranks", default="1,2,4", help="local mode: rank counts (default 1,2,4)")
    p.add_argument("--launcher", choices=("mpirun", "torchrun"), default="mpirun",
                   help="local mode: how each point starts its ranks")
    p.add_argument("--launcher-args", help="extra launcher options, one string (e.g. '--cpu-bind depth "
                                           "--depth 8' for PALS mpiexec, '--mpi=pmix' for srun)")
    p.add_argument("--point-timeout", type=float, help="local mode: stop a point after this many seconds")
    p.add_argument("--scheduler", choices=jobscript.SCHEDULERS, help="write job scripts for this scheduler")
    p.add_argument("--nodes", help="scheduler mode: node counts, e.g. 1,2,4,8")
    p.add_argument("--ppn", type=int, help="scheduler mode: ranks per node")
    p.add_argument("--queue", help="PBS queue (-q) / Slurm partition")
    p.add_argument("--account", help="PBS project (-A) / Slurm account")
    p.add_argument("--walltime", default="00:30:00", help="per job: HH:MM:SS or minutes (default 00:30:00)")
    p.add_argument("--directive", action="append",
                   help="extra scheduler line, repeatable: '-l filesystems=home:eagle' (PBS), "
                        "'--constraint=gpu' (Slurm)")
    p.add_argument("--select", help="PBS: more resources for each chunk of -l select, e.g. 'system=polaris' "
                                    "or 'ncpus=64'")
    p.add_argument("--place", default="scatter:excl",
                   help="PBS placement (-l place=...; default scatter:excl: one chunk per node, nodes not shared)")
    p.add_argument("--setup", action="append", help="shell line run first in each job, repeatable "
                                                    "(e.g. 'module load conda; conda activate env')")
    p.add_argument("--env", action="append", help="NAME=VALUE exported in each job, repeatable")
    p.add_argument("--python", help=f"python on the compute nodes (default: this one, {sys.executable})")
    p.add_argument("--dry-run", action="store_true", help="write the scripts, print the submit commands")
    p.add_argument("--dir", help="sweep directory (default ./<sweep id>)")
    p.add_argument("--json", help="the sweep's JSON Lines file (default DIR/results.jsonl)")
    p.add_argument("--sweep-id", help="reuse a sweep id (append to an earlier sweep)")
    p.add_argument("harness", nargs=argparse.REMAINDER, help="-- harness arguments")
    return p


def _record_failure_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m launch.sweep record-failure",
                                description="Append a failed point's record to a sweep file.")
    p.add_argument("--json", required=True)
    p.add_argument("--sweep-id", required=True)
    p.add_argument("--point", required=True)
    p.add_argument("--collective", required=True)
    p.add_argument("--nranks", type=int, required=True)
    p.add_argument("--nhosts", type=int)
    p.add_argument("--transport", default="auto")
    p.add_argument("--exit-code", type=int)
    p.add_argument("--reason", required=True)
    p.add_argument("--unless-wrong", action="store_true",
                   help="record nothing if the point wrote rows with wrong elements (the harness's exit 1)")
    a = p.parse_args(argv)
    if a.unless_wrong and _count_rows(a.json, 0, a.point, a.sweep_id).get("wrong"):
        return 0
    try:
        record_failure(a.json, failure_record(a.sweep_id, a.point, a.collective, a.nranks, a.transport,
                                              a.reason, a.exit_code, a.nhosts))
    except OSError as exc:
        print(f"collscale sweep: error: cannot write {a.json}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


def _transport_of(harness_args: Sequence[str]) -> str:
    for i, a in enumerate(harness_args):
        if a == "--transport" and i + 1 < len(harness_args):
            return harness_args[i + 1]
        if a.startswith("--transport="):
            return a.split("=", 1)[1]
    return "auto"


def _make_dir_for(json_path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["record-failure"]:
        return _record_failure_main(argv[1:])
    args = _parser().parse_args(argv)
    harness = list(args.harness)
    if harness[:1] == ["--"]:
        harness = harness[1:]
    say = lambda *a: print(*a, flush=True)  # noqa: E731
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        # Everything is checked before anything is written.
        if any(a == "--json" or a.startswith("--json=") for a in harness):
            raise ValueError("the sweep writes the results: give --json before '--', not to the harness")
        collectives = _list(args.collectives, "collectives")
        unknown = [c for c in collectives if c not in specs.SPECS]
        if unknown:
            raise ValueError(f"--collectives: unknown {', '.join(unknown)}; known: {', '.join(specs.SPECS)}")
        sweep_id = args.sweep_id or new_sweep_id()
        sweep_dir = args.dir or sweep_id
        json_path = args.json or os.path.join(sweep_dir, "results.jsonl")
        transport = _transport_of(harness)
        if args.scheduler:
            plan = _scheduler_plan(args)
            _make_dir_for(json_path)
            return _scheduler_sweep(args, plan, collectives, harness, sweep_dir, json_path, sweep_id, transport,
                                    say)
        for given, name in ((args.nodes or args.ppn, "--nodes/--ppn"), (args.queue or args.account, "--queue/--account"),
                            (args.select, "--select"), (args.directive or args.setup or args.env,
                                                        "--directive/--setup/--env")):
            if given:
                raise ValueError(f"{name} need --scheduler pbs|slurm (locally, use --ranks)")
        ranks = _list(args.ranks, "ranks", int)
        if args.point_timeout is not None and not (math.isfinite(args.point_timeout) and args.point_timeout > 0):
            raise ValueError(f"--point-timeout {args.point_timeout}: must be a positive number of seconds")
        local_command(args.launcher, 1, collectives[0], harness, json_path)  # is the launcher installed?
        _make_dir_for(json_path)
        sweep = Sweep(ranks, collectives, harness, json_path, os.path.join(sweep_dir, "logs"), sweep_id,
                      launcher=args.launcher, launcher_args=shlex.split(args.launcher_args or ""),
                      point_timeout=args.point_timeout, transport=transport, say=say)
        return sweep.run()
    except (ValueError, OSError) as exc:
        print(f"collscale sweep: error: {exc}", file=sys.stderr)
        return 2
    except Stopped as stopped:
        print(f"collscale sweep: stopped by {stopped}; results so far are kept", file=sys.stderr)
        return stopped.code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
