"""``python -m analysis.results FILES... [--csv OUT] [--strict] [--fabric NAME|auto]``: the tidy table.

Prints the points frame (:mod:`analysis.load.points`) of any collscale
results or other tools' logs (:mod:`analysis.load.reader`: JSON Lines, CSV,
nccl-tests/rccl-tests, OSU, IMB-MPI1, hccl_demo; ``FILE:ranks=N`` and
``,transport=NAME`` say what a log does not), or writes it as CSV;
``--fabric`` adds each measured row's busbw as a % of a fabric's model and
link peak (:mod:`analysis.model_share`; ``auto`` guesses the fabric of a log
from its GPU model and host count, and says the guess on stderr).
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from analysis.load import importers, points, reader
from facts import record
from ground import progress

__all__ = ["main", "PROG"]

PROG = "analysis.results"
_SHOWN = ("transport", "collective", "nranks", "placement", "size_bytes", "time_us", "algbw_gbs", "busbw_gbs",
          "status", "source_line")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m analysis.results FILES... [--csv OUT] [--strict]``: the tidy table of any results or logs."""
    from ground import errors

    return errors.run_main(PROG, lambda: _main(argv), prints="the results")


def _main(argv: Optional[Sequence[str]]) -> int:
    from analysis import cli_common
    from facts import percent_of_model

    ap = cli_common.Parser(prog=f"python -m {PROG}", description="Read collscale results and other tools' logs "
                           f"({', '.join(importers.TOOLS)}) into one tidy table.")
    ap.add_argument("files", nargs="+", metavar="FILE", help="results or logs; FILE:ranks=N gives a log's rank "
                    "count, FILE:transport=NAME the label of its series (FILE:ranks=32,transport=polaris)")
    ap.add_argument("--csv", metavar="OUT", help="write every column of the table to OUT instead of printing")
    percent_of_model.add_fabric_flag(ap)
    cli_common.add_strict(ap)
    a = ap.parse_args(argv)
    out = cli_common.output_file("--csv", a.csv)
    # A bar on a terminal, for a CSV (a table printed there would run through it)
    with (progress.bar(2, PROG) if out is not None else progress.Progress()) as bar, reader.settled() as settle:
        bar.step("reading results")
        tab = reader.read_table(a.files, a.strict, bar.say(cli_common.warner(PROG)))
        settle()  # what was read stays out of the cycle collector's walks
        df = points.frame(tab, all_status=True)
        del tab
        bar.done()
        bar.step("writing the CSV")
        code = _table(a, out, df, bar)
        bar.done()
    return code


def _table(a, out, df, bar) -> int:
    """The table read, annotated, written or printed."""
    import pandas as pd

    from analysis import csv_out, model_share
    from facts import percent_of_model

    if a.fabric:
        df, notes = model_share.annotate(df, a.fabric)
        for note in notes:
            bar.say(print)(f"{PROG}: fabric auto: {note}", file=sys.stderr)
    if out is not None:
        first = [c for c in record.FIELDS + importers.EXTRA_FIELDS if c in df]
        csv_out.write(df[first + [c for c in df.columns if c not in first]], out)
        bar.say(print)(f"wrote {len(df)} rows to {out}")
        return 0
    shown = df[[c for c in _SHOWN if c in df and df[c].notna().any()]]
    if a.fabric:
        shown = model_share.shown(shown, df)
    with pd.option_context("display.max_rows", None, "display.width", 250):
        print(shown.to_string(index=False))
    if a.fabric:
        print(percent_of_model.FOOTNOTE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
