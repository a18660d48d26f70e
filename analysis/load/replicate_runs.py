"""``collectives.replicate`` records (JSON Lines or CSV) -> dicts and a DataFrame of their own.

Replicate records are training steps, not points of a size sweep, so
:func:`analysis.load.points.frame` leaves them out and they load here: one row
per (run, model, batch, ranks) with every summary field; in JSON Lines the
nested fields (spreads, the bucket timeline, the per-round step times) come
back as lists and dicts (CSV holds only the summary columns).
"""

from __future__ import annotations

import json
from typing import Dict, Iterable, List, Optional, Sequence, Union

from analysis.load import points, reader

__all__ = ["records", "frame", "load", "decode", "NESTED"]

NESTED = ("bucket_timeline", "rounds", "step_ms_spread", "alone_ms_spread", "nosync_ms_spread",
          "nosync_max_ms_spread", "loss_sharing_spread", "loss_skew_spread", "loss_exposed_spread",
          "comm_alone_ms_spread", "comm_alone_buckets")


def decode(rec: Dict) -> Dict:
    """A replicate record with its nested fields (:data:`NESTED`, JSON text in a CSV) decoded, in place."""
    for k in NESTED:
        v = rec.get(k)
        if isinstance(v, str):
            try:
                rec[k] = json.loads(v)
            except ValueError:
                rec[k] = None
    return rec


def records(paths: Union[str, Iterable[str]], strict: bool = False, warn=None,
            measured_only: bool = True) -> List[Dict]:
    """The replicate records of ``paths`` (status ok unless ``measured_only`` is False), nested fields decoded."""
    if isinstance(paths, str) or hasattr(paths, "__fspath__"):
        paths = [paths]
    every = reader.read_records(list(paths), strict, warn)
    reps = points.split_replicate(every)[1]
    return [decode(dict(r)) for r in reps if not measured_only or r.get("status") == "ok"]


def frame(recs: Sequence[Dict]):
    """A DataFrame of replicate records, one row each (numbers as numbers)."""
    import pandas as pd

    df = pd.DataFrame.from_records(list(recs))
    for col in ("nranks", "batch", "seq", "threads", "host_cores", "params", "buckets", "step_ms", "forward_ms", "backward_ms",
                "optimizer_ms", "exposed_ms", "allreduce_ms", "hook_ms", "samples_per_s", "alone_ms",
                "alone_forward_ms", "alone_backward_ms", "alone_optimizer_ms", "nosync_ms", "nosync_max_ms",
                "ddp_ms", "x1_samples_per_s", "xn_samples_per_s", "efficiency", "loss_sharing", "loss_skew",
                "loss_exposed", "wait_cpu_ms", "rounds_timed", "steps_per_phase", "comm_alone_ms", "copy_alone_ms",
                "wake_alone_ms", "alone_faults_per_step", "ddp_faults_per_step"):
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def load(paths, strict: bool = False, warn=None):
    """The DataFrame of the replicate records in ``paths`` (empty if there are none)."""
    return frame(records(paths, strict, warn))


def has_efficiency(rec: Dict) -> bool:
    """A record of the interleaved rounds (E(N) and its parts), not of an older replicate."""
    return all(isinstance(rec.get(k), (int, float)) for k in ("efficiency", "alone_ms", "ddp_ms", "nosync_ms",
                                                             "alone_backward_ms"))


def model_of(rec: Dict) -> Optional[str]:
    m = rec.get("model")
    return m if isinstance(m, str) and m else None
