"""analysis.csv_out writes what pandas' to_csv(index=False) writes, byte for byte, by Arrow and without it."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis import csv_out

pytest.importorskip("pyarrow")


def _floats(n: int, seed: int) -> np.ndarray:
    """Doubles of every magnitude, the borders of repr's notation, whole numbers, signed zeros, NaN, inf."""
    rng = np.random.default_rng(seed)
    random = rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)
    bits = rng.integers(0, 1 << 63, n // 4, dtype=np.uint64).view(np.float64)  # any bit pattern
    edges = [0.0, -0.0, 1e-4, np.nextafter(1e-4, 0), 1e16, np.nextafter(1e16, 0), 9999999999999998.0, 2.0,
             -3.0, 123456789012345.6, 1e15, 0.1, 1 / 3, 5e-324, 1.7976931348623157e308, math.nan, math.inf,
             -math.inf, 1e22, 1e-7, 12345678.9, 2.0 ** 53, 2.0 ** 60]
    whole = np.round(random[: n // 4])
    return np.concatenate([random, bits, whole, edges])


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    floats = _floats(n, seed)
    k = len(floats)
    rng = np.random.default_rng(seed + 1)
    words = np.array(["shm", "a,b", 'say "hi"', "line\nbreak", "cr\rhere", "", " x ", "tab\there", "é", None,
                      '{"0":[1,2.5],"1":"a,b"}'], dtype=object)
    mixed = np.array([1, 2.5, "t", None, True, "a\nb", ""], dtype=object)
    with np.errstate(over="ignore", invalid="ignore"):
        f32 = floats.astype(np.float32)
    return pd.DataFrame({
        "f": floats,
        "i": rng.integers(-(1 << 62), 1 << 62, k),
        "u": rng.integers(0, 255, k).astype(np.uint8),
        "b": rng.integers(0, 2, k).astype(bool),
        "s": pd.Series(words[rng.integers(0, len(words), k)], dtype=object),
        "m": pd.Series(mixed[rng.integers(0, len(mixed), k)], dtype=object),
        "f32": f32,
        "none": pd.Series([None] * k, dtype=object),
        "oi": pd.Series(np.array([3, None, 1 << 70, -2], dtype=object)[rng.integers(0, 3, k)], dtype=object),
        "oi64": pd.Series(np.array([3, None, -2], dtype=object)[rng.integers(0, 3, k)], dtype=object),
        "ob": pd.Series(np.array([True, None, False], dtype=object)[rng.integers(0, 3, k)], dtype=object),
        "of": pd.Series(np.array([0.5, None, 2.0, 1e-9], dtype=object)[rng.integers(0, 4, k)], dtype=object),
        "nan": np.full(k, math.nan),
    })


@pytest.mark.parametrize("arrow,few", [(True, csv_out.FEW), (True, 1 << 40), (False, csv_out.FEW)])
def test_same_bytes_as_pandas(tmp_path, monkeypatch, arrow, few):
    """Text columns of few distinct values quoted once per value, or per chunk (FEW so large no column has few)."""
    monkeypatch.setattr(csv_out, "FEW", few)
    df = _frame(4000)
    ours, theirs = tmp_path / "ours.csv", tmp_path / "pandas.csv"
    csv_out.write(df, ours, chunk=1000, arrow=arrow)
    df.to_csv(theirs, index=False)
    assert ours.read_bytes() == theirs.read_bytes()


def test_unhashable_cells_as_pandas_writes_them(tmp_path):
    class Unhashable:
        def __hash__(self):
            raise ValueError("no hash")

        def __str__(self):
            return "u"

    df = pd.DataFrame({"a": [[1, 2], {"x": 1}, None, "t"] * 30, "b": range(120),
                       "c": ["v" if i != 50 else Unhashable() for i in range(120)]})
    ours, theirs = tmp_path / "ours.csv", tmp_path / "pandas.csv"
    csv_out.write(df, ours, chunk=10)
    df.to_csv(theirs, index=False)
    assert ours.read_bytes() == theirs.read_bytes()


def test_arrow_and_csv_paths_agree_on_every_dtype(tmp_path):
    df = _frame(3000, seed=7)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    csv_out.write(df, a, chunk=777, arrow=True)
    csv_out.write(df, b, chunk=777, arrow=False)
    assert a.read_bytes() == b.read_bytes()


def test_floats_are_repr():
    values = _floats(20000, seed=3)
    got = csv_out.floats_text(values).to_pylist()
    assert got == ["" if math.isnan(v) else repr(v) for v in values.tolist()]


def test_one_column_empty_and_odd_frames(tmp_path):
    for df in (pd.DataFrame({"s": ["", None, "a"]}), pd.DataFrame({"a": [], "b": []}),
               pd.DataFrame({"a": [1.5], "b": [""]}), pd.DataFrame(index=range(3)),
               pd.DataFrame({"a": pd.Series([np.str_("x\ny"), "z", None], dtype=object), "b": 1}),
               pd.DataFrame({None: [1, 2], "b": [3, 4]}), pd.DataFrame({("a", 1): [1], ("b", 2): [2]}),
               pd.DataFrame({"d": pd.to_datetime(["2020-01-01"]), "x": [1]})):
        for arrow in (True, False):
            ours, theirs = tmp_path / "ours.csv", tmp_path / "pandas.csv"
            csv_out.write(df, ours, arrow=arrow)
            df.to_csv(theirs, index=False)
            assert ours.read_bytes() == theirs.read_bytes()
    with pytest.raises(ValueError):
        csv_out.write(pd.DataFrame({"a": [1]}), tmp_path / "x.csv", chunk=0)
