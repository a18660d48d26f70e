"""The validator's promise: results are exact in every dtype, op, rank count and order."""

import numpy as np
import pytest

from facts import spec as specs
from facts import validate
from facts.validate import Key, count_wrong, rank_input, reduced
from ground.dtypes import DTYPES, OPS

from tests.unit.reference import reduce_in_order, reduce_tree, simulate

RANKS = [1, 2, 3, 5, 8, 13]


def _orders(p, rng):
    yield list(range(p))
    yield list(reversed(range(p)))
    for _ in range(3):
        yield list(rng.permutation(p))


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=lambda d: d.name)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("p", RANKS)
def test_reductions_are_exact_in_any_order(dtype, op, p):
    key = Key(11, p)
    n = validate.PERIOD + 37
    inputs = [rank_input(op, dtype, p, r, key, 0, n) for r in range(p)]
    expected = reduced(op, dtype, p, key, 0, n)
    rng = np.random.default_rng(p)
    for order in _orders(p, rng):
        assert count_wrong(reduce_in_order(inputs, order, op, dtype), expected) == 0, order
    assert count_wrong(reduce_tree(inputs, op, dtype), expected) == 0


@pytest.mark.parametrize("dtype", [DTYPES["int8"], DTYPES["uint8"], DTYPES["bfloat16"], DTYPES["float16"]],
                         ids=lambda d: d.name)
@pytest.mark.parametrize("op", ["sum", "avg", "prod", "max"])
def test_more_ranks_than_exact_values_stays_exact(dtype, op):
    p = dtype.data_max + 40
    key = Key(3, 1)
    n = 64
    inputs = [rank_input(op, dtype, p, r, key, 0, n) for r in range(p)]
    expected = reduced(op, dtype, p, key, 0, n)
    assert count_wrong(reduce_in_order(inputs, list(range(p)), op, dtype), expected) == 0
    assert count_wrong(reduce_tree(inputs, op, dtype), expected) == 0


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=lambda d: d.name)
def test_poison_never_appears_in_a_correct_result(dtype):
    poison = np.array([dtype.poison()], dtype=dtype.storage)
    for op in OPS:
        for p in (1, 2, 7):
            expected = reduced(op, dtype, p, Key(0, 0), 0, validate.PERIOD)
            assert not np.any(expected.view(f"u{dtype.itemsize}") == poison.view(f"u{dtype.itemsize}"))
    moved = validate.moved(dtype, 4, 2, Key(0, 0), 0, validate.PERIOD)
    assert not np.any(moved.view(f"u{dtype.itemsize}") == poison.view(f"u{dtype.itemsize}"))


def test_inputs_depend_on_seed_iteration_and_rank():
    d = DTYPES["float32"]
    a = rank_input("sum", d, 4, 1, Key(0, 0), 0, 100)
    assert not np.array_equal(a, rank_input("sum", d, 4, 1, Key(1, 0), 0, 100))
    assert not np.array_equal(a, rank_input("sum", d, 4, 1, Key(0, 1), 0, 100))
    assert not np.array_equal(a, rank_input("sum", d, 4, 2, Key(0, 0), 0, 100))
    assert np.array_equal(a, rank_input("sum", d, 4, 1, Key(0, 0), 0, 100))


def test_tiles_are_consistent_across_offsets():
    d = DTYPES["int32"]
    whole = validate.moved(d, 3, 1, Key(5, 5), 0, 3 * validate.PERIOD)
    part = validate.moved(d, 3, 1, Key(5, 5), validate.PERIOD - 10, 50)
    assert np.array_equal(whole[validate.PERIOD - 10: validate.PERIOD + 40], part)


def test_sum_inputs_are_not_trivial():
    d = DTYPES["float32"]
    inputs = [rank_input("sum", d, 4, r, Key(0, 0), 0, 1000) for r in range(4)]
    assert len(np.unique(np.concatenate(inputs))) > 100
    # A rank's contribution matters: dropping rank 1 changes the sum somewhere.
    partial = inputs[0] + inputs[2] + inputs[3]
    assert count_wrong(partial, reduced("sum", d, 4, Key(0, 0), 0, 1000)) > 0


def test_count_wrong_is_bitwise():
    a = np.array([0.0, 1.0, 2.0], np.float32)
    b = np.array([-0.0, 1.0, 2.5], np.float32)
    assert count_wrong(a, b) == 2
    assert count_wrong(a, a.copy()) == 0
    assert count_wrong(a[:2], a) == 3


SIM_CASES = [
    (name, op, p)
    for name in ["allreduce", "reduce", "reduce_scatter", "broadcast", "allgather", "alltoall",
                 "sendrecv", "pingpong"]
    for p in ([2] if name == "pingpong" else [1, 2, 3, 5])
    for op in (["sum", "prod", "min", "max", "avg"] if specs.get(name).reduces else ["sum"])
]


@pytest.mark.parametrize("name, op, p", SIM_CASES)
@pytest.mark.parametrize("dtype", [DTYPES["float16"], DTYPES["bfloat16"], DTYPES["uint8"], DTYPES["int64"]],
                         ids=lambda d: d.name)
def test_spec_expected_matches_collective_semantics(name, op, p, dtype):
    root = p - 1
    for size in (dtype.itemsize, 1000, 3 * validate.PERIOD * dtype.itemsize + 5):
        results, expected = simulate(name, dtype, op, p, root, size, Key(2, 9))
        for r in range(p):
            if expected[r] is None:
                assert name == "reduce" and r != root
                continue
            assert count_wrong(results[r], expected[r]) == 0, (name, r, size)


# -- the validator must catch realistic algorithm bugs ------------------------------

FLOATS_AND_INTS = [DTYPES["float32"], DTYPES["float16"], DTYPES["int32"], DTYPES["uint8"], DTYPES["bfloat16"]]


def _inputs(op, dtype, p, n=2000):
    key = Key(5, 1)
    return [rank_input(op, dtype, p, r, key, 0, n) for r in range(p)], reduced(op, dtype, p, key, 0, n)


@pytest.mark.parametrize("dtype", FLOATS_AND_INTS, ids=lambda d: d.name)
@pytest.mark.parametrize("op", ["sum", "avg", "prod"])
@pytest.mark.parametrize("p", [2, 3, 4, 8])
def test_every_rank_input_is_distinct(dtype, op, p):
    inputs, _ = _inputs(op, dtype, p)
    for a in range(p):
        for b in range(a + 1, p):
            assert count_wrong(inputs[a], inputs[b]) > 0, (a, b)


@pytest.mark.parametrize("dtype", FLOATS_AND_INTS, ids=lambda d: d.name)
@pytest.mark.parametrize("op", ["sum", "avg", "prod", "min", "max"])
@pytest.mark.parametrize("p", [2, 3, 5, 8])
def test_a_dropped_or_duplicated_rank_is_caught(dtype, op, p):
    inputs, expected = _inputs(op, dtype, p)
    for bad in range(p):
        dropped = [x for r, x in enumerate(inputs) if r != bad]
        duplicated = [inputs[(bad + 1) % p] if r == bad else x for r, x in enumerate(inputs)]
        for variant in (duplicated,) if len(dropped) == 0 else (dropped, duplicated):
            got = reduce_in_order(variant, list(range(len(variant))), op, dtype)
            if op == "avg" and len(variant) != p:
                continue  # the reference divides by its own count
            assert count_wrong(got, expected) > 0, (op, bad)


@pytest.mark.parametrize("dtype", [DTYPES["float32"], DTYPES["int64"]], ids=lambda d: d.name)
@pytest.mark.parametrize("p", [4, 8])
def test_recursive_doubling_with_a_wrong_partner_is_caught(dtype, p):
    """The bug the validator must see: at stage k a rank adds itself instead of its partner."""
    inputs, expected = _inputs("sum", dtype, p)
    from tests.unit.reference import combine

    for bad_stage in range(1, p.bit_length() - 1):
        vals = [x.copy() for x in inputs]
        stage, dist = 0, 1
        while dist < p:
            nxt = []
            for r in range(p):
                partner = r if stage == bad_stage else r ^ dist
                nxt.append(combine(vals[r], vals[partner], "sum", dtype))
            vals, stage, dist = nxt, stage + 1, dist * 2
        assert any(count_wrong(v, expected) > 0 for v in vals), bad_stage


@pytest.mark.parametrize("p", [2, 3, 5])
def test_swapped_blocks_are_caught(p):
    d = DTYPES["float32"]
    key = Key(9, 9)
    blocks = [validate.moved(d, p, r, key, 0, 64) for r in range(p)]
    expected = np.concatenate(blocks)
    swapped = np.concatenate(blocks[1:] + blocks[:1])
    assert count_wrong(swapped, expected) > 0
    # alltoall: receiving block r of each source, not block 'me', is caught too.
    me = 0
    right = np.concatenate([validate.moved(d, p, j, key, me * 64, 64) for j in range(p)])
    transposed = np.concatenate([validate.moved(d, p, me, key, j * 64, 64) for j in range(p)])
    assert count_wrong(transposed, right) > 0
