"""``--fabric NAME`` on the harness: every row's busbw beside a published fabric's model, as it is measured.

The arithmetic is :mod:`facts.percent_of_model` (pure, shared with the report and
``analysis.results``).  Here it reaches the run as a :class:`Sink` placed
before every other sink: it adds to each measured record

* ``fabric``: the fabric's name;
* ``model_busbw_gbs``: the busbw its model predicts at this size and rank count;
* ``pct_model``: busbw as a % of it (the table's ``%model`` column, marked
  ``*`` where the model rests on an assumed latency);
* ``link_peak_gbs`` and ``pct_link_peak``: the same model without latency;
* ``model_latency_assumed``: that mark,

so the table and the JSON Lines written after it carry them (the CSV keeps
its columns, so files stay appendable with and without ``--fabric``).  The
analysis is imported only when ``--fabric`` is given.
"""

from __future__ import annotations

import argparse
from typing import Dict, List

from collectives.output import Sink

__all__ = ["add_fabric_flag", "sinks", "ModelColumn"]


def _fabric(text: str) -> str:
    from facts import fabrics

    name = str(text).strip().lower()
    if name not in fabrics.FABRICS:
        raise argparse.ArgumentTypeError(f"unknown fabric '{text}': give one of {', '.join(fabrics.names())}")
    return name


def add_fabric_flag(group) -> None:
    group.add_argument("--fabric", type=_fabric, metavar="NAME",
                       help="add %%model: each row's busbw as a %% of this published fabric's model at its size "
                       "and rank count (nvlink3, nvlink4, gaudi2-roce, mi300x-if, ...: python -m analysis.predict "
                       "--help lists them); * marks sizes where the model rests on an assumed latency")


class ModelColumn(Sink):
    """Adds the model's figures to each record before the sinks after it see the record."""

    def __init__(self, name: str):
        from facts import fabrics

        self.fabric = fabrics.get(name)

    def record(self, rec: Dict) -> None:
        from facts import percent_of_model

        s = None
        if rec.get("status") in ("ok", "wrong"):
            s = percent_of_model.share(self.fabric, rec.get("collective"), rec.get("size_bytes"), rec.get("nranks"),
                               rec.get("busbw_gbs"))
        rec.update(fabric=self.fabric.name, model_busbw_gbs=s and s.model_busbw_gbs, pct_model=s and s.pct_model,
                   link_peak_gbs=s and s.link_peak_gbs, pct_link_peak=s and s.pct_link_peak,
                   model_latency_assumed=s and s.latency_assumed)


def sinks(cfg) -> List[Sink]:
    """``[ModelColumn]`` when the run's config names a fabric, else ``[]``."""
    name = getattr(cfg, "fabric", None)
    return [ModelColumn(name)] if name else []
