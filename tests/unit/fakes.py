"""Single-process transports for testing the harness without MPI."""

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
