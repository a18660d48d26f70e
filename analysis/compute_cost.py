"""One device's compute for the scaling model: given as a rate, assumed from a peak, or measured here.

- :func:`from_rate`: samples/s given on the command line;
- :func:`from_peak`: training FLOPs per sample over peak x an assumed
  model-FLOP utilisation;
- :func:`measure_cpu`: a real training step of the workload's torch model
  timed on this CPU, by phase, with the threads one rank gets
  (:func:`default_threads`, :func:`checked_threads`);
  :func:`measure_cpu_batches` at several batches fits the per-step cost
  t(b) = per-step + b x per-sample (:func:`analysis.step_model.fit_per_step`).
"""

from __future__ import annotations

import dataclasses
import time as _time
from typing import Optional, Sequence

from analysis.step_model import Compute

__all__ = ["DEFAULT_MFU", "from_rate", "from_peak", "default_threads", "measure_cpu", "measure_cpu_batches",
           "checked_threads"]

DEFAULT_MFU = 0.35


def from_rate(samples_per_second: float, source: str = "given on the command line") -> Compute:
    if samples_per_second <= 0:
        raise ValueError("samples per second must be positive")
    return Compute(1.0 / samples_per_second, f"{samples_per_second:g} samples/s per device ({source})", "given")


def from_peak(workload, tflops: float, mfu: float = DEFAULT_MFU, source: str = "") -> Compute:
    """t_sample = training FLOPs per sample / (peak x model-FLOP utilisation)."""
    if tflops <= 0 or not 0 < mfu <= 1:
        raise ValueError("peak TFLOP/s must be positive and the utilisation in (0, 1]")
    t = workload.flops_per_sample / (tflops * 1e12 * mfu)
    return Compute(t, f"{workload.flops_per_sample / 1e9:.1f} GFLOP/sample at {tflops:g} TFLOP/s x "
                      f"{mfu:.0%} utilisation ({source or 'assumed'})", "assumed")


def default_threads(devices: Sequence[int], cores: Optional[int] = None) -> int:
    """The threads one rank gets when this host's usable ``cores`` (default: its CPU affinity, capped
    by a cgroup quota) are shared by as many ranks as it can hold of the largest device count (at
    least 1)."""
    from facts.host_limits import usable_cores

    cores = cores or usable_cores()
    return max(1, cores // max(1, min(max(devices or [1]), cores)))


def measure_cpu(workload, batch: int = 4, repeats: int = 3, threads: Optional[int] = None,
                optimizer: str = "adam") -> Compute:
    """Time a real training step of the workload's torch model on this machine's CPU, by phase.

    Forward, backward and one optimizer step (Adam unless ``optimizer`` is
    ``sgd``), with ``threads`` torch threads (a rank's share of the cores,
    as :func:`default_threads`; torch's own default when None), best of
    ``repeats`` after a warm-up.  The backward fraction is measured too.
    The model and its input (shaped by ``workload.model_input``) come from
    facts.workloads.build_torch_model and example_input (facts.torch_models).
    """
    import torch

    from facts import workloads

    if workload.params > 400_000_000:
        raise ValueError(f"{workload.name} ({workload.params:,} parameters) is too big to time on a CPU here; "
                         "give --samples-per-second or --peak-tflops")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model = workloads.build_torch_model(workload)
        model.train()
        opt = (torch.optim.SGD(model.parameters(), lr=1e-3) if optimizer == "sgd"
               else torch.optim.Adam(model.parameters(), lr=1e-4))
        x = workloads.example_input(workload, batch)  # random: only the time matters
        best = None
        for i in range(repeats + 1):
            opt.zero_grad(set_to_none=True)
            t0 = _time.perf_counter()
            out = model(x)
            out = out[0] if isinstance(out, (tuple, list)) else getattr(out, "logits", out)
            loss = out.float().pow(2).mean()
            t1 = _time.perf_counter()
            loss.backward()
            t2 = _time.perf_counter()
            opt.step()
            t3 = _time.perf_counter()
            if i and (best is None or t3 - t0 < best[3] - best[0]):  # the first run warms up
                best = (t0, t1, t2, t3)
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    t0, t1, t2, t3 = best
    per = (t2 - t0) / batch
    return Compute(per, f"measured here: forward+backward of {workload.name}, batch {batch}, on the CPU with "
                        f"torch {torch.__version__} ({used} thread{'s' if used > 1 else ''}): {1 / per:.3g} "
                        f"samples/s; {optimizer} step {1e3 * (t3 - t2):.3g} ms", "measured",
                   backward_fraction=(t2 - t1) / (t2 - t0), optimizer_s=t3 - t2, optimizer_how="measured")


def measure_cpu_batches(workload, batches: Sequence[int], threads: Optional[int] = None) -> Compute:
    """:func:`measure_cpu` at each batch; with two or more, t(b) = per-step + b x per-sample fitted to them."""
    from analysis.step_model import fit_per_step

    got = [measure_cpu(workload, batch=b, threads=threads) for b in batches]
    if len(set(batches)) < 2:
        return got[0]
    times = [c.seconds_per_sample * b for c, b in zip(got, batches)]
    per_step, per = fit_per_step(batches, times)
    bs = ", ".join(map(str, batches))
    return dataclasses.replace(
        got[-1], seconds_per_sample=per, per_step_s=per_step,
        source=f"{got[-1].source.split(': ')[0]} at batches {bs}: per-step {per_step * 1e3:.3g} ms + "
               f"{per * 1e3:.3g} ms per sample",
        per_step_how=f"fitted with the per-sample time to --measure-cpu at batches {bs} (least squares"
                     + (", the intercept clipped at 0)" if per_step == 0 else ")"))


def checked_threads(threads: Optional[int], oversubscribe: bool, devices: Sequence[int],
                     cores: Optional[int] = None) -> int:
    """--threads, refused above this host's usable cores unless --oversubscribe; else the default."""
    from facts import host_limits

    cores = cores or host_limits.usable_cores()
    if threads is None:
        return default_threads(devices, cores)
    refusal = None if oversubscribe else host_limits.threads_refusal(threads, cores)
    if refusal:
        raise ValueError(refusal)
    return threads
