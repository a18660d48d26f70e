"""The shm transport's reduction and copy kernels, in one process."""

import numpy as np
import pytest

from facts.validate import Key, count_wrong, rank_input, reduced
from ground.dtypes import DTYPES, OPS
from transports.shm import kernels

from tests.unit.reference import f32_to_bf16


@pytest.mark.parametrize("count, parts, itemsize", [(100, 3, 4), (1, 4, 8), (1000, 7, 2), (64, 2, 1), (0, 3, 4)])
def test_split_covers_everything_on_cache_lines(count, parts, itemsize):
    slices = kernels.split(count, parts, itemsize)
    assert len(slices) == parts
    assert slices[0].start == 0 and slices[-1].stop == count
    for a, b in zip(slices, slices[1:]):
        assert a.stop == b.start
        assert (a.stop * itemsize) % 64 == 0 or a.stop == count


@pytest.fixture(params=[None, 4096], ids=["one-chunk", "small-chunks"])
def chunk(request, monkeypatch):
    if request.param:
        monkeypatch.setattr(kernels, "CHUNK", request.param)
    return request.param


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=lambda d: d.name)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("p", [1, 2, 3, 5])
def test_plan_reduce_is_exact(dtype, op, p, chunk):
    key = Key(1, p)
    n = 3000
    inputs = [rank_input(op, dtype, p, r, key, 0, n).copy() for r in range(p)]
    expected = reduced(op, dtype, p, key, 0, n)
    out = np.empty(n, dtype.storage)
    kernels.plan_reduce(dtype, op, p, out, inputs)()
    assert count_wrong(out, expected) == 0
    # In place: the output is the first input.
    first = inputs[0].copy()
    kernels.plan_reduce(dtype, op, p, first, [first] + inputs[1:])()
    assert count_wrong(first, expected) == 0


@pytest.mark.parametrize("dtype", [DTYPES["float32"], DTYPES["int8"], DTYPES["bfloat16"], DTYPES["float16"]],
                         ids=lambda d: d.name)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("p", [1, 2, 3, 4, 8])
def test_reduce_rows_matches(dtype, op, p):
    key = Key(2, p)
    rows = np.stack([rank_input(op, dtype, p, r, key, 0, 33) for r in range(p)])
    out = np.empty(33, dtype.storage)
    kernels.plan_reduce_rows(dtype, op, p, out, rows)()
    assert count_wrong(out, reduced(op, dtype, p, key, 0, 33)) == 0


def test_output_may_alias_only_the_first_input():
    a, b = np.ones(8, np.float32), np.ones(8, np.float32)
    with pytest.raises(ValueError, match="alias"):
        kernels.plan_reduce(DTYPES["float32"], "sum", 2, b, [a, b])


def test_bfloat16_rounds_to_nearest_even():
    d = DTYPES["bfloat16"]
    # 1 + 2**-8 is halfway between bfloat16 neighbours 1 and 1 + 2**-7: ties to even (1.0);
    # 1 + 3*2**-8 is halfway between 1 + 2**-7 and 1 + 2**-6: ties to even (1 + 2**-6).
    a = f32_to_bf16(np.array([1.0, 1.0], np.float32))
    b = np.array([0x3B80, 0x3C40], np.uint16)  # 2**-8 and 3*2**-8 in bfloat16
    out = np.empty(2, np.uint16)
    kernels.plan_reduce(d, "sum", 2, out, [a, b])()
    assert out.tolist() == f32_to_bf16(np.array([1.0, 1.0 + 2 ** -6], np.float32)).tolist()


def test_plan_copy_skips_empty_pairs():
    a, b = np.arange(4.0), np.zeros(4)
    kernels.plan_copy([(b, a), (b[:0], a[:0])])()
    assert b.tolist() == [0, 1, 2, 3]
