"""What launch's command lines share: one-line errors, and numbers, names and paths checked
before anything is written.

Every ``python -m launch.*`` main runs its body through :func:`ground.errors.run_main`:

* 0 (or the body's own status): done;
* 2: an expected error (:class:`UsageError`, one of the ``expected`` types a
  main names, or an ``OSError``): ONE line, ``<prog>: error: <what>``;
* 3: anything else (a bug): ``<prog>: error: TypeName: message (set
  COLLSCALE_DEBUG=1 for the traceback)``, the traceback only with
  ``COLLSCALE_DEBUG=1``, as ``collectives/cli.py`` does;
* 130: interrupted.  ``--help`` (``SystemExit``) passes through.

The checks raise :class:`UsageError` naming the flag and the value given:
counts are ASCII whole numbers in a range (``int()`` would take ``'٣'`` and
``'1_0'``), seconds are finite and positive, identifiers that become file
names (sweep ids, points) cannot be paths, and paths are looked at (an
existing directory where a file is needed, a file where a directory is, a
parent that cannot be made) without creating anything.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import stat
from typing import List, Optional, Sequence

from ground.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, UsageError, one_line

__all__ = ["UsageError", "Parser", "one_line", "whole", "whole_list", "seconds", "identifier",
           "file_target", "dir_target", "EXIT_USAGE", "EXIT_ERROR", "EXIT_INTERRUPTED", "MAX_COUNT",
           "MAX_SECONDS", "MAX_LIST"]

MAX_COUNT = 1 << 20  # ranks, nodes or ranks per node: a million is past any machine built
MAX_SECONDS = 1e7  # about 115 days: longer is a typo (and past what some waits accept)
MAX_LIST = 100  # entries of a comma list
_WHOLE = re.compile(r"\s*\+?([0-9]{1,19})\s*")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line naming ``--help`` (no usage block): :class:`UsageError`."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


# -- numbers and names ------------------------------------------------------------------------

def whole(flag: str, text, lo: int = 1, hi: int = MAX_COUNT, why: str = "") -> int:
    """``text`` as a whole number in [lo, hi], else a :class:`UsageError` naming ``flag``."""
    match = _WHOLE.fullmatch(str(text))
    if match and lo <= int(match.group(1)) <= hi:
        return int(match.group(1))
    raise UsageError(f"{flag} {text}: " + (why or f"expected a whole number from {lo} to {hi}"))


def whole_list(flag: str, text, lo: int = 1, hi: int = MAX_COUNT) -> List[int]:
    """A comma list of whole numbers in [lo, hi] (at most :data:`MAX_LIST`)."""
    items = [t for t in str(text).split(",") if t.strip()]
    if not items:
        raise UsageError(f"{flag}: give a comma-separated list")
    if len(items) > MAX_LIST:
        raise UsageError(f"{flag}: at most {MAX_LIST} values")
    if not all(_WHOLE.fullmatch(t) for t in items):
        raise UsageError(f"{flag} {text!r}: expected comma-separated whole numbers")
    values = [int(_WHOLE.fullmatch(t).group(1)) for t in items]
    if any(v < lo for v in values):
        raise UsageError(f"{flag} {text!r}: every count must be at least {lo}")
    if any(v > hi for v in values):
        raise UsageError(f"{flag} {text!r}: every count must be at most {hi}")
    return values


def seconds(flag: str, value, hi: float = MAX_SECONDS) -> float:
    """A finite number of seconds in (0, hi]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and 0 < number <= hi):
        raise UsageError(f"{flag} {value}: must be a positive number of seconds (at most {hi:g})")
    return number


def identifier(flag: str, text: str) -> str:
    """A name that becomes part of file names: letters, digits, '-', '_', '.', not led by '.'."""
    if not isinstance(text, str) or not _IDENTIFIER.fullmatch(text):
        raise UsageError(f"{flag} {text!r}: use letters, digits, '-', '_' and '.' (not first), at most 200; "
                         "it names files, so it cannot be a path")
    return text


# -- paths ------------------------------------------------------------------------------------

def _stat(flag: str, path: str) -> Optional[os.stat_result]:
    """``path``'s stat, None if nothing is there; a path that cannot be looked at is the user's error."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # a file where a directory should be, a name too long, NUL
        if isinstance(exc, OSError) and exc.errno == errno.ENOTDIR:
            return None  # named below: the ancestor that is a file
        raise UsageError(f"{flag} {path!r}: not a usable path ({getattr(exc, 'strerror', None) or exc})") from None


def _creatable_dir(flag: str, text: str, path: str) -> None:
    """Check that directory ``path`` exists or can be made (every missing part), making nothing."""
    missing: List[str] = []
    here = os.path.abspath(path)
    while True:
        st = _stat(flag, here)
        if st is not None:
            break
        missing.append(os.path.basename(here))
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    if st is None or not _isdir(st):
        raise UsageError(f"{flag} {text}: {here} is not a directory" if st is not None else
                         f"{flag} {text}: no existing directory above it")
    if missing and not os.access(here, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {text}: cannot create a directory in {here} (permission denied)")
    try:
        name_max = os.pathconf(here, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if any(len(os.fsencode(part)) > name_max for part in missing):
        raise UsageError(f"{flag} {text}: a name in it is longer than {name_max} bytes")


def _isdir(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode)


def _text(flag: str, text) -> str:
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise UsageError(f"{flag} {text!r}: not a path")
    try:
        os.fsencode(text)
    except (UnicodeError, ValueError):
        raise UsageError(f"{flag} {text!r}: not a path (cannot be encoded)") from None
    return text


def file_target(flag: str, text: str) -> str:
    """A file to create or append to: not a directory, writable if it exists, its directory makeable."""
    _text(flag, text)
    st = _stat(flag, text)
    if st is not None:
        if _isdir(st):
            raise UsageError(f"{flag} {text}: is a directory; give a file name")
        if not os.access(text, os.W_OK):
            raise UsageError(f"{flag} {text}: not writable")
        return text
    if text.endswith(os.sep):
        raise UsageError(f"{flag} {text}: names a directory; give a file name")
    _creatable_dir(flag, text, os.path.dirname(os.path.abspath(text)))
    return text


def dir_target(flag: str, text: str, files: Sequence[str] = ()) -> str:
    """A directory to write in (made later if missing); none of ``files`` in it may be a directory."""
    _text(flag, text)
    st = _stat(flag, text)
    if st is not None and not _isdir(st):
        raise UsageError(f"{flag} {text}: exists and is not a directory")
    _creatable_dir(flag, text, text)
    if st is not None and not os.access(text, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {text}: the directory is not writable")
    for name in files:  # "logs/" must be a directory if it is there, "nodes1.pbs" must not
        inner = os.path.join(text, name.rstrip(os.sep))
        st = _stat(flag, inner)
        if st is not None and _isdir(st) != name.endswith(os.sep):
            raise UsageError(f"{flag} {text}: {inner} is {'a directory' if _isdir(st) else 'not a directory'}")
    return text
