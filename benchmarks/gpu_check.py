"""A GPU check, ready before a device is lent: every GPU path once, on the GPUs this machine has.

    python benchmarks/gpu_check.py                      # every path; at most --budget seconds (280)
    python benchmarks/gpu_check.py --only nccl-1,cuda-graph --json gpu_check.jsonl

Each path runs the real command line as a job of its own (small sizes, few
iterations, validation on) and its JSON Lines are read back:

==============  =========================================================================
nccl-1          ``mpirun -n 1 python -m collectives.allreduce --transport nccl``
nccl-2          the same at 2 ranks (only with >= 2 GPUs: one GPU per rank)
mpi-cupy        ``--transport mpi --buffer cupy`` at 2 ranks (CuPy arrays through MPI)
gloo-cuda       ``--transport gloo --device cuda`` at 2 ranks
cuda-graph      ``--transport nccl --cuda-graph`` at 1 rank (captured and replayed)
replicate-unet  ``python -m collectives.replicate --model unet --transport nccl --device cuda``
                (DDP of UNet-2D timed by CUDA events) at 2 ranks with >= 2 GPUs, else 1
==============  =========================================================================

It prints a header (GPUs, torch, CuPy) and one line per path: ``gpu_check:
<path>: ran: <figures>`` (busbw at the largest size, time at the smallest,
wrong elements; replicate's step), ``failed: <why>`` (the job's own error
line, wrong elements, a timeout, records on another buffer, loop or rank
count) or ``skipped: <why>``; then a summary.  Whether there is a GPU is
decided from the hardware (``nvidia-smi -L``, else ``/dev/nvidia[0-9]*``),
never from an import (tests put stand-ins on the path); torch and CuPy are
probed in a subprocess, only where there is a GPU.  A torch without CUDA
(``torch.version.cuda`` None) or NCCL, or CuPy not installed, skips the
paths that need it; one installed that does not import fails them.

Exit: 0 when every path that can run here ran (skipped paths included, so a
machine without a GPU gives 0); 1 when a path gave wrong results; 3 when a
path failed otherwise; 2 for bad input.  Nothing is fetched from outside:
the machine may have no network.  Never run on a GPU yet.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.metadata
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ground import errors  # noqa: E402
from ground.sizes import human_size  # noqa: E402

PROG = "gpu_check"
PATHS = ("nccl-1", "nccl-2", "mpi-cupy", "gloo-cuda", "cuda-graph", "replicate-unet")
TIMEOUT_S = 120.0  # per path
BUDGET_S = 280.0  # all paths together: the whole check stays under 5 minutes
PROBE_TIMEOUT_S = 90.0
COLLECTIVE = ["-m", "collectives.allreduce", "-b", "8", "-e", "16M", "-f", "8", "-n", "20", "-w", "5"]
REPLICATE = ["-m", "collectives.replicate", "--model", "unet", "--batch", "2", "--steps", "2", "-w", "1", "-n", "2",
             "--transport", "nccl", "--device", "cuda"]
NO_GPU = "no NVIDIA GPU on this machine (nvidia-smi and /dev/nvidia* absent)"
TORCH_PATHS = ("nccl-1", "nccl-2", "gloo-cuda", "cuda-graph", "replicate-unet")
NCCL_PATHS = ("nccl-1", "nccl-2", "cuda-graph", "replicate-unet")


# -- what this machine has ------------------------------------------------------------------

@dataclass(frozen=True)
class Library:
    """torch or CuPy as the probe found it: not ``installed``, or ``error`` (installed, does not import)."""
    installed: bool = True
    version: Optional[str] = None
    cuda: Optional[str] = None
    nccl: bool = False
    devices: Optional[int] = None  # devices the library sees (None: not asked)
    error: Optional[str] = None


@dataclass(frozen=True)
class Hardware:
    """What :func:`detect` found; tests build their own."""
    gpus: Tuple[str, ...] = ()  # one name per GPU (nvidia-smi -L), or the device file
    why_none: str = NO_GPU  # when gpus is empty: why
    torch: Optional[Library] = None  # None: not probed (no GPU)
    cupy: Optional[Library] = None


def find_gpus(smi: Optional[str] = None, devices: Optional[Sequence[str]] = None) -> Tuple[Tuple[str, ...], str]:
    """(one name per NVIDIA GPU, why there is none): from ``nvidia-smi -L``, else ``/dev/nvidia[0-9]*``;
    ``CUDA_VISIBLE_DEVICES`` narrows the count.  ``smi``/``devices``: given by tests, else looked up."""
    names: List[str] = []
    why, listed = NO_GPU, False
    smi = shutil.which("nvidia-smi") if smi is None else smi
    if smi:
        try:
            res = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
            listed = res.returncode == 0
            names = [ln.split(":", 1)[1].split("(UUID")[0].strip() or ln.strip()
                     for ln in res.stdout.splitlines() if ln.startswith("GPU ")] if listed else []
            why = ("no NVIDIA GPU on this machine (nvidia-smi -L lists none)" if listed else
                   f"nvidia-smi -L failed ({errors.one_line(res.stderr or res.stdout)[:200]})")
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = f"nvidia-smi -L failed ({exc})"
    if not listed:
        files = sorted(glob.glob("/dev/nvidia[0-9]*")) if devices is None else list(devices)
        names = [f"unnamed ({f})" for f in files]
        if not names and smi:
            why += "; no /dev/nvidia* either"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if names and visible is not None:
        entries = [e for e in visible.split(",") if e.strip()]
        if len(entries) < len(names):
            names = names[:len(entries)]
            why = f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    return tuple(names), why


_PROBE = r"""
import importlib.util, json, sys
name, out = sys.argv[1], {"installed": False}
if importlib.util.find_spec(name) is not None:
    try:
        if name == "torch":
            import torch, torch.distributed as dist
            out = {"version": torch.__version__, "cuda": torch.version.cuda,
                   "nccl": bool(dist.is_available() and dist.is_nccl_available())}
            out["devices"] = torch.cuda.device_count() if out["cuda"] else 0
        else:
            import cupy
            rt = cupy.cuda.runtime
            out = {"version": getattr(cupy, "__version__", "?"), "cuda": str(getattr(rt, "runtimeGetVersion", str)()),
                   "devices": rt.getDeviceCount()}
    except Exception as exc:
        out = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out, default=str))
"""


def probe(name: str, env: Dict[str, str]) -> Library:
    """torch or cupy, probed in a Python of its own (the one the jobs run), so nothing it imports stays here."""
    try:
        res = subprocess.run([sys.executable, "-c", _PROBE, name], capture_output=True, text=True, env=env, cwd=ROOT,
                             timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Library(error=f"the probe did not end in {PROBE_TIMEOUT_S:g} s")
    except OSError as exc:
        return Library(error=f"the probe did not start: {exc}")
    try:
        return Library(**json.loads(res.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError, TypeError):  # it crashed (a segfault in a CUDA library, say)
        return Library(error=f"the probe failed (exit {res.returncode}): {last_error(res.stderr, res.stdout)}")


def installed_version(prefix: str) -> Optional[str]:
    """The installed distribution named ``prefix`` or ``prefix-*`` (cupy-cuda12x), without importing it."""
    for dist in importlib.metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower()
        if name == prefix or name.startswith(prefix + "-"):
            return f"{dist.version}" + ("" if name == prefix else f" ({name})")
    return None


def detect(env: Dict[str, str]) -> Hardware:
    """The GPUs, then (only where there is one) torch and CuPy, each probed as the jobs will see them."""
    gpus, why = find_gpus()
    return Hardware(gpus, why, *((probe("torch", env), probe("cupy", env)) if gpus else ()))


# -- the plan: which paths run, which are skipped and why ---------------------------------------

@dataclass(frozen=True)
class Step:
    path: str
    ranks: int
    argv: Tuple[str, ...]  # after ``python``
    skip: Optional[str] = None  # skipped, and why
    fail: Optional[str] = None  # cannot run although it should: failed, and why
    expect: Dict[str, str] = field(default_factory=dict)  # record field -> value (a trailing * : a prefix)


def _torch_gate(t: Optional[Library], nccl: bool) -> Tuple[Optional[str], Optional[str]]:
    """(skip, fail) of a path that needs torch with CUDA (and NCCL when ``nccl``)."""
    if t is None or not t.installed:
        return "torch not installed", None
    if t.error:
        return None, f"torch is installed but does not import: {t.error}"
    if not t.cuda:
        return f"torch {t.version} has no CUDA build (torch.version.cuda is None)", None
    if nccl and not t.nccl:
        return f"torch {t.version} has no NCCL (torch.distributed.is_nccl_available() is False)", None
    return None, None


def plan(hw: Hardware, only: Sequence[str] = PATHS) -> List[Step]:
    """One :class:`Step` per path, in :data:`PATHS` order: what runs, at how many ranks, and what is
    skipped (or cannot run) and why.  Pure: ``hw`` is what :func:`detect` found."""
    n = len(hw.gpus)
    cuda = {"buffer": "cuda"}
    steps = {
        "nccl-1": Step("nccl-1", 1, (*COLLECTIVE, "--transport", "nccl"), expect=cuda),
        "nccl-2": Step("nccl-2", 2, (*COLLECTIVE, "--transport", "nccl"), expect=cuda),
        "mpi-cupy": Step("mpi-cupy", 2, (*COLLECTIVE, "--transport", "mpi", "--buffer", "cupy"),
                         expect={"buffer": "cupy*"}),
        "gloo-cuda": Step("gloo-cuda", 2, (*COLLECTIVE, "--transport", "gloo", "--device", "cuda"), expect=cuda),
        "cuda-graph": Step("cuda-graph", 1, (*COLLECTIVE, "--transport", "nccl", "--cuda-graph"),
                           expect={"buffer": "cuda", "loop": "cuda-graph"}),
        "replicate-unet": Step("replicate-unet", min(2, max(n, 1)), tuple(REPLICATE), expect={"device": "cuda"}),
    }
    out = []
    for path in PATHS:
        step = steps[path]
        skip = fail = None
        if path not in only:
            skip = "not asked for (--only)"
        elif not n:
            skip = hw.why_none
        elif path in TORCH_PATHS:
            skip, fail = _torch_gate(hw.torch, path in NCCL_PATHS)
        elif path == "mpi-cupy":
            c = hw.cupy
            if c is None or not c.installed:
                skip = "cupy not installed"
            elif c.error:
                fail = f"cupy is installed but unusable: {c.error}"
        if not skip and not fail and path == "nccl-2" and n < 2:
            skip = f"2-rank nccl needs >= 2 GPUs (found {n})"
        out.append(Step(step.path, step.ranks, step.argv, skip, fail, step.expect))
    return out


# -- one path: run it, judge it ---------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    path: str
    status: str  # ran, failed, skipped
    why: str  # the figures when it ran, else why not
    wrong: bool = False  # failed with wrong results (exit 1)
    seconds: Optional[float] = None
    command: Optional[str] = None

    def line(self) -> str:
        took = f" [{self.seconds:.1f} s]" if self.seconds is not None else ""
        return f"{PROG}: {self.path}: {self.status}: {self.why}{took}"


def last_error(stderr: str, stdout: str = "") -> str:
    """The job's own error line (collscale's, else the last line of stderr, else of stdout)."""
    lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip()]
    ours = [ln for ln in lines if ln.startswith("collscale") and "error" in ln]
    text = (ours or lines or [ln.strip() for ln in (stdout or "").splitlines() if ln.strip()] or ["(no output)"])[-1]
    return errors.shorten(text, 400)


def _matches(value, want: str) -> bool:
    return str(value).startswith(want[:-1]) if want.endswith("*") else str(value) == want


def judge(step: Step, rc: int, stderr: str, stdout: str, rows: List[Dict]) -> Tuple[str, str, bool]:
    """(status, why or figures, wrong) of one finished job from its exit status, output and records."""
    wrong = sum(int(r.get("wrong") or 0) for r in rows)
    if wrong:
        return "failed", f"{wrong} wrong elements (exit {rc})", True
    if rc != 0:
        return "failed", f"exit {rc}: {last_error(stderr, stdout)}", rc == errors.EXIT_WRONG
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        why = "; ".join(dict.fromkeys(str(r.get("reason")) for r in rows if r.get("reason")))
        return "failed", "exit 0 but no measured record" + (f" ({why[:300]})" if why else ""), False
    problems = []
    ranks = {r.get("nranks") for r in ok}
    if ranks != {step.ranks}:
        problems.append(f"records at {sorted(map(str, ranks))} ranks, not {step.ranks}")
    for key, want in step.expect.items():
        got = sorted({str(r.get(key)) for r in ok})
        if not all(_matches(g, want) for g in got):
            problems.append(f"{key} {', '.join(got)}, not {want.rstrip('*')}")
    if ok[0].get("collective") != "replicate" and not sum(int(r.get("checks") or 0) for r in ok):
        problems.append("no result was validated (0 checks)")
    if problems:
        return "failed", "; ".join(problems), False
    return "ran", figures(step, ok), False


def figures(step: Step, ok: List[Dict]) -> str:
    """The line's figures: replicate's step, or a sweep's busbw at the largest size and time at the smallest."""
    first = ok[0]
    if first.get("collective") == "replicate":
        r = ok[-1]
        eff = f", E({r['nranks']}) {100 * r['efficiency']:.1f} %" if r.get("nranks", 1) > 1 and \
            r.get("efficiency") is not None else ""
        return (f"{r.get('model')} batch {r.get('batch')} on {r.get('device')} at {r.get('nranks')} rank(s): step "
                f"{r['step_ms']:.1f} ms (fwd {r['forward_ms']:.1f}, bwd {r['backward_ms']:.1f}, opt "
                f"{r['optimizer_ms']:.1f}), {r.get('steps_per_phase')} steps per phase{eff}")
    big = max(ok, key=lambda r: (r["size_bytes"], r.get("busbw_gbs") or 0))
    small = min(ok, key=lambda r: (r["size_bytes"], r.get("time_us") or 0))
    checks = sum(int(r.get("checks") or 0) for r in ok)
    return (f"{step.ranks} rank(s), buffer {first.get('buffer')}, {first.get('loop')} loop: busbw "
            f"{big.get('busbw_gbs') or 0:.3g} GB/s at {human_size(big['size_bytes'])}, "
            f"{small.get('time_us') or 0:.1f} us at {human_size(small['size_bytes'])}; "
            f"{len({r['size_bytes'] for r in ok})} sizes, {checks} checks, 0 wrong")


def _tree(pid: int) -> List[int]:
    """``pid`` and its descendants, from /proc (Hydra starts each rank in a session of its own)."""
    parent = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent[int(stat.split("/")[2])] = int(Path(stat).read_text().rsplit(")", 1)[1].split()[1])
    tree: set = {pid}
    while True:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        if not more:
            return sorted(tree)
        tree |= more


def _stop(proc: subprocess.Popen) -> None:
    """End a job that ran past its time: mpirun and every process under it, TERM then (5 s on) KILL."""
    pids = _tree(proc.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        pids = [p for p in pids if p != proc.pid and Path(f"/proc/{p}").exists()] + \
            ([proc.pid] if proc.poll() is None else [])
        if not pids:
            return


def run_step(step: Step, mpirun: Optional[List[str]], timeout: float, env: Dict[str, str], work: Path) -> Outcome:
    if step.skip or step.fail:
        return Outcome(step.path, "skipped" if step.skip else "failed", step.skip or step.fail)
    if not mpirun:
        return Outcome(step.path, "failed", "no mpirun beside this Python or on PATH (pip install mpich; --mpirun)")
    out = work / f"{step.path}.jsonl"
    limit = max(10, int(timeout) - 15)  # the job's own watchdog first, so it says where it stuck
    cmd = [*mpirun, "-n", str(step.ranks), sys.executable, *step.argv, "-T", str(limit),
           "--startup-timeout", str(limit), "--json", str(out)]
    shown = " ".join(map(shlex.quote, cmd))
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        try:
            stdout, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # something outside the tree still holds the pipes
            stdout, stderr = "", "(its output pipes stayed open)"
        return Outcome(step.path, "failed", f"no end after {timeout:g} s (killed); last: {last_error(stderr, stdout)}",
                       seconds=time.monotonic() - t0, command=shown)
    except BaseException:  # Ctrl-C: the job goes too
        _stop(proc)
        raise
    took = time.monotonic() - t0
    rows = []
    for line in out.read_text().splitlines() if out.exists() else []:
        with contextlib.suppress(ValueError):  # a line torn by a killed rank
            rows.append(json.loads(line))
    status, why, wrong = judge(step, proc.returncode, stderr, stdout, rows)
    return Outcome(step.path, status, why, wrong, took, shown)


# -- the whole check --------------------------------------------------------------------------

def exit_status(outcomes: Sequence[Outcome]) -> int:
    """0 when nothing failed (skipped is fine); 1 when a path gave wrong results; 3 when one failed otherwise."""
    failed = [o for o in outcomes if o.status == "failed"]
    return errors.EXIT_WRONG if any(o.wrong for o in failed) else errors.EXIT_ERROR if failed else errors.EXIT_OK


def summary(outcomes: Sequence[Outcome]) -> str:
    count = {s: sum(o.status == s for o in outcomes) for s in ("ran", "failed", "skipped")}
    verdict = {0: "every path that can run here ran", 1: "wrong results", 3: "a path failed"}[exit_status(outcomes)]
    return (f"{PROG}: {count['ran']} ran, {count['failed']} failed, {count['skipped']} skipped of {len(outcomes)}: "
            f"{verdict} (exit {exit_status(outcomes)})")


def header(hw: Hardware, mpirun: Optional[List[str]]) -> str:
    gpus = f"{len(hw.gpus)} GPU(s): {', '.join(hw.gpus)}" if hw.gpus else f"GPUs: none, {hw.why_none}"

    def lib(name: str, found: Optional[Library]) -> str:
        if found is None:  # not probed: what is installed, from its metadata (nothing imported)
            v = installed_version(name)
            return f"{name} {v} (not probed: no GPU)" if v else f"{name} not installed"
        if not found.installed:
            return f"{name} not installed"
        if found.error:
            return f"{name} unusable ({found.error[:200]})"
        extra = f", NCCL {'yes' if found.nccl else 'no'}" if name == "torch" else ""
        return f"{name} {found.version} (CUDA {found.cuda or 'none'}{extra}, {found.devices} device(s) seen)"
    return (f"{PROG}: {socket.gethostname()}: {gpus}; {lib('torch', hw.torch)}; {lib('cupy', hw.cupy)}; "
            f"mpirun: {' '.join(mpirun) if mpirun else 'none found'}; python: {sys.executable}")


def find_mpirun(given: Optional[str]) -> Optional[List[str]]:
    if given:
        words = shlex.split(given)
        if not words or not (shutil.which(words[0]) or os.path.exists(words[0])):
            raise errors.UsageError(f"--mpirun {given!r}: not found")
        return words
    beside = Path(sys.executable).with_name("mpirun")
    found = str(beside) if beside.exists() else shutil.which("mpirun")
    return [found] if found else None


def job_env() -> Dict[str, str]:
    """The jobs' environment: collscale importable; Open MPI allowed to run as root (a lent machine's user)
    and to oversubscribe (MPICH needs neither)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                OMPI_MCA_rmaps_base_oversubscribe="1")


def _paths(text: str) -> Tuple[str, ...]:
    names = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    unknown = [x for x in names if x not in PATHS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{','.join(unknown) or repr(text)}: choose from {', '.join(PATHS)}")
    return names


def _seconds(text: str) -> float:
    value = float(text) if text.replace(".", "", 1).isdigit() else -1.0
    if not 10 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds from 10 to 3600")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (run_main)
        raise errors.UsageError(message)


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    ap = _Parser(prog="python benchmarks/gpu_check.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=_seconds, default=TIMEOUT_S, metavar="S",
                    help=f"seconds per path before its job is killed (default {TIMEOUT_S:g})")
    ap.add_argument("--budget", type=_seconds, default=BUDGET_S, metavar="S",
                    help=f"seconds for the whole check; a path not started in time fails (default {BUDGET_S:g})")
    ap.add_argument("--only", type=_paths, default=PATHS, metavar="PATHS",
                    help=f"a comma list of paths to run, from {', '.join(PATHS)} (default all)")
    ap.add_argument("--json", metavar="FILE", help="write one JSON object per path line to FILE")
    ap.add_argument("--mpirun", help="launcher words, e.g. 'mpirun.openmpi' (default: the mpirun beside this "
                    "Python, else the first on PATH)")
    return ap.parse_args(list(argv) if argv is not None else None)


def main(argv: Optional[Sequence[str]] = None) -> int:
    def body() -> int:
        a = parse(argv)
        deadline = time.monotonic() + a.budget  # the probes count too
        mpirun = find_mpirun(a.mpirun)
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(open(a.json, "w")) if a.json else None  # a bad path: exit 2 before work
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="collscale-gpu-check-")))
            env = job_env()
            hw = detect(env)
            print(header(hw, mpirun), flush=True)
            outcomes: List[Outcome] = []
            for step in plan(hw, a.only):
                left = deadline - time.monotonic()
                if not (step.skip or step.fail) and left < 10:
                    got = Outcome(step.path, "failed", f"not run: the --budget of {a.budget:g} s was spent")
                else:
                    got = run_step(step, mpirun, min(a.timeout, left), env, work)
                outcomes.append(got)
                print(got.line(), flush=True)
                if sink:
                    sink.write(json.dumps(dataclasses.asdict(got)) + "\n")
                    sink.flush()
            print(summary(outcomes), flush=True)
        return exit_status(outcomes)
    return errors.run_main(PROG, body, prints="the check")


if __name__ == "__main__":
    sys.exit(main())
