"""Compare two sets of results point by point: NEW/BASE time ratios with intervals, regressions named.

``python -m analysis.compare BASE NEW [--threshold PCT] [--csv OUT]``

A point is one (collective, transport, ranks, dtype, op, placement, algo,
size); every measured record of a point is one observation of its time
(``time_us``, the loop's mean per iteration).  Per point in both sets:

* ``ratio`` = median NEW time / median BASE time (above 1: NEW is slower);
* its 95 % interval: with at least two runs on each side, from the runs'
  spread (Welch's interval on the difference of mean log times, Student's t
  at Welch's degrees of freedom); with one run on either side and
  per-iteration samples in both records (``--iter-times``), from those
  samples (the same interval over the log iteration times: it says how
  steady the two runs were, not how repeatable they are); else none, and
  the point says so (``one run``).
* the verdict: ``slower`` when the interval lies wholly above
  1 + threshold (with no interval: the ratio alone), ``faster`` when wholly
  below 1 / (1 + threshold), else ``same``.

Exit status: 0 no regression; 1 NEW has wrong results (named first, never
hidden behind a comparison); 4 a point ``slower``, or one BASE measured that
NEW failed, timed out on or could not run (below expectation); 2 bad input
(a file that cannot be read, no point in both sets).  Pure: the
comparison (:func:`compare`) takes two frames of :mod:`analysis.load.points`.
"""

from __future__ import annotations

import math
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from analysis import cli_common
from analysis.load import points
from analysis.load.ranks import decode
from ground.errors import EXIT_BELOW, EXIT_WRONG, UsageError

__all__ = ["KEY", "compare", "interval", "regressions", "summary_lines", "section", "main", "PROG", "DEFAULT_THRESHOLD"]

PROG = "analysis.compare"
KEY = ("collective", "transport", "nranks", "dtype", "op", "root", "placement", "algo", "group_ranks", "size_bytes")
_TEXT_KEY = ("collective", "transport", "dtype", "op", "root", "placement", "algo", "group_ranks")
FAILED = ("failed", "timeout", "unsupported")  # a point NEW could not measure
DEFAULT_THRESHOLD = 5.0  # percent
# Student's t, two-sided 95 %, by degrees of freedom (1..30); beyond, the normal 1.96.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def t95(df: float) -> float:
    """Two-sided 95 % Student's t quantile at ``df`` degrees of freedom (rounded down; 1.96 beyond 30)."""
    k = int(math.floor(df))
    return _T95[max(1, k) - 1] if k <= 30 else 1.96


def interval(base: Sequence[float], new: Sequence[float]) -> Optional[Tuple[float, float]]:
    """The 95 % interval of median(new)/median(base) from samples of both (Welch on log times), or None
    with fewer than two positive samples on a side."""
    lb = [math.log(v) for v in base if v > 0 and math.isfinite(v)]
    ln = [math.log(v) for v in new if v > 0 and math.isfinite(v)]
    if len(lb) < 2 or len(ln) < 2:
        return None
    mb, mn = sum(lb) / len(lb), sum(ln) / len(ln)
    vb = sum((x - mb) ** 2 for x in lb) / (len(lb) - 1) / len(lb)
    vn = sum((x - mn) ** 2 for x in ln) / (len(ln) - 1) / len(ln)
    se = math.sqrt(vb + vn)
    if se == 0:
        r = math.exp(mn - mb)
        return r, r
    df = (vb + vn) ** 2 / ((vb ** 2 / (len(lb) - 1) if vb else 0) + (vn ** 2 / (len(ln) - 1) if vn else 0))
    h = t95(df) * se
    return math.exp(mn - mb - h), math.exp(mn - mb + h)


def _median(v: Sequence[float]) -> float:
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _samples(g) -> List[float]:
    """A point's per-iteration samples (``iter_us``: per rank, the slowest rank's), pooled over its records."""
    if "iter_us" not in g:
        return []
    out: List[float] = []
    for v in g["iter_us"]:
        v = decode(v)  # nested values load as JSON text (analysis.load.reader)
        if isinstance(v, dict):  # per rank: the slowest rank's samples
            v = max(v.values(), key=lambda s: _median(s) if s else 0.0, default=[])
        if isinstance(v, list):
            out += [float(x) for x in v if isinstance(x, (int, float))]
    return out


def _keyed(df, statuses: Sequence[str]):
    """Measured rows of ``statuses``, key columns filled (text; "-" where a field does not apply, "all" for
    the whole job), duplicates (the same record read twice) dropped."""
    df = df[df["kind"].eq("measured") & df["status"].isin(list(statuses))].copy()
    for col in KEY:
        if col not in df:
            df[col] = None
    for col in _TEXT_KEY:
        df[col] = [("all" if col == "group_ranks" else "-") if v is None or v != v else
                   (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)) for v in df[col]]
    return df.drop_duplicates(subset=[c for c in ("run_id", "timestamp", *KEY, "time_us") if c in df])


def _groups(df, statuses: Sequence[str] = ("ok",)) -> Dict[Tuple, object]:
    return {k: g for k, g in _keyed(df, statuses).groupby(list(KEY), dropna=False, sort=True)}


def unmeasured(base, new) -> Tuple[List[str], List[str]]:
    """(NEW's points with wrong results, NEW's points that failed, timed out or were unsupported where BASE
    measured them): one phrase each."""
    ok = set(_groups(base))
    def name(k) -> str:
        d = dict(zip(KEY, k))
        return f"{d['transport']} {d['collective']} {int(d['nranks'])} ranks {d['dtype']} {d['placement']} " \
               f"{int(d['size_bytes']) if d['size_bytes'] == d['size_bytes'] else '?'} B"
    wrong = [name(k) for k in _groups(new, ("wrong",))]
    failed = [f"{name(k)} ({g['status'].iloc[0]})" for k, g in _groups(new, FAILED).items() if k in ok]
    return wrong, failed


def compare(base, new, threshold: float = DEFAULT_THRESHOLD):
    """A DataFrame, one row per point in both frames: the KEY columns, base_us, new_us, ratio, lo, hi,
    runs_base, runs_new, how (``runs``, ``iterations`` or ``one run``) and verdict."""
    import pandas as pd

    if not threshold >= 0:
        raise ValueError(f"threshold {threshold}: a percentage >= 0")
    gb, gn = _groups(base), _groups(new)
    rows = []
    bar = 1 + threshold / 100
    for key in sorted(set(gb) & set(gn), key=lambda k: tuple(str(x) for x in k)):
        b, n = gb[key], gn[key]
        tb, tn = [float(x) for x in b["time_us"]], [float(x) for x in n["time_us"]]
        ratio = _median(tn) / _median(tb) if _median(tb) > 0 else float("nan")
        iv, how = interval(tb, tn), "runs"
        if iv is None:  # fewer than two runs on a side: the iterations' spread, pooled over the runs
            iv, how = interval(_samples(b), _samples(n)), "iterations"
            if iv is not None:  # centred on the runs' ratio: the samples give its width
                c = math.exp((math.log(iv[0]) + math.log(iv[1])) / 2)
                iv = (iv[0] / c * ratio, iv[1] / c * ratio)
        if iv is None:
            how = "one run"
        lo, hi = iv if iv else (ratio, ratio)
        verdict = "slower" if lo > bar else "faster" if hi < 1 / bar else "same"
        rows.append(dict(zip(KEY, key), base_us=_median(tb), new_us=_median(tn), ratio=ratio,
                         lo=iv[0] if iv else None, hi=iv[1] if iv else None, runs_base=len(tb), runs_new=len(tn),
                         how=how, verdict=verdict))
    return pd.DataFrame(rows, columns=list(KEY) + ["base_us", "new_us", "ratio", "lo", "hi", "runs_base",
                                                  "runs_new", "how", "verdict"])


def regressions(table) -> List[str]:
    """One line per point that got slower, worst first."""
    slow = table[table["verdict"].eq("slower")].sort_values("ratio", ascending=False)
    return [f"{r.transport} {r.collective} {int(r.nranks)} ranks {r.dtype} {r.placement} "
            f"{int(r.size_bytes)} B: {r.ratio:.3f}x the baseline's time" + _iv(r) for r in slow.itertuples()]


def _iv(r) -> str:
    if r.lo is None or r.lo != r.lo:
        return f" ({r.how})"
    return f" (95 % interval {r.lo:.3f}-{r.hi:.3f}, from {r.how})"


def summary_lines(table, only_base: int, only_new: int, threshold: float) -> List[str]:
    """What the comparison found, in a few lines: counts of each verdict, points in one set only."""
    counts = table["verdict"].value_counts()
    out = [f"{len(table)} points in both: {counts.get('slower', 0)} slower, {counts.get('faster', 0)} faster, "
           f"{counts.get('same', 0)} within {threshold:g} % (NEW/BASE time; 95 % intervals where repeats or "
           "per-iteration samples allow)"]
    if only_base or only_new:
        out.append(f"not compared: {only_base} points only in BASE, {only_new} only in NEW")
    one = int(table["how"].eq("one run").sum())
    if one:
        out.append(f"{one} points have one run on a side and no per-iteration samples: their verdict is the "
                   "ratio alone (repeat the runs, or run with --iter-times, for an interval)")
    return out


SHOWN_ROWS = 30  # the report's comparison table: the points that changed most


def section(base, new, baseline_name: str, threshold: float = DEFAULT_THRESHOLD) -> List[str]:
    """The report's "Against the baseline" section (Markdown lines): the summary, each point that got
    slower, and the points that changed most."""
    from analysis.report_text import table as md_table

    out = ["## Against the baseline", "", f"Compared with `{baseline_name}`, point by point (NEW/BASE time; "
           "`python -m analysis.compare` gives the same, with exit status 4 on a regression).", ""]
    t = compare(base, new, threshold)
    wrong, failed = unmeasured(base, new)
    out += [f"- wrong results: {w}" for w in wrong] + [f"- not measured: {f}" for f in failed]
    if t.empty:
        return out + ["", "No point of these results is in the baseline.", ""]
    kb, kn = set(_groups(base)), set(_groups(new))
    out += [f"- {line}" for line in summary_lines(t, len(kb - kn), len(kn - kb), threshold)]
    out += [f"- slower: {line}" for line in regressions(t)] + [""]
    t = t.assign(change=[abs(math.log(r)) if r > 0 else 0.0 for r in t["ratio"]])
    t = t.sort_values("change", ascending=False).head(SHOWN_ROWS)
    out += [f"The {len(t)} points that changed most:", ""]
    out += md_table(["transport", "collective", "ranks", "dtype", "placement", "size (B)", "base (us)", "new (us)",
                     "NEW/BASE", "95 % interval", "verdict"],
                    [[r.transport, r.collective, int(r.nranks), r.dtype, r.placement, int(r.size_bytes),
                      f"{r.base_us:.2f}", f"{r.new_us:.2f}", f"{r.ratio:.3f}",
                      "-" if r.lo is None or r.lo != r.lo else f"{r.lo:.3f}-{r.hi:.3f}", r.verdict]
                     for r in t.itertuples()])
    return out + [""]


def _load(path: str, strict: bool):
    return points.load(path, all_status=True, strict=strict, warn=cli_common.warner(PROG))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m analysis.compare BASE NEW``: 0 no regression, 4 a regression, 2 bad input."""
    from ground import errors

    return errors.run_main(PROG, lambda: _main(argv), prints="the comparison")


def _main(argv: Optional[Sequence[str]]) -> int:
    import pandas as pd

    ap = cli_common.Parser(prog=f"python -m {PROG}", description="Compare NEW results with BASE point by point "
                           "(NEW/BASE time, 95 % intervals); exit 4 when a point got slower beyond the threshold.")
    ap.add_argument("base", metavar="BASE", help="the baseline: collscale results or another tool's log")
    ap.add_argument("new", metavar="NEW", help="the results to judge")
    ap.add_argument("--threshold", type=cli_common.number(0, 1000, lo_open=False), default=DEFAULT_THRESHOLD,
                    metavar="PCT", help=f"a point is slower when NEW takes more than PCT %% longer than BASE, "
                    f"interval included (default {DEFAULT_THRESHOLD:g})")
    ap.add_argument("--csv", metavar="OUT", help="write the comparison, one row per point, to OUT")
    cli_common.add_strict(ap)
    a = ap.parse_args(argv)
    out = cli_common.output_file("--csv", a.csv)
    base, new = _load(a.base, a.strict), _load(a.new, a.strict)
    table = compare(base, new, a.threshold)
    kb, kn = set(_groups(base)), set(_groups(new))
    wrong, failed = unmeasured(base, new)
    for w in wrong:  # wrong results come first: never hidden behind a comparison of times
        print(f"{PROG}: wrong results: {w}", file=sys.stderr)
    for f in failed:
        print(f"{PROG}: not measured: {f} (BASE measured it)", file=sys.stderr)
    if table.empty:
        if wrong or failed:
            return EXIT_WRONG if wrong else EXIT_BELOW
        raise UsageError(f"no point is in both {a.base} and {a.new} (a point: {', '.join(KEY)})")
    for line in summary_lines(table, len(kb - kn), len(kn - kb), a.threshold):
        print(line)
    if out is not None:
        table.to_csv(out, index=False)
        print(f"wrote {len(table)} rows to {out}")
    else:
        shown = table.assign(interval=[("-" if r.lo is None or r.lo != r.lo else f"{r.lo:.3f}-{r.hi:.3f}")
                                       for r in table.itertuples()])
        cols = ["transport", "collective", "nranks", "dtype", "placement", "size_bytes", "base_us", "new_us",
                "ratio", "interval", "how", "verdict"]
        with pd.option_context("display.max_rows", None, "display.width", 250, "display.float_format",
                               "{:.3f}".format):
            print(shown[cols].to_string(index=False))
    slow = regressions(table)
    for line in slow:
        print(f"{PROG}: slower: {line}", file=sys.stderr)
    return EXIT_WRONG if wrong else EXIT_BELOW if slow or failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
