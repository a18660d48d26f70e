"""The shm transport's memory: segments, buffers shared between ranks, staging.

:class:`ShmMemory` starts the transport (bootstrap over the control
communicator, the control segment with every rank's flags), places buffers
in this rank's own segments (``--buffer shared``) or stages ordinary ones
(``--buffer host``), swaps descriptors so every rank maps its peers'
buffers, and releases everything on close or before an abort.  The
collectives built on it are :class:`transports.shm.reductions.ShmReductions` and
:class:`transports.shm.transport.ShmTransport`.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ground import env as launch_env
from ground.dtypes import DType
from transports.base import Bound, TransportBase, TransportOptions, Unsupported
from transports.shm import kernels, segment
from transports.shm.compiled import ShmCompiled
from transports.shm.sync import Flags, control_bytes, eager_area

__all__ = ["ShmMemory", "BUFFERS"]

BUFFERS = ("shared", "host")


class _View:
    """Every rank's view of one role (send, recv, scratch) of a bound call."""

    def __init__(self, views: List[np.ndarray]):
        self.views = views

    def __getitem__(self, rank: int) -> np.ndarray:
        return self.views[rank]


class ShmMemory(TransportBase):
    """Segments and shared buffers of one job's ranks on one host."""

    def __init__(self, comm, options: TransportOptions):
        super().__init__(comm.rank, comm.size)
        p, me = comm.size, comm.rank
        hosts = comm.allgather(socket.gethostname())
        if len(set(hosts)) > 1:
            raise Unsupported(f"shm needs every rank on one host; this job spans {len(set(hosts))} hosts "
                              "(use --transport mpi)")
        self.buffer_mode = options.buffer or "shared"
        if self.buffer_mode not in BUFFERS:
            raise Unsupported(f"--buffer {self.buffer_mode}: shm has {', '.join(BUFFERS)}")
        self._configure(options)
        self.policy = os.environ.get("COLLSCALE_SHM_WAIT", "futex")
        self.seg_mode = os.environ.get("COLLSCALE_SHM_SEGMENTS", "memfd")
        if self.seg_mode not in ("memfd", "named"):
            raise Unsupported("COLLSCALE_SHM_SEGMENTS must be memfd or named")
        # Spin only where every rank has a core (the union of their affinities).
        self.oversubscribed = p > launch_env.usable_cores(comm.allgather(launch_env.affinity()))
        self.job = comm.bcast(uuid.uuid4().hex[:12] if me == 0 else None)
        self.pids = comm.allgather(os.getpid())
        self._own: Dict[int, segment.Segment] = {}
        self._peer: Dict[Tuple[int, int], segment.Segment] = {}
        self._fresh: List[segment.Segment] = []  # named segments not yet unlinked
        self._next_id = 1
        self._stages: Dict[str, np.ndarray] = {}
        # Eager allreduces so far, in a one-element list shared by the Python and native loops (its
        # parity picks the eager slot): public, as the native loop of compiled.py reads and advances it.
        self.eager_calls = [0]
        self._ctrl = self._bootstrap(comm)
        timeout = float(options.timeout or 0)
        if timeout and me != 0:
            timeout += min(5.0, max(1.0, 0.2 * timeout))  # rank 0 reports first
        self.flags = Flags(self._ctrl.mem, p, me, timeout, self.oversubscribed, self.policy)
        # (parity, rank, bytes): every rank's two eager slots, side by side.
        self._eager = eager_area(self._ctrl.mem, p)
        self._closed = False
        self.compiled = ShmCompiled(comm, self, options.loop, self.job)

    def _configure(self, options: TransportOptions) -> None:
        """Options of the algorithms built on this memory, checked before any segment exists."""

    # -- start-up ------------------------------------------------------------------
    def _bootstrap(self, comm) -> segment.Segment:
        """Rank 0's control segment, attached by all; memfd unless it cannot work."""
        if self.seg_mode == "named" and self.rank == 0:
            segment.sweep_orphans()
        for mode in (self.seg_mode, "named") if self.seg_mode == "memfd" else ("named",):
            desc = error = None
            ctrl = None
            if self.rank == 0:
                ctrl = segment.create(mode, self.job, 0, 0, control_bytes(self.size))
                desc = ctrl.desc
            desc = comm.bcast(desc)
            if self.rank != 0:
                try:
                    ctrl = segment.attach(mode, self.job, self.pids[0], desc)
                except OSError as exc:
                    error = f"rank {self.rank}: {exc}"
            errors = [e for e in comm.allgather(error) if e]
            if not errors:
                comm.barrier()  # everyone is attached: the name is no longer needed
                if self.rank == 0:
                    ctrl.unlink()
                self.seg_mode = mode
                return ctrl
            if ctrl is not None:
                ctrl.close()
        raise Unsupported("cannot share memory between the ranks: " + "; ".join(errors))

    # -- buffers -------------------------------------------------------------------
    def _new_segment(self, nbytes: int) -> segment.Segment:
        seg = segment.create(self.seg_mode, self.job, self.rank, self._next_id, nbytes)
        self._own[self._next_id] = seg
        self._next_id += 1
        if seg.path is not None:
            self._fresh.append(seg)
        return seg

    def alloc(self, count: int, dtype: DType):
        if self.buffer_mode == "host":
            return super().alloc(count, dtype)
        seg = self._new_segment(max(1, count) * dtype.itemsize)
        return np.frombuffer(seg.mem, dtype=dtype.storage, count=max(count, 0))

    def _locate(self, arr: np.ndarray) -> Optional[Tuple[segment.Segment, int]]:
        if not arr.flags.c_contiguous:
            return None
        addr = arr.__array_interface__["data"][0]
        for seg in self._own.values():
            if seg.addr <= addr and addr + arr.nbytes <= seg.addr + seg.size:
                return seg, addr - seg.addr
        return None

    def _stage(self, role: str, like: np.ndarray) -> np.ndarray:
        """A shared buffer of this rank for ``role``, at least as big as ``like``."""
        have = self._stages.get(role)
        if have is None or have.nbytes < like.nbytes:
            seg = self._new_segment(max(like.nbytes, 2 * (have.nbytes if have is not None else 0)))
            have = np.frombuffer(seg.mem, np.uint8)
            self._stages[role] = have
        return have[: like.nbytes].view(like.dtype)

    def _share(self, arrays: Sequence[Optional[np.ndarray]], dtype: np.dtype,
               what: str) -> List[Optional[_View]]:
        """Swap descriptors of ``arrays`` (each None or in an own segment) and map the peers'.

        Returns, per role, every rank's view of that role (None where the
        rank published nothing); all in ``dtype``.
        """
        records = []
        for arr in arrays:
            if arr is None:
                records.append((0, 0, 0, 0, -1))
                continue
            seg, offset = self._locate(arr)
            records.append((seg.desc.seg_id, seg.desc.fd, seg.desc.size, offset, arr.nbytes))
        fl = self.flags
        fl.publish(records)
        fl.barrier(f"exchanging buffers for {what}")
        views: List[List[Optional[np.ndarray]]] = [[None] * self.size for _ in arrays]
        for peer in range(self.size):
            recs = records if peer == self.rank else fl.read(peer, len(arrays))
            for k, rec in enumerate(recs):
                seg_id, fd, size, offset, nbytes = rec[:5]
                if nbytes < 0:
                    continue
                if peer == self.rank:
                    views[k][peer] = arrays[k]
                    continue
                key = (peer, seg_id)
                seg = self._peer.get(key)
                if seg is None:
                    seg = segment.attach(self.seg_mode, self.job, self.pids[peer],
                                         segment.Descriptor(peer, seg_id, fd, size))
                    self._peer[key] = seg
                views[k][peer] = np.frombuffer(seg.mem, dtype=dtype, count=nbytes // dtype.itemsize,
                                               offset=offset)
        fl.barrier(f"mapping buffers for {what}")
        for seg in self._fresh:  # every rank has attached: named segments lose their names
            seg.unlink()
        self._fresh.clear()
        return [_View(v) if any(x is not None for x in v) else None for v in views]

    def _prepare(self, send, recv, what: str, scratch_like: Optional[np.ndarray] = None):
        """Shared views of send/recv/scratch (staged when not shared) and the copy-in steps."""
        copy_in: List[Tuple[np.ndarray, np.ndarray]] = []
        send_sh = None
        if send is not None:
            send_sh = send if self._locate(send) else self._stage("send", send)
            if send_sh is not send:
                copy_in.append((send_sh, send))
        recv_sh = recv if self._locate(recv) else self._stage("recv", recv)
        staged_recv = recv_sh is not recv
        if staged_recv and send is None:
            copy_in.append((recv_sh, recv))
        z = self._stage("scratch", scratch_like) if scratch_like is not None else None
        s_view, r_view, z_view = self._share([send_sh, recv_sh, z], recv.dtype, what)
        return s_view, r_view, z_view, copy_in, (recv, recv_sh) if staged_recv else None

    def _finish(self, body, result_sh, copy_in, staged, program=None) -> Bound:
        """Wrap ``body`` with staging copies; map the result view back to the caller's buffer.

        ``program``: the same steps for the compiled loop (:mod:`.compiled`), or None."""
        if result_sh is None or staged is None:
            result = result_sh
            copy_out = None
        else:
            user, shared = staged
            start = (result_sh.__array_interface__["data"][0]
                     - shared.__array_interface__["data"][0]) // shared.itemsize
            result = user[start: start + len(result_sh)]
            copy_out = (result, result_sh)
        outs = [copy_out] if copy_out else []
        native = None if program is None else self.compiled.native(program.around(copy_in, outs))
        if not copy_in and copy_out is None:
            return Bound(body, result, native)
        ins = kernels.plan_copy(copy_in)
        outs = kernels.plan_copy(outs)

        def run():
            ins()
            body()
            outs()
        return Bound(run, result, native)

    def cleanup(self) -> None:
        """Unlink every name this job has in /dev/shm (named segments only).

        Names carry the job id, so the rank that fails can remove every
        rank's, including those the launcher is about to kill.  Two sweeps,
        0.1 s apart: a rank between two allocations may still create one, and
        then blocks at the next exchange, waiting for this one.
        """
        if self.seg_mode != "named":
            return
        import time

        prefix = f"{segment.PREFIX}{self.job}-"
        for attempt in range(2):
            if attempt:
                time.sleep(0.1)
            for name in os.listdir("/dev/shm"):
                if name.startswith(prefix):
                    try:
                        os.unlink(f"/dev/shm/{name}")
                    except OSError:
                        pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.flags.barrier("closing")  # nobody still reads my memory
        finally:
            self.flags.close()
            for seg in list(self._peer.values()) + list(self._own.values()) + [self._ctrl]:
                seg.close()
            self._peer.clear()
            self._own.clear()
