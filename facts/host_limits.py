"""What one host can hold: cores for torch threads, memory for a training step.

Checked before anything is built (collectives.replicate, analysis.scaling
``--measure-cpu``), so that a run that cannot fit is refused with its
figures instead of being found by the allocator or the scheduler:

* threads: more torch threads per rank than the host's usable cores (its
  CPU affinity, capped by a cgroup CPU quota) is refused unless
  ``--oversubscribe`` asks for it (:func:`threads_refusal`); threads times
  ranks above the cores is a note (:func:`threads_note`).
* memory: a rank's model state (weights, gradients, buckets, optimizer
  state) plus its batch's activations (:func:`activation_bytes`), times
  the ranks sharing the host's memory, above what the host has available
  (MemAvailable, capped by a cgroup memory limit) is refused
  (:func:`memory_refusal`).

Activation memory per sample (or per token) of one training step, per
workload: :data:`ACTIVATION_BYTES`.  SOURCE: measured with
``python benchmarks/activation_memory.py`` (its docstring has the method)
on 2026-12-06 on the 2-core AMD EPYC CI machine (24 GB), torch 2.13.0+cpu,
one thread, float32, glibc malloc defaults: the growth of the peak resident
set (``ru_maxrss``) of one training step (forward, replicate's loss,
backward, SGD step), each batch in a fresh process, between two batch sizes
large enough that the activations set the peak, divided by the samples
between them; tokens models at 128 tokens (replicate's default ``--seq``),
given per token.  Each figure is checked against the tensors autograd saves
for backward (the slope is 1.1-2.1x that: backward's transient buffers,
GPT-2's logits gradients most).  GPT-2 large and XL and GenSLM 2.5B do not
fit this machine whole: measured at full width with 1 and 2 layers and
extrapolated linearly in the layer count (on GPT-2 small and medium, measured
whole too, the extrapolation lands within 0.2 %).  GenSLM 25B is GenSLM
2.5B's figure with the per-layer part scaled by layers x (hidden +
intermediate).  An estimate: other thread counts, allocators, sequence
lengths (attention here keeps no seq x seq matrix, so per token it is
roughly constant) and later steps (the allocator's retained pages: +6 % on
UNet over five steps) move it; bfloat16 is taken as half of float32.
The same figures, with each model's parameters: docs/results/2026-12.md.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

from ground.env import cgroup_cpu_limit

__all__ = ["ACTIVATION_BYTES", "activation_bytes", "usable_cores", "available_memory", "threads_refusal",
           "threads_note", "memory_refusal", "size_text"]

# workload: (bytes, per "sample" or per "token") -- see the module docstring for the source.
ACTIVATION_BYTES: Dict[str, Tuple[float, str]] = {
    "unet": (2.15e+08, "sample"),  # whole model, batches 1 and 3
    "unet64": (3.704e+08, "sample"),  # whole model, batches 2 and 4
    "gpt2-small": (1.672e+06, "token"),  # whole model, batches 8 and 24
    "gpt2-medium": (2.773e+06, "token"),  # whole model, batches 8 and 16
    "gpt2-large": (4.099e+06, "token"),  # 1 and 2 layers extrapolated to 36, batches 24 and 48
    "gpt2-xl": (5.554e+06, "token"),  # 1 and 2 layers extrapolated to 48, batches 24 and 48
    "genslm-25m": (3.383e+05, "token"),  # whole model, batches 4 and 16
    "genslm-250m": (1.211e+06, "token"),  # whole model, batches 12 and 24
    "genslm-2.5b": (6.824e+06, "token"),  # 1 and 2 layers extrapolated to 28, batches 32 and 64
    "genslm-25b": (3.159e+07, "token"),  # genslm-2.5b's layers scaled by layers x (hidden + intermediate)
    "braggnn": (1.569e+05, "sample"),  # whole model, batches 256 and 4352
}


def activation_bytes(w, batch: int, seq: Optional[int] = None, element_bytes: int = 4) -> Optional[int]:
    """Activation memory of one training step of workload ``w`` at ``batch`` samples (``seq`` tokens
    each for tokens models, default the model's own length), in bytes; None where not measured."""
    entry = ACTIVATION_BYTES.get(w.name)
    if entry is None:
        return None
    value, unit = entry
    per_sample = value * (seq or w.model_input.shape[0]) if unit == "token" else value
    return int(per_sample * batch * element_bytes / 4)


def usable_cores(affinity: Optional[int] = None, quota: Optional[float] = None, root: str = "/sys/fs/cgroup") -> int:
    """This process's usable cores: its CPU affinity, capped by a cgroup CPU quota (at least 1).
    ``affinity`` and ``quota`` replace what is read (tests)."""
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            affinity = os.cpu_count() or 1
    if quota is None:
        quota = cgroup_cpu_limit(root)
    if quota is not None:
        affinity = min(affinity, int(quota + 0.999))
    return max(1, affinity)


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory(meminfo: str = "/proc/meminfo", root: str = "/sys/fs/cgroup") -> Optional[int]:
    """Bytes this host can still give: MemAvailable, capped by a cgroup memory limit's headroom
    (v2 memory.max - memory.current, v1 limit_in_bytes - usage_in_bytes); None if unknown."""
    try:
        with open(meminfo) as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
        available: Optional[int] = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        available = None
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit = _read_int(os.path.join(root, limit_file))
        if limit is None or limit >= 1 << 60:  # "max", or v1's "no limit" (a huge page-rounded number)
            continue
        headroom = max(0, limit - (_read_int(os.path.join(root, usage_file)) or 0))
        available = headroom if available is None else min(available, headroom)
        break
    return available


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def threads_refusal(threads: int, cores: int, where: str = "this host") -> Optional[str]:
    """The one-line refusal of ``--threads`` above ``where``'s usable cores, or None."""
    if threads <= cores:
        return None
    return f"--threads {threads}: {where} has {_plural(cores, 'usable core')}; add --oversubscribe to run anyway"


def threads_note(threads: int, ranks: int, cores: int, where: str = "this host") -> Optional[str]:
    """A note when ``ranks`` x ``threads`` exceed ``where``'s usable cores because of the threads
    (ranks alone above the cores are the header's oversubscription warning), or None."""
    if threads <= 1 or threads * ranks <= cores:
        return None
    return (f"{_plural(ranks, 'rank')} x {threads} threads = {threads * ranks} threads on {where}'s "
            f"{_plural(cores, 'usable core')}: they take turns on the cores (oversubscribed), so compute "
            "times are longer than on dedicated cores")


def size_text(n: float, unit: str = "GB") -> str:
    """Bytes in decimal GB or MB, three significant figures, no exponent: '79 GB', '0.786 MB'."""
    value = n / (1e9 if unit == "GB" else 1e6)
    if value >= 100:
        return f"{value:,.0f} {unit}"
    return f"{float(f'{value:.3g}'):g} {unit}"


def memory_refusal(model: str, batch: int, state: int, per_sample: Optional[float], ranks: int,
                   available: Optional[int], where: str = "this host", params: Optional[int] = None,
                   state_what: str = "weights, gradients and optimizer state") -> Optional[str]:
    """The one-line refusal when ``ranks`` x (``state`` + ``batch`` x ``per_sample``) bytes exceed
    ``available``, or None (also when the memory is unknown).  Named after the batch, or after the
    model when its state alone does not fit."""
    if available is None:
        return None
    acts = (per_sample or 0) * batch
    if (state + acts) * ranks <= available:
        return None
    sharing = f"{_plural(ranks, 'rank')} on {where}"
    if state * ranks > available:
        count = f" ({params:,} parameters)" if params else ""
        return (f"--model {model} is too big for {where}: about {size_text(state)} per rank for its "
                f"{state_what}{count}, {sharing}: {size_text(state * ranks)} > {size_text(available)} available")
    return (f"--batch {batch}: {model} needs about {size_text(state + acts)} per rank "
            f"({size_text(per_sample, 'MB' if per_sample < 1e9 else 'GB')} activations per sample), {sharing}: "
            f"{size_text((state + acts) * ranks)} > {size_text(available)} available")
