"""A private single-node Slurm for the tests: munged, slurmctld and slurmd started in a temp dir.

Everything it needs lives under one directory (config, munge key and socket,
state, spool, logs) and it listens on two free loopback ports, so it runs
beside a system Slurm without touching it.  The daemons run in the
foreground as children of the test; :meth:`SlurmCluster.stop` cancels every
job, stops them and kills any step daemon left.  Needs root (slurmd starts
jobs as their submitting user) and Debian's ``slurmd slurmctld munge``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scancel", "sinfo")


def missing() -> Optional[str]:
    """Why a private Slurm cannot start here, or None."""
    absent = [n for n in DAEMONS + CLIENTS if not shutil.which(n) and not os.path.exists(f"/usr/sbin/{n}")]
    if absent:
        return f"Slurm is not installed ({', '.join(absent)} missing; apt-get install slurmd slurmctld munge)"
    if os.geteuid() != 0:
        return "a private slurmd must run as root"
    if (os.cpu_count() or 1) < 2:
        return "a 2-rank job needs 2 CPUs"
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _free_ports(n: int) -> List[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SlurmCluster:
    """One node, partition ``debug``; ``env`` is what a client (or the sweep) needs."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: List[subprocess.Popen] = []
        self.node = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.sock = root / "run" / "munge.sock"

    @property
    def env(self) -> Dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def _config(self, ctld_port: int, d_port: int) -> str:
        r = self.root
        return "\n".join([
            "ClusterName=collscaletest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}", f"SlurmdPort={d_port}",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={self.sock}",
            f"StateSaveLocation={r}/state", f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/run/slurmctld.pid", f"SlurmdPidFile={r}/run/slurmd.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log", f"SlurmdLogFile={r}/log/slurmd.log",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            # The packaged default: srun starts tasks with no PMI unless told (--mpi=...).
            "MpiDefault=none",
            "ReturnToService=2", "SchedulerType=sched/builtin",
            "JobCompType=jobcomp/none", "AccountingStorageType=accounting_storage/none",
            "InactiveLimit=0", "KillWait=5", "MinJobAge=2",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES",
            "",
        ])

    def start(self, timeout: float = 60.0) -> None:
        for sub in ("state", "spool", "log", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # munge clients must reach the socket
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.conf.write_text(self._config(*_free_ports(2)))
        env = {**os.environ, **self.env}
        r = self.root
        self._spawn([_binary("munged"), "-F", "-f", f"--socket={self.sock}", f"--key-file={key}",
                     f"--log-file={r}/log/munged.log", f"--pid-file={r}/run/munged.pid",
                     f"--seed-file={r}/run/munged.seed"], env)
        self._wait_for(lambda: self.sock.exists(), timeout, "munged")
        self._spawn([_binary("slurmctld"), "-D", "-c", "-f", str(self.conf)], env)
        self._spawn([_binary("slurmd"), "-D", "-f", str(self.conf), "-N", self.node], env)
        self._wait_for(self._node_idle, timeout, "slurmd to register")

    def _spawn(self, cmd, env) -> None:
        log = open(self.root / "log" / f"{Path(cmd[0]).name}.out", "w")
        self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True))
        log.close()

    def _wait_for(self, ready, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited with {p.returncode} waiting for {what}: "
                                       f"{self.logs()}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}: {self.logs()}")

    def _node_idle(self) -> bool:
        res = self.run(["sinfo", "-h", "-o", "%t"], check=False)
        return res.returncode == 0 and res.stdout.strip() in ("idle", "idle*", "mix")

    def run(self, cmd, check: bool = True, timeout: float = 60.0, **kw) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.env, **kw.pop("env", {})}
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL, **kw)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {res.returncode}: {res.stderr.strip()}")
        return res

    def wait_idle(self, timeout: float) -> None:
        """Until no job is queued or running."""
        self._wait_for(lambda: self.run(["squeue", "-h"], check=False).stdout.strip() == "", timeout,
                       "the jobs to finish")

    def logs(self) -> str:
        out = []
        for path in sorted((self.root / "log").glob("*")):
            text = path.read_text(errors="replace").strip().splitlines()[-5:]
            out.append(f"[{path.name}] " + " | ".join(text))
        return " ".join(out)

    def stop(self) -> None:
        try:
            self.run(["scancel", "--full", "-u", "root"], check=False, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self._kill_stepds()

    def _kill_stepds(self) -> None:
        """slurmstepd of this cluster's jobs (they name our spool dir) must not outlive it."""
        spool = str(self.root / "spool")
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if "slurmstepd" in cmd and (spool in cmd or str(self.conf).encode() in environ):
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
