"""Batch job scripts for node-count sweeps: PBS Pro (``mpiexec``) and Slurm (``srun``).

One script per node count runs every collective of the sweep, each as one
launch of the real CLI, appending to the sweep's one JSON Lines file.  The
shapes follow what the centres document:

* PBS Pro with Cray PALS (ALCF Polaris/Aurora): ``#PBS -l select=N``,
  ``-l place=scatter:excl`` (a benchmark must not share its nodes),
  ``-l walltime``, ``-q``, ``-A``, and
  ``mpiexec -n <ranks> --ppn <ranks per node>``.  MPICH's Hydra ``mpiexec``
  takes the same two options, so the script also runs under plain PBS Pro
  with MPICH.
* Slurm: ``#SBATCH --nodes/--ntasks-per-node/--time/--partition/--account``
  and ``srun --nodes --ntasks --ntasks-per-node --kill-on-bad-exit=1``.

A launch that fails (any exit status but 0; 1 only when the point wrote
no rows with wrong elements, since 1 is both the harness's status for wrong
elements and srun's for a failed launch) appends a ``status: failed`` record
naming the point and the reason, and the script goes on to the next
collective.  A job killed at its walltime (SIGTERM first, on both
schedulers) records the point it was in.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Optional, Tuple

from launch.checks import UsageError

__all__ = ["JobSpec", "render", "normalise_walltime", "SCHEDULERS", "SUFFIX", "SUBMIT"]

SCHEDULERS = ("pbs", "slurm")
SUFFIX = {"pbs": ".pbs", "slurm": ".sbatch"}
SUBMIT = {"pbs": "qsub", "slurm": "sbatch"}


def normalise_walltime(text: str) -> str:
    """``HH:MM:SS`` from ``H:MM:SS``, ``MM:SS`` or whole minutes (``30``)."""
    text = str(text).strip()
    if re.fullmatch(r"[0-9]{1,9}", text):
        minutes = int(text)
        parts = [minutes // 60, minutes % 60, 0]
    elif re.fullmatch(r"[0-9]{1,7}(:[0-9]{1,2}){1,2}", text):
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 2:
            parts = [0, *parts]
        if parts[1] >= 60 or parts[2] >= 60:
            raise UsageError(f"walltime {text!r}: minutes and seconds must be below 60")
    else:
        raise UsageError(f"walltime {text!r}: expected HH:MM:SS, MM:SS or minutes")
    if parts == [0, 0, 0]:
        raise UsageError(f"walltime {text!r}: must be longer than zero")
    return "%02d:%02d:%02d" % tuple(parts)


@dataclass(frozen=True)
class JobSpec:
    """Everything one node count's job needs (paths absolute: jobs start elsewhere)."""

    scheduler: str
    nodes: int
    ppn: int
    collectives: Tuple[str, ...]
    sweep_id: str
    json_path: str
    workdir: str
    log_path: str
    python: str
    transport: str = "auto"
    harness_args: Tuple[str, ...] = ()
    queue: Optional[str] = None
    account: Optional[str] = None
    walltime: str = "00:30:00"
    directives: Tuple[str, ...] = ()
    launcher_args: Tuple[str, ...] = ()
    setup: Tuple[str, ...] = ()
    select_extra: Optional[str] = None  # PBS: more chunk resources, e.g. "system=polaris"
    place: str = "scatter:excl"  # PBS: a chunk per node, nodes not shared with other jobs
    env: Tuple[Tuple[str, str], ...] = field(default=())

    @property
    def nranks(self) -> int:
        return self.nodes * self.ppn

    @property
    def name(self) -> str:
        return f"nodes{self.nodes}"

    def point(self, collective: str) -> str:
        return f"{self.name}-{collective}"


def _q(value) -> str:
    return shlex.quote(str(value))


def _header(spec: JobSpec) -> list:
    job = f"collscale-{spec.name}"
    if spec.scheduler == "pbs":
        lines = [
            f"#PBS -N {job}",
            f"#PBS -l select={spec.nodes}:mpiprocs={spec.ppn}"
            + (f":{spec.select_extra.lstrip(':')}" if spec.select_extra else ""),
            f"#PBS -l place={spec.place}",
            f"#PBS -l walltime={spec.walltime}",
        ]
        if spec.queue:
            lines.append(f"#PBS -q {spec.queue}")
        if spec.account:
            lines.append(f"#PBS -A {spec.account}")
        lines += ["#PBS -j oe", f"#PBS -o {spec.log_path}"]
        lines += [f"#PBS {d}" for d in spec.directives]
    else:
        lines = [
            f"#SBATCH --job-name={job}",
            f"#SBATCH --nodes={spec.nodes}",
            f"#SBATCH --ntasks-per-node={spec.ppn}",
            f"#SBATCH --time={spec.walltime}",
        ]
        if spec.queue:
            lines.append(f"#SBATCH --partition={spec.queue}")
        if spec.account:
            lines.append(f"#SBATCH --account={spec.account}")
        lines += [f"#SBATCH --output={spec.log_path}"]
        lines += [f"#SBATCH {d}" for d in spec.directives]
    return lines


def launch_command(spec: JobSpec) -> list:
    """The launcher words that start ``nranks`` ranks, ``ppn`` per node."""
    if spec.scheduler == "pbs":
        return ["mpiexec", "-n", str(spec.nranks), "--ppn", str(spec.ppn), *spec.launcher_args]
    return ["srun", f"--nodes={spec.nodes}", f"--ntasks={spec.nranks}",
            f"--ntasks-per-node={spec.ppn}", "--kill-on-bad-exit=1", *spec.launcher_args]


def render(spec: JobSpec) -> str:
    """The job script text."""
    if spec.scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler {spec.scheduler!r}: expected one of {', '.join(SCHEDULERS)}")
    launch = " ".join(_q(w) for w in launch_command(spec))
    harness = " ".join(_q(a) for a in spec.harness_args)
    lines = ["#!/bin/bash", *_header(spec),
             f"# collscale sweep {spec.sweep_id}: {spec.nodes} nodes x {spec.ppn} ranks per node = "
             f"{spec.nranks} ranks; collectives: {' '.join(spec.collectives)}",
             "# Generated by python -m launch.sweep; each launch appends to the sweep's JSON Lines file.",
             *spec.setup,  # before set -u: module and conda scripts read unset variables
             "set -u",
             f"cd {_q(spec.workdir)} || exit 2",
              f"export COLLSCALE_SWEEP_ID={_q(spec.sweep_id)}"]
    lines += [f"export {k}={_q(v)}" for k, v in spec.env]
    lines += [
        f"PY={_q(spec.python)}",
        f"JSON={_q(spec.json_path)}",
        'point="before-the-first-point"',
        'collective=""',
        "record_failure() {  # exit status, reason",
        f'    "$PY" -m launch.sweep record-failure --json "$JSON" --sweep-id "$COLLSCALE_SWEEP_ID" '
        f'--point "$point" --collective "$collective" --nranks {spec.nranks} --nhosts {spec.nodes} '
        f'--transport {_q(spec.transport)} --exit-code "$1" --reason "$2" ${{3:+"$3"}}',
        "}",
        "# The scheduler sends SIGTERM at the walltime (or on qdel/scancel): say where we were.",
        "trap 'record_failure 143 \"job stopped by the scheduler (walltime or cancel)\"; exit 143' TERM",
        "run_point() {",
        '    collective=$1',
        f'    point="{spec.name}-$collective"',
        f'    echo "# collscale sweep point $point: {spec.nranks} ranks on {spec.nodes} nodes"',
        f'    COLLSCALE_SWEEP_POINT="$point" {launch} "$PY" -m "collectives.$collective" '
        + (harness + " " if harness else "") + '--json "$JSON" &',
        "    wait $!",
        "    rc=$?",
        '    case $rc in',
        "        0) ;;",
        "        # 1 is the harness's status for wrong elements (in the records already), but",
        "        # also srun's and some launchers' for a failed launch: recorded unless rows say wrong.",
        '        1) record_failure "$rc" "exit status 1 without wrong elements: a failed launch; see the job log" '
        "--unless-wrong;;",
        '        *) record_failure "$rc" "exit status $rc; see the job log";;',
        "    esac",
        "}",
    ]
    lines += [f"run_point {_q(c)}" for c in spec.collectives]
    return "\n".join(lines) + "\n"

