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
  and ``srun --nodes --ntasks --ntasks-per-node --kill-on-bad-exit=1 --mpi=<PMI>``.

The launcher must speak the process-management interface of the MPI that
mpi4py loads, or every process comes up as rank 0 of a world of one (the
runners refuse that, exit 2: :mod:`ground.mismatch`).  The sweep reads
that MPI's library version when it writes the scripts (``mpi_library``);
the Slurm script then passes ``--mpi=pmi2`` for the MPICH family and
``--mpi=pmix`` for Open MPI, checks at run time that ``srun --mpi=list``
offers it (else the other of the two that it offers), and says in the job
log what it chose.  ``--mpi=...`` among the launcher arguments wins.  The
PBS script names the MPI its ``mpiexec`` must belong to.

A launch that fails (any exit status but 0; 1 only when the point wrote
no rows with wrong elements, since 1 is both the harness's status for wrong
elements and srun's for a failed launch) appends a ``status: failed`` record
naming the point and the reason (the runner's own ``collscale: error:``
line where it wrote one, e.g. a refused launch), and the script goes on to
the next collective.  A point's stderr is kept in a temporary file while it
runs and copied to the job log when it ends.  A job killed at its walltime (SIGTERM first, on both
schedulers) records the point it was in.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from typing import Optional, Tuple

from launch.checks import UsageError

__all__ = ["JobSpec", "render", "normalise_walltime", "mpi_library_of", "SCHEDULERS", "SUFFIX", "SUBMIT"]

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
    mpi_library: Optional[str] = None  # first line of MPI_Get_library_version of mpi4py's MPI

    @property
    def srun_mpi(self) -> Optional[str]:
        """The ``--mpi`` plugin the Slurm script prefers, None where the launcher arguments name one."""
        if any(a == "--mpi" or a.startswith("--mpi=") for a in self.launcher_args):
            return None
        return "pmix" if "open mpi" in (self.mpi_library or "").lower() else "pmi2"

    @property
    def nranks(self) -> int:
        return self.nodes * self.ppn

    @property
    def name(self) -> str:
        return f"nodes{self.nodes}"

    def point(self, collective: str) -> str:
        return f"{self.name}-{collective}"


_LIBRARY_PROBE = ("import mpi4py; mpi4py.rc.initialize = False; mpi4py.rc.finalize = False; "
                  "from mpi4py import MPI; print(MPI.Get_library_version().replace(chr(0), ' ').strip())")


def mpi_library_of(python: str, timeout: float = 60.0) -> Optional[str]:
    """The first line of ``MPI_Get_library_version`` of the MPI that ``python``'s mpi4py loads
    (read without initialising MPI), or None where it cannot be read."""
    try:
        res = subprocess.run([python, "-c", _LIBRARY_PROBE], capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [" ".join(line.split()) for line in res.stdout.splitlines() if line.strip()]
    return lines[0] if res.returncode == 0 and lines else None


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
    pmi = ["--mpi=$SRUN_MPI"] if spec.srun_mpi else []
    return ["srun", f"--nodes={spec.nodes}", f"--ntasks={spec.nranks}",
            f"--ntasks-per-node={spec.ppn}", "--kill-on-bad-exit=1", *pmi, *spec.launcher_args]


def _word(word: str) -> str:
    return '"--mpi=$SRUN_MPI"' if word == "--mpi=$SRUN_MPI" else _q(word)


def _mpi_lines(spec: JobSpec) -> list:
    """Which MPI the launch must belong to, and (Slurm) the PMI plugin chosen at run time."""
    library = spec.mpi_library or "the MPI mpi4py loads (unknown when the script was written)"
    if spec.scheduler == "pbs":
        return [f"# mpiexec must be the launcher of {library}; a mismatched launch is refused by every",
                "# rank (exit 2) and recorded as a failed point."]
    if not spec.srun_mpi:
        return [f"# MPI: {library}; srun's PMI plugin is the one the launcher arguments name."]
    other = "pmi2" if spec.srun_mpi == "pmix" else "pmix"
    return [
        f"# MPI: {library}: srun --mpi={spec.srun_mpi} (else {other}, whichever `srun --mpi=list` offers);",
        "# a launch that does not match is refused by every rank (exit 2), recorded as a failed point.",
        f"SRUN_MPI={spec.srun_mpi}",
        'SRUN_MPI_LIST=$(srun --mpi=list 2>&1 | tr -s " \\t\\n" " ")',
        'case " $SRUN_MPI_LIST " in',
        '    *" $SRUN_MPI "*) ;;',
        f'    *" {other} "*) SRUN_MPI={other};;',
        "esac",
        f'echo "# collscale: srun --mpi=$SRUN_MPI for {_dq(library)} (srun --mpi=list: $SRUN_MPI_LIST)"',
    ]


def _dq(text: str) -> str:
    """Text safe inside a double-quoted shell string."""
    return "".join(c for c in text if c not in '"$`\\' and c.isprintable())


def render(spec: JobSpec) -> str:
    """The job script text."""
    if spec.scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler {spec.scheduler!r}: expected one of {', '.join(SCHEDULERS)}")
    launch = " ".join(_word(w) for w in launch_command(spec))
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
        *_mpi_lines(spec),
        'point="before-the-first-point"',
        'ERR=""',
        'collective=""',
        "record_failure() {  # exit status, reason",
        f'    "$PY" -m launch.sweep record-failure --json "$JSON" --sweep-id "$COLLSCALE_SWEEP_ID" '
        f'--point "$point" --collective "$collective" --nranks {spec.nranks} --nhosts {spec.nodes} '
        f'--transport {_q(spec.transport)} --exit-code "$1" --reason "$2" ${{3:+"$3"}}',
        "}",
        "# The scheduler sends SIGTERM at the walltime (or on qdel/scancel): say where we were.",
        "trap '[ -n \"$ERR\" ] && cat \"$ERR\" >&2 && rm -f \"$ERR\"; "
        "record_failure 143 \"job stopped by the scheduler (walltime or cancel)\"; exit 143' TERM",
        "run_point() {",
        '    collective=$1',
        f'    point="{spec.name}-$collective"',
        f'    echo "# collscale sweep point $point: {spec.nranks} ranks on {spec.nodes} nodes"',
        '    ERR=$(mktemp "${TMPDIR:-/tmp}/collscale-point.XXXXXX") || ERR=/dev/null',
        f'    COLLSCALE_SWEEP_POINT="$point" {launch} "$PY" -m "collectives.$collective" '
        + (harness + " " if harness else "") + '--json "$JSON" 2>"$ERR" &',
        "    wait $!",
        "    rc=$?",
        '    why=""',
        '    if [ "$ERR" != /dev/null ]; then',
        '        cat "$ERR" >&2',
        "        why=$(grep -m1 -o 'collscale: error: .*' \"$ERR\" | cut -c1-500)",
        '        rm -f "$ERR"',
        "    fi",
        '    ERR=""',
        '    case $rc in',
        "        0) ;;",
        "        # 1 is the harness's status for wrong elements (in the records already), but",
        "        # also srun's and some launchers' for a failed launch: recorded unless rows say wrong.",
        '        1) record_failure "$rc" "exit status 1 without wrong elements: a failed launch; '
        '${why:-see the job log}" --unless-wrong;;',
        '        *) record_failure "$rc" "exit status $rc: ${why:-see the job log}";;',
        "    esac",
        "}",
    ]
    lines += [f"run_point {_q(c)}" for c in spec.collectives]
    return "\n".join(lines) + "\n"

