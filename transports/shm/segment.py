"""Shared-memory segments that no exit path can leave behind.

Two ways to share pages between the ranks of one host:

``memfd`` (the default): the owner creates an anonymous ``memfd`` and keeps
its descriptor open; peers attach by opening ``/proc/<owner pid>/fd/<fd>``
(the way UCX's posix transport does).  The segment never has a name in
``/dev/shm`` at all, so a rank killed at any moment leaks nothing, and the
size is not limited by the ``/dev/shm`` mount (64 MiB in many containers).

``named``: for systems where ``/proc/<pid>/fd`` of a sibling cannot be
opened.  The owner creates ``/dev/shm/collscale-<job>-<rank>-<id>``
(the job id is a random UUID from rank 0, so concurrent jobs never
collide), peers open it, and the owner unlinks it as soon as every rank has
attached; only a kill inside that window of a few microseconds could leave
it, and a later job of the same user removes names whose owner is dead.

The owner's pages live as long as any rank maps them.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

__all__ = ["Segment", "Descriptor", "create", "attach", "PREFIX", "page_round", "sweep_orphans"]

PREFIX = "collscale-"
_PAGE = mmap.PAGESIZE


def page_round(nbytes: int) -> int:
    return max(_PAGE, (nbytes + _PAGE - 1) // _PAGE * _PAGE)


@dataclass(frozen=True)
class Descriptor:
    """Where a peer finds a segment: owner rank, segment id, fd (memfd), size."""

    owner: int
    seg_id: int
    fd: int
    size: int


class Segment:
    """A mapping this process owns (``owned``) or has attached to."""

    def __init__(self, mem: mmap.mmap, desc: Descriptor, fd: Optional[int], path: Optional[str]):
        self.mem = mem
        self.desc = desc
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
        self._fd = fd  # memfd owners keep it open: peers attach through it
        self.path = path  # named owners: unlinked once peers have attached

    @property
    def size(self) -> int:
        return self.desc.size

    def unlink(self) -> None:
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None

    def close(self) -> None:
        self.unlink()
        try:
            self.mem.close()
        except BufferError:
            # numpy views still point into it: the mapping goes when they do.
            pass
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _named_path(job: str, owner: int, seg_id: int) -> str:
    return f"/dev/shm/{PREFIX}{job}-{owner}-{seg_id}"


def create(mode: str, job: str, owner: int, seg_id: int, nbytes: int) -> Segment:
    """A new zero-filled segment of at least ``nbytes`` owned by this process."""
    size = page_round(nbytes)
    if mode == "memfd":
        fd = os.memfd_create(f"{PREFIX}{job}-{owner}-{seg_id}", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            mem = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        return Segment(mem, Descriptor(owner, seg_id, fd, size), fd, None)
    path = _named_path(job, owner, seg_id)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, size)
        mem = mmap.mmap(fd, size)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
    return Segment(mem, Descriptor(owner, seg_id, -1, size), None, path)


def attach(mode: str, job: str, owner_pid: int, desc: Descriptor) -> Segment:
    """Map a peer's segment into this process."""
    if mode == "memfd":
        path = f"/proc/{owner_pid}/fd/{desc.fd}"
    else:
        path = _named_path(job, desc.owner, desc.seg_id)
    fd = os.open(path, os.O_RDWR)
    try:
        mem = mmap.mmap(fd, desc.size)
    finally:
        os.close(fd)
    return Segment(mem, desc, None, None)


def memfd_works(peer_pid: int, peer_fd: int) -> Optional[str]:
    """None when this process can attach to a sibling's memfd, else why not."""
    try:
        fd = os.open(f"/proc/{peer_pid}/fd/{peer_fd}", os.O_RDWR)
    except OSError as exc:
        return f"cannot open /proc/{peer_pid}/fd/{peer_fd}: {exc.strerror}"
    os.close(fd)
    return None


def sweep_orphans(uid: Optional[int] = None) -> int:
    """Remove named segments of this user whose owning process is gone.

    Names carry no pid, so ownership is read from ``/proc/*/maps``: a
    ``collscale-`` name that no live process maps, older than a minute, is
    an orphan of a job killed inside the attach window.
    """
    import time

    uid = os.getuid() if uid is None else uid
    try:
        names = [n for n in os.listdir("/dev/shm") if n.startswith(PREFIX)]
    except OSError:
        return 0
    if not names:
        return 0
    mapped = _mapped_names()
    removed = 0
    for name in names:
        path = f"/dev/shm/{name}"
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_uid != uid or name in mapped or time.time() - st.st_mtime < 60:
            continue
        try:
            os.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed


def _mapped_names() -> set:
    names = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    if "/dev/shm/" + PREFIX in line:
                        names.add(line.rsplit("/", 1)[-1].split()[0])
        except OSError:
            continue
    return names


Mapping = Dict[Tuple[int, int], Segment]
