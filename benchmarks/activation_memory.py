"""Activation memory of one training step, per sample (or per token), for facts.host_limits.

    python benchmarks/activation_memory.py                    # every workload (~25 min on 1 core, ~9 GB peak)
    python benchmarks/activation_memory.py --models unet,braggnn
    python benchmarks/activation_memory.py --models gpt2-small --layers 1,2   # check the extrapolation

Method: for each workload, one training step (forward, the loss replicate
uses, ``out.float().pow(2).mean()``, backward, an SGD step without
momentum) runs in a fresh subprocess at two batch sizes b1 < b2, with one
torch thread, float32, tokens models at ``--seq`` tokens (128, replicate's
default).  Each subprocess reports its peak resident set
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``).  Everything that does not
grow with the batch (the interpreter, torch, weights, gradients, per-thread
scratch) is the same at b1 and b2, so

    activation bytes per sample = (peak(b2) - peak(b1)) / (b2 - b1)

and per token that divided by the sequence length.  This holds only while
the peak falls at the same moment at both batches: the start of the
backward pass, when every activation is alive.  With too small a batch the
peak moves to the end of the backward pass (all weight gradients, and
GPT-2's tied-embedding gradient temporaries, hundreds of MB that ignore the
batch) and the slope comes out low; hence b1 is chosen so that its
activations outweigh the parameter-sized buffers (:data:`BATCHES`).  SGD
without momentum keeps no state, so no optimizer buffer sets the peak.  As
a check each child also sums the tensors autograd saves for backward
(``torch.autograd.graph.saved_tensors_hooks``, parameters left out): the
slope should be somewhat above it (it adds backward's transient buffers).

Models whose weights and gradients would not fit this machine (GPT-2 large
and XL, GenSLM 2.5B) are measured at their full width with 1 and 2 layers
and extrapolated linearly in the layer count:
A(L) = A(1) + (L - 1) (A(2) - A(1)).  ``--layers 1,2`` on a model measured
whole shows how close the extrapolation comes.  GenSLM 25B cannot be
measured on a 24 GB machine even so (one layer is 392M parameters, and the activations
must outweigh its gradients): its figure is GenSLM 2.5B's, the per-layer
part scaled by layers x (hidden + intermediate) (:data:`SCALED`).

Prints one line per workload and the ``ACTIVATION_BYTES`` entries to paste
into facts/host_limits.py; ``--json PATH`` appends the raw peaks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facts import workloads  # noqa: E402

# b1, b2 per workload: far enough apart that the activations dwarf the allocator's noise
# (hundreds of MB between them), small enough for this machine.
BATCHES: Dict[str, Tuple[int, int]] = {
    "braggnn": (256, 4352), "unet": (1, 3), "unet64": (2, 4),
    "gpt2-small": (8, 24), "gpt2-medium": (8, 16), "gpt2-large": (24, 48), "gpt2-xl": (24, 48),
    "genslm-25m": (4, 16), "genslm-250m": (12, 24), "genslm-2.5b": (32, 64),
}
# Too big to build whole here: measured with 1 and 2 layers, extrapolated.
LAYERED = {"gpt2-large", "gpt2-xl", "genslm-2.5b"}
# Too big to measure even so: scaled from a family member (see the module docstring).
SCALED = {"genslm-25b": "genslm-2.5b"}


def child(name: str, batch: int, layers: Optional[int], seq: Optional[int]) -> Dict:
    """One fresh process: build, two training steps, report the peak RSS in bytes."""
    import resource

    import torch

    from facts import torch_models

    torch.set_num_threads(1)
    torch.manual_seed(0)
    w = workloads.get(name)
    kwargs = dict(w.builder.kwargs)
    if layers:
        kwargs["n_layer"] = layers
    model = torch_models.build(w.builder.factory, kwargs)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    data = workloads.example_input(w, batch, seq)
    built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: Dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(data)
        loss = out.float().pow(2).mean()  # collectives.replicate_steps._loss
    del out
    loss.backward()
    opt.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"model": name, "batch": batch, "layers": layers, "seq": seq, "built_rss": built, "peak_rss": peak,
            "saved_bytes": sum(saved.values()), "params": sum(p.numel() for p in model.parameters())}


def _run_child(name: str, batch: int, layers: Optional[int], seq: Optional[int]) -> Dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--child", name, str(batch), str(layers or 0), str(seq or 0)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{name} batch {batch}: the child failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def slope(name: str, layers: Optional[int], seq: Optional[int], raw) -> Tuple[float, float]:
    """Activation bytes per sample (the peak's growth from b1 to b2) and autograd's saved bytes per
    sample at b2 (the check)."""
    b1, b2 = BATCHES[name]
    lo, hi = _run_child(name, b1, layers, seq), _run_child(name, b2, layers, seq)
    raw += [lo, hi]
    return (hi["peak_rss"] - lo["peak_rss"]) / (b2 - b1), hi["saved_bytes"] / b2


def _depth(name: str) -> int:
    return dict(workloads.get(name).builder.kwargs)["n_layer"]


def measure(name: str, seq: int, layer_counts: Optional[Tuple[int, int]], raw, done: Dict) -> Tuple[float, float, str]:
    """(bytes per sample or token, autograd's saved bytes likewise, how); ``done`` keeps the layered
    measurements' parts {name: (non-layer, per layer)} for SCALED."""
    w = workloads.get(name)
    tokens = w.model_input.kind == "tokens"
    s = seq if tokens else None
    if name in SCALED:
        base = SCALED[name]
        if base not in done:
            measure(base, seq, (1, 2), raw, done)
        (rest, layer), (srest, slayer) = done[base]
        kw, kb = dict(w.builder.kwargs), dict(workloads.get(base).builder.kwargs)
        factor = (kw["h"] + kw["inter"]) / (kb["h"] + kb["inter"])
        value = rest + _depth(name) * layer * factor
        check = srest + _depth(name) * slayer * factor
        return value, check, f"{base}'s layers scaled by layers x (hidden + intermediate)"
    if layer_counts:
        depth = _depth(name)
        l1, l2 = layer_counts
        (a1, c1), (a2, c2) = slope(name, l1, s, raw), slope(name, l2, s, raw)
        per_layer, check_layer = (a2 - a1) / (l2 - l1), (c2 - c1) / (l2 - l1)
        per_sample = a1 + (depth - l1) * per_layer
        check = c1 + (depth - l1) * check_layer
        unit = seq if tokens else 1
        done[name] = ((a1 - l1 * per_layer) / unit, per_layer / unit), ((c1 - l1 * check_layer) / unit,
                                                                        check_layer / unit)
        how = f"{l1} and {l2} layers extrapolated to {depth}"
    else:
        per_sample, check = slope(name, None, s, raw)
        how = "whole model"
    return (per_sample / seq, check / seq, how) if tokens else (per_sample, check, how)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(list(BATCHES) + list(SCALED)),
                   help="comma list (default: every workload)")
    p.add_argument("--seq", type=int, default=128, help="tokens per sample for tokens models (default 128)")
    p.add_argument("--layers", help="L1,L2: measure with these layer counts and extrapolate (transformers)")
    p.add_argument("--json", help="append the raw peaks here (JSON lines)")
    a = p.parse_args(argv)
    raw: list = []
    entries = []
    done: Dict = {}
    for name in a.models.split(","):
        name = workloads.get(name).name
        layers = tuple(int(x) for x in a.layers.split(",")) if a.layers else ((1, 2) if name in LAYERED else None)
        value, check, how = measure(name, a.seq, layers, raw, done)
        unit = "token" if workloads.get(name).model_input.kind == "tokens" else "sample"
        batches = "batches %d and %d, " % BATCHES[name] if name in BATCHES else ""
        print(f"{name:12s} {value / 1e6:10.3f} MB per {unit}, autograd saves {check / 1e6:.3f}  ({batches}{how})",
              flush=True)
        if value < check:
            print(f"# warning: {name}: below what autograd saves: at b1 the peak fell outside the backward "
                  "pass (weight gradients outweigh the activations); raise its BATCHES", flush=True)
        entries.append(f'    "{name}": ({value:.4g}, "{unit}"),  # {how}')
    print("\n".join(entries))
    if a.json:
        with open(a.json, "a") as f:
            for r in raw:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        _, _, name, batch, layers, seq = sys.argv
        print(json.dumps(child(name, int(batch), int(layers) or None, int(seq) or None)))
        sys.exit(0)
    sys.exit(main())
