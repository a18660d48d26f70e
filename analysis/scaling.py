"""Data-parallel replication: throughput X(N) and scaling efficiency E(N).

Step time on N devices (every result here is MODELLED):

    step(N) = accum * batch * t_sample  +  exposed(N)

``t_sample`` is the forward+backward time of one sample on one device
(measured here with torch on the CPU, given as samples/s, or peak FLOP/s x
an efficiency), ``accum`` the gradient-accumulation steps (gradients are
all-reduced once per step, after the last micro-batch, as DDP's no_sync
does).

Overlap model (PyTorch DDP).  Gradients are all-reduced in buckets
(facts.workloads.gradient_buckets: 25 MiB, the first 1 MiB, in reverse
parameter order) while the backward pass of the last micro-batch runs.  That
backward pass takes ``backward_fraction`` (2/3: backward costs about twice
forward) of the micro-batch's compute and produces gradients at a steady rate
in bytes, so bucket i is ready when the bytes of buckets 0..i are done.  One
communication stream runs the buckets in order: bucket i starts at
max(ready_i, end of bucket i-1) and takes allreduce(size_i, N).  Whatever runs
past the end of the backward pass is exposed and adds to the step;
``overlap=False`` exposes every bucket.

X(N) = N * batch * accum / step(N) samples/s (weak scaling: the per-device
batch stays fixed) or global batch / step(N) with batch = global / N
(strong scaling).  E(N) = X(N) / (N * X(1)); X(1) has no communication.
Under strong scaling a device count larger than the global batch would
leave devices without a sample: those rows are left out, and the table
says which in a ``# note:`` line (if every row would be, it is an error).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["Compute", "Network", "Step", "step_time", "curve", "interval_from_runs", "network_from_fabric",
           "network_from_fit", "strong_skipped", "format_table", "main", "terms_token", "per_step_matching"]

from analysis.step_model import Compute  # noqa: E402
PROG = "analysis.scaling"
MAX_BATCH = 1 << 31
MAX_ACCUM = 1 << 20


@dataclass(frozen=True)
class Network:
    """allreduce(n_bytes, N) -> seconds, and what it is."""

    label: str
    kind: str  # "modelled from published figures" | "modelled from a measured fit"
    allreduce: Callable[[float, int], float]
    valid_up_to: Optional[int] = None  # beyond this N the model extrapolates
    short: str = ""  # for plot legends: the fabric's name, or "<transport> fit"
    transport: Optional[str] = None  # the transport measured, for a fit

    def note(self, n_devices: int) -> str:
        if self.valid_up_to and n_devices > self.valid_up_to:
            return f"extrapolated beyond the measured {self.valid_up_to} ranks"
        return ""


def network_from_fabric(fabric) -> Network:
    return Network(fabric.title, "modelled from published figures", fabric.allreduce_time, short=fabric.name)


def network_from_fit(model_fit) -> Network:
    if model_fit.collective != "allreduce":
        raise ValueError("a scaling model needs an allreduce fit")
    return Network(f"measured {model_fit.transport} allreduce ({model_fit.algorithm})",
                   "modelled from a measured fit", lambda n, p: float(model_fit.predict(n, p)),
                   valid_up_to=max(model_fit.ranks), short=f"{model_fit.transport} (measured fit)",
                   transport=model_fit.transport)


@dataclass(frozen=True)
class Step:
    compute_s: float
    comm_s: float  # all buckets' allreduce time, serialised
    exposed_s: float  # what the step waits for after the backward pass
    step_s: float


def step_time(buckets: Sequence[int], batch: float, n_devices: int, compute: Compute, network: Network,
              accum: int = 1, overlap: bool = True, terms=None, shares: Optional[Sequence[float]] = None) -> Step:
    """One training step (see the module docstring and :mod:`analysis.step_model`).

    ``shares``: each bucket's ready time as a share of the backward pass
    (default: spread evenly over bytes); ``terms``: the step model's terms
    (default: all assumed, i.e. none).  The first ``accum - 1`` micro-batches
    run without sync; only the last one's backward pass overlaps the buckets.
    """
    from analysis import step_model as sm

    t_micro = compute.micro_s(batch)  # per-step cost + batch x per-sample (strong scaling shrinks only the latter)
    backward = compute.backward_fraction * t_micro
    phases = sm.Phases(accum * t_micro - backward, backward, compute.optimizer_s)
    if n_devices <= 1 or not buckets:
        return Step(phases.total, 0.0, 0.0, phases.total)
    shares = list(shares) if shares is not None else sm.even_readiness(buckets)
    if not overlap:
        shares = [1.0] * len(buckets)
    p = sm.predict(phases, list(zip(buckets, shares)), n_devices, network.allreduce, terms or sm.Terms())
    return Step(p.compute_s, p.comm_s, p.exposed_s, p.step_s)


def curve(workload, batches: Sequence[int], devices: Sequence[int], compute: Compute, network: Network,
          grad_bytes: int = 4, accum: int = 1, strong: bool = False, overlap: bool = True, terms=None,
          readiness: Optional[Tuple[List[float], str]] = None, interval=None) -> List[Dict]:
    """Rows of the scaling table: one per (batch, N); every row is modelled.

    ``terms``: the step model's terms, or a function of N giving them (terms
    estimated per rank count, as the slowest-rank term is).  ``readiness``:
    (each bucket's ready share of the backward pass, how it is known);
    default: spread evenly over bytes (assumed).  ``interval``: step seconds
    -> :class:`analysis.intervals.Interval` (:func:`interval_from_runs`), put
    on every row at N > 1 with E's (``step_lo_ms``, ``step_hi_ms``,
    ``eff_lo``, ``eff_hi``); None leaves them None."""
    from analysis import intervals
    from analysis import step_model as sm
    from facts import workloads

    buckets = workloads.gradient_buckets(workload, bytes_per_element=grad_bytes)
    shares, ready_how = readiness if readiness else (sm.even_readiness(buckets), sm.ASSUMED)
    terms_at = terms if callable(terms) else (lambda n, t=terms or sm.Terms(): t)
    rows = []
    for b in batches:
        per1 = b
        base = step_time(buckets, per1, 1, compute, network, accum, overlap, terms_at(1), shares)
        x1 = per1 * accum / base.step_s
        for n in devices:
            per = b / n if strong else b
            if per <= 0 or (strong and per < 1):
                continue
            at_n = terms_at(n)
            s = step_time(buckets, per, n, compute, network, accum, overlap, at_n, shares)
            x = n * per * accum / s.step_s
            iv = interval(s.step_s) if interval is not None and n > 1 else None
            e_iv = intervals.efficiency_interval(base.step_s, iv, n if strong else 1) if iv else None
            rows.append({
                "kind": "modelled", "model": workload.name, "params": workload.params,
                "scaling": "strong" if strong else "weak",
                "batch": b, "batch_per_device": per, "accum": accum, "devices": n,
                "grad_bytes": grad_bytes, "buckets": len(buckets),
                "step_ms": s.step_s * 1e3, "compute_ms": s.compute_s * 1e3, "comm_ms": s.comm_s * 1e3,
                "exposed_ms": s.exposed_s * 1e3, "throughput": x,
                "efficiency": x / (n * x1),
                "network": network.label, "network_short": network.short or network.label,
                "network_kind": network.kind, "compute": compute.source,
                "compute_kind": compute.kind, "overlap": overlap, "note": network.note(n),
                "optimizer_ms": compute.optimizer_s * 1e3, "optimizer_how": compute.optimizer_how,
                "per_step_ms": compute.per_step_s * 1e3, "per_step_how": compute.per_step_how,
                "terms": at_n.code(), "readiness": ready_how,
                "step_lo_ms": iv.lo * 1e3 if iv else None, "step_hi_ms": iv.hi * 1e3 if iv else None,
                "eff_lo": e_iv.lo if e_iv else None, "eff_hi": e_iv.hi if e_iv else None,
                "interval_level": iv.level if iv else None,
            })
    return rows


def per_step_matching(workload, compute: Compute, network: Network, batch: int, devices: int, efficiency: float,
                      strong: bool = True, grad_bytes: int = 4) -> Optional[float]:
    """The per-step cost (s) that makes the modelled E(devices) at ``batch`` equal ``efficiency`` (bisection:
    E falls as the per-step cost grows under strong scaling), or None when no cost in [0, 1000 x the batch's
    compute] reaches it (the model without one is already below it, or it needs more)."""
    def eff(c: float) -> float:
        rows = curve(workload, [batch], [devices], dataclasses.replace(compute, per_step_s=c), network, grad_bytes,
                     strong=strong)
        return rows[0]["efficiency"] if rows else float("nan")

    lo, hi = 0.0, 1000.0 * batch * compute.seconds_per_sample
    if not eff(hi) <= efficiency <= eff(lo):
        return None
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if eff(mid) > efficiency else (lo, mid)
    return 0.5 * (lo + hi)


def format_table(rows: List[Dict], workload, network: Network, compute: Compute,
                 notes: Sequence[str] = (), terms_lines: Sequence[str] = ()) -> str:
    """The table on stdout; ``notes`` become ``# note:`` lines under the header."""
    scaling = rows[0]["scaling"] if rows else "weak"
    lines = [
        f"# MODELLED data-parallel scaling of {workload.title} ({workload.params:,} parameters), "
        f"{scaling} scaling",
        f"# network: {network.label} ({network.kind})",
        f"# compute: {compute.source}; per-step cost {compute.per_step_s * 1e3:g} ms: {compute.per_step_how}",
        "# step = (forward + backward + optimizer) x sharing x skew + exposed allreduce (DDP buckets "
        "overlapped with the backward pass, slowed by interference; DDP's copies in and out of its buckets; "
        "the wake delay; analysis.step_model); E(N) = X(N) / (N X(1))",
    ] + list(terms_lines) + [f"# note: {n}" for n in notes] + [
        "# terms: how the model's sharing, sharing_opt, skew, interference, comm, overlap, copies, wake / bucket "
        "readiness are known (c calibrated, m measured, e estimated, a assumed)",
    ]
    level = next((r["interval_level"] for r in rows if r.get("interval_level")), None)
    if level is None:
        lines.append("# interval: none: nothing measured to build one from (give --calibrate RUNS: the step model's "
                     "errors on replicate runs make the interval)")
    lines.append("#  batch   per-dev  devices   step(ms)  compute(ms)  allreduce(ms)  exposed(ms)   samples/s  efficiency"
                 "    terms" + (f"  step {level:.0%} interval (ms)   E {level:.0%} interval" if level else ""))
    for r in rows:
        extra = ""
        if level:
            extra = ("  %27s  %17s" % (f"{r['step_lo_ms']:.4g}-{r['step_hi_ms']:.4g}",
                                       f"{100 * r['eff_lo']:.1f}-{100 * r['eff_hi']:.1f}%")
                     if r.get("step_lo_ms") is not None else "  %27s  %17s" % ("-", "-"))
        lines.append("%8s %9.3g %8d %10.3f %12.3f %14.3f %12.3f %11.4g %10.1f%%  %7s%s  MODELLED%s" % (
            r["batch"], r["batch_per_device"], r["devices"], r["step_ms"], r["compute_ms"], r["comm_ms"],
            r["exposed_ms"], r["throughput"], 100 * r["efficiency"], terms_token(r), extra,
            ("  " + r["note"]) if r["note"] else ""))
    return "\n".join(lines) + "\n"


def terms_token(row: Dict) -> str:
    """``ccccccaa/m``: how each step-model term of a row is known, then its bucket readiness."""
    codes = "".join(part.split()[-1] for part in str(row.get("terms") or "").split(", ") if part)
    return f"{codes or '-'}/{str(row.get('readiness') or 'assumed')[0]}"


def strong_skipped(batches: Sequence[int], devices: Sequence[int]) -> Dict[int, List[int]]:
    """Strong scaling: for each global batch, the device counts it cannot fill (less than one
    sample per device), which :func:`curve` leaves out."""
    return {b: sorted({n for n in devices if b < n}) for b in batches if any(b < n for n in devices)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m analysis.scaling``: the exit status (0; 2 with one line on stderr for bad input)."""
    from ground import errors

    return errors.run_main(PROG, lambda: _main(argv), prints="the results")


def _main(argv: Optional[Sequence[str]]) -> int:
    from analysis import calibrate, cli_common as cc, compute_cost, step_model
    from facts import fabrics, workloads

    ap = cc.Parser(prog="python -m analysis.scaling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="unet", help=f"one of: {', '.join(workloads.names())}")
    ap.add_argument("--batch", type=cc.whole_list(1, MAX_BATCH), default="32,256",
                    help="comma list: batch per device (weak) or global (--strong)")
    ap.add_argument("--devices", type=cc.whole_list(1, cc.MAX_RANKS), default="1,2,4,8,16,32,64,128,256,512,1024",
                    help="comma list of device counts")
    net = ap.add_mutually_exclusive_group(required=True)
    net.add_argument("--fabric", help=f"one of: {', '.join(fabrics.names())}")
    net.add_argument("--results", nargs="+", metavar="FILE", help="fit measured allreduce results instead")
    ap.add_argument("--transport", help="with --results: which transport's fit")
    comp = ap.add_mutually_exclusive_group()
    comp.add_argument("--samples-per-second", type=cc.number(1e-6, 1e12, lo_open=False),
                      help="one device's training throughput")
    comp.add_argument("--peak-tflops", type=cc.number(1e-3, 1e6, lo_open=False),
                      help="device peak (default: the fabric's, when published)")
    comp.add_argument("--measure-cpu", action="store_true", help="time forward, backward and an Adam step here "
                      "with torch, with the threads one rank gets (--threads)")
    ap.add_argument("--oversubscribe", action="store_true", help="--measure-cpu: run --threads above this host's "
                    "usable cores (refused otherwise)")
    ap.add_argument("--threads", type=cc.whole(1, 4096), help="--measure-cpu: torch threads (default: this host's "
                    "cores over the largest device count it can hold, at least 1: one rank's share)")
    ap.add_argument("--calibrate", nargs="+", metavar="RUNS", help="collectives.replicate records (JSON Lines or "
                    "CSV): fit the model's terms (sharing, skew, interference, comm, overlap, copies, wake, bucket "
                    "readiness) to them, "
                    "and take the compute of --model from them when it is there")
    ap.add_argument("--seq", type=cc.whole(1, 1 << 20), help="tokens per sample for GPT-style models' bucket "
                    "readiness (default 128)")
    ap.add_argument("--mfu", type=cc.number(1e-4, 1, lo_open=False), default=compute_cost.DEFAULT_MFU,
                    help=f"utilisation of the peak, in [0.0001, 1] (default {compute_cost.DEFAULT_MFU}, assumed)")
    ap.add_argument("--grad-dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--accum", type=cc.whole(1, MAX_ACCUM), default=1, help="gradient-accumulation steps (default 1)")
    ap.add_argument("--strong", action="store_true", help="keep the global batch fixed (device counts larger "
                    "than a batch are left out, with a note)")
    ap.add_argument("--no-overlap", action="store_true", help="expose every bucket's allreduce")
    ap.add_argument("--per-step-ms", type=cc.number(0, 1e6, lo_open=False), metavar="MS",
                    help="a per-step compute cost that does not shrink with the batch (launches, framework, small "
                    "kernels), added to every micro-batch: t(b) = MS + b x per-sample time (default 0, assumed)")
    ap.add_argument("--measure-batches", type=cc.whole_list(1, 4096), metavar="B,B",
                    help="--measure-cpu: time these batch sizes (default 4); two or more fit a per-step cost "
                    "t(b) = per-step + b x per-sample")
    ap.add_argument("--level", type=cc.number(0.5, 0.99, lo_open=False), default=0.8,
                    help="with --calibrate: the prediction interval's level, in [0.5, 0.99] (default 0.8)")
    ap.add_argument("--json", metavar="PATH", help="append the rows as JSON lines")
    cc.add_strict(ap)
    a = ap.parse_args(argv)
    json_path = cc.output_file("--json", a.json)
    with cc.usage_errors(ImportError):
        workload = workloads.get(a.model)
        if a.fabric is not None:
            fabric = fabrics.get(a.fabric)
            network = network_from_fabric(fabric)
        else:
            fabric = None
            network = network_from_fit(_allreduce_fit(a.results, a.transport, a.strict, cc.warner(PROG)))
        reps = _replicate_records(a.calibrate, a.strict, cc.warner(PROG)) if a.calibrate else []
        from_runs = calibrate.compute_from_records(reps, workload.name) if reps else None
        if a.samples_per_second:
            compute = compute_cost.from_rate(a.samples_per_second)
        elif a.measure_cpu:
            compute = compute_cost.measure_cpu_batches(workload, a.measure_batches or [4],
                                          threads=compute_cost.checked_threads(a.threads, a.oversubscribe, a.devices))
        elif from_runs is not None:
            compute = from_runs
        else:
            tflops = a.peak_tflops or (fabric.peak_tflops.value if fabric and fabric.peak_tflops else None)
            if tflops is None:
                raise ValueError("no compute speed: give --samples-per-second, --peak-tflops or --measure-cpu "
                                 "(this fabric publishes no device peak)")
            src = "given on the command line" if a.peak_tflops else fabric.peak_tflops.source
            compute = compute_cost.from_peak(workload, tflops, a.mfu, src)
    if a.per_step_ms is not None:
        compute = dataclasses.replace(compute, per_step_s=a.per_step_ms * 1e-3,
                                      per_step_how=f"{a.per_step_ms:g} ms given on the command line (--per-step-ms)")
    skipped = strong_skipped(a.batch, a.devices) if a.strong else {}
    if a.strong and all(len(skipped.get(b, ())) == len(set(a.devices)) for b in a.batch):
        raise cc.UsageError(f"--strong: every global batch ({', '.join(map(str, a.batch))}) is smaller than every "
                            "device count: nothing to show (a device needs at least one sample)")
    grad_bytes = 2 if a.grad_dtype == "bf16" else 4
    terms = step_model.Terms()
    if reps:
        same = network.transport is not None and network.transport in {r.get("transport") for r in reps}
        with cc.usage_errors():
            terms = calibrate.fit_terms(reps, network.allreduce if same else None)
        if not same:
            notes = ["--calibrate: the comm, copies and wake terms stay assumed (1, 0, 0): the network is not a "
                     "fit of the transport the replicate runs used"]
    seq = a.seq or (128 if workload.model_input and workload.model_input.kind == "tokens" else None)
    readiness = calibrate.curve_readiness(workload, grad_bytes, terms, seq)
    band = (interval_from_runs(reps, workload.name, network.allreduce if same else None, compute is from_runs,
                               a.level) if reps else None)
    rows = curve(workload, a.batch, a.devices, compute, network, grad_bytes, a.accum, a.strong, not a.no_overlap,
                 terms, readiness, band[0] if band else None)
    notes = (notes if reps and not same else []) + [
        f"--strong: global batch {b} is smaller than {', '.join(map(str, n))} devices (less than one "
        "sample each): those rows are left out" for b, n in skipped.items()]
    if band:
        notes.append(band[1])
    sys.stdout.write(format_table(rows, workload, network, compute, notes,
                                  calibrate.terms_lines(terms, compute, readiness[1])))
    if json_path:
        with open(json_path, "a", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return 0


def interval_from_runs(reps: Sequence[Dict], model: str, allreduce, compute_from_runs: bool, level: float):
    """(step seconds -> Interval, a note saying what it is built from) for curves calibrated on ``reps``
    (``allreduce``: the network model, None where it is not of the runs' transport): the step model's
    leave-one-model-out errors over them (analysis.held_out.residuals) and, where the compute comes from
    them, the round-to-round noise of the model's alone phases (analysis.intervals)."""
    import statistics

    from analysis import held_out, intervals

    errors, how = held_out.residuals(reps, allreduce)
    if not errors:
        return None
    s_model = intervals.rms(errors)
    noise = [x for x in (intervals.rounds_se(r) for r in reps if r.get("model") == model) if x is not None]
    s_input = statistics.median(noise) if noise and compute_from_runs else 0.0
    iv = intervals.step_interval(1.0, s_model, len(errors), s_input, level)
    note = (f"{level:.0%} interval: the step x [{iv.lo:.3f}, {iv.hi:.3f}] from the {how} (rms {100 * s_model:.1f} %)"
            + (f" and the alone phases' noise ({100 * s_input:.1f} %)" if s_input else "")
            + "; measured at the runs' rank counts, so further out it says less"
            + ("" if compute_from_runs else "; the compute (given, measured apart or assumed) has an error of its "
               "own that is not in it"))
    return (lambda step_s: intervals.step_interval(step_s, s_model, len(errors), s_input, level, how)), note


def _replicate_records(paths, strict: bool, warn) -> List[Dict]:
    from analysis.load import replicate_runs

    recs = [r for r in replicate_runs.records(paths, strict, warn) if replicate_runs.has_efficiency(r)]
    if not any(int(r["nranks"]) > 1 for r in recs):
        raise ValueError(f"--calibrate {' '.join(map(str, paths))}: no collectives.replicate record at 2 ranks or "
                         "more with E(N) (run: mpirun -n 2 python -m collectives.replicate --model M --json RUNS)")
    return recs


def _allreduce_fit(paths, transport, strict: bool = False, warn=None):
    from analysis import fit
    from analysis.load import points

    df = points.load(paths, strict=strict, warn=warn)
    df = df[df["kind"] == "measured"]
    transports = sorted(set(df[df["collective"] == "allreduce"]["transport"]))
    if transport is None:
        if len(transports) != 1:
            raise ValueError(f"allreduce of several transports in the results ({', '.join(transports)}): "
                             "pick one with --transport")
        transport = transports[0]
    fits = [f for f in fit.fit_transport(df, transport) if f.collective == "allreduce"]
    if not fits:
        raise ValueError(f"no allreduce of '{transport}' at 2 ranks or more with two sizes or more in the "
                         "results (one rank moves nothing between ranks)")
    return fits[0]


if __name__ == "__main__":
    raise SystemExit(main())
