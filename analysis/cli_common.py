"""What the analysis command lines share: one-line errors, checked flags, checked paths.

Every ``python -m analysis.*`` main runs its body through :func:`ground.errors.run_main`
(with ``prints``),
which turns each outcome into an exit status and never shows a traceback:

* 0: done (warnings, if any, were one line each on stderr);
* 2: an expected error: a bad flag, a bad path (an output name too long for
  its file system included, named before any work), a results file that
  cannot be read (:class:`UsageError`, which
  :class:`analysis.load.reader.ResultsError` is, or an ``OSError``), or a stdout
  that is closed (refused before any work), broken (``| head``) or full: ONE
  line, ``<prog>: error: <what>``; with stderr closed or broken, the status
  alone;
* 3: anything else (a bug): ``<prog>: error: TypeName: message (set
  COLLSCALE_DEBUG=1 for the traceback)``, as collectives/cli.py does;
* 130: interrupted.

Flags are checked by argparse ``type=`` functions (:func:`whole`,
:func:`whole_list`, :func:`number`, :func:`size`): finite, whole where they
must be, inside a stated range, so that a typo is named before any work
starts and no NaN, infinity or 10**400 reaches the models.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Optional

from ground import errors
from ground.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, UsageError, one_line
from ground.sizes import parse_size

__all__ = ["UsageError", "Parser", "usage_errors", "warner", "whole", "whole_list", "number",
           "size", "output_dir", "output_file", "add_strict", "EXIT_USAGE", "EXIT_ERROR", "EXIT_INTERRUPTED",
           "MAX_RANKS", "MAX_BYTES"]


MAX_RANKS = 1 << 20  # ranks or devices of a model: a million is past any machine built
MAX_BYTES = 1 << 50  # 1 PiB: sizes stay exact in a float
MAX_LIST = 100  # entries of a comma list (every pair of two lists is a row)

_WHOLE = re.compile(r"\s*\+?([0-9]{1,19})\s*")


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block): they raise :class:`UsageError`."""

    def error(self, message):
        raise UsageError(message)


def warner(prog: str) -> Callable[[str], None]:
    """A function that prints one warning line, ``<prog>: warning: <msg>``, on stderr."""
    def warn(message: str) -> None:
        print(f"{prog}: warning: {one_line(message)}", file=sys.stderr)
    return warn


@contextmanager
def usage_errors(*types: type) -> Iterator[None]:
    """Inside: a ``ValueError`` (or one of ``types``) is the user's input (an unknown
    fabric, no fit in the results): re-raised as :class:`UsageError`."""
    try:
        yield
    except UsageError:
        raise
    except (ValueError, *types) as exc:
        raise UsageError(str(exc)) from exc


def add_strict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strict", action="store_true",
                        help="refuse results files with unreadable lines (by default a torn or bad line is "
                        "skipped with one warning naming file:line)")


# -- numbers --------------------------------------------------------------------------------

def _whole(text: str, lo: int, hi: int) -> int:
    match = _WHOLE.fullmatch(str(text))
    value = int(match.group(1)) if match else None
    if value is None or not lo <= value <= hi:
        raise ValueError
    return value


def whole(lo: int = 1, hi: int = MAX_RANKS) -> Callable[[str], int]:
    """argparse type: a whole number in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            return _whole(text, lo, hi)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number from {lo} to {hi}") from None
    return parse


def whole_list(lo: int = 1, hi: int = MAX_RANKS) -> Callable[[str], List[int]]:
    """argparse type: a comma list of whole numbers in [lo, hi] (at most :data:`MAX_LIST`)."""
    def parse(text: str) -> List[int]:
        try:
            parts = str(text).split(",")
            if len(parts) > MAX_LIST:
                raise ValueError
            return [_whole(p, lo, hi) for p in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"'{text}' is not a comma list of whole numbers from {lo} to {hi} (at most {MAX_LIST} of "
                "them)") from None
    return parse


def number(lo: float, hi: float, lo_open: bool = True, hi_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number in the range (lo, hi] (closed or open ends as asked)."""
    span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
        if value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
            raise argparse.ArgumentTypeError(f"'{text}' is out of range: it must lie in {span}")
        return value
    return parse


def size(text: str) -> int:
    """argparse type: a size in bytes, nccl-tests style (64M), from 1 B to 1 PiB."""
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 1 <= value <= MAX_BYTES:
        raise argparse.ArgumentTypeError(f"'{text}' is out of range: sizes go from 1 B to {MAX_BYTES} B (1P)")
    return value


# -- paths ----------------------------------------------------------------------------------

def _path(flag: str, text: str) -> Path:
    if not str(text).strip() or "\x00" in str(text):
        raise UsageError(f"{flag} {text!r}: not a path")
    errors.check_path_length(text, flag)  # PC_NAME_MAX / PC_PATH_MAX, before any work
    return Path(text)


def output_dir(flag: str, text: str, create: bool = True) -> Path:
    """The directory ``text``, created with its missing parents unless ``create`` is false
    (a check before slow work); a file there is an error."""
    path = _path(flag, text)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {text}: exists and is not a directory")
    if not create:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{flag} {text}: cannot create the directory: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {text}: the directory is not writable")
    return path


def output_file(flag: str, text: Optional[str]) -> Optional[Path]:
    """A file to append to: not a directory, in a directory that exists."""
    if text is None:
        return None
    path = _path(flag, text)
    if path.is_dir():
        raise UsageError(f"{flag} {text}: is a directory; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {text}: no directory {parent} to write it in")
    return path
