"""Sweeps: collectives over rank counts here, or over node counts on a batch scheduler.

The first word is the mode.  Each mode takes its own options, the shared
ones (--collectives --launcher-args --dir --json --sweep-id) and, after
'--', the harness's arguments (nccl-tests' flags and ours, not --json),
which go to every launch and are never read by the sweep:

    python -m launch.sweep local --ranks 1,2,4,8 --collectives allreduce,allgather -- -b 8 -e 64M
    python -m launch.sweep local --launcher torchrun --ranks 2,4 -- --transport gloo -e 1M
    python -m launch.sweep pbs --nodes 1,2,4,8 --ppn 4 --queue debug --account MYPROJ -- -e 1G
    python -m launch.sweep slurm --nodes 2,4 --ppn 8 --launcher-args --mpi=pmix --dry-run

A command line without a mode (as all were before the modes) means the one
'--scheduler pbs|slurm' names before '--', else local: '--ranks 1,2 -- -e 1M'
is 'local --ranks 1,2 -- -e 1M'.  Another mode's option is refused in one
line naming its mode; no option name is abbreviated.  Job scripts record
a failed point with 'record-failure'.

All launches append to one JSON Lines file (--json, default DIR/results.jsonl;
DIR: --dir or ./<sweep id>), every record naming its sweep_id and sweep_point.
A failed point (launch error, crash, timeout) is a "failed" record with its
reason, and the sweep goes on.  Each local point is one mpirun or torchrun
job (log in DIR/logs); each node count one job script, submitted with
qsub/sbatch where they are on PATH, else (or with --dry-run) printed.
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
from typing import Dict, List, Optional, Sequence, Tuple

from collectives import record, spec as specs
from collectives.output import append_line
from launch import jobscript

__all__ = ["main", "parse_args", "failure_record", "record_failure", "new_sweep_id", "local_command", "Sweep"]

EXIT_FAILED_POINTS = 1  # some point failed or had wrong elements, as the harness's exit 1
PROG = "python -m launch.sweep"
MODES = ("local", *jobscript.SCHEDULERS)  # the subcommands a user runs
RECORD_FAILURE = "record-failure"  # the subcommand the job scripts run
_SCHEDULER_NAME = {"pbs": "PBS", "slurm": "Slurm"}
# Their values can be the launcher's or scheduler's own options ("--mpi=pmix"), not ours.
_DASHED_VALUES = ("--launcher-args", "--directive")
_ONLY_FOR = {  # why an option of these modes only is refused in another
    ("local",): "is for local sweeps (no --scheduler); jobs run --nodes x --ppn ranks, limited by --walltime",
    ("pbs", "slurm"): "is for PBS and Slurm sweeps, which need --scheduler pbs|slurm; locally, use --ranks",
    ("pbs",): "is PBS's only (--scheduler pbs); for Slurm, ask for resources with --directive '--constraint=...'",
}


def new_sweep_id() -> str:
    return "sweep-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def failure_record(sweep_id: str, point: str, collective: str, nranks: int, transport: str, reason: str,
                   exit_code: Optional[int] = None, nhosts: Optional[int] = None) -> Dict:
    """The record of a point that produced no (or not all) results: ``status: failed``."""
    return record.new("measured", "failed", collective=collective, transport=transport, nranks=nranks,
                      nhosts=nhosts, reason=reason, sweep_id=sweep_id, sweep_point=point, exit_code=exit_code)


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
    """Check the scheduler options' values (which options a mode takes is the parser's); returns them."""
    nodes = _list(args.nodes, "nodes", int)
    if args.ppn < 1:
        raise ValueError(f"--ppn {args.ppn}: ranks per node, at least 1")
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


class _Parser(argparse.ArgumentParser):
    """Raises ValueError (one line) where argparse prints its usage and exits."""

    def error(self, message):
        raise ValueError(f"{message} (see {self.prog} --help)")

    def option_names(self) -> set:
        return {name for action in self._actions for name in action.option_strings}


def _parser() -> Tuple[_Parser, Dict[str, _Parser]]:
    """The parser, and one subparser a subcommand, built from option groups each defined once."""
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--collectives", default="allreduce,broadcast,allgather", help="list (default %(default)s)")
    shared.add_argument("--launcher-args", help="extra launcher options, one string (e.g. '--mpi=pmix' for srun)")
    shared.add_argument("--dir", help="sweep directory (default ./<sweep id>)")
    shared.add_argument("--json", help="the sweep's JSON Lines file (default DIR/results.jsonl)")
    shared.add_argument("--sweep-id", help="reuse a sweep id (append to an earlier sweep)")
    local = argparse.ArgumentParser(add_help=False)
    local.add_argument("--ranks", default="1,2,4", help="rank counts (default 1,2,4)")
    local.add_argument("--launcher", choices=("mpirun", "torchrun"), default="mpirun", help="launcher of each point")
    local.add_argument("--point-timeout", type=float, help="stop a point after this many seconds")
    scheduler = argparse.ArgumentParser(add_help=False)
    scheduler.add_argument("--nodes", required=True, help="node counts, e.g. 1,2,4,8")
    scheduler.add_argument("--ppn", type=int, required=True, help="ranks per node")
    scheduler.add_argument("--queue", help="PBS queue (-q) / Slurm partition")
    scheduler.add_argument("--account", help="PBS project (-A) / Slurm account")
    scheduler.add_argument("--walltime", default="00:30:00", help="per job: HH:MM:SS or minutes (default 00:30:00)")
    scheduler.add_argument("--directive", action="append", help="extra #PBS/#SBATCH line, repeatable")
    scheduler.add_argument("--setup", action="append", help="shell line run first in each job, repeatable")
    scheduler.add_argument("--env", action="append", help="NAME=VALUE exported in each job, repeatable")
    scheduler.add_argument("--python", help=f"python on the compute nodes (default: this one, {sys.executable})")
    scheduler.add_argument("--dry-run", action="store_true", help="write the scripts, print the submit commands")
    pbs_only = argparse.ArgumentParser(add_help=False)
    pbs_only.add_argument("--select", help="more resources for each chunk of -l select, e.g. 'system=polaris'")
    pbs_only.add_argument("--place", default=jobscript.JobSpec.place, help="-l place=... (default %(default)s)")

    # Names are never abbreviated: --launcher would silently be a scheduler sweep's --launcher-args.
    top = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                  allow_abbrev=False)
    modes = top.add_subparsers(dest="mode", title="modes", metavar="{" + ",".join(MODES) + "}")
    usage, harness = "%(prog)s [options] [-- harness args]", "; arguments after '--' go to every harness launch"
    groups = {"local": [shared, local], "pbs": [shared, scheduler, pbs_only], "slurm": [shared, scheduler]}
    for name, parents in groups.items():
        what = ("rank counts here: one mpirun or torchrun job a point" if name == "local" else
                f"node counts on {_SCHEDULER_NAME[name]}: one job script a node count, submitted with "
                f"{jobscript.SUBMIT[name]}")
        modes.add_parser(name, parents=parents, usage=usage, help=what, description=what + harness,
                         allow_abbrev=False).set_defaults(scheduler=None if name == "local" else name)
    # Slurm has no --select/--place: its job spec gets PBS's defaults, which a Slurm script does not read.
    modes.choices["slurm"].set_defaults(select=None, place=jobscript.JobSpec.place)
    record = modes.add_parser(RECORD_FAILURE, description="Append a failed point's record to a sweep file.",
                              allow_abbrev=False)
    for name in ("--json", "--sweep-id", "--point", "--collective", "--reason"):
        record.add_argument(name, required=True)
    for name in ("--nranks", "--nhosts", "--exit-code"):
        record.add_argument(name, type=int, required=name == "--nranks")
    record.add_argument("--transport", default="auto")
    record.add_argument("--unless-wrong", action="store_true", help="record nothing if the point wrote wrong rows")
    return top, modes.choices


def _with_subcommand(argv: List[str]) -> List[str]:
    """``argv`` led by its mode: when it names none, the one ``--scheduler X`` names before ``--``
    (that option taken out), else ``local``."""
    if argv[:1] and argv[0] in (*MODES, RECORD_FAILURE, "-h", "--help"):
        return argv
    own = argv[:argv.index("--")] if "--" in argv else argv
    for i, word in enumerate(own):
        flag, eq, value = word.partition("=")
        if flag == "--scheduler":
            value = value if eq else (own[i + 1] if i + 1 < len(own) else "")
            if value not in jobscript.SCHEDULERS:
                raise ValueError(f"--scheduler {value or '(nothing)'}: expected {' or '.join(jobscript.SCHEDULERS)}")
            return [value, *argv[:i], *argv[i + (1 if eq else 2):]]
    return ["local", *argv]


def _refusal(subparsers: Dict[str, _Parser], mode: str, extra: List[str]) -> str:
    """One line for the words ``mode`` does not take; another mode's option names its mode."""
    for word in extra:
        flag = word.partition("=")[0]
        owners = tuple(m for m in MODES if m != mode and flag in subparsers[m].option_names())
        if mode in MODES and owners in _ONLY_FOR:
            return f"{flag} {_ONLY_FOR[owners]}"
    hint = "; harness arguments go after '--'" if mode in MODES else ""
    return f"unrecognized arguments: {' '.join(extra)}{hint} (see {PROG} {mode} --help)"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """``mode`` (see the module docstring where ``argv`` names none), its options, and ``harness``:
    the words after the first ``--``, never read here.  Raises ValueError; ``-h`` exits, as argparse."""
    words = _with_subcommand(list(argv))
    own, harness = words, []
    if words[0] in MODES:
        cut = words.index("--") if "--" in words else len(words)
        own, harness = words[:cut], words[cut + 1:]
        for i in reversed(range(len(own) - 1)):  # "--launcher-args --mpi=pmix": a value, not an option
            if own[i] in _DASHED_VALUES and own[i + 1].startswith("-"):
                own[i:i + 2] = [f"{own[i]}={own[i + 1]}"]
    parser, subparsers = _parser()
    args, extra = parser.parse_known_args(own)
    if extra:
        raise ValueError(_refusal(subparsers, args.mode, extra))
    args.harness = harness
    return args


def _record_failure_main(a: argparse.Namespace) -> int:
    if a.unless_wrong and _count_rows(a.json, 0, a.point, a.sweep_id).get("wrong"):
        return 0
    try:
        record_failure(a.json, failure_record(a.sweep_id, a.point, a.collective, a.nranks, a.transport,
                                              a.reason, a.exit_code, a.nhosts))
    except OSError as exc:
        raise OSError(f"cannot write {a.json}: {exc.strerror}") from None
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
    say = lambda *a: print(*a, flush=True)  # noqa: E731
    previous = {}
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if args.mode == RECORD_FAILURE:
            return _record_failure_main(args)
        harness = args.harness
        previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
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
            return _scheduler_sweep(args, plan, collectives, harness, sweep_dir, json_path, sweep_id, transport, say)
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
