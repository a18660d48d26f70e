""""Is my number good?": a measured busbw as a percentage of a fabric's model, and a fabric guessed from a log.

For a measured row (collective, S bytes, p ranks, busbw) and a fabric of
:mod:`facts.fabrics`:

* ``model_busbw_gbs``: the busbw the fabric's model predicts for the same
  call, t = :meth:`~facts.fabrics.Fabric.collective_time` (n = S, p),
  algbw = S / t, busbw = algbw x the busbw factor of ``facts.spec``
  (nccl-tests' definitions, so it is read like the measured busbw);
* ``pct_model`` = 100 x measured busbw / model busbw;
* ``link_peak_gbs``: the same model with every latency alpha set to 0, i.e.
  the busbw the fabric's links allow at this rank count once messages are
  large (for a ring allreduce this is beta itself: t = 2(p-1)/p S/beta and
  busbw = S/t x 2(p-1)/p = beta; beyond one node, the two-level model's
  bandwidth terms), and ``pct_link_peak`` the measured busbw as a share of it;
* ``assumed_latency_share``: the part of the model's time that comes from
  latencies the fabric marks *assumed* (vendors publish no alpha; see each
  :class:`~facts.fabrics.Figure`).  When it is :data:`LATENCY_SHARE` or
  more, the percentage rests on an assumption and :meth:`Share.label` says
  so ("(assumed latency)").

A series (one transport, collective and rank count) is summed up at its
headline point, the size where its busbw peaks (:func:`headline`); below
:data:`BELOW_HALF` of its model it is "below half of its model".

:func:`guess` picks a fabric for another tool's log from the GPU model it
names (``gpu``) and its host count: A100 -> ``nvlink3``, H100/H200 ->
``nvlink4``, MI250X -> ``mi250x-if``, MI300X -> ``mi300x-if``, Gaudi2 ->
``gaudi2-roce``, Gaudi -> ``gaudi1-roce``; a PCIe card (no NVLink switch) or
any other device gets no guess.  With several hosts the guessed model is
given the log's ranks per host as its devices per node (Polaris nodes hold 4
A100s where a DGX holds 8), so that the two-level model crosses nodes where
the job did.  A guess is only made when asked (``--fabric auto``) and is
always printed.

Pure: no MPI, no plotting, no pandas; the results frame is annotated by
:mod:`analysis.model_share`.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, replace
from typing import Optional, Sequence, Tuple

from facts import costmodel, fabrics
from facts import spec as specs

__all__ = ["Share", "share", "Guess", "guess", "Choice", "choose", "headline", "verdict", "finite", "check_arg",
           "fabric_arg", "add_fabric_flag", "LATENCY_SHARE", "BELOW_HALF", "AUTO", "COLUMNS", "FOOTNOTE"]

LATENCY_SHARE = 0.10  # an assumed alpha this large a part of the model's time: the percentage is labelled
BELOW_HALF = 50.0
AUTO = "auto"
COLUMNS = ("fabric", "model_busbw_gbs", "pct_model", "link_peak_gbs", "pct_link_peak", "model_latency_assumed")
_ZERO = fabrics.Figure(0.0, "s", "assumed", "latency left out: the link peak")


@dataclass(frozen=True)
class Share:
    """One measured busbw beside a fabric's model of the same call (GB/s are 1e9 bytes/s)."""

    fabric: str
    busbw_gbs: float
    model_busbw_gbs: float
    link_peak_gbs: float
    assumed_latency_share: float  # 0..1 of the model's time that rests on assumed alphas

    @property
    def pct_model(self) -> float:
        return 100.0 * self.busbw_gbs / self.model_busbw_gbs

    @property
    def pct_link_peak(self) -> float:
        return 100.0 * self.busbw_gbs / self.link_peak_gbs

    @property
    def latency_assumed(self) -> bool:
        """The model at this size rests on an assumed latency (see :data:`LATENCY_SHARE`)."""
        return self.assumed_latency_share >= LATENCY_SHARE

    def label(self, pct: Optional[float] = None) -> str:
        """``38.2 %``, or ``3.1 % (assumed latency)`` where the model rests on an assumed alpha."""
        value = self.pct_model if pct is None else pct
        return f"{value:.1f} %" + (" (assumed latency)" if self.latency_assumed else "")


def _modelable(collective: str, size_bytes, nranks) -> Optional[specs.CollectiveSpec]:
    spec = specs.find(collective) if isinstance(collective, str) else None
    if spec is None or not spec.sized or collective not in costmodel.ALGORITHMS:
        return None
    if not finite(size_bytes) or not finite(nranks) or size_bytes <= 0 or nranks < 2:
        return None
    if spec.exact_ranks is not None and int(nranks) != spec.exact_ranks:
        return None
    return spec


def finite(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _without_alpha(fabric: fabrics.Fabric, which: Sequence[str]) -> fabrics.Fabric:
    """The fabric with the alpha of the links named in ``which`` ("up", "out") set to 0."""
    changes = {}
    for name in which:
        link = getattr(fabric, name)
        if link is not None:
            changes[name] = replace(link, alpha=_ZERO)
    return replace(fabric, **changes)


def share(fabric: fabrics.Fabric, collective: str, size_bytes, nranks, busbw_gbs) -> Optional[Share]:
    """``busbw_gbs`` measured for ``collective`` of S = ``size_bytes`` on ``nranks`` beside ``fabric``'s
    model; None where there is nothing to compare (one rank, no size, no cost model for the collective,
    no measured busbw)."""
    spec = _modelable(collective, size_bytes, nranks)
    if spec is None or not finite(busbw_gbs) or busbw_gbs < 0:
        return None
    n, p = float(size_bytes), int(nranks)
    factor = spec.busbw_factor(p)
    t = fabric.collective_time(collective, n, p)
    links = ("up", "out")
    t_peak = _without_alpha(fabric, links).collective_time(collective, n, p)
    if not (t > 0 and t_peak > 0 and factor > 0):
        return None
    assumed = [name for name in links
               if getattr(fabric, name) is not None and getattr(fabric, name).alpha.kind == "assumed"]
    t_known = _without_alpha(fabric, assumed).collective_time(collective, n, p) if assumed else t
    return Share(fabric.name, float(busbw_gbs), n / t / 1e9 * factor, n / t_peak / 1e9 * factor,
                 max(0.0, 1.0 - t_known / t))


def verdict(s: Optional[Share]) -> str:
    """What a series' headline share says in words ('' when unremarkable)."""
    if s is None:
        return ""
    if s.pct_model < BELOW_HALF:
        return "below half"
    if s.pct_model > 100.0:
        return "above model"
    return ""


# -- which fabric: named, given, or guessed --------------------------------------------------

@dataclass(frozen=True)
class Guess:
    """A fabric guessed for a log (None: no guess) and why, in words."""

    fabric: Optional[fabrics.Fabric]
    why: str


_GPUS = (  # (pattern in the GPU model a log prints, fabric, what the fabric assumes)
    (r"PCIE", None, "a PCIe card: no NVLink/Infinity Fabric switch model"),
    (r"\bA100\b", "nvlink3", "A100 SXM: NVLink3 + NVSwitch"),
    (r"\bH(100|200)\b", "nvlink4", "H100/H200 SXM: NVLink4 + NVSwitch"),
    (r"MI250", "mi250x-if", "MI250X: Infinity Fabric"),
    (r"MI300X", "mi300x-if", "MI300X: Infinity Fabric"),
    (r"GAUDI ?2|HL-225", "gaudi2-roce", "Gaudi2: on-chip RoCE"),
    (r"GAUDI|HL-205", "gaudi1-roce", "Gaudi: on-chip RoCE"),
)


def _whole(v) -> Optional[int]:
    return int(v) if finite(v) and v >= 1 else None


def guess(gpu: Optional[str], nhosts=None, ranks_per_host=None, nranks=None) -> Guess:
    """A fabric for a log that names ``gpu`` and ran on ``nhosts`` hosts of ``ranks_per_host`` ranks."""
    if not isinstance(gpu, str) or not gpu.strip():
        return Guess(None, "no guess: the log names no GPU model")
    name, what = None, None
    for pattern, fabric_name, text in _GPUS:
        if re.search(pattern, gpu.upper()):
            name, what = fabric_name, text
            break
    if name is None:
        return Guess(None, f"no guess for {gpu}" + (f" ({what})" if what else ": no fabric model of it"))
    fab = fabrics.get(name)
    hosts, per_host, p = _whole(nhosts), _whole(ranks_per_host), _whole(nranks)
    g = fab.devices_per_node
    why = f"{name} from {gpu} ({what})"
    if hosts is None:
        return Guess(fab, why + f"; the log gives no host count: {g} devices per node assumed" if g else why)
    if hosts == 1:
        if g and p and p > g:  # one host holds them all: no hop between nodes
            fab = replace(fab, devices_per_node=p)
        return Guess(fab, why + ", 1 host")
    if g and per_host and per_host != g:
        fab = replace(fab, devices_per_node=per_host)
        between = f"; between nodes {fab.out.beta.value / 1e9:g} GB/s per device, as {name}'s model has it" \
            if fab.out else ""
        return Guess(fab, why + f", {hosts} hosts x {per_host} ranks: the model's node is {per_host} devices "
                     f"(not {g}){between}")
    return Guess(fab, why + f", {hosts} hosts")


@dataclass(frozen=True)
class Choice:
    """The fabric a series is compared with: ``how`` is named (by its records), given (``--fabric``)
    or guessed (``--fabric auto``, ``why`` says from what)."""

    fabric: fabrics.Fabric
    how: str
    why: str = ""


def choose(named: Optional[str], arg: Optional[str], gpu=None, nhosts=None, ranks_per_host=None,
           nranks=None) -> Tuple[Optional[Choice], str]:
    """(the choice or None, a note for the user: '' unless a guess was made or failed).

    A record that names a fabric (measured with ``--fabric``) keeps it; else ``arg``: a fabric's
    name, or ``auto`` (a guess from ``gpu`` and the host count)."""
    if isinstance(named, str) and named.lower() in fabrics.FABRICS:
        return Choice(fabrics.get(named), "named"), ""
    if not arg:
        return None, ""
    if arg.lower() != AUTO:
        return Choice(fabrics.get(arg), "given"), ""
    g = guess(gpu, nhosts, ranks_per_host, nranks)
    return (Choice(g.fabric, "guessed", g.why) if g.fabric is not None else None), g.why


def check_arg(arg: Optional[str]) -> Optional[str]:
    """``arg`` if it is a fabric's name or ``auto``, else ValueError listing the names."""
    if arg is None or arg.lower() == AUTO:
        return arg
    if arg.lower() not in fabrics.FABRICS:
        raise ValueError(f"unknown fabric '{arg}': give one of {', '.join(fabrics.names())}, or auto")
    return arg.lower()


def headline(sizes: Sequence[float], busbw: Sequence[float]) -> Optional[int]:
    """The index of the headline point of a series: its highest busbw (the largest size on a tie)."""
    best = None
    for i, (n, b) in enumerate(zip(sizes, busbw)):
        if finite(b) and (best is None or (b, n) >= (busbw[best], sizes[best])):
            best = i
    return best



# -- command lines -----------------------------------------------------------------------------

FOOTNOTE = ("# %model: busbw as a % of the fabric's model at this size and rank count (* where that model rests "
            "on an assumed latency, alpha: a rough guide only); %peak: of its link peak, the model without latency")


def fabric_arg(text: str) -> str:
    """argparse type of ``--fabric``: a fabric's name or ``auto``."""
    import argparse

    try:
        return check_arg(str(text).strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_fabric_flag(parser) -> None:
    parser.add_argument("--fabric", type=fabric_arg, metavar="NAME|auto",
                        help="compare every measured row's busbw with this fabric's model at its size and rank "
                        f"count ({', '.join(fabrics.names())}); auto: guess one from the GPU model and host "
                        "count a log names, and say the guess (records measured with --fabric keep theirs)")
