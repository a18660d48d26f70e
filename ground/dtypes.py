"""Data types and reduction operators, with the limits that keep results exact.

Every dtype carries ``exact_max``: the largest integer D such that all
integers in [-D, D] (or [0, D] when unsigned) are exactly representable, so
that sums of such integers are exact in *any* order (float addition is exact
while every partial sum is an integer of magnitude at most 2**mantissa).
``pow2_max`` is the largest E for which 2**E is exact and well inside range,
which bounds the products used to validate ``prod``.

bfloat16 has no numpy type; on the host it is stored as its raw ``uint16``
bits (the upper half of a float32), which is exact for the small integers
and powers of two the validator uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

__all__ = ["DType", "Op", "DTYPES", "OPS", "parse_dtypes", "parse_ops", "ConfigError"]


class ConfigError(ValueError):
    """Bad user input: reported as one clear line, exit status 2."""


@dataclass(frozen=True)
class DType:
    name: str
    nccl_name: str
    storage: np.dtype  # host representation (uint16 bits for bfloat16)
    itemsize: int
    kind: str  # "int", "uint", "float"
    exact_max: int
    pow2_max: int

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def signed(self) -> bool:
        return self.kind != "uint"

    @property
    def data_max(self) -> int:
        """Largest magnitude validation data may take; the value above is poison."""
        return self.exact_max - 1

    def from_ints(self, values: np.ndarray) -> np.ndarray:
        """Integers (int64, within range) to this dtype's host storage, exactly."""
        if self.name == "bfloat16":
            bits = np.asarray(values, dtype=np.float32).view(np.uint32)
            return (bits >> 16).astype(np.uint16)
        return np.asarray(values).astype(self.storage)

    def poison(self) -> np.generic:
        """A value no correct result contains: fills output buffers before a check."""
        if self.name == "bfloat16":
            return np.uint16(0x7F7F)  # largest finite bfloat16
        if self.is_float:
            return self.storage.type(np.finfo(self.storage).max)
        return self.storage.type(np.iinfo(self.storage).max)


def _int_type(name, np_type, kind):
    info = np.iinfo(np_type)
    # Integer arithmetic in MPI wraps, but signed overflow is undefined in C:
    # stay inside the range, and leave the top value for the poison.
    exact = min(int(info.max), 2**62)
    return DType(name, name, np.dtype(np_type), info.bits // 8, kind, exact, exact.bit_length() - 2)


DTYPES: Dict[str, DType] = {
    d.name: d
    for d in (
        _int_type("int8", np.int8, "int"),
        _int_type("uint8", np.uint8, "uint"),
        _int_type("int32", np.int32, "int"),
        _int_type("uint32", np.uint32, "uint"),
        _int_type("int64", np.int64, "int"),
        _int_type("uint64", np.uint64, "uint"),
        DType("float16", "half", np.dtype(np.float16), 2, "float", 2**11, 14),
        DType("bfloat16", "bfloat16", np.dtype(np.uint16), 2, "float", 2**8, 30),
        DType("float32", "float", np.dtype(np.float32), 4, "float", 2**24, 30),
        DType("float64", "double", np.dtype(np.float64), 8, "float", 2**53, 30),
    )
}

_DTYPE_ALIASES = {
    "half": "float16",
    "fp16": "float16",
    "bf16": "bfloat16",
    "float": "float32",
    "fp32": "float32",
    "double": "float64",
    "fp64": "float64",
    "char": "int8",
    "int": "int32",
}


@dataclass(frozen=True)
class Op:
    """A reduction operator. ``avg`` is sum divided by the rank count."""

    name: str


OPS: Dict[str, Op] = {name: Op(name) for name in ("sum", "prod", "min", "max", "avg")}


def _parse_list(text: str, table: dict, aliases: dict, what: str) -> List:
    names = list(table) if text.strip().lower() == "all" else text.split(",")
    out = []
    for raw in names:
        key = aliases.get(raw.strip().lower(), raw.strip().lower())
        if key not in table:
            known = ", ".join(list(table) + ["all"])
            raise ConfigError(f"unknown {what} '{raw.strip()}' (choose from: {known})")
        if table[key] not in out:
            out.append(table[key])
    return out


def parse_dtypes(text: str) -> Tuple[DType, ...]:
    """``float32``, nccl-tests names (``float``, ``half``...), comma lists or ``all``."""
    return tuple(_parse_list(text, DTYPES, _DTYPE_ALIASES, "datatype"))


def parse_ops(text: str) -> Tuple[Op, ...]:
    return tuple(_parse_list(text, OPS, {}, "op"))
