"""Exit statuses and one-line errors, shared by every command line of the project.

Pure (no MPI, no transport): ``collectives``, ``analysis`` and ``launch``
mains all end through these.  :func:`run_main` turns a CLI body's outcome
into a status:

* the body's own status (0 when done);
* 2: an expected error (:class:`UsageError`, one of the ``expected`` types,
  or an ``OSError``): ONE line, ``<prog>: error: <what>``;
* 3: anything else (a bug): ``<prog>: error: TypeName: message (set
  COLLSCALE_DEBUG=1 for the traceback)``, the traceback only with
  ``COLLSCALE_DEBUG=1``;
* 4: below expectation (:data:`EXIT_BELOW`), which a command returns itself;
* 130: interrupted.  ``--help`` (``SystemExit``): its status, returned.

Streams (:func:`guard_stdio`, which :func:`run_main` and
``collectives.lifecycle.process_main`` call first): a closed stdout, stderr or
stdin (``>&-``) is plugged with ``/dev/null`` at the fd level, so no file
opened later takes its number; writing to a closed stdout, or one that
fails (a broken pipe, ``/dev/full``), raises :class:`StreamError`, one line
that ends the command: exit 2 before its first row of results, 3 after
(``StreamError.rows``; what was written is kept).  A closed or broken
stderr is silenced: the exit status alone tells.  :func:`path_too_long`
names an output path that its file system cannot hold (``PC_NAME_MAX``,
``PC_PATH_MAX`` of the nearest existing directory), before any work.
"""

from __future__ import annotations

import io
import os
import sys
import traceback
from typing import Callable, List, Optional, Tuple, Type

__all__ = ["UsageError", "StreamError", "run_main", "one_line", "say", "tell", "guard_stdio", "stdout_closed",
           "flush_stdio", "refuse_closed_stdout", "require_stdout", "silence_stderr", "path_too_long", "length_checked",
           "check_path_length", "shorten", "EXIT_OK", "EXIT_WRONG", "EXIT_USAGE", "EXIT_ERROR", "EXIT_BELOW",
           "EXIT_TIMEOUT", "EXIT_INTERRUPTED", "GuardedStdout", "GuardedStderr", "silence_fd"]

EXIT_OK = 0
EXIT_WRONG = 1  # a result was wrong
EXIT_USAGE = 2  # bad input
EXIT_ERROR = 3  # a rank failed (the job was aborted), or a bug
EXIT_BELOW = 4  # below expectation: a gate, a regression against a baseline, a triage suspect
EXIT_TIMEOUT = 124  # a collective (or start-up, or the end of the job) exceeded its limit
EXIT_INTERRUPTED = 130  # Ctrl-C


class UsageError(ValueError):
    """Input the user can fix (a flag, a name, a path, a file): one line on stderr, exit 2."""


class StreamError(OSError):
    """Output that could not be written (a closed or broken stdout, a full disk): ``str()`` is the one
    line to print; ``rows``: rows of results written before (0: exit 2, more: exit 3)."""

    def __init__(self, message: str, rows: int = 0, reason: Optional[str] = None):
        super().__init__(message)
        self.rows = rows
        self.reason = reason or message


def one_line(text) -> str:
    return " ".join(str(text).split()) or "(no message)"


def say(prog: str, message) -> None:
    tell(f"{prog}: error: {one_line(message)}")


def tell(line: str) -> None:
    """One whole line on stderr, in one write; a closed or broken stderr is silenced instead
    (the exit status alone then tells)."""
    stream = sys.stderr
    if stream is None:  # print(file=None) would write to stdout
        return
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):
        silence_fd(2)


def run_main(prog: str, body: Callable[[], int], expected: Tuple[Type[BaseException], ...] = (),
             prints: Optional[str] = None) -> int:
    """Run a CLI's ``body()`` and return its exit status (see the module docstring): the one ending of
    every command line.  ``prints``: what the command prints (``"the results"``); a closed stdout is
    then refused (exit 2) before the body runs."""
    restore = guard_stdio()
    try:
        def checked() -> int:
            if prints:
                refuse_closed_stdout(prints)
            return body()
        return _run(prog, checked, expected)
    except SystemExit as exc:  # --help, or a body that exits: its status, returned
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    finally:
        restore()


def _run(prog: str, body: Callable[[], int], expected: Tuple[Type[BaseException], ...]) -> int:
    try:
        code = body()
        if sys.stdout is not None:
            sys.stdout.flush()  # what is still buffered: a failure here is this command's, not the exit's
        return code
    except (UsageError, *expected) as exc:
        say(prog, exc)
        return EXIT_USAGE
    except StreamError as exc:  # a closed or broken stdout, a full disk: kept what was written
        say(prog, exc)
        return EXIT_ERROR if exc.rows else EXIT_USAGE
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # `... | head` on a stream that guard_stdio did not wrap
            _silence_stdout()
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        say(prog, f"{where}{exc.strerror or exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        say(prog, "interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line unless asked for the traceback
        debug = os.environ.get("COLLSCALE_DEBUG")
        if debug:
            traceback.print_exc()
        say(prog, f"{type(exc).__name__}: {exc}" + ("" if debug else " (set COLLSCALE_DEBUG=1 for the traceback)"))
        return EXIT_ERROR


def silence_stderr() -> None:
    """Point fd 2 at /dev/null (after the one line was said: a library's own lines would follow)."""
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):
        pass
    silence_fd(2)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    silence_fd(1)


def silence_fd(fd: int) -> None:
    """Point ``fd`` (1 or 2) at /dev/null, as the Python docs advise after a broken pipe: what is
    still buffered, and the interpreter's final flush, then go nowhere instead of failing again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


# -- the standard streams ---------------------------------------------------------------------

def _plug_closed_fds() -> List[int]:
    """Open /dev/null on each of fds 0-2 that is closed (``>&-``), so that no file opened later
    (a results file, a shared-memory segment) takes the number and receives what is printed."""
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
                closed.append(fd)
            except OSError:
                pass
    return closed


class GuardedStdout:
    """sys.stdout for a command line: a write that fails, or any write to a stdout that was closed
    when the process started, raises :class:`StreamError` (the first failure points fd 1 at
    /dev/null, so nothing fails twice at exit); flushing after a failure does nothing."""

    name = "<stdout>"

    def __init__(self, stream):
        self._stream = stream
        self.failed: Optional[str] = None if stream is not None else "stdout is closed"

    def write(self, text):
        if self.failed:
            raise StreamError(f"cannot write stdout: {self.failed}", reason=self.failed)
        try:
            return self._stream.write(text)
        except (OSError, ValueError) as exc:
            self._fail(exc)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if not self.failed:
            try:
                self._stream.flush()
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def _fail(self, exc):
        self.failed = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        silence_fd(1)
        raise StreamError(f"cannot write stdout: {self.failed}", reason=self.failed) from None

    def isatty(self):
        return self._stream is not None and not self.failed and self._stream.isatty()

    def __getattr__(self, name):
        if self._stream is None:
            if name == "fileno":
                return _no_fileno
            raise AttributeError(f"stdout is closed (no {name})")
        return getattr(self._stream, name)


def _no_fileno():
    raise io.UnsupportedOperation("stdout is closed")


class GuardedStderr:
    """sys.stderr for a command line: closed or broken, it goes quiet (never raises)."""

    name = "<stderr>"

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        if self._stream is not None:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):
                self._stream = None
                silence_fd(2)
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._stream is not None:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._stream = None
                silence_fd(2)

    def isatty(self):
        return self._stream is not None and self._stream.isatty()

    def __getattr__(self, name):
        if self._stream is None:
            raise AttributeError(f"stderr is closed (no {name})")
        return getattr(self._stream, name)


def guard_stdio() -> Callable[[], None]:
    """Make the process's standard streams safe for a command line (see the module docstring);
    returns what undoes the Python side (the plugged fds stay).  Only the process's own streams
    are wrapped: a stream a caller put in their place (a test's capture) is left alone."""
    _plug_closed_fds()
    saved = (sys.stdout, sys.stderr)
    if sys.stdout is None or (sys.stdout is sys.__stdout__ and not isinstance(sys.stdout, GuardedStdout)):
        sys.stdout = GuardedStdout(sys.stdout)
    if sys.stderr is None or (sys.stderr is sys.__stderr__ and not isinstance(sys.stderr, GuardedStderr)):
        sys.stderr = GuardedStderr(sys.stderr)

    def restore() -> None:
        if isinstance(sys.stdout, GuardedStdout) and sys.stdout is not saved[0]:
            sys.stdout = saved[0]
        if isinstance(sys.stderr, GuardedStderr) and sys.stderr is not saved[1]:
            sys.stderr = saved[1]
    return restore


def stdout_closed() -> bool:
    """True when this process's stdout was closed when it started (``>&-``)."""
    out = sys.stdout
    return out is None or (isinstance(out, GuardedStdout) and out._stream is None)


def _closed_message(what: str) -> str:
    return f"stdout is closed: nowhere to print {what} (send it to /dev/null to drop it)"


def refuse_closed_stdout(what: str = "the results") -> None:
    """Raise :class:`StreamError` (exit 2) when this process's stdout is closed: a command that prints
    calls it before any work, rather than failing when it is done."""
    if stdout_closed():
        raise StreamError(_closed_message(what))


def require_stdout(comm, error: Type[Exception] = UsageError) -> None:
    """Raise ``error`` on every rank of ``comm`` (a control communicator: ``rank``, ``bcast``)
    when rank 0's stdout is closed, before anything runs; every rank ends cleanly."""
    if comm.bcast(stdout_closed() if comm.rank == 0 else None):
        raise error(_closed_message("the table"))


def flush_stdio() -> None:
    """Flush stdout and stderr before the process ends; a failure here has nothing left to say."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


# -- paths the file system cannot hold ------------------------------------------------------------

def shorten(text, most: int = 60) -> str:
    """``text`` cut in the middle to at most about ``most`` characters (for one-line messages)."""
    text = str(text)
    if len(text) <= most:
        return text
    half = (most - 3) // 2
    return f"{text[:half]}...{text[-half:]} ({len(text)} characters)"


def _limit(directory: str, name: str) -> Optional[int]:
    try:
        value = os.pathconf(directory, name)
    except (OSError, ValueError):
        return None
    return value if value and value > 0 else None


def path_too_long(path) -> Optional[str]:
    """Why ``path`` cannot be created on its file system, else None: a name longer than
    ``PC_NAME_MAX`` or a path of ``PC_PATH_MAX`` bytes or more, the limits of the nearest existing
    directory above it (no fixed number; nothing is created)."""
    try:
        raw = os.fsencode(path)
    except (UnicodeError, TypeError, ValueError):
        return None  # not a path at all: the callers' own checks say so
    if not raw or b"\0" in raw:
        return None
    here = os.path.abspath(os.fsdecode(raw))
    missing: List[str] = []
    while not os.path.isdir(here):  # False for a name too long, too
        parent = os.path.dirname(here)
        if parent == here:
            return None
        missing.append(os.path.basename(here))
        here = parent
    name_max = _limit(here, "PC_NAME_MAX")
    for part in reversed(missing):
        size = len(os.fsencode(part))
        if name_max is not None and size > name_max:
            return (f"file name too long for its file system: '{shorten(part, 40)}' is {size} bytes, "
                    f"{here} allows at most {name_max}")
    path_max = _limit(here, "PC_PATH_MAX")
    if path_max is not None and len(raw) >= path_max:
        return f"path too long for its file system: {len(raw)} bytes, {here} allows at most {path_max - 1}"
    return None


def length_checked(path, error: Type[Exception] = UsageError):
    """``path``, or ``error`` raised with why its file system cannot hold it (argparse's ``type=``)."""
    why = path_too_long(path)
    if why:
        raise error(f"{shorten(path)}: {why}")
    return path


def check_path_length(path, flag: Optional[str] = None) -> None:
    """Raise :class:`UsageError` (``<flag> <path>: <why>``, the path shortened) when
    :func:`path_too_long` refuses ``path``."""
    why = path_too_long(path)
    if why:
        raise UsageError(f"{flag + ' ' if flag else ''}{shorten(path)}: {why}")
