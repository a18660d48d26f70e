"""A numpy-backed stand-in for the few CuPy calls collscale uses (tests only)."""

import numpy as np


class ndarray(np.ndarray):
    def set(self, arr):
        self[...] = arr

    def get(self, out=None):
        if out is None:
            return np.array(self)
        out[...] = self
        return out


def zeros(shape, dtype=float):
    return np.zeros(shape, dtype).view(ndarray)


def asnumpy(a, out=None):
    if out is None:
        return np.array(a)
    out[...] = a
    return out


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1


class Device:
    def __init__(self, index=0):
        self.id = index

    def use(self):
        return None

    def synchronize(self):
        return None


class cuda:  # noqa: N801 (mimics the cupy.cuda namespace)
    runtime = _Runtime()
    Device = Device
