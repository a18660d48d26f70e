"""Gates: fail a run whose bandwidth is below a bar (exit 4, "below expectation"), in one line.

``--min-busbw GBS``: every measured size of at least ``--gate-from`` (default
1 MiB) must reach GBS GB/s of busbw.  ``--min-pct-model P`` (with
``--fabric NAME``): every such size must reach P % of the fabric's model at
its size and rank count (:mod:`facts.percent_of_model`, the ``%model``
column).  Small sizes do not count by default: an 8-byte connectivity run
must not fail a bandwidth gate, so a sweep that ends below ``--gate-from``
is refused before it runs (exit 2).  A run with wrong results exits 1
whatever the gates say.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from ground.dtypes import ConfigError
from ground.sizes import human_size, parse_size

__all__ = ["Gate", "add_gate_flags", "from_args", "below", "GATE_FROM", "SHOWN", "ROUNDING"]

GATE_FROM = 1 << 20
SHOWN = 6  # sizes named in the line; the rest counted


@dataclass(frozen=True)
class Gate:
    """The bars a run is held to (None: no such bar) and the smallest size they judge."""

    min_busbw_gbs: Optional[float] = None
    min_pct_model: Optional[float] = None
    gate_from: int = GATE_FROM


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text}: give a finite number above 0")
    return v


def add_gate_flags(group) -> None:
    group.add_argument("--min-busbw", type=_positive, metavar="GBS",
                       help="exit 4 (below expectation) when a size of at least --gate-from has a busbw below "
                       "GBS GB/s; the line names those sizes")
    group.add_argument("--min-pct-model", type=_positive, metavar="P",
                       help="with --fabric NAME: exit 4 when a size of at least --gate-from is below P %% of "
                       "the fabric's model")
    group.add_argument("--gate-from", metavar="SIZE", help="the smallest size the gates judge (default 1M)")


def from_args(a, sizes: Sequence[int], sized: bool = True) -> Optional[Gate]:
    """The run's gate from parsed flags, checked against its sweep (``sizes``; ``sized``: the collective
    moves data); None without a bar."""
    if a.gate_from is not None and a.min_busbw is None and a.min_pct_model is None:
        raise ConfigError("--gate-from needs a bar: --min-busbw GBS or --min-pct-model P")
    if a.min_busbw is None and a.min_pct_model is None:
        return None
    if not sized:
        raise ConfigError("this collective moves no data: there is no bandwidth to gate (--min-busbw, "
                          "--min-pct-model)")
    if getattr(a, "split", None) == 1:
        raise ConfigError("--split 1 measures single ranks: there is no bandwidth to gate (--min-busbw, "
                          "--min-pct-model)")
    if a.min_pct_model is not None and not a.fabric:
        raise ConfigError("--min-pct-model needs --fabric NAME (the model it is a percentage of)")
    start = parse_size(a.gate_from) if a.gate_from is not None else GATE_FROM
    if not any(s >= start * ROUNDING for s in sizes):
        raise ConfigError(f"the gates judge sizes of at least {human_size(start)} (--gate-from) and this sweep "
                          f"ends at {human_size(max(sizes))}: nothing to judge (raise -e or lower --gate-from)")
    return Gate(a.min_busbw, a.min_pct_model, start)


def _what(r: Dict) -> str:
    place = "in-place" if r.get("in_place") else "out-of-place"
    group = f" ranks {r['group_ranks']} on {r['group_hosts']}" if r.get("group_ranks") else ""
    return f"{human_size(r['size_bytes'])} ({r.get('dtype')} {r.get('op') or ''} {place}{group}".replace("  ", " ")


ROUNDING = 0.99  # a size rounded down to whole elements per rank (alltoall of 1M at 3 ranks) still counts


def below(gate: Gate, records: Sequence[Dict]) -> List[str]:
    """One phrase per bar that some judged size misses: the bar and the sizes below it, with their values;
    a run in which no size was judged says so (an expectation that could not be checked is not met)."""
    judged = [r for r in records if r.get("status") == "ok" and isinstance(r.get("size_bytes"), int)
              and r["size_bytes"] >= gate.gate_from * ROUNDING]
    if not judged:
        return [f"nothing judged: no size of at least {human_size(gate.gate_from)} (--gate-from) was measured"]
    out = []
    for bar, field, unit, name in ((gate.min_busbw_gbs, "busbw_gbs", " GB/s", "busbw"),
                                   (gate.min_pct_model, "pct_model", " %", "% of the model")):
        if bar is None:
            continue
        low = [r for r in judged if not (isinstance(r.get(field), (int, float)) and r[field] >= bar)]
        if not low:
            continue
        items = [f"{_what(r)}: {r[field]:.3g}{unit})" if isinstance(r.get(field), (int, float))
                 else f"{_what(r)}: no model)" for r in low[:SHOWN]]
        more = f" and {len(low) - SHOWN} more" if len(low) > SHOWN else ""
        out.append(f"{name} below {bar:g}{unit} at {len(low)} of {len(judged)} judged sizes: "
                   f"{', '.join(items)}{more}")
    return out
