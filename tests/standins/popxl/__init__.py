"""A stand-in for Graphcore's popxl (tests only): records the graph that
collscale builds and evaluates it in numpy for one replica."""

import numpy as np

__version__ = "stand-in"
CALLS = []

float16, float32, int32, uint32, int8, uint8 = "float16", "float32", "int32", "uint32", "int8", "uint8"


class Tensor:
    def __init__(self, shape, dtype, fn):
        self.shape, self.dtype, self.fn = tuple(shape), dtype, fn


class _Stream:
    def __init__(self, shape, dtype, name):
        self.shape, self.dtype, self.name = tuple(shape), dtype, name


def h2d_stream(shape, dtype, name=None):
    CALLS.append(("h2d_stream", tuple(shape), dtype))
    return _Stream(shape, dtype, name)


def d2h_stream(shape, dtype, name=None):
    CALLS.append(("d2h_stream", tuple(shape), dtype))
    return _Stream(shape, dtype, name)


class _Graph:
    def __init__(self, ir):
        self.ir = ir

    def __enter__(self):
        _CURRENT.append(self.ir)
        return self

    def __exit__(self, *exc):
        _CURRENT.pop()
        return False


_CURRENT = []


class Ir:
    def __init__(self, replication=1):
        CALLS.append(("Ir", replication))
        if replication not in (1, "popdist"):
            raise ValueError("the stand-in runs one replica")
        self.replication_factor = 1
        self.stores = []
        self.main_graph = _Graph(self)
        self.num_host_transfers = None


class Session:
    def __init__(self, ir, target):
        CALLS.append(("Session", target))
        self.ir = ir

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, inputs):
        return {d2h: np.asarray(t.fn(inputs)) for d2h, t in self.ir.stores}


from popxl import ops  # noqa: E402  (popxl.ops, as the real package exposes it)

__all__ = ["Tensor", "h2d_stream", "d2h_stream", "Ir", "Session", "ops"]
