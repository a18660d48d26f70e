"""Stand-in popxl.ops: one replica, so every replicated collective is the identity."""

import numpy as np

import popxl


def host_load(stream):
    popxl.CALLS.append(("host_load", stream.shape))
    return popxl.Tensor(stream.shape, stream.dtype, lambda inputs: np.asarray(inputs[stream]))


def host_store(stream, t):
    popxl.CALLS.append(("host_store", t.shape))
    popxl._CURRENT[-1].stores.append((stream, t))


def reshape(t, shape):
    return popxl.Tensor(shape, t.dtype, lambda inputs: t.fn(inputs).reshape(shape))


class collectives:  # noqa: N801 (mimics popxl.ops.collectives)
    @staticmethod
    def replicated_all_reduce(t, op="add", group=None):
        assert op in ("add", "mean", "mul", "min", "max", "and", "or")
        popxl.CALLS.append(("replicated_all_reduce", op))
        return popxl.Tensor(t.shape, t.dtype, t.fn)

    @staticmethod
    def replicated_all_gather(t, group=None):
        popxl.CALLS.append(("replicated_all_gather",))
        return popxl.Tensor((1,) + t.shape, t.dtype, lambda inputs: t.fn(inputs)[None])

    @staticmethod
    def replicated_reduce_scatter(t, op="add", group=None):
        popxl.CALLS.append(("replicated_reduce_scatter", op))
        return popxl.Tensor(t.shape, t.dtype, t.fn)
