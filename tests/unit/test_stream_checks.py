"""The stream and path checks of ground.errors: names too long for their file system, and
output that cannot be written (one line, exit 2 before the first row, 3 after)."""

import errno
import io
import os

import pytest

from collectives import output
from ground import errors


def _limits(monkeypatch, name_max=14, path_max=4096):
    """A file system with small limits; records which directories were asked."""
    asked = []
    real = os.pathconf

    def pathconf(path, name):
        asked.append((str(path), name))
        if name == "PC_NAME_MAX":
            return name_max
        if name == "PC_PATH_MAX":
            return path_max
        return real(path, name)
    monkeypatch.setattr(os, "pathconf", pathconf)
    return asked


# -- names and paths too long ----------------------------------------------------------------

def test_a_name_at_the_limit_passes_one_byte_more_is_refused(tmp_path):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    assert errors.path_too_long(tmp_path / ("a" * name_max)) is None
    why = errors.path_too_long(tmp_path / ("a" * (name_max + 1)))
    assert why and "file name too long" in why and f"at most {name_max}" in why and str(tmp_path) in why


def test_the_limits_are_those_of_the_nearest_existing_directory(tmp_path, monkeypatch):
    asked = _limits(monkeypatch)
    assert errors.path_too_long(tmp_path / "new" / "r.jsonl") is None  # 3 and 7 bytes
    assert {d for d, _ in asked} == {str(tmp_path)}
    why = errors.path_too_long(tmp_path / "new" / ("x" * 15))
    assert "15 bytes" in why and "at most 14" in why
    # A missing directory with a long name is refused as well (nothing is created to find out).
    assert "file name too long" in errors.path_too_long(tmp_path / ("d" * 15) / "r.jsonl")
    assert not any(tmp_path.iterdir())


def test_a_path_of_path_max_bytes_is_refused_one_less_passes(tmp_path, monkeypatch):
    _limits(monkeypatch, name_max=255, path_max=len(str(tmp_path)) + 20)
    ok = str(tmp_path / ("p" * 18))  # len(tmp_path) + 19 bytes
    assert errors.path_too_long(ok) is None
    why = errors.path_too_long(ok + "p")
    assert why and "path too long" in why and f"at most {len(str(tmp_path)) + 19}" in why


def test_the_real_path_max_is_refused(tmp_path):
    path_max = os.pathconf(tmp_path, "PC_PATH_MAX")
    deep = str(tmp_path) + ("/" + "d" * 100) * (path_max // 100 + 1)
    why = errors.path_too_long(deep)
    assert why and "path too long" in why and str(path_max - 1) in why


def test_existing_files_and_odd_input_pass(tmp_path):
    f = tmp_path / "there.jsonl"
    f.write_text("")
    assert errors.path_too_long(f) is None
    assert errors.path_too_long("/dev/full") is None
    assert errors.path_too_long("relative.jsonl") is None
    assert errors.path_too_long("") is None and errors.path_too_long("a\0b") is None


def test_length_checked_and_check_path_length_raise_one_short_line(tmp_path):
    long = str(tmp_path / ("e" * 300))
    with pytest.raises(ValueError) as exc:
        errors.length_checked(long, ValueError)
    assert "\n" not in str(exc.value) and "characters)" in str(exc.value) and long not in str(exc.value)
    assert errors.length_checked(str(tmp_path / "ok"), ValueError) == str(tmp_path / "ok")
    with pytest.raises(errors.UsageError, match=r"^--csv .*file name too long"):
        errors.check_path_length(long, "--csv")


def test_shorten():
    assert errors.shorten("abc") == "abc"
    short = errors.shorten("x" * 500, 60)
    assert len(short) < 90 and short.endswith("(500 characters)")


def test_the_collective_cli_refuses_a_long_name_while_parsing(tmp_path):
    from collectives.cli import parse_args
    from ground.dtypes import ConfigError

    for flag in ("--json", "--csv"):
        with pytest.raises(ConfigError, match=f"argument {flag}: .*file name too long"):
            parse_args("allreduce", [flag, str(tmp_path / ("e" * 300))], quiet=True)
    assert not any(tmp_path.iterdir())


def test_a_file_sink_refuses_a_long_name_before_creating_anything(tmp_path):
    with pytest.raises(OSError) as exc:
        output.open_sinks(str(tmp_path / ("e" * 300 + ".jsonl")), None)
    assert "file name too long" in str(exc.value) and "\n" not in str(exc.value)
    assert not any(tmp_path.iterdir())


def test_analysis_output_paths_refuse_long_names(tmp_path):
    from analysis import cli_common

    with pytest.raises(errors.UsageError, match="^--csv .*file name too long"):
        cli_common.output_file("--csv", str(tmp_path / ("e" * 300)))
    with pytest.raises(errors.UsageError, match="^-o .*file name too long"):
        cli_common.output_dir("-o", str(tmp_path / ("e" * 300)), create=False)
    assert not any(tmp_path.iterdir())


# -- output that fails ---------------------------------------------------------------------------

class _Broken(io.StringIO):
    name = "<stdout>"

    def __init__(self, after=0):
        super().__init__()
        self.after = after

    def write(self, text):
        if self.after <= 0:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        self.after -= 1
        return super().write(text)


def test_a_table_that_cannot_be_written_is_a_stream_error_naming_the_rows():
    recs = [{"size_bytes": 8, "count": 2, "dtype": "float32", "op": "sum", "root": None, "in_place": False,
             "status": "ok", "time_us": 1.0, "algbw_gbs": 0.1, "busbw_gbs": 0.1, "wrong": 0}]
    before = output.rows_written()
    table = output.TableWriter(_Broken(after=2))
    table.point(recs)
    table.point(recs)
    assert output.rows_written() == before + 2
    with pytest.raises(errors.StreamError) as exc:
        table.point(recs)
    assert str(exc.value) == "cannot write the table to stdout after 2 rows: Broken pipe"
    assert exc.value.rows == before + 2
    with pytest.raises(errors.StreamError, match="to stdout after 0 rows: it is closed"):
        output.TableWriter(None).text("x")


def test_a_file_whose_first_row_does_not_fit_is_removed(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    sink = output.JsonlWriter(str(path))

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(output, "write_all", full)
    with pytest.raises(errors.StreamError, match="after 0 rows were written to it: No space left on device"):
        sink.record({"schema": "collscale.row/1"})
    sink.close()
    assert not path.exists()


def test_a_file_keeps_its_whole_rows_when_a_later_one_does_not_fit(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    sink = output.JsonlWriter(str(path))
    sink.record({"schema": "collscale.row/1", "n": 1})
    real = output.write_all

    def half(fd, data):
        real(fd, data[:5])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(output, "write_all", half)
    with pytest.raises(errors.StreamError) as exc:
        sink.record({"schema": "collscale.row/1", "n": 2})
    sink.close()
    assert "after 1 rows" in str(exc.value) and exc.value.rows >= 1
    assert path.read_text().count("\n") == 1 and path.read_text().endswith("\n")


def test_the_stdout_wrapper_fails_once_then_stays_quiet(monkeypatch):
    silenced = []
    monkeypatch.setattr(errors, "silence_fd", silenced.append)
    out = errors.GuardedStdout(_Broken())
    with pytest.raises(errors.StreamError, match="^cannot write stdout: Broken pipe$"):
        out.write("x")
    assert silenced == [1]
    out.flush()  # nothing raised at exit
    with pytest.raises(errors.StreamError):
        out.write("y")
    closed = errors.GuardedStdout(None)
    with pytest.raises(errors.StreamError, match="stdout is closed"):
        print("x", file=closed)
    assert not closed.isatty()
    with pytest.raises(OSError):
        closed.fileno()


def test_the_stderr_wrapper_and_tell_never_raise(monkeypatch):
    silenced = []
    monkeypatch.setattr(errors, "silence_fd", silenced.append)
    err = errors.GuardedStderr(_Broken())
    err.write("lost\n")
    err.flush()
    assert silenced == [2]
    monkeypatch.setattr("sys.stderr", _Broken())
    errors.tell("collscale: error: x")
    monkeypatch.setattr("sys.stderr", None)
    errors.tell("collscale: error: x")  # not to stdout, as print(file=None) would


@pytest.mark.parametrize("rows, code", [(0, 2), (3, 3)])
def test_run_main_stream_errors_are_2_before_the_first_row_3_after(capsys, rows, code):
    def body():
        raise errors.StreamError("cannot write stdout: Broken pipe", rows=rows)
    assert errors.run_main("prog", body) == code
    err = capsys.readouterr().err
    assert err == "prog: error: cannot write stdout: Broken pipe\n"


def test_refuse_closed_stdout(monkeypatch):
    monkeypatch.setattr("sys.stdout", errors.GuardedStdout(None))
    assert errors.stdout_closed()
    with pytest.raises(errors.StreamError, match="stdout is closed: nowhere to print the results"):
        errors.refuse_closed_stdout()

    class Comm:
        rank = 0

        def bcast(self, obj, root=0):
            return obj
    with pytest.raises(ValueError, match="nowhere to print the table"):
        errors.require_stdout(Comm(), ValueError)

    class Rank1(Comm):  # rank 0's stdout is closed, this one's is not: every rank stops
        rank = 1

        def bcast(self, obj, root=0):
            return True
    monkeypatch.setattr("sys.stdout", errors.GuardedStdout(io.StringIO()))
    with pytest.raises(ValueError, match="nowhere to print the table"):
        errors.require_stdout(Rank1(), ValueError)
