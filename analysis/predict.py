"""``python -m analysis.predict``: a collective's table from a fabric model, MODELLED on every line.

    python -m analysis.predict --fabric gaudi1-roce --collective allreduce --ranks 8 -b 8 -e 1G
    python -m analysis.predict --results r.jsonl --transport shm --collective allreduce --ranks 16

The columns are the harness's (size, count, type, redop, root, time, algbw,
busbw); nothing is measured, so #wrong is '-' and every line ends in
MODELLED.  ``--json`` writes records with ``kind: modelled`` that
``analysis.report`` plots beside measured ones (dashed, never mixed up).

Every flag is checked before anything runs (``--ranks`` 1 to 2**20, sizes
1 B to 1 PiB with ``-b <= -e``, ``-f`` finite in (1, 1024]); bad input is
one line on stderr and exit 2 (see :mod:`analysis.cli_common`).
"""

from __future__ import annotations

import sys
from typing import Dict, List, Optional, Sequence

from ground import errors
from analysis import cli_common
from facts import costmodel, fabrics
from facts import record, spec as specs
from collectives.output import JsonlWriter, format_time
from ground.dtypes import DTYPES
from ground.sizes import parse_size, sweep_sizes

__all__ = ["predict_rows", "main", "parse_size"]

PROG = "analysis.predict"
MAX_FACTOR = 1024.0  # -f: beyond this a sweep is one or two sizes, and size x factor could overflow


def predict_rows(fabric: fabrics.Fabric, collective: str, ranks: int, sizes: Sequence[int],
                 dtype: str = "float32") -> List[Dict]:
    """Modelled records (same fields as measured ones) for each size."""
    item = DTYPES[dtype].itemsize
    spec = specs.get(collective)
    factor = spec.busbw_factor(ranks)
    rows = []
    for size in sizes:
        n = max(item, size // item * item)
        t = fabric.collective_time(collective, n, ranks)
        algbw = n / t / 1e9 if t > 0 else 0.0
        rows.append(record.new(
            "modelled", "ok", collective=collective, transport=fabric.name, fabric=fabric.name, nranks=ranks,
            size_bytes=n, count=n // item, dtype=dtype, op="sum" if spec.reduces else None,
            root=0 if spec.rooted else None, in_place=False, time_us=t * 1e6, algbw_gbs=algbw,
            busbw_gbs=algbw * factor, busbw_factor=factor, wrong=None, model="; ".join(fabric.figures()),
        ))
    return rows


def _table(fabric: fabrics.Fabric, collective: str, ranks: int, rows: List[Dict]) -> str:
    lines = [f"# MODELLED (not measured): {collective} on {ranks} devices of {fabric.title}"]
    lines += [f"#   {x}" for x in fabric.figures()]
    if fabric.notes:
        lines.append(f"#   note: {fabric.notes}")
    lines += [
        "#" + " " * 62 + "modelled",
        "#       size         count      type   redop    root     time   algbw   busbw  #wrong",
        "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)",
    ]
    for r in rows:
        root = -1 if r["root"] is None else r["root"]
        lines.append("%12d  %12d  %8s  %6s  %6d  %7s  %6.2f  %6.2f  %6s  MODELLED" % (
            r["size_bytes"], r["count"], r["dtype"], r["op"] or "none", root, format_time(r["time_us"]),
            r["algbw_gbs"], r["busbw_gbs"], "-"))
    lines.append("# every figure above is MODELLED from the fabric figures listed, none is measured")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m analysis.predict``: the exit status (0; 2 with one line on stderr for bad input)."""
    return errors.run_main(PROG, lambda: _main(argv), prints="the results")


def _main(argv: Optional[Sequence[str]]) -> int:
    ap = cli_common.Parser(prog="python -m analysis.predict", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--fabric", help=f"one of: {', '.join(fabrics.names())}")
    src.add_argument("--results", nargs="+", metavar="FILE", help="fit these measured results instead")
    ap.add_argument("--transport", help="with --results: which transport's fit")
    ap.add_argument("--collective", default="allreduce", choices=sorted(costmodel.ALGORITHMS))
    ap.add_argument("--ranks", type=cli_common.whole(1, cli_common.MAX_RANKS), default=8,
                    help="devices to model (default 8)")
    ap.add_argument("-b", "--minbytes", type=cli_common.size, default="8", help="smallest size (default 8)")
    ap.add_argument("-e", "--maxbytes", type=cli_common.size, default="1G", help="largest size (default 1G)")
    ap.add_argument("-f", "--stepfactor", type=cli_common.number(1, MAX_FACTOR), default=2.0,
                    help=f"multiply the size by this, > 1 and <= {MAX_FACTOR} (default 2)")
    ap.add_argument("-d", "--datatype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--json", metavar="PATH", help="append the modelled records (kind: modelled)")
    cli_common.add_strict(ap)
    a = ap.parse_args(argv)
    json_path = cli_common.output_file("--json", a.json)
    if a.minbytes > a.maxbytes:
        raise cli_common.UsageError(f"minimum size {a.minbytes} B (-b) is larger than the maximum "
                                    f"{a.maxbytes} B (-e)")
    with cli_common.usage_errors():
        sizes = sweep_sizes(a.minbytes, a.maxbytes, a.stepfactor, None)
        if a.fabric is not None:
            fabric = fabrics.get(a.fabric)
        else:
            fabric = _fit_fabric(a.results, a.transport, a.collective, a.strict, cli_common.warner(PROG))
    rows = predict_rows(fabric, a.collective, a.ranks, sizes, a.datatype)
    writer = None
    if json_path:  # opened before the table is printed: a refused file leaves no half-done output
        with cli_common.usage_errors():  # another tool's file is refused by the writer
            writer = JsonlWriter(str(json_path))
    try:
        sys.stdout.write(_table(fabric, a.collective, a.ranks, rows))
        for r in rows if writer else ():
            writer.record(r)
    finally:
        if writer:
            writer.close()
    return 0


def _fit_fabric(paths, transport, collective, strict: bool = False, warn=None) -> fabrics.Fabric:
    from analysis import fit
    from analysis.load import points, reader
    from facts import per_rank

    # The fields a fit reads (fit.fit_transport, fit_rows), not the per-rank ones: results of any size
    df = points.frame(reader.read_table(paths, strict, warn, drop=per_rank.FIELDS_JSON,
                                        keep=("phase", "op", "oversubscribed")))
    df = df[df["kind"] == "measured"]
    transports = sorted(set(df["transport"]))
    if transport is None:
        if len(transports) != 1:
            raise ValueError(f"several transports in the results ({', '.join(transports)}): pick one with "
                             "--transport")
        transport = transports[0]
    fits = [f for f in fit.fit_transport(df, transport) if f.collective == collective]
    if not fits:
        raise ValueError(f"no {collective} of transport '{transport}' at 2 ranks or more with two sizes "
                         "or more to fit (one rank moves nothing between ranks)")
    return fabrics.from_fit(fits[0])


if __name__ == "__main__":
    raise SystemExit(main())
