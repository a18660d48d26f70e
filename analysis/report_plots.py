"""The report's PNG plots (see :mod:`analysis.report`): what can be drawn is drawn, the rest is said.

Every axis is logarithmic, so a value of 0 cannot be drawn: a run at one
rank has a bus bandwidth of 0 (busbw = algbw x 2(n-1)/n for allreduce; one
rank moves nothing between ranks).  Such series are left out of the plot and
:func:`draw` returns a note saying so for the report; a plot with nothing
left to draw is not written at all.

A record's collective names its plots' files and transports their legends:
both go through :mod:`analysis.sanitise` (``busbw_../../x.png`` is
``busbw__x-<hash>.png``, inside the report's directory; a ``$`` is no
mathematics), and a glyph the font lacks is drawn as a box without a warning.
"""

from __future__ import annotations

import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from analysis import fit
from facts import costmodel, fabrics, workloads
from analysis.sanitise import file_part, label as _label
from ground.sizes import human_size
from facts import spec as specs

__all__ = ["draw", "draw_collectives", "draw_scaling", "short_compute", "REPORT_FABRICS", "PLOTTED"]

REPORT_FABRICS = ("nvlink3", "nvlink4", "gaudi2-roce", "ipu-link", "cerebras-swarmx", "eth-100g")
_METRICS = (("busbw_gbs", "bus bandwidth (GB/s)", "busbw"), ("time_us", "time per call (us)", "time"))


def draw(df, scaling_rows: Dict[str, List[Dict]], outdir: Path) -> Tuple[List[Path], List[str]]:
    """Write the plots into ``outdir``; returns their paths and notes on what was left out."""
    made, notes = draw_collectives(df, outdir)
    return made + draw_scaling(scaling_rows, outdir), notes


def draw_collectives(df, outdir: Path) -> Tuple[List[Path], List[str]]:
    """Each collective's bus bandwidth and time plots (measured series, their fits, MODELLED fabrics)."""
    made: List[Path] = []
    notes: List[str] = []
    with _pyplot() as plt:
        meas = df[df["kind"] == "measured"]
        modelled = df[df["kind"] == "modelled"]
        for collective in sorted(set(meas["collective"])):
            sub = meas[(meas["collective"] == collective) & (meas["size_bytes"] > 0)]
            if sub.empty:
                continue
            extra = modelled[modelled["collective"] == collective]
            for metric, ylabel, stem in _METRICS:
                path = _collective_plot(plt, sub, extra, collective, metric, ylabel,
                                        outdir / f"{stem}_{file_part(collective)}.png", notes)
                if path is not None:
                    made.append(path)
    return made, notes


def draw_scaling(scaling_rows: Dict[str, List[Dict]], outdir: Path) -> List[Path]:
    """The MODELLED scaling-efficiency plot of each workload with rows."""
    with _pyplot() as plt:
        return [_scaling_plot(plt, model, rows, outdir / f"scaling_{file_part(model)}.png")
                for model, rows in scaling_rows.items() if rows]


PLOTTED = ("kind", "collective", "transport") + fit.ROW_COLUMNS  # the columns draw_collectives reads


@contextmanager
def _pyplot():
    """matplotlib's pyplot (drawing to files), a glyph the font lacks drawn as a box without a warning."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")  # a transport named in emoji
        yield plt


def _positive(g, metric: str):
    return g[np.isfinite(g[metric]) & (g[metric] > 0)]


def _collective_plot(plt, sub, extra, collective: str, metric: str, ylabel: str, path: Path,
                     notes: List[str]) -> Optional[Path]:
    fig, ax = plt.subplots(figsize=(11, 5.5))
    try:
        model_colors = iter(plt.get_cmap("Dark2")(np.linspace(0, 1, 8)))
        drawn, zero = 0, []
        for (transport, p), g in fit.columns(sub, "transport", metric).groupby(["transport", "nranks"]):
            g = _positive(fit.fit_rows(g, min_ranks=1).groupby("size_bytes", as_index=False)[metric].median(), metric)
            if g.empty:
                zero.append((transport, int(p)))
                continue
            drawn += 1
            line, = ax.plot(g["size_bytes"], g[metric], "o-", ms=4, lw=1.5,
                            label=_label(f"measured: {transport}, {int(p)} rank{'s' if p != 1 else ''}"))
            if metric == "time_us" and len(g) >= 2:
                f = fit.fit_segmented(g["size_bytes"], g["time_us"] * 1e-6)
                xs = np.logspace(np.log10(g["size_bytes"].min()), np.log10(g["size_bytes"].max()), 90)
                top = f.segments[-1].fit
                ax.plot(xs, f.predict(xs) * 1e6, ":", color=line.get_color(), lw=1.2,
                        label=f"fit ({len(f.segments)} regime{'s' if len(f.segments) > 1 else ''}), "
                              f"largest: {top.latency_s * 1e6:.1f} us + n / {top.bandwidth / 1e9:.2f} GB/s")
        if zero:
            which = ", ".join(f"{t} at {p} rank{'s' if p != 1 else ''}" for t, p in zero)
            why = " (one rank moves nothing between ranks)" if any(p == 1 for _, p in zero) else ""
            what = ylabel.split(" (")[0]
            notes.append(f"{path.name}: {'left out' if drawn else 'not drawn'}: {which}: no {what} above 0{why}, "
                         "which a log scale cannot show.")
        if not drawn:
            return None
        pmax = int(sub["nranks"].max())
        spec = specs.find(collective)
        if pmax >= 2 and collective in costmodel.ALGORITHMS and spec is not None and spec.sized \
                and not spec.peer_to_peer:
            xs = np.logspace(np.log10(max(8, sub["size_bytes"].min())), np.log10(sub["size_bytes"].max()), 40)
            for name in REPORT_FABRICS:
                fab = fabrics.get(name)
                ts = np.array([fab.collective_time(collective, x, pmax) for x in xs])
                ys = ts * 1e6 if metric == "time_us" else xs / ts / 1e9 * spec.busbw_factor(pmax)
                ax.plot(xs, ys, "--", lw=1.3, alpha=0.75, color=next(model_colors),
                        label=f"MODELLED: {name}, {pmax} devices")
        for (transport, p), g in extra.groupby(["transport", "nranks"]):
            g = _positive(g, metric)
            if not g.empty:
                ax.plot(g["size_bytes"], g[metric], "-.", lw=1.3, color=next(model_colors, "grey"),
                        label=_label(f"MODELLED (from file): {transport}, {int(p)}"))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        _size_ticks(ax, sub["size_bytes"].min(), sub["size_bytes"].max())
        ax.set_xlabel("size S")
        ax.set_ylabel(ylabel)
        ax.set_title(_label(f"{collective}: measured (solid, markers) and MODELLED fabrics (dashed)"))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        return path
    finally:
        plt.close(fig)


def _size_ticks(ax, lo: float, hi: float) -> None:
    """Powers of two from ``lo`` to ``hi`` labelled as people read sizes (8 B, 64 KiB, 1 GiB), at most 10."""
    from matplotlib.ticker import NullLocator

    a, b = int(np.floor(np.log2(max(lo, 1)))), int(np.ceil(np.log2(max(hi, 1))))
    step = max(1, -(-(b - a) // 9))
    ticks = [2.0 ** k for k in range(a - a % step, b + 1, step)]
    ax.set_xticks(ticks)
    ax.set_xticklabels([human_size(t) for t in ticks], fontsize=8)
    ax.xaxis.set_minor_locator(NullLocator())


def _scaling_plot(plt, model: str, rows: List[Dict], path: Path) -> Path:
    w = workloads.get(model)
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(5.2 * len(batches) + 3.2, 4.8), sharey=True)
    try:
        axes = np.atleast_1d(axes)
        colors = _palette(plt, dict.fromkeys(r["network"] for r in rows))
        for ax, b in zip(axes, batches):
            for network, color in colors.items():
                pts = [r for r in rows if r["batch"] == b and r["network"] == network]
                if not pts:
                    continue
                xs = [r["devices"] for r in pts]
                ys = [100 * r["efficiency"] for r in pts]
                label = _label(f"{pts[0]['network_short']}: {short_compute(pts[0]['compute'])}")
                if pts[0]["network_kind"].endswith("fit"):
                    inside = [i for i, r in enumerate(pts) if not r["note"]]
                    last = inside[-1] if inside else 0
                    ax.plot(xs[:last + 1], ys[:last + 1], "s-", ms=4, lw=1.8, color=color, label=label)
                    ax.plot(xs[last:], ys[last:], "s:", ms=3, lw=1.2, color=color,
                            label=_label(f"{pts[0]['network_short']}: beyond the measured ranks"))
                else:
                    ax.plot(xs, ys, "--", lw=1.5, color=color, label=label)
            ax.set_xscale("log", base=2)
            ax.set_ylim(0, 105)
            ax.set_xlabel("devices N")
            ax.set_title(f"batch {b} per device")
            ax.grid(True, alpha=0.3)
        axes[0].set_ylabel("scaling efficiency E(N) (%)")
        fig.suptitle(f"MODELLED data-parallel scaling: {w.title}, {w.params / 1e6:.1f} M parameters, fp32 "
                     "gradients (dashed: published fabrics; solid: fits of our measurements)", fontsize=10)
        return save_with_legend(fig, axes[0], path, 3.2 / (5.2 * len(batches) + 3.2), 0.95)
    finally:
        plt.close(fig)


def save_with_legend(fig, ax, path: Path, legend_share: float, top: float) -> Path:
    """The legend of ``ax`` in a column of its own on the right (``legend_share`` of the width); saved."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center right", frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - legend_share, top))
    fig.savefig(path, dpi=110)
    return path


def _palette(plt, names) -> Dict[str, object]:
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def short_compute(text: str) -> str:
    """'72 GFLOP/sample at 312 TFLOP/s x 35% utilisation (source...)' -> '312 TFLOP/s x 35% utilisation'."""
    m = re.search(r"at ([^()]+?)\s*(\(|$)", text or "")
    short = m.group(1) if m else (text or "-")[:40]
    return short + (" (assumed)" if "assumed" in (text or "") else "")
