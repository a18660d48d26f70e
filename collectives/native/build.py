"""Compile a C source into a shared object on first use, cached, one compiler at a time.

The cache lives in ``$COLLSCALE_CACHE_DIR``, else ``$XDG_CACHE_HOME/collscale/native``,
else ``~/.cache/collscale/native``.  An object's name carries a hash of
everything that could change it: the source, the compiler command and its
flags, the compiler the wrapper runs (``CC``), the key parts the caller
adds (the MPI library's version string for the MPI loop), the machine and
the Python ABI.  So a rebuilt mpi4py against a site MPI, another
compiler, or an edited source each get an object of their own, and a
cached one is never stale.

Ranks of one job (and concurrent jobs) build under an exclusive ``flock``
on ``<object>.lock``: the first compiles into a temporary file and renames
it into place (atomic on one file system), the others wait for the lock
and find the object.  A failed build writes ``<object>.err`` with the
caller's ``token`` (a job id): the waiting ranks of the same job read the
reason instead of retrying the compiler one after another; another job
tries again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

__all__ = ["BuildError", "Built", "build", "cache_dir", "CFLAGS", "compiler_env"]

CFLAGS = ("-O3", "-fPIC", "-shared", "-std=gnu11", "-fno-strict-aliasing")
COMPILE_TIMEOUT_S = 120.0


class BuildError(RuntimeError):
    """No object could be built; the message (one line) says why."""


@dataclass(frozen=True)
class Built:
    """A shared object ready to load: where, and whether this process compiled it (and how long it took)."""

    path: str
    compiled: bool
    seconds: float


def cache_dir() -> str:
    explicit = os.environ.get("COLLSCALE_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "collscale", "native")


def compiler_env() -> Dict[str, str]:
    """The environment for a compiler wrapper: ``CC``, when set, is the C compiler mpicc runs
    (MPICH reads MPICH_CC, Open MPI OMPI_CC, Intel MPI I_MPI_CC)."""
    env = dict(os.environ)
    cc = os.environ.get("CC")
    if cc:
        for var in ("MPICH_CC", "OMPI_CC", "I_MPI_CC"):
            env.setdefault(var, cc)
    return env


def _key(name: str, source: bytes, command: Sequence[str], parts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for item in (name, platform.machine(), sys.implementation.cache_tag or "", os.environ.get("CC", ""),
                 *command, *CFLAGS, *parts):
        h.update(item.encode() + b"\0")
    h.update(source)
    return h.hexdigest()[:16]


def build(name: str, source_path: str, command: Sequence[str], key_parts: Sequence[str] = (),
          token: Optional[str] = None, extra_flags: Sequence[str] = ()) -> Built:
    """The shared object of ``source_path`` built with ``command`` (e.g. ``["mpicc"]``).

    Raises :class:`BuildError` (one line) when the compiler is missing or fails.
    """
    with open(source_path, "rb") as f:
        source = f.read()
    directory = cache_dir()
    key = _key(name, source, list(command) + list(extra_flags), key_parts)
    target = os.path.join(directory, f"{name}-{key}.so")
    if os.path.exists(target):
        return Built(target, False, 0.0)
    try:
        os.makedirs(directory, exist_ok=True)
        lock = open(target + ".lock", "a+")
    except OSError as exc:
        raise BuildError(f"cannot use the cache directory {directory} ({exc.strerror}); "
                         "set COLLSCALE_CACHE_DIR") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one compiler at a time; the others wait here
        if os.path.exists(target):
            return Built(target, False, 0.0)
        failed = _earlier_failure(target, token)
        if failed:
            raise BuildError(failed)
        start = time.monotonic()
        try:
            _compile(source_path, target, command, extra_flags)
        except BuildError as exc:
            _note_failure(target, token, str(exc))
            raise
        _prune(directory, name, target)
        return Built(target, True, time.monotonic() - start)


def _compile(source_path: str, target: str, command: Sequence[str], extra_flags: Sequence[str]) -> None:
    tmp = f"{target}.{os.getpid()}.tmp"
    cmd = [*command, *CFLAGS, *extra_flags, "-o", tmp, source_path]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S,
                             env=compiler_env())
    except FileNotFoundError:
        raise BuildError(f"compiler not found: {command[0]}") from None
    except OSError as exc:
        raise BuildError(f"cannot run {command[0]}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"{command[0]} took more than {COMPILE_TIMEOUT_S:g} s") from None
    if res.returncode != 0 or not os.path.exists(tmp):
        lines = [ln.strip() for ln in (res.stderr or res.stdout or "").splitlines() if ln.strip()]
        detail = "; ".join(lines[:2]) or f"exit status {res.returncode}"
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise BuildError(f"{os.path.basename(command[0])} failed: {detail[:300]}")
    os.replace(tmp, target)


STALE_S = 30 * 86400  # objects of other sources or compilers unused this long are removed


def _prune(directory: str, name: str, keep: str) -> None:
    """Remove ``name``'s objects (and their lock and error files) not modified for :data:`STALE_S`:
    older sources and compilers.  A process that has one loaded keeps its mapping."""
    now = time.time()
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        if not entry.startswith(name + "-") or path.startswith(keep):
            continue
        try:
            if now - os.stat(path).st_mtime > STALE_S:
                os.unlink(path)
        except OSError:
            pass


def _earlier_failure(target: str, token: Optional[str]) -> Optional[str]:
    """The reason a build of this job (``token``) already failed, or None."""
    if token is None:
        return None
    try:
        with open(target + ".err") as f:
            first, _, reason = f.read().partition("\n")
    except OSError:
        return None
    return reason.strip() if first == token else None


def _note_failure(target: str, token: Optional[str], reason: str) -> None:
    if token is None:
        return
    try:
        with open(target + ".err", "w") as f:
            f.write(f"{token}\n{reason}\n")
    except OSError:
        pass
