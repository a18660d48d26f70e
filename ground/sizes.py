"""Sizes as nccl-tests writes them: ``64M`` = 64 MiB, and the ×factor / +bytes sweeps.

Pure (no MPI, no transport), so ``analysis`` uses the same parsing as the
harness.  Errors are :class:`~ground.dtypes.ConfigError`, a ValueError.
"""

from __future__ import annotations

import math
import re
from typing import Optional, Tuple

from ground.dtypes import ConfigError

__all__ = ["parse_size", "sweep_sizes", "human_size", "DEFAULT_MIN", "DEFAULT_MAX", "MAX_SIZES"]

DEFAULT_MIN = 8
DEFAULT_MAX = 64 << 20
MAX_SIZES = 10_000

_UNITS = (("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))
_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``"64M"`` -> 67108864.  K/M/G/T are powers of 1024; ``B``/``iB`` may follow."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", str(text).upper())
    if not match:
        raise ConfigError(f"invalid size '{text}' (use bytes, optionally with K, M, G or T, e.g. 64M)")
    value = float(match.group(1)) * _SUFFIX[match.group(2)]
    if value != int(value):
        raise ConfigError(f"size '{text}' is not a whole number of bytes")
    return int(value)


def sweep_sizes(min_bytes: int, max_bytes: int, step_factor: Optional[float],
                step_bytes: Optional[int]) -> Tuple[int, ...]:
    """The requested sizes, nccl-tests style: ×factor or +bytes from min to max."""
    sizes = []
    size = min_bytes
    while size <= max_bytes:
        if len(sizes) == MAX_SIZES:
            raise ConfigError(f"that sweep has more than {MAX_SIZES} sizes; use a larger -i or -f")
        sizes.append(size)
        if step_factor is not None:
            nxt = int(size * step_factor)
            size = nxt if nxt > size else size + 1
        else:
            size += step_bytes
    return tuple(sizes)


def human_size(n) -> str:
    """Bytes as nccl-tests users read them: ``8 B``, ``64 KiB``, ``1.5 MiB``, ``1 GiB``, up to ``PiB`` (powers
    of 1024)."""
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "-"
    n = float(n)
    for unit, scale in _UNITS:
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.3g} {unit}"
    return f"{n:.0f} B"
