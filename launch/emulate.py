"""Run a command across emulated hosts on one machine (root only).

    python -m launch.emulate --hosts 2 --rate 1gbit -- \\
        mpirun -n 2 python -m collectives.pingpong -b 1M -e 64M --transport mpi
    python -m launch.emulate --hosts 3 -- torchrun --nproc-per-node 2 -m collectives.allreduce --transport gloo
    python -m launch.emulate --hosts 2 --ppn 2 -- python -m collectives.allgather --transport gloo

Each emulated host is a network namespace with its own host name (``emu0``,
``emu1``...), joined to the others through veth links and a bridge, each
link optionally shaped by ``tc tbf`` (:mod:`launch.netns`); ``--host-rate
emu1=100mbit`` shapes one host's link apart and ``--host-cpu emu2=0.5`` caps
one host's processes at half their fair CPU with a cgroup (:mod:`launch.emuhost`).
Ranks start inside the namespaces through the launchers people already use:

* MPICH's Hydra ``mpirun``/``mpiexec`` runs in ``emu0`` and is given
  ``-hosts <addresses> -ppn P -iface csnet0`` and a launcher that enters the
  right namespace where it would ``ssh`` to a node;
* ``torchrun`` runs once per host with ``--nnodes/--node-rank/--master-addr``;
* any other command is wrapped in Hydra ``mpirun -n hosts*ppn``.

Between hosts the traffic really goes through TCP: ``GLOO_SOCKET_IFNAME``,
UCX (``UCX_TLS=tcp,self``) and libfabric (``FI_PROVIDER=tcp``) are pointed at
the emulated link; ranks on the same emulated host still share memory, as on
a real node.  ``COLLSCALE_EMULATED`` tells the harness, which says so in its
header and in every record; it names the real machine (``machine``,
``machine_id``) because the emulated hosts share its cores and memory: the
harness counts every rank of the job against them (each namespace has a host
name of its own, so host names alone would make them look like separate hosts).

Everything is torn down on every exit path the process can see (normal end,
error, Ctrl-C, SIGTERM/SIGHUP, ``--timeout``).  After a SIGKILL of the
emulation, what it launched gets SIGTERM from the kernel (a parent-death
signal) and its reaper (:mod:`launch.reaper`) stops whatever is left and
removes the namespaces (``--host-cpu``'s cgroups go with them); should the
reaper be killed too, the next run, or ``--cleanup``, removes what a dead
emulation left.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from ground import errors
from launch import checks, emuhost, netns, reaper
from launch.emuhost import HostCPU
from launch.netns import IFACE, EmulationError, Topology

__all__ = ["main", "mpirun_args", "torchrun_args", "rank_env", "EmulationError", "hydra_version", "launch_command"]

# Hydra options that place ranks: the emulation owns them.
_OWNED = {"-hosts", "-host", "-f", "-hostfile", "-machinefile", "-launcher", "-launcher-exec", "-iface",
          "-bootstrap", "-bootstrap-exec", "-rankmap"}
_VALUED = {"-n", "-np", "-ppn", "-wdir", "-configfile", "-bind-to", "-map-by", "-genvlist", "-envlist",
           "-errfile-pattern", "-outfile-pattern", "-prepend-pattern", "-profile", "-gpus-per-proc",
           "-membind", "-binding", "-topolib", "-demux", "-rmk", "-ckpoint-prefix", "-ckpointlib"} | _OWNED
_TWO_VALUED = {"-genv", "-env"}
_TORCHRUN_OWNED = ("--nnodes", "--node-rank", "--node_rank", "--master-addr", "--master_addr",
                   "--rdzv-endpoint", "--rdzv_endpoint", "--standalone")
# torchrun's options that take no value; every other option takes one (unless written NAME=VALUE).
_TORCHRUN_FLAGS = {"--standalone", "--no-python", "--no_python", "--run-path", "--run_path"}
MASTER_PORT = 29500


def _hydra_options(args: Sequence[str]):
    """Split ``mpirun`` arguments into (global options as {flag: value}, the rest)."""
    options, i = {}, 0
    while i < len(args):
        flag = args[i]
        norm = "-" + flag.lstrip("-")
        if not flag.startswith("-") or flag == "--":
            break
        if norm in _TWO_VALUED:
            i += 3
            continue
        if norm in _VALUED:
            if i + 1 >= len(args):
                raise EmulationError(f"mpirun option {flag} needs a value")
            options[norm] = args[i + 1]
            i += 2
            continue
        options[norm] = None
        i += 1
    return options


def mpirun_args(command: Sequence[str], topo: Topology, ppn: Optional[int], launcher: str) -> List[str]:
    """The Hydra command line with the emulated hosts put in."""
    options = _hydra_options(command[1:])
    owned = sorted(set(options) & _OWNED)
    if owned:
        raise EmulationError(f"mpirun {' '.join(owned)}: the emulation chooses hosts and launcher; "
                             "leave these out (use --hosts/--ppn of launch.emulate)")
    n = options.get("-n") or options.get("-np")
    if n is None or not str(n).isdigit() or int(n) < 1:
        raise EmulationError("give mpirun a rank count (-n N)")
    if options.get("-ppn"):
        per_host = options["-ppn"]
    else:
        per_host = str(ppn or math.ceil(int(n) / topo.nhosts))
    extra = ["-hosts", ",".join(topo.ip(i) for i in range(topo.nhosts)), "-iface", IFACE,
             "-launcher", "ssh", "-launcher-exec", launcher]
    if not options.get("-ppn"):
        extra[0:0] = ["-ppn", per_host]
    return [command[0], *extra, *command[1:]]


def _torchrun_options(args: Sequence[str]) -> List[str]:
    """The option names given to torchrun itself (before ``-m``/the script)."""
    names, k = [], 0
    while k < len(args):
        arg = args[k]
        if arg in ("-m", "--module") or not arg.startswith("-"):
            break
        name = arg.split("=", 1)[0]
        names.append(name)
        k += 1 if "=" in arg or name in _TORCHRUN_FLAGS else 2
    return names


def torchrun_args(command: Sequence[str], topo: Topology, i: int, ppn: Optional[int]) -> List[str]:
    """One host's torchrun command line."""
    names = _torchrun_options(command[1:])
    for name in names:
        if name in _TORCHRUN_OWNED:
            raise EmulationError(f"torchrun {name}: the emulation sets nodes, node rank and "
                                 "master address; leave it out")
    extra = ["--nnodes", str(topo.nhosts), "--node-rank", str(i), "--master-addr", topo.ip(0),
             "--master-port", str(MASTER_PORT)]
    if not {"--nproc-per-node", "--nproc_per_node"} & set(names):
        extra += ["--nproc-per-node", str(ppn or 1)]
    return [command[0], *extra, *command[1:]]


# Every transport pointed at the emulated link.  Forced, not defaulted:
# measured with the MPICH wheel, UCX_TLS=all finds shared memory between the
# namespaces of one machine and moves 16 MiB at 3.9 GB/s over a 1gbit "link".
LINK_ENV = {
    "GLOO_SOCKET_IFNAME": IFACE,
    "UCX_TLS": "tcp,self",
    "UCX_NET_DEVICES": IFACE,
    "FI_PROVIDER": "tcp",
    "FI_TCP_IFACE": IFACE,
    "HYDRA_IFACE": IFACE,
}


def _machine_id() -> str:
    """This machine's id (systemd's machine-id, else this boot's id, else its host name)."""
    for path in ("/etc/machine-id", "/proc/sys/kernel/random/boot_id"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text:
            return text
    return socket.gethostname()


def rank_env(topo: Topology, base: Optional[dict] = None, say=None, cpu: Optional[HostCPU] = None) -> dict:
    """The environment of everything started on the emulated hosts (see LINK_ENV); COLLSCALE_EMULATED
    describes them, each host's own link rate (``host_rates``, bits/s) and CPU share (``host_cpu``) included."""
    env = dict(os.environ if base is None else base)
    for key, value in LINK_ENV.items():
        if env.get(key) not in (None, value) and say:
            say(f"# emulate: {key}={env[key]} replaced by {value} so that traffic between hosts "
                "crosses the emulated links")
        env[key] = value
    env["COLLSCALE_EMULATED"] = json.dumps({
        "hosts": topo.nhosts,
        "rate": topo.rate,
        "rate_bits": topo.rate_bits,
        "machine": socket.gethostname(),
        "machine_id": _machine_id(),  # the emulated hosts share this machine's cores and memory
        "cores": os.cpu_count(),
        "host_rates": dict(topo.host_rate_bits),
        "host_cpu": dict(cpu.shares) if cpu else {},
        "host_cpu_cores": {name: round(cpu.cores_of(name), 4) for name in cpu.shares} if cpu else {},
        "describe": describe(topo, cpu),
    })
    return env


def describe(topo: Topology, cpu: Optional[HostCPU] = None) -> str:
    """The emulation in words: the hosts, their links and CPU shares (records carry it as ``emulated``)."""
    return "; ".join(t for t in (topo.describe(), cpu.describe() if cpu else "") if t)


def hydra_version(mpirun: str) -> str:
    try:
        res = subprocess.run([mpirun, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmulationError(f"cannot run '{mpirun} --version': {exc}") from None
    text = res.stdout + res.stderr
    if "HYDRA" not in text:
        flavour = "Open MPI's" if "Open MPI" in text or "OpenRTE" in text else "this"
        raise EmulationError(
            f"{flavour} mpirun ({mpirun}) cannot start ranks inside network namespaces; emulation "
            "uses MPICH's Hydra mpirun (installed with collscale: "
            f"{os.path.join(os.path.dirname(sys.executable), 'mpirun')}) or torchrun")
    return text


def _find_mpirun() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "mpirun")
    found = here if os.access(here, os.X_OK) else shutil.which("mpirun") or shutil.which("mpiexec")
    if not found:
        raise EmulationError("no mpirun found: install collscale (pip install -e .) for MPICH's")
    return found


def _report_links(topo: Topology, say) -> None:
    counts = topo.link_bytes()
    cells = [f"{topo.hostname(i)} sent {tx / 1e6:.1f} MB received {rx / 1e6:.1f} MB"
             for i, (tx, rx) in enumerate(counts) if tx is not None]
    if cells:
        say("# emulate: link traffic: " + "; ".join(cells))


_HANDLED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _wait_all(procs: List[subprocess.Popen], deadline: Optional[float], stop: Sequence[int] = ()) -> int:
    """Exit status of the launch: the first failure's, else 0; 124 past the deadline;
    128 + the signal when one asked us to stop.

    With several torchruns, one failing makes the others wait for a peer
    that will never come, so the rest are stopped at once.
    """
    while True:
        if stop:
            return 128 + stop[0]
        codes = [p.poll() for p in procs]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            return failed[0]
        if all(c == 0 for c in codes):
            return 0
        if deadline is not None and time.monotonic() > deadline:
            return 124
        time.sleep(0.05)


def prepare(command: Sequence[str], hosts: int, rate: Optional[str] = None, ppn: Optional[int] = None,
            timeout: Optional[float] = None, host_rates: Optional[Dict[str, str]] = None,
            host_cpu: Optional[Dict[str, float]] = None):
    """Check everything and build nothing: (the command, its mode, the topology, the CPU shares or
    None).  Raises EmulationError (or UsageError)."""
    if not command:
        raise EmulationError("no command: put it after '--', e.g. -- mpirun -n 2 python -m collectives.pingpong")
    if ppn is not None and ppn < 1:
        raise EmulationError(f"--ppn {ppn}: must be at least 1")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise EmulationError(f"--timeout {timeout}: must be a positive number of seconds")
    topo = Topology(hosts, rate, host_rates=dict(host_rates or {}))
    why = netns.requirements_missing() or (emuhost.cpu_missing() if host_cpu else None)
    if why:
        raise EmulationError(why)
    cpu = HostCPU(host_cpu, hosts, topo.tag) if host_cpu else None
    base = os.path.basename(command[0])
    mode = "torchrun" if base == "torchrun" else "mpirun" if base.startswith(("mpirun", "mpiexec")) else "wrap"
    if mode == "wrap":
        command = [_find_mpirun(), "-n", str(hosts * (ppn or 1)), *command]
        mode = "mpirun"
    if mode == "mpirun":
        if not shutil.which(command[0]):
            # 'mpirun' without the venv on PATH: the one installed with collscale.
            command = [_find_mpirun(), *command[1:]]
        hydra_version(command[0])
        mpirun_args(command, topo, ppn, "-")  # refuse bad arguments before building anything
    else:
        torchrun_args(command, topo, 0, ppn)
    return list(command), mode, topo, cpu


def run(command: Sequence[str], hosts: int, rate: Optional[str] = None, ppn: Optional[int] = None,
        timeout: Optional[float] = None, say=print, host_rates: Optional[Dict[str, str]] = None,
        host_cpu: Optional[Dict[str, float]] = None) -> int:
    """Create the hosts, run ``command`` across them, tear down; returns its exit status."""
    command, mode, topo, cpu = prepare(command, hosts, rate, ppn, timeout, host_rates, host_cpu)
    return launch_command(command, mode, topo, ppn, timeout, say, cpu=cpu)


def launch_command(command: List[str], mode: str, topo: Topology, ppn: Optional[int], timeout: Optional[float],
                   say, cpu: Optional[HostCPU] = None) -> int:
    stale = netns.sweep_stale()
    if stale:
        say(f"# emulate: removed what dead emulations left: {', '.join(stale)}")

    token = reaper.new_token()
    with reaper.Reaper(token, "emulate", emulation=topo.owner):  # even a kill -9 of this process ends it all
        code, stop = _build_and_wait(command, mode, topo, ppn, timeout, say, token, cpu)
    if stop:
        code = 128 + stop[0]
    return code


def _build_and_wait(command: List[str], mode: str, topo: Topology, ppn: Optional[int], timeout: Optional[float],
                    say, token: str, cpu: Optional[HostCPU] = None):
    """Build the hosts, start the launch, wait, tear down: (exit status, the signals that stopped it)."""
    # Signals only set a flag that the wait loop reads: no exception can land
    # half-way through building or tearing down the network.
    stop: List[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.append(signum)) for sig in _HANDLED}
    workdir = netns.make_workdir()
    procs: List[subprocess.Popen] = []
    code = 1
    try:
        topo.create()
        if cpu:
            cpu.create()  # removed with the namespaces (topo.destroy), as they carry the same owner pid
        env = dict(rank_env(topo, say=say, cpu=cpu), **{reaper.TOKEN_VAR: token})
        say(f"# emulate: {describe(topo, cpu)}; addresses {topo.ip(0)}..{topo.ip(topo.nhosts - 1)} on {IFACE}")
        # The launchers get SIGTERM from the kernel if this process dies (they stop their ranks).
        start = dict(env=env, preexec_fn=reaper.parent_death_signal())
        if not stop:
            if mode == "mpirun":
                launch = mpirun_args(command, topo, ppn, emuhost.write_launcher(topo, workdir, cpu))
                procs.append(subprocess.Popen(emuhost.on_host(topo, 0, launch, cpu), **start))
            else:
                for i in range(topo.nhosts):
                    procs.append(subprocess.Popen(emuhost.on_host(topo, i, torchrun_args(command, topo, i, ppn), cpu),
                                                  **start))
            code = _wait_all(procs, time.monotonic() + timeout if timeout else None, stop)
            if code == 124:
                say(f"# emulate: the command did not finish within --timeout {timeout:g} s; stopped it",
                    file=sys.stderr)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        if topo.made:
            _report_links(topo, say)
        left = topo.destroy()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        reaper.end_marked(token)
        shutil.rmtree(workdir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if left:
            say("# emulate: WARNING: could not remove " + ", ".join(left), file=sys.stderr)
    return code, stop


def _parser() -> argparse.ArgumentParser:
    p = checks.Parser(
        prog="python -m launch.emulate",
        description="Run COMMAND with its ranks spread over emulated hosts (network namespaces "
                    "joined by veth links through a bridge) on this machine. Needs root.",
        epilog="examples:\n"
               "  python -m launch.emulate --hosts 2 --rate 1gbit -- mpirun -n 2 python -m "
               "collectives.pingpong -b 1M -e 64M --transport mpi\n"
               "  python -m launch.emulate --hosts 3 -- torchrun --nproc-per-node 1 -m "
               "collectives.allreduce --transport gloo\n"
               "  python -m launch.emulate --hosts 3 --host-rate emu1=100mbit --host-cpu emu2=0.5 -- "
               "python -m collectives.allreduce --transport mpi\n"
               "  python -m launch.emulate --cleanup",
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--hosts", help=f"emulated hosts (network namespaces), 1 to {netns.MAX_HOSTS}")
    p.add_argument("--rate", help="shape every link to this rate in tc bit units: 100mbit, 1gbit, 10gbit")
    p.add_argument("--host-rate", action="append", metavar="HOST=RATE",
                   help="shape one host's link (both directions) to its own rate, e.g. emu3=200mbit (repeatable)")
    p.add_argument("--host-cpu", action="append", metavar="HOST=SHARE",
                   help="give one host's processes that share (0 to 1) of their fair CPU (usable cores / hosts) "
                        "with a cgroup v1 CPU quota, e.g. emu5=0.5 (repeatable)")
    p.add_argument("--host-delay", action="append", metavar="HOST=DELAY",
                   help="not supported, refused (delay needs sch_netem, which the CI kernel lacks)")
    p.add_argument("--ppn", help="ranks per emulated host (default: ranks / hosts, rounded up; "
                                 "torchrun: its --nproc-per-node, else 1)")
    p.add_argument("--timeout", help="stop the command after this many seconds (exit 124)")
    p.add_argument("--cleanup", action="store_true",
                   help="remove namespaces and cgroups left by emulations whose process is gone, then exit")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    return p


def _say(*args, file=None):
    """A note of the emulation's own; a stdout that breaks half-way must not stop the teardown (the
    command shares it and reports it; a closed stdout was refused before anything was built)."""
    try:
        print(*args, file=file or sys.stdout, flush=True)
    except OSError:
        pass


def _checked(args: argparse.Namespace) -> dict:
    """The numbers of the command line, checked (one line each when refused)."""
    if args.hosts is None:
        raise EmulationError("--hosts N is required")
    hosts = checks.whole("--hosts", args.hosts, 1, netns.MAX_HOSTS, why=f"must be between 1 and {netns.MAX_HOSTS}")
    ppn = None if args.ppn is None else checks.whole("--ppn", args.ppn, 1, checks.MAX_COUNT // hosts,
                                                     why=f"must be at least 1 (at most {checks.MAX_COUNT // hosts} "
                                                         f"with {hosts} hosts), a whole number")
    timeout = None if args.timeout is None else checks.seconds("--timeout", args.timeout)
    if args.rate is not None:
        netns.parse_rate(args.rate)
    if args.host_delay:
        raise EmulationError(emuhost.delay_refusal())
    host_rates = emuhost.host_values("--host-rate", args.host_rate, hosts, lambda item, value: value)
    Topology(hosts, args.rate, host_rates=host_rates)  # every rate checked
    host_cpu = emuhost.host_values("--host-cpu", args.host_cpu, hosts, emuhost.parse_share)
    return dict(hosts=hosts, rate=args.rate, ppn=ppn, timeout=timeout, host_rates=host_rates, host_cpu=host_cpu)


def _main(argv: Optional[Sequence[str]]) -> int:
    errors.refuse_closed_stdout("the emulation's notes")  # exit 2 before any namespace is made
    args = _parser().parse_args(argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if args.cleanup:
        given = [f for f, v in (("--hosts", args.hosts), ("--rate", args.rate), ("--ppn", args.ppn),
                                ("--timeout", args.timeout), ("--host-rate", args.host_rate),
                                ("--host-cpu", args.host_cpu), ("--host-delay", args.host_delay))
                 if v is not None] + (["a command"] if command else [])
        if given:
            raise EmulationError(f"--cleanup runs alone: leave out {', '.join(given)}")
        why = netns.requirements_missing()
        if why:
            raise EmulationError(why)
        removed = netns.sweep_stale()
        _say(f"# emulate: removed {', '.join(removed)}" if removed else "# emulate: nothing to remove")
        return 0
    return run(command, say=_say, **_checked(args))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit status: the command's; 2 bad input, emulation refused or stdout closed (one line, before
    anything is built); 3 a bug (one line, the traceback with COLLSCALE_DEBUG=1); 124 --timeout; 128+N
    stopped by signal N."""
    return errors.run_main("collscale emulate", lambda: _main(argv), expected=(EmulationError,))


if __name__ == "__main__":
    sys.exit(main())
