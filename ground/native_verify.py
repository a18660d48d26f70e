"""The compiled-object cache's checks: only a private directory, only our objects, whole, loaded from memory.

* :func:`open_cache` creates the cache directory (each missing component
  0700, whatever the umask) and opens it; a directory owned by another user
  or writable by group or others is refused with a one-line
  :class:`BuildError`.  Every later step works relative to that open
  directory, so swapping a path above it changes nothing.
* :func:`read_verified` reads an object once (no symbolic link, a regular
  file owned by this user, not writable by group or others) and its
  ``.sha256`` file (the same checks), and returns the bytes only when their
  SHA-256 is the one recorded when the object was built.
* :func:`write_private` writes a file atomically (temporary file, explicit
  mode, rename), so a reader sees the old file or the whole new one.
* :func:`load_library` loads exactly the verified bytes: written into a
  sealed memfd (no write, shrink or grow) and opened through
  ``/proc/self/fd/N``, so nothing can change them between the check and
  the load.  A torn or foreign object is never mapped, so it cannot crash
  the process.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import hmac
import os
import stat
import threading
from typing import Dict, Optional, Tuple

__all__ = ["BuildError", "open_cache", "read_verified", "write_private", "load_library", "untrusted",
           "DIGEST_SUFFIX", "MAX_OBJECT", "OBJECT_MODE", "FILE_MODE"]

DIGEST_SUFFIX = ".sha256"
MAX_OBJECT = 64 << 20  # no loop object comes near; a larger file is not ours
OBJECT_MODE = 0o700
FILE_MODE = 0o600
DIR_MODE = 0o700
ADVICE = "set COLLSCALE_CACHE_DIR to a private directory"

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a planted FIFO never blocks
_MFD_EXEC = 0x0010  # Linux >= 6.3: ask for an executable memfd where vm.memfd_noexec would seal it
_SEALS = (getattr(fcntl, "F_SEAL_SEAL", 1) | getattr(fcntl, "F_SEAL_SHRINK", 2) | getattr(fcntl, "F_SEAL_GROW", 4)
          | getattr(fcntl, "F_SEAL_WRITE", 8))


class BuildError(RuntimeError):
    """No object could be built or used; the message (one line) says why."""


def untrusted(st: os.stat_result) -> Optional[str]:
    """Why a file or directory with this status is not ours to use, or None."""
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    if mode & 0o002:
        return f"is writable by others (mode {mode:04o})"
    if mode & 0o020:
        return f"is writable by its group (mode {mode:04o})"
    return None


def open_cache(path: str) -> int:
    """An open descriptor of the cache directory ``path``, created 0700 where missing; BuildError if it
    cannot be created or is not private (another owner, group- or other-writable)."""
    path = os.path.abspath(path)
    try:
        _make_private(path)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise BuildError(f"cannot create or open the cache directory {path} ({exc.strerror}); {ADVICE}") from None
    problem = untrusted(os.fstat(fd))
    if problem:
        os.close(fd)
        raise BuildError(f"the cache directory {path} {problem}: not used; {ADVICE}")
    return fd


def _make_private(path: str) -> None:
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for p in reversed(missing):
        try:
            os.mkdir(p, DIR_MODE)
        except FileExistsError:
            continue  # made by another rank meanwhile: open_cache checks the last one
        fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, DIR_MODE)  # the umask only removes bits; this makes it exactly 0700
        finally:
            os.close(fd)


def read_private(dirfd: int, name: str, limit: int, strict: bool = True) -> Tuple[Optional[bytes], Optional[str]]:
    """``(bytes, None)``, or ``(None, why)`` where ``name`` is not a regular file of this user (and, when
    ``strict``, not writable by group or others), or is larger than ``limit``; ``(None, None)`` if absent."""
    try:
        fd = os.open(name, _READ, dir_fd=dirfd)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, ("is a symbolic link" if exc.errno == errno.ELOOP else f"cannot be read ({exc.strerror})")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, "is not a regular file"
        problem = untrusted(st)
        if problem and (strict or st.st_uid != os.geteuid()):
            return None, problem
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks), None
            total += len(chunk)
            if total > limit:
                return None, f"is larger than {limit} bytes"
            chunks.append(chunk)
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    finally:
        os.close(fd)


def digest_text(data: bytes, objname: str) -> bytes:
    """The digest file's contents (``sha256sum`` format: ``sha256sum -c`` checks it)."""
    return f"{hashlib.sha256(data).hexdigest()}  {objname}\n".encode()


def read_verified(dirfd: int, objname: str) -> Tuple[Optional[bytes], Optional[str]]:
    """The object's bytes if they are whole and ours, else ``(None, why)`` (``why`` None: no object)."""
    data, why = read_private(dirfd, objname, MAX_OBJECT)
    if data is None:
        return None, why
    recorded, why = read_private(dirfd, objname + DIGEST_SUFFIX, 4096)
    if recorded is None:
        return None, f"has a digest file that {why}" if why else "has no recorded digest"
    want = recorded.split(maxsplit=1)[0] if recorded.strip() else b""
    have = hashlib.sha256(data).hexdigest().encode()
    if not hmac.compare_digest(want, have):
        return None, "does not match the digest recorded when it was built (torn, corrupt or replaced)"
    return data, None


def write_private(dirfd: int, name: str, data: bytes, mode: int = FILE_MODE) -> None:
    """Write ``name`` atomically with exactly ``mode`` (a temporary file renamed into place)."""
    tmp = f"{name}.{os.getpid()}.tmp"
    try:
        os.unlink(tmp, dir_fd=dirfd)  # left by a crashed process of the same pid
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dirfd)
    try:
        os.fchmod(fd, mode)
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        os.unlink(tmp, dir_fd=dirfd)
        raise
    os.close(fd)
    os.replace(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# One load per distinct object, its memfd held open for the process's life: glibc knows a loaded
# object by its name, so a reused /proc/self/fd/N would return the earlier object.
_LOADED: Dict[str, Tuple[ctypes.CDLL, int]] = {}
_LOADING = threading.Lock()


def load_library(data: bytes, name: str = "collscale-loop") -> ctypes.CDLL:
    """``ctypes.CDLL`` of exactly ``data`` (bytes already verified), from a sealed memfd."""
    digest = hashlib.sha256(data).hexdigest()
    with _LOADING:
        if digest in _LOADED:
            return _LOADED[digest][0]
        fd = _sealed_memfd(name, data)
        try:
            lib = ctypes.CDLL(f"/proc/self/fd/{fd}")
        except OSError as exc:
            os.close(fd)
            detail = " ".join(str(exc).split())[:200]
            raise BuildError(f"the compiled loop cannot be loaded from memory ({detail})") from None
        _LOADED[digest] = (lib, fd)
        return lib


def _sealed_memfd(name: str, data: bytes) -> int:
    if not hasattr(os, "memfd_create"):
        raise BuildError("this system has no memfd_create to load the compiled loop from memory")
    base = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        try:
            fd = os.memfd_create(name, base | _MFD_EXEC)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # a kernel before 6.3 knows no MFD_EXEC
                raise
            fd = os.memfd_create(name, base)
    except OSError as exc:
        raise BuildError(f"cannot create a memfd for the compiled loop ({exc.strerror})") from None
    try:
        _write_all(fd, data)
        fcntl.fcntl(fd, getattr(fcntl, "F_ADD_SEALS", 1033), _SEALS)
    except OSError as exc:
        os.close(fd)
        raise BuildError(f"cannot seal the compiled loop in memory ({exc.strerror})") from None
    return fd
