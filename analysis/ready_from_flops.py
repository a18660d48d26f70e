"""When each gradient becomes ready during the backward pass, estimated from layer FLOPs (needs torch).

DDP can start a bucket's allreduce only when every gradient in it has been
computed.  The backward pass runs the forward's operations in reverse, so a
parameter's gradient is ready once the backward of everything the forward
did from the start of the parameter's module onwards is done.  Backward
costs about twice the forward op by op (two matrix products per forward
one, the same for convolutions), so, in shares of the backward pass:

    ready(p) = (F_total - F_before(p)) / F_total

with F_before(p) the forward FLOPs counted before the first module that
uses p starts (a tied weight, such as GPT-2's embedding reused by its
output layer, is ready only at the end).  FLOPs come from torch's
``FlopCounterMode`` on a model built on the ``meta`` device (shapes only:
nothing is allocated, so GPT-2 XL costs nothing).  What this leaves out:
operations that FlopCounterMode does not count (element-wise ops,
normalisations, softmax), which take time but no matrix FLOPs; where
:mod:`collectives.replicate` has measured a model's bucket times, the
measured fractions replace this estimate (``analysis.step_model``).

Measured against DDP on this CPU (UNet-2D 32, batch 2): buckets ready at
26-37 %, 59-73 % and 100 % of the backward pass, where spreading bytes
evenly over time (the model before this module) said 4 %, 92.5 %, 100 %.
"""

from __future__ import annotations

from typing import Dict, Optional

__all__ = ["layer_ready_fractions"]

_CACHE: Dict = {}


def layer_ready_fractions(workload, seq: Optional[int] = None) -> Dict[str, float]:
    """{parameter name: share of the backward pass after which its gradient is ready} (0..1]."""
    from facts import workloads

    w = workloads.get(workload) if isinstance(workload, str) else workload
    key = (w.name, seq)
    if key in _CACHE:
        return dict(_CACHE[key])
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = workloads.build_torch_model(w, device="meta")
    x = workloads.example_input(w, 1, seq, device="meta")
    counter = FlopCounterMode(display=False)
    start: Dict[int, int] = {}  # id(parameter) -> FLOPs counted when its first module started
    owners = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]

    def pre(module, args):
        flops = counter.get_total_flops()
        for p in module.parameters(recurse=False):
            start.setdefault(id(p), flops)
    handles = [m.register_forward_pre_hook(pre) for m in owners]
    try:
        with counter, torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    total = counter.get_total_flops()
    out = {}
    for name, p in model.named_parameters():
        before = start.get(id(p))
        # A parameter no module used before the end would be ready last (DDP needs every one).
        out[name] = 1.0 if before is None or total <= 0 else max(1e-9, (total - before) / total)
    _CACHE[key] = dict(out)
    return out
