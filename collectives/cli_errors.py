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
* 130: interrupted.  ``--help`` (``SystemExit``) passes its status through.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, Tuple, Type

__all__ = ["UsageError", "run_main", "one_line", "say", "EXIT_OK", "EXIT_WRONG", "EXIT_USAGE", "EXIT_ERROR",
           "EXIT_TIMEOUT", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_WRONG = 1  # a result was wrong
EXIT_USAGE = 2  # bad input
EXIT_ERROR = 3  # a rank failed (the job was aborted), or a bug
EXIT_TIMEOUT = 124  # a collective (or start-up, or the end of the job) exceeded its limit
EXIT_INTERRUPTED = 130  # Ctrl-C


class UsageError(ValueError):
    """Input the user can fix (a flag, a name, a path, a file): one line on stderr, exit 2."""


def one_line(text) -> str:
    return " ".join(str(text).split()) or "(no message)"


def say(prog: str, message) -> None:
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr, flush=True)


def run_main(prog: str, body: Callable[[], int], expected: Tuple[Type[BaseException], ...] = ()) -> int:
    """Run a CLI's ``body()`` and return its exit status (see the module docstring)."""
    try:
        return body()
    except (UsageError, *expected) as exc:
        say(prog, exc)
        return EXIT_USAGE
    except BrokenPipeError:  # `... | head`: the reader is gone, nothing to say
        _silence_stdout()
        return EXIT_USAGE
    except OSError as exc:
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


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
