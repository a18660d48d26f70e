"""Segments that leave nothing behind, and waits that never hang (one process)."""

import mmap
import os
import time

import numpy as np
import pytest

from transports.shm import segment
from transports.shm.sync import Flags, WaitTimeout, control_bytes, eager_area, eager_bytes


def test_memfd_segment_attaches_through_proc_and_has_no_name(tmp_path):
    before = set(os.listdir("/dev/shm"))
    own = segment.create("memfd", "t" + os.urandom(4).hex(), 0, 1, 10000)
    assert own.size % mmap.PAGESIZE == 0 and own.size >= 10000
    peer = segment.attach("memfd", "x", os.getpid(), own.desc)
    np.frombuffer(own.mem, np.uint8)[:4] = [1, 2, 3, 4]
    assert np.frombuffer(peer.mem, np.uint8)[:4].tolist() == [1, 2, 3, 4]
    assert set(os.listdir("/dev/shm")) == before  # never a name in /dev/shm
    peer.close()
    own.close()


def test_named_segment_is_unlinked_and_still_shared():
    job = "t" + os.urandom(4).hex()
    own = segment.create("named", job, 2, 7, 100)
    assert own.path.startswith("/dev/shm/collscale-") and os.path.exists(own.path)
    peer = segment.attach("named", job, os.getpid(), own.desc)
    own.unlink()
    assert not os.path.exists(f"/dev/shm/collscale-{job}-2-7")
    np.frombuffer(own.mem, np.uint8)[0] = 9
    assert np.frombuffer(peer.mem, np.uint8)[0] == 9
    peer.close()
    own.close()


def test_orphans_of_dead_jobs_are_swept():
    path = f"/dev/shm/collscale-orphan{os.urandom(4).hex()}-0-1"
    with open(path, "wb") as f:
        f.write(b"x")
    old = time.time() - 3600
    os.utime(path, (old, old))
    fresh = f"/dev/shm/collscale-fresh{os.urandom(4).hex()}-0-1"
    open(fresh, "wb").close()
    try:
        assert segment.sweep_orphans() >= 1
        assert not os.path.exists(path)
        assert os.path.exists(fresh)  # too young: maybe a job still attaching
    finally:
        for p in (path, fresh):
            if os.path.exists(p):
                os.unlink(p)


def _flags(p=2, me=0, timeout=0.3, over=False, policy="futex"):
    mem = mmap.mmap(-1, control_bytes(p))
    return Flags(mem, p, me, timeout, over, policy), mem


@pytest.mark.parametrize("policy", ["futex", "yield", "spin"])
@pytest.mark.parametrize("over", [False, True])
def test_a_wait_for_a_silent_peer_times_out_naming_it(policy, over):
    fl, _ = _flags(policy=policy, over=over)
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout, match="rank 0 waited 0.3 s for rank 1 \\(allreduce inputs\\)"):
        fl.wait(1, 1, "allreduce inputs")
    assert 0.3 <= time.monotonic() - t0 < 3
    fl.epoch = 0
    with pytest.raises(WaitTimeout, match="for rank 1"):
        fl.arrive(1, "barrier")


def test_posts_are_seen_and_never_lowered_by_waits():
    fl, mem = _flags()
    peer = Flags(mem, 2, 1, 1, False)
    peer.post(5)
    fl.wait(1, 5, "x")  # returns at once
    fl.post(3)
    peer.wait(0, 3, "x")
    assert fl.words[0] == 3 and fl.words[8] == 5


def test_descriptors_round_trip():
    fl, mem = _flags(p=3, me=1)
    fl.publish([(1, 2, 3, 4, 5), (6, 7, 8, 9, 10)])
    other = Flags(mem, 3, 2, 1, False)
    assert [r[:5] for r in other.read(1, 2)] == [(1, 2, 3, 4, 5), (6, 7, 8, 9, 10)]


def test_eager_area_fits_the_control_segment():
    for p in (1, 2, 8, 64, 512):
        mem = mmap.mmap(-1, control_bytes(p))
        area = eager_area(mem, p)
        assert area.shape == (2, p, eager_bytes(p))
        del area


def test_single_rank_barrier_returns():
    fl, _ = _flags(p=1)
    fl.barrier("alone")
    fl.barrier("alone")
    assert fl.epoch == 2
