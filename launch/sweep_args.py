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
No launch outlives the sweep, even after a kill -9 of it.

Every value is checked before anything is written: counts are whole
numbers, seconds finite and positive, a sweep id names files (letters,
digits, '-', '_', '.', not first) and cannot be a path.  A refusal is one
line and exit 2; a bug one line and exit 3 (COLLSCALE_DEBUG=1: traceback).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from facts import spec as specs
from launch import checks, jobscript
from launch.checks import UsageError

__all__ = ["parse_args", "check", "Plan", "PROG", "MODES", "RECORD_FAILURE", "new_sweep_id"]

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
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def new_sweep_id() -> str:
    import uuid
    from datetime import datetime, timezone

    return "sweep-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


class _Parser(checks.Parser):
    def option_names(self) -> set:
        return {name for action in self._actions for name in action.option_strings}


def _parser() -> Tuple[_Parser, Dict[str, _Parser]]:
    """The parser, and one subparser a subcommand, built from option groups each defined once.
    Numbers are read as text here and checked by :func:`check`, which names the rule broken."""
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--collectives", default="allreduce,broadcast,allgather", help="list (default %(default)s)")
    shared.add_argument("--launcher-args", help="extra launcher options, one string (e.g. '--mpi=pmix' for srun)")
    shared.add_argument("--dir", help="sweep directory (default ./<sweep id>)")
    shared.add_argument("--json", help="the sweep's JSON Lines file (default DIR/results.jsonl)")
    shared.add_argument("--sweep-id", help="reuse a sweep id (append to an earlier sweep): letters, digits, "
                                           "'-', '_', '.'")
    local = argparse.ArgumentParser(add_help=False)
    local.add_argument("--ranks", default="1,2,4", help="rank counts (default 1,2,4)")
    local.add_argument("--launcher", choices=("mpirun", "torchrun"), default="mpirun", help="launcher of each point")
    local.add_argument("--point-timeout", help="stop a point after this many seconds")
    scheduler = argparse.ArgumentParser(add_help=False)
    scheduler.add_argument("--nodes", required=True, help="node counts, e.g. 1,2,4,8")
    scheduler.add_argument("--ppn", required=True, help="ranks per node")
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
    for name in ("--json", "--sweep-id", "--point", "--collective", "--reason", "--nranks"):
        record.add_argument(name, required=True)
    record.add_argument("--nhosts")
    record.add_argument("--exit-code")
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
                raise UsageError(f"--scheduler {value or '(nothing)'}: expected {' or '.join(jobscript.SCHEDULERS)}")
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
    the words after the first ``--``, never read here.  Raises UsageError; ``-h`` exits, as argparse."""
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
        raise UsageError(_refusal(subparsers, args.mode, extra))
    args.harness = harness
    return args


@dataclass
class Plan:
    """A checked command line: what the sweep will do and where it will write."""

    collectives: List[str]
    sweep_id: str
    sweep_dir: str
    json_path: str
    transport: str
    launcher_args: List[str]
    ranks: List[int] = field(default_factory=list)
    point_timeout: Optional[float] = None
    nodes: List[int] = field(default_factory=list)
    ppn: int = 0
    walltime: str = ""
    env: List[Tuple[str, str]] = field(default_factory=list)


def _transport_of(harness_args: Sequence[str]) -> str:
    for i, a in enumerate(harness_args):
        if a == "--transport" and i + 1 < len(harness_args):
            return harness_args[i + 1]
        if a.startswith("--transport="):
            return a.split("=", 1)[1]
    return "auto"


def _words(flag: str, text: Optional[str]) -> List[str]:
    try:
        return shlex.split(text or "")
    except ValueError as exc:
        raise UsageError(f"{flag} {text!r}: {exc}") from None


def check(args: argparse.Namespace) -> Plan:
    """Every value of a local or scheduler sweep checked; nothing is written.  Raises UsageError."""
    harness = args.harness
    if any(a == "--json" or a.startswith("--json=") for a in harness):
        raise UsageError("the sweep writes the results: give --json before '--', not to the harness")
    collectives = [c.strip() for c in str(args.collectives).split(",") if c.strip()]
    if not collectives:
        raise UsageError("--collectives: give a comma-separated list")
    unknown = [c for c in collectives if c not in specs.SPECS]
    if unknown:
        raise UsageError(f"--collectives: unknown {', '.join(unknown)}; known: {', '.join(specs.SPECS)}")
    sweep_id = checks.identifier("--sweep-id", args.sweep_id) if args.sweep_id is not None else new_sweep_id()
    sweep_dir = args.dir if args.dir is not None else sweep_id
    plan = Plan(collectives, sweep_id, sweep_dir, "", _transport_of(harness),
                _words("--launcher-args", args.launcher_args))
    if args.scheduler:
        plan.nodes = checks.whole_list("--nodes", args.nodes)
        plan.ppn = checks.whole("--ppn", args.ppn, why=f"ranks per node, at least 1 (at most {checks.MAX_COUNT}), "
                                                        "a whole number")
        if max(plan.nodes) * plan.ppn > checks.MAX_COUNT:
            raise UsageError(f"--nodes {args.nodes} x --ppn {args.ppn}: more than {checks.MAX_COUNT} ranks")
        files = [f"nodes{n}{ext}" for n in plan.nodes for ext in (jobscript.SUFFIX[args.scheduler], ".log")]
    else:
        plan.ranks = checks.whole_list("--ranks", args.ranks)
        if args.point_timeout is not None:
            plan.point_timeout = checks.seconds("--point-timeout", args.point_timeout)
        files = ["logs/"]
    checks.dir_target("--dir" if args.dir is not None else "the sweep directory", sweep_dir, files)
    plan.json_path = args.json if args.json is not None else os.path.join(sweep_dir, "results.jsonl")
    checks.file_target("--json" if args.json is not None else "the results file", plan.json_path)
    if args.scheduler:
        _check_scheduler(args, plan)
    return plan


def _check_scheduler(args: argparse.Namespace, plan: Plan) -> None:
    for value, name in ((args.queue, "--queue"), (args.account, "--account"), (args.select, "--select"),
                        (args.place, "--place"), (os.path.abspath(plan.sweep_dir), "--dir"),
                        (os.path.abspath(plan.json_path), "--json")):
        if value and any(c.isspace() for c in value):
            raise UsageError(f"{name} {value!r}: scheduler directives cannot hold spaces")
    for value, name in [(d, "--directive") for d in args.directive or ()] + [(s, "--setup") for s in args.setup or ()]:
        if "\n" in value or "\r" in value or "\x00" in value:
            raise UsageError(f"{name} {value!r}: one line each (repeat {name} for more)")
    if args.python is not None and ("\x00" in args.python or not args.python.strip()):
        raise UsageError(f"--python {args.python!r}: not a path")
    for item in args.env or []:
        key, sep, value = item.partition("=")
        if not sep or not _ENV_NAME.fullmatch(key) or "\x00" in value:
            raise UsageError(f"--env {item!r}: expected NAME=VALUE")
        plan.env.append((key, value))
    plan.walltime = jobscript.normalise_walltime(args.walltime)


def check_record(args: argparse.Namespace) -> Dict:
    """record-failure's values checked: the record's fields."""
    return dict(json=checks.file_target("--json", args.json),
                sweep_id=checks.identifier("--sweep-id", args.sweep_id),
                point=checks.identifier("--point", args.point), collective=args.collective,
                nranks=checks.whole("--nranks", args.nranks),
                nhosts=None if args.nhosts is None else checks.whole("--nhosts", args.nhosts),
                exit_code=None if args.exit_code is None else _exit_code(args.exit_code),
                transport=args.transport, reason=args.reason)


def _exit_code(text: str) -> int:
    match = re.fullmatch(r"\s*([+-]?)([0-9]{1,3})\s*", str(text))
    if not match or int(match.group(2)) > 255:
        raise UsageError(f"--exit-code {text}: expected a whole number from -255 to 255")
    return int(match.group(1) + match.group(2))
