"""Pure-numpy references for the tests: dtype arithmetic (bfloat16 included)
and every collective's semantics over all ranks at once."""

import numpy as np

from facts import spec as specs


def bf16_to_f32(bits):
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(values):
    """Round-to-nearest-even float32 -> bfloat16 bits (as the hardware does)."""
    bits = np.asarray(values, np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    return ((bits + rounding) >> 16).astype(np.uint16)


def combine(a, b, op, dtype):
    """One reduction step a (op) b, rounded to ``dtype`` as a transport would."""
    if dtype.name == "bfloat16":
        fa, fb = bf16_to_f32(a), bf16_to_f32(b)
        return f32_to_bf16(_apply(fa, fb, op))
    with np.errstate(over="ignore"):
        return _apply(a, b, op).astype(a.dtype)


def _apply(a, b, op):
    if op in ("sum", "avg"):
        return a + b
    if op == "prod":
        return a * b
    if op == "min":
        return np.minimum(a, b)
    if op == "max":
        return np.maximum(a, b)
    raise ValueError(op)


def finish(acc, op, dtype, p):
    if op != "avg":
        return acc
    if dtype.name == "bfloat16":
        return f32_to_bf16(bf16_to_f32(acc) / p)
    if dtype.is_float:
        return (acc / p).astype(acc.dtype)
    return (acc.astype(np.int64) // p).astype(acc.dtype)


def reduce_in_order(inputs, order, op, dtype):
    acc = inputs[order[0]].copy()
    for r in order[1:]:
        acc = combine(acc, inputs[r], op, dtype)
    return finish(acc, op, dtype, len(inputs))


def reduce_tree(inputs, op, dtype):
    level = [x.copy() for x in inputs]
    while len(level) > 1:
        nxt = [combine(level[i], level[i + 1], op, dtype) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return finish(level[0], op, dtype, len(inputs))


def simulate(name, dtype, op, p, root, size_bytes, key):
    """Run collective ``name`` over all p ranks' seeded inputs in numpy.

    Returns (per-rank results, per-rank expected) from the spec, so a test
    can check that the spec's closed forms agree with the semantics.
    """
    spec = specs.get(name)
    lay = specs.layout_for(spec, size_bytes, dtype, p)
    kind = op if spec.reduces else "move"
    data = [spec.data(dtype, kind, p, r, root, lay, key) for r in range(p)]
    inputs = [d[0] for d in data]
    expected = [d[1] for d in data]
    b = lay.block
    if name in ("allreduce", "reduce", "reduce_scatter"):
        total = reduce_in_order(inputs, list(range(p)), op, dtype)
        if name == "allreduce":
            results = [total] * p
        elif name == "reduce":
            results = [total if r == root else None for r in range(p)]
        else:
            results = [total[r * b:(r + 1) * b] for r in range(p)]
    elif name == "broadcast":
        results = [inputs[root]] * p
    elif name == "allgather":
        results = [np.concatenate(inputs)] * p
    elif name == "alltoall":
        results = [np.concatenate([inputs[j][r * b:(r + 1) * b] for j in range(p)]) for r in range(p)]
    elif name == "sendrecv":
        results = [inputs[(r - 1) % p] for r in range(p)]
    elif name == "pingpong":
        results = [inputs[1 - r] for r in range(p)]
    else:
        raise ValueError(name)
    return results, expected
