"""Point-to-point link bandwidth from pingpong/sendrecv results, beside the configured rate.

For runs on emulated hosts (``python -m launch.emulate --rate ...``) every
record carries ``emulated_link_gbs``, the rate the links were shaped to.
:func:`link_table` fits the one-way time of each run's pingpong (or
sendrecv) with :func:`analysis.fit.fit_segmented` and reports the bandwidth
of the largest-size regime (1/slope: the rate at which extra bytes cost
time, free of the latency term) next to the plain algbw of the largest
sizes, and both as ratios to the configured rate.

TCP over Ethernet framing carries 1448 payload bytes per 1514-byte frame
(timestamps on), so a shaped link shows about 95.6 % of its rate
as payload (:data:`TCP_PAYLOAD_FRACTION`).
"""

from __future__ import annotations

import math
from typing import List

from analysis import physical
from analysis.fit import fit_segmented
from facts.spec import SPECS

__all__ = ["link_table", "TCP_PAYLOAD_FRACTION", "POINT_TO_POINT"]

TCP_PAYLOAD_FRACTION = 1448 / 1514
POINT_TO_POINT = tuple(name for name, s in SPECS.items() if s.peer_to_peer)


def link_table(df, min_size: int = 1 << 20) -> List[dict]:
    """One row per (run, collective) of point-to-point results.

    ``fitted_gbs`` is the top regime's bandwidth (GB/s, 1e9 bytes/s);
    ``large_algbw_gbs`` the median algbw over sizes >= ``min_size``.
    ``configured_gbs`` is None for runs not on emulated links.
    """
    rows = []
    if df.empty or "collective" not in df:
        return rows
    sub = df[df["collective"].isin(POINT_TO_POINT)]
    if "kind" in sub:
        sub = sub[sub["kind"] == "measured"]
    for (run_id, collective), g in sub.groupby(["run_id", "collective"], sort=True):
        g = g[(g["size_bytes"] > 0) & physical.frame_mask(g)]  # no non-physical row (analysis.physical)
        if "placement" in g:
            g = g[g["placement"] == "out-of-place"]
        if g["size_bytes"].nunique() < 3:
            continue
        per_size = g.groupby("size_bytes")["time_us"].median()
        fit = fit_segmented(per_size.index.to_numpy(float), per_size.to_numpy(float) * 1e-6)
        top = fit.segments[-1].fit
        fitted = top.bandwidth / 1e9 if math.isfinite(top.bandwidth) else None
        large = g[g["size_bytes"] >= min_size]["algbw_gbs"]
        configured = None
        if "emulated_link_gbs" in g and g["emulated_link_gbs"].notna().any():
            configured = float(g["emulated_link_gbs"].dropna().iloc[0])
        rows.append({
            "run_id": run_id,
            "collective": collective,
            "transport": g["transport"].iloc[0],
            "nhosts": int(g["nhosts"].iloc[0]) if "nhosts" in g and g["nhosts"].notna().any() else None,
            "configured_gbs": configured,
            "fitted_gbs": fitted,
            "fit_from_bytes": int(fit.segments[-1].lo),
            "latency_us": top.latency_s * 1e6,
            "large_algbw_gbs": float(large.median()) if len(large) else None,
            "fitted_ratio": fitted / configured if configured and fitted else None,
            "algbw_ratio": float(large.median()) / configured if configured and len(large) else None,
        })
    return rows
