"""The report's plots drawn in a process of their own while the report's tables are made (large results).

For a million rows the plots (their fits and matplotlib's drawing) take
seconds of one core, and the report's tables as long again.  From
:data:`MIN_ROWS` rows up, :class:`Drawing` starts ``python -m
analysis.plot_worker OUTDIR`` at once and sends it the columns the plots
read (:data:`analysis.report_plots.PLOTTED`: numbers as raw arrays, text
as codes into a JSON list; nothing that unpickling could run), later the
scaling rows as JSON; the process writes the PNG files and answers their
paths and notes as JSON.  Smaller results, a report that
measures the CPU (a second busy process would skew it), or a process that
cannot start or fails: the plots are drawn here, as :func:`report_plots.draw`
draws them, so a failure there is reported as any other.  The process never
outlives the report: it is killed on any way out.
"""

from __future__ import annotations

import json
import os
import queue
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

__all__ = ["Drawing", "MIN_ROWS", "message", "read", "main"]

MIN_ROWS = 100_000  # rows from which the plots are drawn in a process of their own
GRACE = 120.0  # seconds the process may take beyond a second per 10,000 rows before it is given up


class Drawing:
    """The report's plots of ``df`` into ``outdir``: :meth:`scaling` gives the scaling rows, :meth:`result`
    the paths and notes of :func:`analysis.report_plots.draw`.  A context manager (the process is killed
    on the way out)."""

    def __init__(self, df, outdir: Path, apart: bool = True):
        from analysis.report_plots import PLOTTED

        self.outdir = Path(outdir)
        self._df = df[[c for c in dict.fromkeys(PLOTTED) if c in df]]
        self._rows: Dict[str, List[Dict]] = {}
        self._proc: Optional[subprocess.Popen] = None
        self._sender: Optional[threading.Thread] = None
        self._queue: "queue.Queue[Optional[bytes]]" = queue.Queue()
        if apart and len(df) >= MIN_ROWS:
            try:
                self._start()
            except BaseException:  # an interrupt while the columns are encoded: no process left behind
                self.close()
                raise

    def _start(self) -> None:
        root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ, MPLBACKEND="Agg",
                   PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "analysis.plot_worker", str(self.outdir),
                                           str(os.getpid())], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        except OSError:
            return  # drawn here
        try:
            data = message("collectives", self._df)
        except (TypeError, ValueError):  # a value JSON cannot carry: drawn here
            self.close()
            self._proc = None
            return
        self._queue.put(data)
        self._sender = threading.Thread(target=self._send, daemon=True)
        self._sender.start()  # the pipe takes each message as the process reads, not holding up the report

    def _send(self) -> None:
        """Each message queued, in turn, until None; then the end of stdin."""
        stdin = self._proc.stdin
        try:
            for data in iter(self._queue.get, None):
                stdin.write(data)
                stdin.flush()
        except (OSError, ValueError):  # the process is gone: result() draws here
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def scaling(self, rows: Dict[str, List[Dict]]) -> None:
        """The scaling rows to draw (after the collectives' plots)."""
        self._rows = rows
        if self._proc is not None:
            try:
                self._queue.put(message("scaling", rows))
            except (TypeError, ValueError):  # a value JSON cannot carry: all drawn here
                self.close()
                self._proc = None

    def result(self) -> Tuple[List[Path], List[str]]:
        """The plots' paths and notes, as :func:`analysis.report_plots.draw` returns them."""
        got = self._answer() if self._proc is not None else None
        if got is None:
            from analysis.report_plots import draw

            return draw(self._df, self._rows, self.outdir)
        return got

    def _answer(self) -> Optional[Tuple[List[Path], List[str]]]:
        """The process's answer, or None where it failed (its error is on stderr) or took longer than
        :data:`GRACE` plus a second per 10,000 rows (it is killed: the plots are drawn here)."""
        import select

        self._queue.put(None)
        deadline = time.monotonic() + GRACE + len(self._df) / 10_000
        fd, chunks = self._proc.stdout.fileno(), []
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.close()
                print("analysis.plot_worker: no answer in time; the report draws the plots itself",
                      file=sys.stderr)
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        out = b"".join(chunks)
        self._sender.join()
        if self._proc.wait() != 0:
            return None
        try:
            got = json.loads(out)
            return [Path(p) for p in got["made"]], [str(n) for n in got["notes"]]
        except (ValueError, KeyError, TypeError):
            return None

    def close(self) -> None:
        """Kill the process if it still runs (an error or an interrupt in the report)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._queue.put(None)  # the sender, if blocked on the pipe, has its error (the process is gone)
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass

    def __enter__(self) -> "Drawing":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def message(what: str, data) -> bytes:
    """One message to the process: its header's length, the header (JSON), then the buffers it sizes.
    ``data``: the frame of the collectives' plots (:func:`_columns`), or the scaling rows (JSON)."""
    header, buffers = _columns(data) if what == "collectives" else (data, [])
    head = json.dumps({"what": what, "data": header}, allow_nan=True).encode()
    return struct.pack("<Q", len(head)) + head + b"".join(buffers)


def read(source) -> Optional[Tuple[str, object]]:
    """The next :func:`message` from ``source`` as (what, data), or None at the end."""
    size = source.read(8)
    if len(size) < 8:
        return None
    head = json.loads(_exactly(source, struct.unpack("<Q", size)[0]))
    what, data = head["what"], head["data"]
    return what, _frame(data, source) if what == "collectives" else data


def _columns(df) -> Tuple[dict, List[bytes]]:
    """A frame as a JSON header and raw buffers: numbers and booleans as their arrays' bytes, text (or
    None) as int32 codes into a JSON list of its values; ValueError for a column of anything else."""
    import numpy as np
    import pandas as pd

    cols, buffers = [], []
    for name in df.columns:
        s = df[name]
        if isinstance(s.dtype, np.dtype) and s.dtype.kind in "biuf":
            a = np.ascontiguousarray(s.to_numpy())
            cols.append([str(name), a.dtype.str, None])
        else:
            values = s.to_numpy(dtype=object)
            if not set(map(type, values.tolist())) <= {str, type(None)}:
                raise ValueError(f"column {name!r} holds more than text")  # 1 and True would be one code
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
            a = codes.astype(np.int32)
            cols.append([str(name), None, list(uniques.tolist()) + [None]])
        buffers.append(a.tobytes())
    return {"rows": len(df), "columns": cols}, buffers


def _exactly(source, n: int) -> bytes:
    data = source.read(n)
    if len(data) != n:
        raise EOFError("the report's message ended early")
    return data


def _frame(header: dict, source):
    """The frame :func:`_columns` sent."""
    import numpy as np
    import pandas as pd

    n = header["rows"]
    data = {}
    for name, dtype, values in header["columns"]:
        if dtype is not None:
            dt = np.dtype(dtype)
            data[name] = np.frombuffer(_exactly(source, n * dt.itemsize), dt)
        else:
            codes = np.frombuffer(_exactly(source, n * 4), np.int32)
            table = np.empty(len(values), object)
            table[:] = values
            data[name] = pd.Series(table[codes], dtype=object)
    return pd.DataFrame(data, index=pd.RangeIndex(n))


def _die_with(parent: Optional[int]) -> None:
    """This process ends with the report: killed when it dies (Linux: a signal from the kernel; elsewhere
    the end of stdin), deaf to the terminal's Ctrl-C, which the report itself answers by killing it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the signal was asked for
        os._exit(1)


def main(argv: Optional[List[str]] = None) -> int:
    """The process: messages on stdin (the collectives' columns, then the scaling rows), the plots into the
    directory named, their paths and notes as JSON on stdout at the end of stdin."""
    from analysis import report_plots

    args = argv if argv is not None else sys.argv[1:]
    outdir = Path(args[0])
    _die_with(int(args[1]) if len(args) > 1 else None)
    made: List[str] = []
    notes: List[str] = []
    scaling: List[str] = []
    source = sys.stdin.buffer
    try:
        while True:
            got = read(source)
            if got is None:
                break
            what, data = got
            if what == "collectives":
                paths, notes = report_plots.draw_collectives(data, outdir)
                made = [str(p) for p in paths]
            elif what == "scaling":
                scaling = [str(p) for p in report_plots.draw_scaling(data, outdir)]
    except Exception as exc:  # the report draws the plots itself, and says what fails there
        print(f"analysis.plot_worker: {type(exc).__name__}: {exc}; the report draws the plots itself",
              file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps({"made": made + scaling, "notes": notes}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
