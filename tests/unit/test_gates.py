"""collectives.gates: which judged sizes fall below which bar (pure)."""

import argparse

import pytest

from collectives import gates
from ground.dtypes import ConfigError


def _rec(size, busbw, pct=None, status="ok"):
    return dict(status=status, size_bytes=size, busbw_gbs=busbw, pct_model=pct, dtype="float32", op="sum",
                in_place=False)


def test_only_sizes_from_the_gate_count():
    g = gates.Gate(min_busbw_gbs=10.0)
    recs = [_rec(8, 0.001), _rec(1 << 20, 12.0), _rec(2 << 20, 9.5), _rec(4 << 20, 0.0, status="timeout")]
    (line,) = gates.below(g, recs)
    assert line.startswith("busbw below 10 GB/s at 1 of 2 judged sizes: 2 MiB (float32 sum out-of-place: 9.5 GB/s)")
    assert gates.below(gates.Gate(min_busbw_gbs=10.0, gate_from=1 << 30), recs) == [
        "nothing judged: no size of at least 1 GiB (--gate-from) was measured"]
    # A size rounded down to whole elements per rank (alltoall of 1M at 3 ranks) is still judged.
    assert "at 1 of 1 judged sizes" in gates.below(g, [_rec((1 << 20) - 4, 1.0)])[0]


def test_percent_of_model_and_a_missing_model():
    g = gates.Gate(min_pct_model=50.0)
    (line,) = gates.below(g, [_rec(1 << 20, 1.0, 80.0), _rec(2 << 20, 1.0, 20.0), _rec(4 << 20, 1.0, None)])
    assert "at 2 of 3 judged sizes" in line and "20 %" in line and "no model" in line


def test_long_lists_are_cut():
    recs = [_rec((1 << 20) * (i + 1), 0.5) for i in range(10)]
    (line,) = gates.below(gates.Gate(min_busbw_gbs=1.0), recs)
    assert line.endswith(f"and {10 - gates.SHOWN} more")


def _args(**kw):
    base = dict(min_busbw=None, min_pct_model=None, gate_from=None, fabric=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_from_args():
    assert gates.from_args(_args(), [8, 1 << 20]) is None
    assert gates.from_args(_args(min_busbw=1.0, gate_from="4K"), [8, 1 << 20]) == gates.Gate(1.0, None, 4096)
    with pytest.raises(ConfigError, match="ends at 64 KiB"):
        gates.from_args(_args(min_busbw=1.0), [8, 64 << 10])
    with pytest.raises(ConfigError, match="needs --fabric"):
        gates.from_args(_args(min_pct_model=5.0), [1 << 20])
    with pytest.raises(ConfigError, match="no bandwidth"):
        gates.from_args(_args(min_busbw=1.0), [0], sized=False)
