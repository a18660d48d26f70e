"""Single-process transports for testing the harness without MPI, and ranks as threads of one process
(:class:`ThreadWorld`: a control communicator and a point-to-point transport between them)."""

import pickle
import queue
import threading
import time

import numpy as np

import transports
from transports.base import Bound, TransportBase, Unsupported


class Loopback(TransportBase):
    """Every collective at one rank, done right with numpy."""

    name = "loopback"

    def __init__(self, comm, options):
        super().__init__(0, 1)
        self.options = options
        self.calls = 0

    def _copy(self, send, recv, result=None):
        def run():
            self.calls += 1
            if send is not None:
                recv[...] = send
        return Bound(run, recv if result is None else result)

    def allreduce(self, send, recv, dtype, op):
        return self._copy(send, recv)

    def reduce(self, send, recv, dtype, op, root):
        return self._copy(send, recv)

    def broadcast(self, send, recv, dtype, root):
        return self._copy(send, recv)

    def allgather(self, send, recv, dtype):
        return self._copy(send, recv)

    def reduce_scatter(self, send, recv, dtype, op):
        return self._copy(send, recv)

    def alltoall(self, send, recv, dtype):
        return self._copy(send, recv)

    def sendrecv(self, send, recv, dtype, dest, source):
        return self._copy(send, recv)

    def barrier(self):
        return Bound(lambda: None, None)

    def describe(self):
        return {"transport": self.name, "transport_version": "test"}


class Wrong(Loopback):
    """Gets element 0 wrong on every run."""

    name = "wrong"

    def _copy(self, send, recv, result=None):
        inner = super()._copy(send, recv)

        def run():
            inner.run()
            recv.view(np.uint8)[0] ^= 0x40
        return Bound(run, recv)


class NoInPlace(Loopback):
    name = "noinplace"

    def _copy(self, send, recv, result=None):
        if send is None:
            raise Unsupported("this fake has no in-place form")
        return super()._copy(send, recv)


class Slow(Loopback):
    """Each call sleeps a little: the budget must keep the iteration count small."""

    name = "slow"

    def _copy(self, send, recv, result=None):
        inner = super()._copy(send, recv)

        def run():
            time.sleep(0.002)
            inner.run()
        return Bound(run, recv)


def register_fakes():
    for cls in (Loopback, Wrong, NoInPlace, Slow):
        transports.register(cls.name, cls, description="test fake")


# -- ranks as threads ----------------------------------------------------------------------------

class ThreadWorld:
    """``size`` ranks as threads of this process: :meth:`run` calls ``fn(comm)`` on each and returns their
    results in rank order, or raises the first rank's error (the others' waits are broken, not stuck)."""

    def __init__(self, size: int, timeout: float = 30.0):
        self.size, self.timeout = size, timeout
        self.gate = threading.Barrier(size, timeout=timeout)
        self.slots = [None] * size
        self._boxes, self._lock = {}, threading.Lock()

    def box(self, src: int, dst: int) -> "queue.Queue":
        """The FIFO of messages from ``src`` to ``dst`` (in order, as MPI's non-overtaking rule)."""
        with self._lock:
            return self._boxes.setdefault((src, dst), queue.Queue())

    def run(self, fn):
        results, errors = [None] * self.size, []

        def body(rank):
            try:
                results[rank] = fn(ThreadComm(self, rank))
            except BaseException as exc:  # noqa: BLE001  (reported below, in rank order)
                errors.append((rank, exc))
                self.gate.abort()
        threads = [threading.Thread(target=body, args=(r,), name=f"rank-{r}") for r in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.timeout * 4)
        assert not any(t.is_alive() for t in threads), "a rank thread is stuck"
        if errors:
            raise sorted(errors, key=lambda e: isinstance(e[1], threading.BrokenBarrierError))[0][1]
        return results


class ThreadComm:
    """The control communicator of one :class:`ThreadWorld` rank (objects are copied, as MPI pickles them)."""

    mpi = None

    def __init__(self, world: ThreadWorld, rank: int):
        self.world, self.rank, self.size = world, rank, world.size

    def barrier(self) -> None:
        self.world.gate.wait()

    def allgather(self, obj):
        w = self.world
        w.gate.wait()  # everyone has read the previous round's slots
        w.slots[self.rank] = pickle.dumps(obj)
        w.gate.wait()
        out = [pickle.loads(x) for x in w.slots]
        w.gate.wait()
        return out

    def bcast(self, obj, root=0):
        return self.allgather(obj)[root]

    def allreduce(self, value, op="sum"):
        return {"sum": sum, "max": max, "min": min}[op](self.allgather(value))

    def abort(self, code: int) -> None:
        raise RuntimeError(f"rank {self.rank} aborted the threads' job with status {code}")


class Peers(Loopback):
    """Point-to-point transfers between :class:`ThreadWorld` ranks (numpy buffers, copied through FIFOs)."""

    name = "peers"

    def __init__(self, comm: ThreadComm, options):
        TransportBase.__init__(self, comm.rank, comm.size)
        self.options, self.calls, self.world = options, 0, comm.world

    def p2p(self, sends, recvs, dtype=None):
        world, me = self.world, self.rank

        def run():
            for buf, peer in sends:
                world.box(me, peer).put(np.array(buf, copy=True))
            for buf, peer in recvs:
                buf[...] = world.box(peer, me).get(timeout=world.timeout)
        return run
