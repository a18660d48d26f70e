"""The report's UNet-2D table beside the seed study: weak scaling as modelled, and strong scaling with a per-step cost.

The seed study measured UNet-2D's scaling efficiency on 8 devices at global
batches 32 and 256 (facts.fabrics.SEED_TABLE).  Beside it, per network:

- **weak** (MODELLED, per-device batch fixed, compute a fixed rate per
  sample): what the communication alone costs;
- **strong** (MODELLED, the global batch fixed, B / 8 per device) with a
  per-step compute cost that does not shrink with the batch, t(b) = per-step
  + b x per-sample: the cost is either given (``analysis.report
  --per-step-ms``) or fitted so that batch 32 gives the seed's own figure,
  and then batch 256 is a prediction (:func:`analysis.scaling.per_step_matching`).
  Each row says which.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

from analysis import compute_cost, scaling
from analysis.report_plots import REPORT_FABRICS, short_compute
from analysis.report_text import fmt, table
from facts import fabrics, workloads

__all__ = ["rows", "section", "strong_row"]

N = 8


def strong_row(fabric_name: str, per_step_ms: Optional[float] = None, tflops_default: float = 312.0) -> Dict:
    """Strong E(8) of UNet-2D at global batch 32 and 256 over ``fabric_name`` with a per-step cost given
    (ms) or fitted to the seed's batch-32 figure; ``how`` says which (keys "32", "256", "per_step_ms",
    "how")."""
    w = workloads.get("unet")
    fab = fabrics.get(fabric_name)
    net = scaling.network_from_fabric(fab)
    peak = fab.peak_tflops.value if fab.peak_tflops else tflops_default
    comp = compute_cost.from_peak(w, peak, compute_cost.DEFAULT_MFU,
                                  fab.peak_tflops.source if fab.peak_tflops else "assumed")
    seed = next((v for v in fabrics.SEED_TABLE.values() if v["fabric"] == fabric_name), None)
    if per_step_ms is not None:
        c, how = per_step_ms * 1e-3, f"per-step {per_step_ms:g} ms given (--per-step-ms)"
    elif seed is not None:
        c = scaling.per_step_matching(w, comp, net, 32, N, seed["32"])
        if c is None:
            return {"32": None, "256": None, "per_step_ms": None,
                    "how": "no per-step cost reproduces the seed's batch-32 figure with this network"}
        how = (f"per-step {c * 1e3:.3g} ms ({c / comp.seconds_per_sample:.0f} sample-times) fitted so that batch 32 "
               "gives the seed's figure: batch 256 predicted")
    else:
        return {"32": None, "256": None, "per_step_ms": None, "how": "no seed figure and no --per-step-ms"}
    out = {"per_step_ms": c * 1e3, "how": how}
    for b in (32, 256):
        got = scaling.curve(w, [b], [N], dataclasses.replace(comp, per_step_s=c), net, strong=True)
        out[str(b)] = got[0]["efficiency"] if got else None
    return out


def rows(scaling_rows: Dict[str, List[Dict]], per_step_ms: Optional[float] = None) -> List[Dict]:
    """One row per network of the UNet-2D curves at 8 devices: weak E at 32 and 256, the strong figures
    (for the fabrics the seed measured, or every fabric with a given per-step cost), the seed's."""
    out = []
    by_network: Dict[str, Dict] = {}
    for r in scaling_rows.get("unet", []):
        if r["devices"] == N:
            by_network.setdefault(r["network"], {"network": r["network"], "kind": r["network_kind"],
                                                 "compute": r["compute"]})[str(r["batch"])] = r["efficiency"]
    seed_by_fabric = {v["fabric"]: k for k, v in fabrics.SEED_TABLE.items() if v["fabric"]}
    for name in REPORT_FABRICS:
        title = fabrics.get(name).title
        if title in by_network:
            row = dict(by_network.pop(title))
            seed = fabrics.SEED_TABLE.get(seed_by_fabric.get(name, ""), {})
            row["seed_system"] = seed_by_fabric.get(name, "")
            row["seed_32"], row["seed_256"] = seed.get("32"), seed.get("256")
            row["strong"] = strong_row(name, per_step_ms) if seed or per_step_ms is not None else None
            out.append(row)
    for rest in by_network.values():
        out.append(dict(rest, seed_system="", seed_32=None, seed_256=None, strong=None))
    out.append({"network": "SambaNova SN10 RDU (no public link bandwidth: not modelled)", "kind": "-",
                "compute": "-", "32": None, "256": None, "seed_system": "SN10 RDU", "strong": None,
                "seed_32": fabrics.SEED_TABLE["SN10 RDU"]["32"], "seed_256": fabrics.SEED_TABLE["SN10 RDU"]["256"]})
    return out


def section(seed: List[Dict]) -> List[str]:
    md = ["## Data-parallel scaling (MODELLED)", "",
          "Step time = compute + the allreduce that DDP's gradient buckets leave exposed after the backward "
          "pass (analysis.scaling); E(N) = X(N) / (N X(1)), fp32 gradients, compute at "
          f"{int(compute_cost.DEFAULT_MFU * 100)} % of the device peak (assumed). The curves are the scaling plots "
          "above (weak scaling: per-device batch fixed); their tables are in the appendix.", "",
          "### UNet-2D at 8 devices, beside the seed study", ""]
    md += table(["network", "weak, batch 32", "weak, batch 256", "strong, batch 32", "strong, batch 256",
                 "strong: per-step cost", "compute per device", "seed system", "seed batch 32", "seed batch 256"],
                [[r["network"], fmt(r.get("32"), True), fmt(r.get("256"), True),
                  fmt((r.get("strong") or {}).get("32"), True), fmt((r.get("strong") or {}).get("256"), True),
                  (r.get("strong") or {}).get("how", "-"), short_compute(r["compute"]),
                  r["seed_system"] or "-", fmt(r["seed_32"], True), fmt(r["seed_256"], True)] for r in seed])
    return md + ["", "Why they differ. Weak scaling is a model of communication alone: compute runs at a fixed "
                 "fraction of the device's peak and every sample costs the same, so E(8) falls only by the allreduce "
                 "the backward pass cannot hide, and for a 7.8 M-parameter UNet on NVLink that is little. The seed's "
                 "figures come from full training runs at a fixed global batch, where a per-step cost that does not "
                 "shrink with the batch (launches, the framework, small kernels that leave a fast device idle) "
                 "weighs more the fewer samples each device gets. The strong columns add that cost: fitted to the "
                 "seed's batch-32 figure it predicts batch 256, a check of the model's shape, not a measurement; "
                 "a faster device makes any fixed cost a larger share of the step, which is why GC200 (slower per "
                 "device) scales better in the seed.", ""]
