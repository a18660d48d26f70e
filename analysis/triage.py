"""``python -m analysis.triage FILES [--fabric NAME]``: the suspects of a triage run, with evidence (exit 4).

Reads the records of ``python -m collectives.triage`` (or of any run with a
``cpu_probe`` record and ``--split pairs`` sendrecv rows): per host the
median of its ranks' CPU probe times; per pair of hosts the median busbw of
its largest sendrecv size and the median time of its smallest.  The
detector (:mod:`analysis.triage_detect`) names each suspect with one verdict
(slow host, slow host link, slow link X-Y, or a slow cluster against
``--fabric``'s model) and its evidence.  Exit 0: no suspect; 4: suspects
(below expectation); 2: bad input (no triage records).  The report shows
the same as a section with a host x host bandwidth heatmap (:func:`section`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from analysis import cli_common
from analysis.load import reader
from analysis.load.ranks import decode
from analysis.triage_detect import Evidence, Finding, detect
from ground.errors import EXIT_BELOW, UsageError

__all__ = ["evidence", "main", "section", "heatmap", "PROG", "HEATMAP_MAX"]

PROG = "analysis.triage"
HEATMAP_MAX = 256  # hosts drawn one by one; beyond, blocks of hosts (their median)


def evidence(records: Sequence[Dict], model: Optional[str] = None) -> Optional[Evidence]:
    """The triage's evidence in ``records`` (None when they hold none); ``model``: a fabric's name whose
    link peak for one pair is the bandwidth expected."""
    cpu: Dict[str, List[float]] = {}
    for r in records:
        if r.get("collective") == "cpu_probe" and r.get("status") == "ok":
            times, hosts = decode(r.get("rank_time_us")), decode(r.get("rank_host"))
            if isinstance(times, list) and isinstance(hosts, list):
                for t, h in zip(times, hosts):
                    cpu.setdefault(str(h), []).append(float(t))
    pairs = [r for r in records if r.get("collective") == "sendrecv" and r.get("split") == "pairs"
             and r.get("status") == "ok" and r.get("group_hosts")]
    if not cpu and not pairs:
        return None
    names = list(dict.fromkeys(list(cpu) + [h for r in pairs for h in str(r["group_hosts"]).split(",")]))
    index = {h: i for i, h in enumerate(names)}
    large = max((r["size_bytes"] for r in pairs), default=None)
    small = min((r["size_bytes"] for r in pairs), default=None)
    bw: Dict[Tuple[int, int], List[float]] = {}
    lat: Dict[Tuple[int, int], List[float]] = {}
    for r in pairs:
        hs = str(r["group_hosts"]).split(",")
        if len(hs) != 2:
            continue
        key = tuple(sorted((index[hs[0]], index[hs[1]])))
        if r["size_bytes"] == large and isinstance(r.get("busbw_gbs"), (int, float)):
            bw.setdefault(key, []).append(float(r["busbw_gbs"]))
        if r["size_bytes"] == small and small != large and isinstance(r.get("time_us"), (int, float)):
            lat.setdefault(key, []).append(float(r["time_us"]))
    ev = Evidence(names, {index[h]: float(np.median(v)) * 1e-6 for h, v in cpu.items()},
                  {k: float(np.median(v)) for k, v in bw.items()}, {k: float(np.median(v)) for k, v in lat.items()})
    if model and bw and large:
        from facts import fabrics, percent_of_model

        s = percent_of_model.share(fabrics.get(model), "sendrecv", large, 2, float(np.median(list(ev.bw_gbs.values()))))
        ev.model_gbs = s.model_busbw_gbs if s else None
    return ev


def _lines(f: Finding) -> List[str]:
    if f.clean:
        return ["no suspect"]
    return [f"{s.kind}: {s.who}: {s.evidence}" for s in f.suspects]


def heatmap(ev: Evidence, path: Path) -> Optional[Path]:
    """A host x host bandwidth heatmap (GB/s); beyond :data:`HEATMAP_MAX` hosts, blocks of hosts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(ev.hosts)
    if n < 2 or not ev.bw_gbs:
        return None
    m = np.full((n, n), np.nan)
    for (a, b), v in ev.bw_gbs.items():
        m[a, b] = m[b, a] = v
    labels = ev.hosts
    if n > HEATMAP_MAX:
        k = int(np.ceil(n / HEATMAP_MAX))
        blocks = int(np.ceil(n / k))
        agg = np.full((blocks, blocks), np.nan)
        for i in range(blocks):
            for j in range(blocks):
                cell = m[i * k:(i + 1) * k, j * k:(j + 1) * k]
                if np.isfinite(cell).any():
                    agg[i, j] = np.nanmedian(cell)
        m, labels = agg, [f"{ev.hosts[i * k]}.." for i in range(blocks)]
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(m, cmap="viridis")
    fig.colorbar(im, ax=ax, label="busbw (GB/s), sendrecv of the largest size")
    if len(labels) <= 32:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_title("Pairs of hosts: bandwidth (measured)" + (f", blocks of {int(np.ceil(n / HEATMAP_MAX))} hosts"
                                                           if n > HEATMAP_MAX else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def section(records: Sequence[Dict], outdir: Path, model: Optional[str] = None) -> Tuple[List[str], List[Path]]:
    """The report's "Triage" section and its heatmap; ([], []) without triage records."""
    ev = evidence(records, model)
    if ev is None:
        return [], []
    f = detect(ev)
    md = ["## Triage", "", "Each suspect against the median of its peers (`python -m analysis.triage`; exit 4 "
          "when there is one):", ""] + [f"- {line}" for line in _lines(f)] + [""] + [f"- {n}" for n in f.notes]
    plot = heatmap(ev, outdir / "triage_heatmap.png")
    return md + [""], [plot] if plot else []


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ground import errors

    return errors.run_main(PROG, lambda: _main(argv), prints="the suspects")


def _main(argv: Optional[Sequence[str]]) -> int:
    from facts import percent_of_model

    ap = cli_common.Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", metavar="FILE", help="records of python -m collectives.triage")
    ap.add_argument("--fabric", type=percent_of_model.fabric_arg, metavar="NAME",
                    help="judge the cluster's median pair bandwidth against this fabric's model too")
    cli_common.add_strict(ap)
    a = ap.parse_args(argv)
    if a.fabric == percent_of_model.AUTO:
        raise UsageError("--fabric auto: give the fabric's name (a triage log names no GPU)")
    records = reader.read_records(a.files, a.strict, cli_common.warner(PROG))
    ev = evidence(records, a.fabric)
    if ev is None:
        raise UsageError(f"{', '.join(a.files)}: no triage records (a cpu_probe record or --split pairs "
                         "sendrecv rows: run python -m collectives.triage --json FILE)")
    f = detect(ev)
    for line in _lines(f) + f.notes:
        print(line)
    return EXIT_BELOW if not f.clean else 0


if __name__ == "__main__":
    raise SystemExit(main())
