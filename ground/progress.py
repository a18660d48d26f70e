"""Progress of long work on a terminal's stderr (tqdm), and nothing at all anywhere else.

``analysis.report`` and ``launch.sweep`` run outside mpirun, for minutes at
a time; on a terminal they show a tqdm bar on stderr.  When stderr is not a
terminal (a pipe, a file, CI) or tqdm is not installed (it comes with the
``analysis`` extra), :func:`bar` returns a stand-in that does nothing, so
logs and pipes stay as they were.

    with progress.bar(total=3, desc="report") as p:
        p.step("reading results")   # names the current phase
        ...
        p.done()                    # one phase finished
        p.say(print)("a line")      # a line printed without tearing the bar
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

__all__ = ["bar", "Progress", "enabled"]


def enabled(stream=None) -> bool:
    """True when ``stream`` (default stderr) is a terminal and tqdm can be imported."""
    stream = sys.stderr if stream is None else stream
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):  # closed or not a real file
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class Progress:
    """A tqdm bar on stderr, or (``bar_`` None) a stand-in that does nothing."""

    def __init__(self, bar_=None):
        self._bar = bar_

    @property
    def active(self) -> bool:
        return self._bar is not None

    def step(self, what: str) -> None:
        """Say what is being done now (the bar's description)."""
        if self._bar is not None:
            self._bar.set_description_str(what)

    def note(self, text: str) -> None:
        """A short status after the bar (rows so far, the current point)."""
        if self._bar is not None:
            self._bar.set_postfix_str(text)

    def done(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def say(self, printer: Callable[..., None]) -> Callable[..., None]:
        """``printer`` wrapped so that its lines do not tear the bar (they appear above it)."""
        if self._bar is None:
            return printer

        def wrapped(*args, **kwargs):
            with self._bar.external_write_mode():
                printer(*args, **kwargs)
        return wrapped

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def bar(total: Optional[int], desc: str, unit: str = "step") -> Progress:
    """A bar of ``total`` steps on stderr when it is a terminal, else a stand-in."""
    if not enabled():
        return Progress()
    from tqdm import tqdm

    return Progress(tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                         mininterval=0.2))
