"""Property-based: no input makes an analysis CLI or the results loader raise or print a traceback.

Random flags, numbers and paths go to each CLI's ``main(argv)`` in-process;
random file contents (bytes, JSON lines, truncated real records, CSVs with
random headers) go to the loader and on through predict, scaling and the
report.  The outcome is always exit 0, or exit 2 with exactly one
``<prog>: error:`` line on stderr (one-line ``<prog>: warning:`` lines may
come before it), never a traceback.  The report's plots and scaling curves
are stubbed in these tests (they are slow, and covered by
test_analysis_errors.py): its flags, loader, fits and tables run for real.
"""

import contextlib
import csv
import io
import json
import tempfile
from pathlib import Path
from unittest import mock

import tests.unit.hypothesis_profile  # noqa: F401  (the project's profile: derandomized, no deadline)
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from analysis import predict, report, scaling
from analysis.load import points, reader
from facts import fabrics
from collectives.output import FIELDS
from tests.unit.test_analysis_errors import SIZES, rec, write_csv, write_jsonl

pytest.importorskip("pandas")

FAST = settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])

NUMBERS = st.one_of(
    st.integers(-3, 5000).map(str),
    st.integers(-10 ** 40, 10 ** 40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1,,x", "1e3", "0", "-1", "1K", "64M", "1G", "1T", "1P",
                     "9" * 30, "1,2,4", " 8 ", "+3", "0x10", "1_000", "\u0663", "2.5", "1e-320", "1.0001"]),
    st.text(alphabet="0123456789,.-+eEKMGTPinfa x", max_size=10),
)
LISTS = st.lists(st.one_of(st.integers(-2, 3000).map(str), NUMBERS), min_size=1, max_size=4).map(",".join)


def valid_or(values, lo=None, hi=None):
    """Mostly a sensible value (so that runs get past the flags), else anything."""
    good = st.sampled_from(values) if lo is None else st.floats(lo, hi).map(repr)
    return st.one_of(good, good, NUMBERS)


NAMES = st.text(alphabet="ab_- /", min_size=1, max_size=6)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 20, 10 ** 20), st.floats(),
                         st.text(max_size=6), st.sampled_from([10 ** 400, -10 ** 400, 2 ** 63, 5e-324, 1e308]))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda kids: st.lists(kids, max_size=3)
                           | st.dictionaries(st.text(max_size=4), kids, max_size=3), max_leaves=6)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """Input files of every sort, and a directory for outputs."""
    d = tmp_path_factory.mktemp("pool")
    good = [rec(p, s) for p in (2, 4) for s in SIZES]
    write_jsonl(d / "good.jsonl", good)
    write_jsonl(d / "one.jsonl", [rec(1, s) for s in SIZES])
    write_jsonl(d / "torn.jsonl", good, tail='{"schema":"collscale.row/1","kind":"measu')
    write_csv(d / "good.csv", good)
    write_csv(d / "nobusbw.csv", good, drop=("busbw_gbs",))
    write_csv(d / "notime.csv", good, drop=("time_us",))
    (d / "foreign.jsonl").write_text('{"a": 1}\n')
    (d / "binary.jsonl").write_bytes(bytes(range(256)))
    (d / "empty.jsonl").write_text("")
    (d / "adir").mkdir()
    (d / "out").mkdir()
    return d


INPUTS = ["good.jsonl", "one.jsonl", "torn.jsonl", "good.csv", "nobusbw.csv", "notime.csv", "foreign.jsonl",
          "binary.jsonl", "empty.jsonl", "adir", "missing.jsonl"]


def inputs(pool_dir):
    """Mostly files that load (so that runs get past the loader), else anything."""
    usable = st.sampled_from(["good.jsonl", "good.csv", "torn.jsonl", "nobusbw.csv"])
    named = st.one_of(usable, usable, usable, st.sampled_from(INPUTS)).map(lambda n: str(pool_dir / n))
    return st.one_of(named, named, named, st.sampled_from(["", "\x00", "."]))


def outputs(pool_dir):
    """Output paths: always under the pool (a fresh name, an existing file, the pool's directory)."""
    return st.one_of(NAMES.map(lambda n: str(pool_dir / "out" / ("x" + n.strip("/ ")))),
                     st.sampled_from(["good.jsonl", "adir", "missing/deeper/x"]).map(lambda n: str(pool_dir / n)))


def call(main, argv):
    """(exit status, stdout, stderr) of ``main(argv)`` in-process; any escaping exception fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def check(prog, code, err):
    """0, or 2 with one error line; besides it only one-line warnings; never a traceback."""
    assert "Traceback" not in err, err
    event(f"{prog}: exit {code}")
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith(f"analysis.{prog}: error: ")]
    warnings = [line for line in lines if line.startswith(f"analysis.{prog}: warning: ")]
    assert len(errors) + len(warnings) == len(lines), err
    if code == 0:
        assert not errors, err
    else:
        assert code == 2 and len(errors) == 1 and lines[-1] == errors[0], (code, err)


def flags(draw, options):
    """Some of ``options`` (flag -> strategy of its value, or None for a switch), in random order."""
    argv = []
    for flag in draw(st.lists(st.sampled_from(sorted(options)), max_size=len(options), unique=True)):
        argv.append(flag)
        if options[flag] is not None:
            argv.append(draw(options[flag]))
    return argv


@st.composite
def predict_argv(draw, pool_dir):
    if draw(st.booleans()):
        argv = ["--fabric", draw(st.sampled_from(fabrics.names() + ["nope", ""]))]
    else:
        argv = ["--results"] + draw(st.lists(inputs(pool_dir), min_size=1, max_size=2))
    return argv + flags(draw, {"--ranks": valid_or(["1", "2", "8", "64"]), "-b": valid_or(["8", "1K", "64K"]),
                               "-e": valid_or(["1K", "1M", "1G"]), "-f": valid_or(None, 1.01, 64.0),
                               "-d": st.sampled_from(["float32", "half", "bf16", ""]),
                               "--collective": st.sampled_from(["allreduce", "allgather", "pingpong", "x"]),
                               "--transport": st.sampled_from(["shm", "mpi", ""]),
                               "--json": outputs(pool_dir), "--strict": None})


@st.composite
def scaling_argv(draw, pool_dir):
    if draw(st.booleans()):
        argv = ["--fabric", draw(st.sampled_from(["nvlink3", "nvlink4", "gaudi2-roce", "eth-10g", "nope"]))]
    else:
        argv = ["--results"] + draw(st.lists(inputs(pool_dir), min_size=1, max_size=2))
    compute = ["--samples-per-second", "100"] if draw(st.booleans()) else []
    return argv + compute + flags(draw, {"--model": st.sampled_from(["unet", "gpt2", "braggnn", "nope"]),
                               "--batch": valid_or(["8", "32,256", "1", "1000"]),
                               "--devices": st.one_of(LISTS, valid_or(["1,2,4", "8", "1,1024", "3,5,100"])),
                               "--accum": valid_or(["1", "4"]), "--mfu": valid_or(None, 0.01, 1.0),
                               "--peak-tflops": valid_or(None, 0.01, 1e5),
                               "--samples-per-second": valid_or(None, 1e-3, 1e6),
                               "--grad-dtype": st.sampled_from(["fp32", "bf16", "fp8"]), "--strong": None,
                               "--no-overlap": None, "--json": outputs(pool_dir), "--strict": None})


@st.composite
def report_argv(draw, pool_dir):
    argv = draw(st.lists(inputs(pool_dir), min_size=0, max_size=2))
    return argv + ["-o", draw(outputs(pool_dir))] + (["--strict"] if draw(st.booleans()) else [])


@contextlib.contextmanager
def quick_report():
    """The report without its plots and scaling curves (seconds each); the rest runs."""
    with mock.patch.object(report.plot_worker.Drawing, "result", lambda self: ([], [])), \
            mock.patch.object(report, "_scaling_rows", lambda fits, cpu: {}):
        yield


# -- the command lines ----------------------------------------------------------------------

@FAST
@given(data=st.data())
def test_predict_flags(pool, data):
    code, _, err = call(predict.main, data.draw(predict_argv(pool)))
    check("predict", code, err)


@FAST
@given(data=st.data())
def test_scaling_flags(pool, data):
    code, _, err = call(scaling.main, data.draw(scaling_argv(pool)))
    check("scaling", code, err)


@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_report_flags(pool, data):
    with quick_report():
        code, _, err = call(report.main, data.draw(report_argv(pool)))
    check("report", code, err)


# -- the loader, and the tools behind it ----------------------------------------------------

def load_and_use(path: Path):
    """Load ``path`` (lenient and strict), then run every tool on it: all must end cleanly."""
    said = []
    try:
        assert len(points.load(path, all_status=True, warn=said.append)) > 0
    except reader.ResultsError as exc:
        assert "\n" not in str(exc)
    assert all("\n" not in s and str(path) in s for s in said), said
    try:
        points.load(path, strict=True, warn=said.append)
    except reader.ResultsError as exc:
        assert str(path) in str(exc) or "no records" in str(exc)
    check("predict", *call(predict.main, ["--results", str(path), "-e", "64K"])[::2])
    check("scaling", *call(scaling.main, ["--results", str(path), "--samples-per-second", "100",
                                          "--devices", "1,2,8", "--batch", "4"])[::2])
    with quick_report(), tempfile.TemporaryDirectory() as out:
        check("report", *call(report.main, [str(path), "-o", out])[::2])


def fresh(pool_dir, suffix: str) -> Path:
    return Path(tempfile.mkstemp(suffix=suffix, dir=pool_dir / "out")[1])


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".jsonl", ".csv", ""]))
def test_random_bytes(pool, data, suffix):
    path = fresh(pool, suffix)
    path.write_bytes(data)
    load_and_use(path)


@st.composite
def mutated_record(draw):
    """A real record with a few keys dropped or given random JSON values."""
    r = rec(draw(st.sampled_from([1, 2, 4])), draw(st.sampled_from(SIZES)))
    for key in draw(st.lists(st.sampled_from(sorted(r) + ["extra"]), max_size=3)):
        if draw(st.booleans()):
            r.pop(key, None)
        else:
            r[key] = draw(JSON_VALUES)
    return json.dumps(r)


@st.composite
def json_lines(draw):
    lines = draw(st.lists(st.one_of(mutated_record(), JSON_VALUES.map(json.dumps), st.text(max_size=20)),
                          min_size=1, max_size=8))
    good = [json.dumps(rec(p, s)) for p in (2, 4) for s in SIZES[:draw(st.integers(0, len(SIZES)))]]
    at = draw(st.integers(0, len(good)))
    text = "\n".join(good[:at] + lines + good[at:]) + "\n"
    if draw(st.booleans()):  # torn: cut anywhere
        text = text[:draw(st.integers(0, len(text)))]
    return text


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(text=json_lines())
def test_random_json_lines(pool, text):
    path = fresh(pool, ".jsonl")
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    load_and_use(path)


@st.composite
def csv_files(draw):
    header = draw(st.lists(st.sampled_from(list(FIELDS) + ["foo", ""]), min_size=1, max_size=len(FIELDS) + 2))
    if draw(st.booleans()):
        header = [f for f in FIELDS if f not in draw(st.lists(st.sampled_from(FIELDS), max_size=3))]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for p, s in draw(st.lists(st.tuples(st.sampled_from([1, 2, 4]), st.sampled_from(SIZES)), max_size=8)):
        r = rec(p, s)
        row = ["" if r.get(k) is None else r.get(k) for k in header]
        for i in draw(st.lists(st.integers(0, len(row) - 1), max_size=2)):
            row[i] = draw(NUMBERS)
        w.writerow(row[:draw(st.integers(0, len(row)))] if draw(st.integers(0, 5)) == 0 else row)
    return buf.getvalue()


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(text=csv_files())
def test_random_csv(pool, text):
    path = fresh(pool, ".csv")
    path.write_text(text)
    load_and_use(path)
