"""Compile a C source into a shared object on first use, cached, one compiler at a time.

The cache lives in ``$COLLSCALE_CACHE_DIR``, else ``$XDG_CACHE_HOME/collscale/native``,
else ``~/.cache/collscale/native``.  An object's name carries a hash of
everything that could change it: the source, the compiler command and its
flags, the compiler the wrapper runs (``CC``), the key parts the caller
adds (the MPI library's version string for the MPI loop), the machine and
the Python ABI.  So a rebuilt mpi4py against a site MPI, another
compiler, or an edited source each get an object of their own, and a
cached one is never stale.

The cache is used only where it is private and whole (:mod:`ground.native_verify`): the
directory is created 0700 and refused if another user owns it or group or
others can write it; an object (0700) is used only with its SHA-256 file
(``<object>.sha256``, 0600, written at build time) matching the bytes read,
and the loaders load exactly those bytes from a sealed memfd
(:func:`load`).  A torn, corrupt, foreign or loosely moded object is rebuilt
under the lock, or, where the directory cannot be written, the build fails
with a one-line reason (the transports then run the Python loop and say
why).

Ranks of one job (and concurrent jobs) build under an exclusive ``flock``
on ``<object>.lock``: the first compiles, reads the compiler's output once
and writes those bytes and their digest, each renamed into place (atomic on
one file system); the others wait for the lock and find the object
verified.  A failed build writes ``<object>.err`` with the caller's
``token`` (a job id): the waiting ranks of the same job read the reason
instead of retrying the compiler one after another; another job tries
again.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

from ground import native_verify as verify
from ground.native_verify import BuildError

__all__ = ["BuildError", "Built", "build", "load", "cache_dir", "c_compiler", "CFLAGS", "compiler_env"]

CFLAGS = ("-O3", "-fPIC", "-shared", "-std=gnu11", "-fno-strict-aliasing")
COMPILE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Built:
    """A verified shared object: where it is cached, whether this process compiled it (and how long it
    took), its bytes (what :func:`load` loads) and, when a cached one was replaced, why."""

    path: str
    compiled: bool
    seconds: float
    data: bytes = field(default=b"", repr=False)
    note: str = ""


def load(built: Built) -> ctypes.CDLL:
    """The library of ``built``'s verified bytes, from a sealed memfd (never from the cached file)."""
    return verify.load_library(built.data, os.path.basename(built.path))


def cache_dir() -> str:
    explicit = os.environ.get("COLLSCALE_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "collscale", "native")


def c_compiler() -> list:
    """The plain C compiler's command: ``$CC`` (split as a shell would), else ``cc``."""
    return shlex.split(os.environ.get("CC") or "cc")


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
    """The shared object of ``source_path`` built with ``command`` (e.g. ``["mpicc"]``), verified.

    Raises :class:`BuildError` (one line) when the compiler is missing or fails, or when the cache
    directory cannot be trusted, or holds an unusable object and cannot be written.
    """
    with open(source_path, "rb") as f:
        source = f.read()
    directory = os.path.abspath(cache_dir())
    key = _key(name, source, list(command) + list(extra_flags), key_parts)
    objname = f"{name}-{key}.so"
    target = os.path.join(directory, objname)
    dirfd = verify.open_cache(directory)  # private, or BuildError
    try:
        data, why = verify.read_verified(dirfd, objname)
        if data is not None:
            return Built(target, False, 0.0, data)
        try:
            lock = os.open(objname + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                           verify.FILE_MODE, dir_fd=dirfd)
        except OSError as exc:
            raise BuildError(_unwritable(directory, target, why, exc)) from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one compiler at a time; the others wait here
            data, why = verify.read_verified(dirfd, objname)  # built (or repaired) while we waited
            if data is not None:
                return Built(target, False, 0.0, data)
            failed = _earlier_failure(dirfd, objname, token)
            if failed:
                raise BuildError(failed)
            start = time.monotonic()
            try:
                data = _compile(dirfd, directory, objname, source_path, command, extra_flags)
                _install(dirfd, directory, objname, data)
            except BuildError as exc:
                _note_failure(dirfd, objname, token, str(exc))
                raise
            _prune(dirfd, name, objname)
            note = f"the cached object {why}: rebuilt" if why else ""
            return Built(target, True, time.monotonic() - start, data, note)
        finally:
            os.close(lock)
    finally:
        os.close(dirfd)


def _unwritable(directory: str, target: str, why: Optional[str], exc: OSError) -> str:
    if why:
        return (f"the cached object {target} {why}, and the cache directory cannot be written "
                f"({exc.strerror}): not used; set COLLSCALE_CACHE_DIR to a private writable directory")
    return (f"cannot write the cache directory {directory} ({exc.strerror}); "
            "set COLLSCALE_CACHE_DIR to a private writable directory")


def _compile(dirfd: int, directory: str, objname: str, source_path: str, command: Sequence[str],
             extra_flags: Sequence[str]) -> bytes:
    """The bytes the compiler produced (read once; the temporary file is removed)."""
    tmpname = f"{objname}.{os.getpid()}.cc.tmp"
    tmp = os.path.join(directory, tmpname)
    cmd = [*command, *CFLAGS, *extra_flags, "-o", tmp, source_path]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S,
                             env=compiler_env(), umask=0o077)
    except FileNotFoundError:
        raise BuildError(f"compiler not found: {command[0]}") from None
    except OSError as exc:
        raise BuildError(f"cannot run {command[0]}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"{command[0]} took more than {COMPILE_TIMEOUT_S:g} s") from None
    data, why = verify.read_private(dirfd, tmpname, verify.MAX_OBJECT, strict=False)
    try:
        os.unlink(tmpname, dir_fd=dirfd)
    except OSError:
        pass
    if res.returncode != 0 or data is None:
        lines = [ln.strip() for ln in (res.stderr or res.stdout or "").splitlines() if ln.strip()]
        detail = "; ".join(lines[:2]) or (f"its output {why}" if why else f"exit status {res.returncode}")
        raise BuildError(f"{os.path.basename(command[0])} failed: {detail[:300]}")
    return data


def _install(dirfd: int, directory: str, objname: str, data: bytes) -> None:
    """The object, then its digest, each renamed into place: a reader sees whole files, and one that
    reads a new object with the old digest fails the check and waits for this lock."""
    try:
        verify.write_private(dirfd, objname, data, verify.OBJECT_MODE)
        verify.write_private(dirfd, objname + verify.DIGEST_SUFFIX, verify.digest_text(data, objname))
    except OSError as exc:
        raise BuildError(f"cannot write the cache directory {directory} ({exc.strerror}); "
                         "set COLLSCALE_CACHE_DIR to a private writable directory") from None


STALE_S = 30 * 86400  # objects of other sources or compilers unused this long are removed


def _prune(dirfd: int, name: str, keep: str) -> None:
    """Remove ``name``'s objects (and their lock, digest and error files) not modified for
    :data:`STALE_S`: older sources and compilers.  A process that has one loaded keeps its copy."""
    now = time.time()
    for entry in os.listdir(dirfd):
        if not entry.startswith(name + "-") or entry.startswith(keep):
            continue
        try:
            if now - os.stat(entry, dir_fd=dirfd, follow_symlinks=False).st_mtime > STALE_S:
                os.unlink(entry, dir_fd=dirfd)
        except OSError:
            pass


def _earlier_failure(dirfd: int, objname: str, token: Optional[str]) -> Optional[str]:
    """The reason a build of this job (``token``) already failed, or None."""
    if token is None:
        return None
    text, _ = verify.read_private(dirfd, objname + ".err", 1 << 16)
    if text is None:
        return None
    first, _, reason = text.decode(errors="replace").partition("\n")
    return reason.strip() if first == token else None


def _note_failure(dirfd: int, objname: str, token: Optional[str], reason: str) -> None:
    if token is None:
        return
    try:
        verify.write_private(dirfd, objname + ".err", f"{token}\n{reason}\n".encode())
    except OSError:
        pass
