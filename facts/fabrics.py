"""Published fabrics as latency-bandwidth models, every figure with its source.

A :class:`Fabric` gives alpha (s per step), beta (bytes/s per device per
direction, for the algorithm its library uses), gamma (s/byte of reduction)
and that algorithm; fabrics that span nodes also give the scale-out link.
Every number is a :class:`Figure` saying whether it is ``measured``, a
``datasheet`` figure, ``derived`` from datasheet figures, or ``assumed``,
and where it comes from (docs/reference.md, "Fabric figures", lists them all).  Anything
computed from a fabric is *modelled* and says so.

Beyond one node (``devices_per_node``) an allreduce is modelled two-level,
as NCCL and HCCL do it: reduce-scatter inside the node, an allreduce of the
1/g shard between nodes (each device over its own share of the scale-out
links), allgather inside the node.

:func:`from_fit` turns a measured fit (analysis.fit.ModelFit) into a
fabric, so a user's own measurements go through the same predictions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional

from facts import costmodel

__all__ = ["Figure", "Fabric", "FABRICS", "get", "names", "from_fit", "SEED_TABLE", "MI250X_LINKS"]


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    kind: str  # measured | datasheet | derived | assumed
    source: str

    def __post_init__(self):
        if self.kind not in ("measured", "datasheet", "derived", "assumed"):
            raise ValueError(f"figure kind {self.kind!r}")

    def text(self, scale: float = 1.0, unit: Optional[str] = None) -> str:
        return f"{self.value * scale:g} {unit or self.unit} ({self.kind}: {self.source})"


@dataclass(frozen=True)
class Link:
    alpha: Figure
    beta: Figure
    algorithm: str


@dataclass(frozen=True)
class Fabric:
    name: str
    title: str
    up: Link  # inside the node / pod / scale-up domain
    gamma: Figure
    devices_per_node: Optional[int] = None  # None: one flat fabric at any scale
    out: Optional[Link] = None  # between nodes
    peak_tflops: Optional[Figure] = None  # device compute, for scaling models
    notes: str = ""
    algorithms: Dict[str, str] = field(default_factory=dict)  # collective -> algorithm, besides allreduce

    kind = "modelled"

    def _algo(self, collective: str, link: Link) -> str:
        if collective == "allreduce":
            return link.algorithm
        return self.algorithms.get(collective, costmodel.DEFAULT[collective])

    def collective_time(self, collective: str, n: float, p: int) -> float:
        """Modelled seconds for ``collective`` of n bytes (S) on p devices."""
        if p <= 1:
            return 0.0
        g = self.devices_per_node
        if collective == "allreduce" and g and self.out and p > g:
            return self._hierarchical_allreduce(n, p)
        link = self.up if (not g or p <= g or not self.out) else self.out
        algo = self._algo(collective, link)
        if algo not in costmodel.ALGORITHMS[collective]:
            algo = costmodel.DEFAULT[collective]
        return costmodel.time(collective, algo, n, p, link.alpha.value, link.beta.value, self.gamma.value)

    def _hierarchical_allreduce(self, n: float, p: int) -> float:
        g = self.devices_per_node
        nodes = math.ceil(p / g)
        up, out, gamma = self.up, self.out, self.gamma.value
        rs_algo = up.algorithm if up.algorithm in costmodel.ALGORITHMS["reduce_scatter"] else "ring"
        ag_algo = up.algorithm if up.algorithm in costmodel.ALGORITHMS["allgather"] else "ring"
        inside = (costmodel.time("reduce_scatter", rs_algo, n, g, up.alpha.value, up.beta.value, gamma)
                  + costmodel.time("allgather", ag_algo, n, g, up.alpha.value, up.beta.value))
        between = costmodel.time("allreduce", out.algorithm, n / g, nodes, out.alpha.value, out.beta.value,
                                 gamma)
        return inside + between

    def allreduce_time(self, n: float, p: int) -> float:
        return self.collective_time("allreduce", n, p)

    def figures(self) -> List[str]:
        """Every figure of this fabric with kind and source (for headers and reports)."""
        lines = [f"alpha {self.up.alpha.text(1e6, 'us')}",
                 f"beta {self.up.beta.text(1e-9, 'GB/s')}, algorithm {self.up.algorithm}",
                 f"gamma {self.gamma.text(1e9, 'ns/B')}"]
        if self.devices_per_node:
            lines.append(f"{self.devices_per_node} devices per node")
        if self.out:
            lines.append(f"between nodes: alpha {self.out.alpha.text(1e6, 'us')}, "
                         f"beta {self.out.beta.text(1e-9, 'GB/s')}, algorithm {self.out.algorithm}")
        if self.peak_tflops:
            lines.append(f"peak {self.peak_tflops.text()}")
        return lines


def _a(us: float, kind: str, source: str) -> Figure:
    return Figure(us * 1e-6, "s", kind, source)


def _b(gbs: float, kind: str, source: str) -> Figure:
    return Figure(gbs * 1e9, "B/s", kind, source)


_NO_GAMMA = Figure(0.0, "s/B", "assumed",
                   "device reductions run at memory speed, far above link speed: taken as free")
_ASSUMED_NVLINK_ALPHA = _a(1.0, "assumed", "NVLink ~1 us per step, not published (docs/reference.md)")
_ASSUMED_100G_ALPHA = _a(7.5, "assumed", "100 GbE class 5-10 us per step, not published (docs/reference.md)")
_ASSUMED_IF_ALPHA = _a(1.0, "assumed", "direct GPU-GPU Infinity Fabric links, taken as NVLink-class (~1 us per step; "
                       "not published)")

# AMD Instinct: figure, kind, source (the same list is in docs/reference.md, "Fabric figures").
#
# - MI250X Infinity Fabric link: 25 GT/s x 16 bits = 50 GB/s per direction. Datasheet: ROCm docs,
#   "AMD Instinct MI250 microarchitecture".
# - MI250X node (HPE Cray EX235a): 4 MI250X = 8 GCDs; the 2 GCDs of one package share 4 links,
#   200 GB/s; GCDs of different packages have 1 or 2 links, 50-100 GB/s. Datasheet: OLCF Frontier
#   User Guide, node diagram.
# - MI250X scale-out: one 200 Gb/s Slingshot-11 NIC per package (25 GB/s, 12.5 GB/s per GCD).
#   Assumed: the EX235a layout of Frontier and LUMI-G, not confirmed in a source read here.
# - MI250X peak: 383 TFLOP/s FP16/BF16 per package (191.5 per GCD). Datasheet: AMD's MI200 launch
#   (AnandTech, 2021-11-08).
# - MI300X Infinity Fabric: 7 links per GPU, 128 GB/s per link in both directions (64 GB/s per
#   direction), 896 GB/s in all; 8 OAMs fully connected. Datasheet: AMD Instinct MI300X data sheet.
# - MI300X scale-out: one 400 Gb/s NIC per GPU (50 GB/s). Assumed: the 1:1 GPU-NIC layout of AMD's
#   MI300 Series cluster reference architecture.
# - MI300X peak: 1307.4 TFLOP/s dense FP16/BF16. Datasheet: AMD Instinct MI300X data sheet.
# - MI300X RCCL: all_reduce_perf 8 MiB on 8 GPUs, 161.14 GB/s busbw out of place. Measured:
#   rccl-tests output in crickett-hpe/hpc-ai-envs pull request #30 (2025).
#
# MI250X's links are uneven: which GCDs a job gets decides its bandwidth (2 GCDs of one package:
# 200 GB/s; across packages 50 or 100 GB/s), and a flat model cannot show that; MI250X_LINKS names
# the classes.
MI250X_LINKS = {
    "same package (GCD pair)": (4, 200.0),
    "different packages, dual link": (2, 100.0),
    "different packages, single link": (1, 50.0),
}  # class -> (Infinity Fabric links, GB/s per direction); OLCF Frontier User Guide node diagram

FABRICS: Dict[str, Fabric] = {f.name: f for f in (
    Fabric(
        "nvlink3", "NVIDIA A100, NVLink3 + NVSwitch, NCCL ring (DGX A100)",
        Link(_ASSUMED_NVLINK_ALPHA,
             _b(216.6, "derived", "fitted so the model gives the 120.7 GB/s algbw ALCF measured for NCCL allreduce "
                "of 64 MiB on 8 DGX-A100 GPUs (argonne-lcf/AIAccelerators-AE allreduce_results.csv) with alpha "
                "1 us; the same model gives 142.6 and 215 GB/s against the measured 140.5 and 188.0 on 4 and 2 "
                "GPUs; nccl-tests #149: ~230 GB/s busbw"),
             "ring"),
        _NO_GAMMA, devices_per_node=8,
        out=Link(_a(5.0, "assumed", "InfiniBand HDR latency class (not published for this system)"),
                 _b(25.0, "datasheet", "DGX A100: one 200 Gb/s HDR InfiniBand NIC per GPU"), "ring"),
        peak_tflops=Figure(312.0, "TFLOP/s", "datasheet", "NVIDIA A100 SXM: 312 TFLOP/s dense FP16/BF16"),
        notes="line rate 12 links x 25 GB/s = 300 GB/s per direction (nccl-tests #149)",
        algorithms={"reduce_scatter": "ring", "allgather": "ring", "broadcast": "pipelined_ring",
                    "reduce": "ring"},
    ),
    Fabric(
        "nvlink4", "NVIDIA H100, NVLink4 + NVSwitch, NCCL ring (DGX H100)",
        Link(_ASSUMED_NVLINK_ALPHA,
             _b(370.0, "measured", "NCCL allreduce busbw ~370 GB/s with the ring algorithm (nccl-tests #212)"),
             "ring"),
        _NO_GAMMA, devices_per_node=8,
        out=Link(_a(5.0, "assumed", "InfiniBand NDR latency class (not published for this system)"),
                 _b(50.0, "datasheet", "DGX H100: one 400 Gb/s NDR InfiniBand NIC per GPU"), "ring"),
        peak_tflops=Figure(989.0, "TFLOP/s", "datasheet", "NVIDIA H100 SXM: 989 TFLOP/s dense BF16"),
        notes="line rate 450 GB/s per direction; ~480 GB/s busbw with NVLink SHARP (NVIDIA/nccl #2140)",
        algorithms={"reduce_scatter": "ring", "allgather": "ring", "broadcast": "pipelined_ring",
                    "reduce": "ring"},
    ),
    Fabric(
        "gaudi1-roce", "Habana Gaudi1 HLS-1, on-chip RoCE v2 all-to-all, HCCL",
        Link(_ASSUMED_100G_ALPHA,
             _b(12.5, "datasheet", "docs.habana.ai Distributed Training Overview: 7 of 10 100 GbE ports, one "
                "per peer, all-to-all inside the HLS-1 (87.5 GB/s per direction in all)"),
             "mesh"),
        _NO_GAMMA, devices_per_node=8,
        out=Link(_a(10.0, "assumed", "100 GbE scale-out through a switch (not published)"),
                 _b(37.5, "datasheet", "docs.habana.ai: 3 x 100 GbE scale-out ports per Gaudi1"), "ring"),
        algorithms={"reduce_scatter": "mesh", "allgather": "mesh", "broadcast": "mesh", "alltoall": "mesh"},
    ),
    Fabric(
        "gaudi2-roce", "Intel Gaudi2 HLS-2, on-chip RoCE v2 all-to-all, HCCL",
        Link(_ASSUMED_100G_ALPHA,
             _b(37.5 * 0.977, "derived", "docs.habana.ai Network Configuration: 21 scale-up 100 GbE ports, 3 "
                "per peer = 37.5 GB/s, times the 97.7 % HCCL reaches on Gaudi3 (512.96 of 525 GB/s, "
                "docs.habana.ai 'Pick Good Nodes')"),
             "mesh"),
        _NO_GAMMA, devices_per_node=8,
        out=Link(_a(10.0, "assumed", "100 GbE scale-out through a switch (not published)"),
                 _b(37.5, "datasheet", "docs.habana.ai: 3 x 100 GbE scale-out ports per Gaudi2"), "ring"),
        algorithms={"reduce_scatter": "mesh", "allgather": "mesh", "broadcast": "mesh", "alltoall": "mesh"},
    ),
    Fabric(
        "ipu-link", "Graphcore GC200 IPU-Link (IPU-POD64 2D torus), GCL ring",
        Link(_a(1.0, "assumed", "on-board serial links, NVLink-class latency (not published)"),
             _b(32.0, "derived", "IPU-M2000/POD64 datasheets: 10 IPU-Links, 320 GB/s per IPU (16 GB/s per "
                "link per direction); a ring per torus dimension uses 2 links per direction (assumed)"),
             "ring"),
        _NO_GAMMA, devices_per_node=64,
        out=Link(_a(10.0, "assumed", "GW-Link 100 GbE (not published)"),
                 _b(6.25, "derived", "Bow-2000 datasheet §2.3: 2 GW-Links (100 GbE) per 4 IPUs"), "ring"),
        peak_tflops=Figure(250.0, "TFLOP/s", "datasheet", "IPU-M2000: 1 PFLOP/s FP16.16 for 4 GC200 IPUs"),
        notes="Bow-2000: 8 IPU-Link ports = 2 Tbps bidirectional",
    ),
    Fabric(
        "gw-link", "Graphcore GW-Link, 100 GbE between IPU-PODs",
        Link(_a(10.0, "assumed", "100 GbE class (not published)"),
             _b(6.25, "derived", "Bow-2000 datasheet §2.3: 2 x 100 GbE GW-Links per 4 IPUs"), "ring"),
        _NO_GAMMA,
    ),
    Fabric(
        "groq-realscale", "Groq RealScale chip-to-chip links (GroqNode)",
        Link(_a(1.0, "assumed", "direct chip-to-chip links (not published)"),
             _b(14.0, "datasheet", "Linley Newsletter 2020-11-10: 16 C2C links x 4 lanes x 30 Gbps = "
                "~14 GB/s per link per direction; 8 chips per node all-to-all (assumed)"),
             "mesh"),
        _NO_GAMMA, devices_per_node=8,
        out=Link(_a(2.0, "assumed", "C2C links between nodes (not published)"),
                 _b(14.0, "assumed", "one C2C link per chip between nodes (topology not published)"), "ring"),
        notes="no public collective API: modelled only",
        algorithms={"reduce_scatter": "mesh", "allgather": "mesh", "broadcast": "mesh", "alltoall": "mesh"},
    ),
    Fabric(
        "cerebras-swarmx", "Cerebras CS-2 cluster, MemoryX + SwarmX broadcast/reduce tree",
        Link(_ASSUMED_100G_ALPHA,
             _b(150.0, "datasheet", "cerebras.net SwarmX: 1.2 Tb/s I/O per CS-2 (12 x 100 GbE)"),
             "pipelined_tree"),
        _NO_GAMMA,
        notes="weight streaming: gradients reduced up and weights broadcast down the SwarmX tree, latency "
              "growing with log N (docs.cerebras.net); no public collective API: modelled only",
    ),
    Fabric(
        "mi250x-if", "AMD Instinct MI250X, 8 GCDs (4 packages) on Infinity Fabric, RCCL ring (HPE Cray EX235a)",
        Link(_ASSUMED_IF_ALPHA,
             _b(100.0, "derived", "a ring over the 8 GCDs alternates in-package hops (4 links, 200 GB/s) with "
                "cross-package hops, whose 2 links (100 GB/s) set its rate when RCCL's ring uses the dual links "
                "(OLCF Frontier User Guide: 200 GB/s within an MI250X, 50-100 GB/s between GCDs of different "
                "MI250X; 50 GB/s per link, ROCm MI250 microarchitecture); 50 GB/s where a hop has one link"),
             "ring"),
        _NO_GAMMA, devices_per_node=8,
        out=Link(_a(5.0, "assumed", "HPE Slingshot-11 latency class (not published for this system)"),
                 _b(12.5, "assumed", "one 200 Gb/s Slingshot-11 NIC per MI250X package (EX235a, as Frontier and "
                    "LUMI-G), shared by its 2 GCDs"), "ring"),
        peak_tflops=Figure(191.5, "TFLOP/s", "derived", "AMD MI250X: 383 TFLOP/s FP16/BF16 per package (AMD MI200 "
                           "launch, AnandTech 2021-11-08), 2 GCDs per package"),
        notes="node topology (EX235a, OLCF Frontier node diagram): the 2 GCDs of one MI250X share 4 links "
              "(200 GB/s per direction); GCDs on different MI250X have 1 or 2 links (50 or 100 GB/s): uneven, so "
              "which GCDs a job gets decides its bandwidth; a 2-GCD job inside one package sees 200 GB/s, which "
              "this flat model does not; torch's nccl backend on ROCm is RCCL",
        algorithms={"reduce_scatter": "ring", "allgather": "ring", "broadcast": "pipelined_ring",
                    "reduce": "ring"},
    ),
    Fabric(
        "mi300x-if", "AMD Instinct MI300X, 8 GPUs fully connected by Infinity Fabric, RCCL",
        Link(_ASSUMED_IF_ALPHA,
             _b(64.0, "datasheet", "AMD Instinct MI300X data sheet: 7 Infinity Fabric links per GPU, 128 GB/s per "
                "link in both directions (896 GB/s aggregate), one link to each of the 7 peers: 64 GB/s per "
                "direction per peer"),
             "mesh"),
        _NO_GAMMA, devices_per_node=8,
        out=Link(_a(5.0, "assumed", "400 Gb/s RDMA NIC latency class (not published)"),
                 _b(50.0, "assumed", "one 400 Gb/s NIC per GPU, the 1:1 GPU-NIC layout of AMD's MI300 Series "
                    "cluster reference architecture"), "ring"),
        peak_tflops=Figure(1307.4, "TFLOP/s", "datasheet", "AMD Instinct MI300X data sheet: 1307.4 TFLOP/s dense "
                           "FP16/BF16"),
        notes="node topology: 8 OAMs, each GPU one Infinity Fabric link to every other (a full mesh, like a Gaudi "
              "node); rccl-tests all_reduce_perf 8 MiB on 8 GPUs measured 161.14 GB/s busbw (crickett-hpe/"
              "hpc-ai-envs PR #30); torch's nccl backend on ROCm is RCCL",
        algorithms={"reduce_scatter": "mesh", "allgather": "mesh", "broadcast": "mesh", "alltoall": "mesh"},
    ),
    Fabric(
        "eth-100g", "100 Gb/s Ethernet, one NIC per device, ring",
        Link(_ASSUMED_100G_ALPHA, _b(12.5, "datasheet", "100 Gb/s line rate = 12.5 GB/s per direction"),
             "ring"),
        Figure(0.05e-9, "s/B", "assumed", "CPU reduction at ~20 GB/s"),
    ),
    Fabric(
        "eth-10g", "10 Gb/s Ethernet, one NIC per device, ring",
        Link(_a(25.0, "assumed", "10 GbE TCP stack latency (not published)"),
             _b(1.25, "datasheet", "10 Gb/s line rate = 1.25 GB/s per direction"), "ring"),
        Figure(0.05e-9, "s/B", "assumed", "CPU reduction at ~20 GB/s"),
    ),
)}

# The seed study's UNet-2D table (Emani et al., PMBS@SC22, and the ALCF AI Testbed talk at ATPESC 2023;
# docs/reference.md, "The seed study's UNet-2D table"): 8 devices, efficiency definition not public.
SEED_TABLE = {
    "A100": {"32": 0.188, "256": 0.52, "fabric": "nvlink3"},
    "SN10 RDU": {"32": 0.42, "256": 0.28, "fabric": None},
    "GC200 IPU": {"32": 0.795, "256": 0.796, "fabric": "ipu-link"},
}


def names() -> List[str]:
    return list(FABRICS)


def get(name: str) -> Fabric:
    try:
        return FABRICS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown fabric '{name}' (known: {', '.join(FABRICS)}; or a measured fit)") from None


def from_fit(fit, name: Optional[str] = None) -> Fabric:
    """A fabric from a measured :class:`analysis.fit.ModelFit` (flat: the fit is all we know)."""
    src = f"fit of {fit.transport} {fit.collective} at p={list(fit.ranks)}, median error " \
          f"{fit.median_rel_err * 100:.1f} %"
    link = Link(Figure(fit.alpha, "s", "measured", src), Figure(fit.beta, "B/s", "measured", src),
                fit.algorithm if fit.collective == "allreduce" else costmodel.DEFAULT["allreduce"])
    gamma = Figure(fit.gamma or 0.0, "s/B", "measured" if fit.gamma is not None else "assumed",
                   src if fit.gamma is not None else "folded into beta by the fit")
    return Fabric(name or f"fit:{fit.transport}", f"measured {fit.transport} ({fit.algorithm})", link, gamma,
                  notes="from the measurements given (runs here or imported logs); beyond the measured rank counts "
                        "it extrapolates")


def with_peak(fabric: Fabric, tflops: float, source: str = "given on the command line") -> Fabric:
    return replace(fabric, peak_tflops=Figure(tflops, "TFLOP/s", "assumed", source))
