"""The runner core: one run's life, shared by every runner.

Every runner (the collective harness, weight streaming, and whatever
measures next) does the same around its own measurements::

    with Run(comm, cfg, sinks, env_tweaks) as run:
        run.header(header_lines(cfg, run.ctx))
        timing = Timing(comm, run.transport, cfg, run.watchdog)   # collectives.harness
        ...                                   # bind, timing.time(...), run.validate(...)
        run.emit(record)                      # one record, written at once
        run.point([records])                  # one table line
        run.footer(summary)

:class:`Run` starts the transport (every rank agrees whether it started),
arms the watchdog for the whole run (start-up and close included), gathers
the context, opens the sinks (the table, and on rank 0 the ``--json`` /
``--csv`` files), records a ``timeout`` row for the point in progress if
the watchdog fires, and on the way out closes the sinks and, after a clean
run only, the transport.  :meth:`Run.validate` is the one validation path:
seeded inputs, one run through the transport, an exact count of wrong
elements, summed over ranks.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Dict, List, Optional, Sequence

from collectives import context
from facts import validate
from collectives.config import Config
from collectives.output import Sink, open_sinks
from facts.record import now
from collectives.watchdog import Watchdog
from ground.dtypes import ConfigError
from transports.base import Transport, Unsupported

__all__ = ["Run", "StartupError", "start_transport", "open_files"]


class StartupError(RuntimeError):
    """A transport failed to start on some rank; every rank knows, none is stuck."""


def start_transport(comm, cfg: Config) -> Transport:
    """Create ``cfg``'s transport on every rank; all ranks agree on the outcome.

    Bad options are a :class:`ConfigError` and any other failure a
    :class:`StartupError`, raised on every rank with the first rank's reason.
    """
    import transports

    failure = None
    transport = None
    try:
        options = replace(cfg.transport_options, timeout=cfg.timeout)
        transport = transports.create(cfg.transport, comm, options)
    except ConfigError as exc:
        failure = ("config", str(exc))
    except Unsupported as exc:
        failure = ("config", f"transport '{cfg.transport}': {exc}")
    except Exception as exc:
        failure = ("error", f"rank {comm.rank}: transport '{cfg.transport}' failed to start: "
                   f"{type(exc).__name__}: {exc}")
    failures = [f for f in comm.allgather(failure) if f is not None]
    if failures:
        kind, message = failures[0]
        raise (ConfigError if kind == "config" else StartupError)(message)
    return transport


def open_files(comm, cfg: Config) -> List[Sink]:
    """Rank 0's ``--json``/``--csv`` writers (none elsewhere); every rank learns of a failure."""
    files: List[Sink] = []
    error = None
    if comm.rank == 0:
        try:
            files = open_sinks(cfg.json, cfg.csv, csv_fields=cfg.csv_fields)
        except (OSError, ValueError) as exc:
            error = str(exc)
    error = comm.bcast(error)
    if error:
        raise ConfigError(error)
    return files


class Run:
    """One run: transport, watchdog, context and sinks, as a context manager.

    Attributes once entered: ``transport``, ``watchdog``, ``ctx`` (see
    :func:`collectives.context.gather`), ``sinks`` and ``group`` (a group of
    the job under ``--split``, else None); a runner times its
    calls with :class:`collectives.timed_loop.Timing` over them.  Set
    :attr:`current` to the record being measured: if the watchdog fires,
    rank 0 writes it with ``status: timeout``.
    """

    def __init__(self, comm, cfg: Config, sinks: Sequence[Sink] = (), env_tweaks: Optional[Dict] = None,
                 watchdog: Optional[Watchdog] = None, group: Optional[Dict] = None):
        self.comm, self.cfg = comm, cfg
        # A group of the job (--split, collectives.split): "fields" every record carries, "ranks" the
        # job's rank of each of the group's ranks; None for the whole job.
        self.group = group
        # A process's entry point passes its own watchdog, which then stays
        # armed after the run, through the end of the job; otherwise the run
        # has one of its own and closes it.
        self._process_dog = watchdog
        self._given = list(sinks)
        self._env_tweaks = env_tweaks or {}
        self.sinks: List[Sink] = []
        self.current: Optional[Dict] = None
        self._checks = 0

    # -- life ------------------------------------------------------------------
    def __enter__(self) -> "Run":
        cfg, comm = self.cfg, self.comm
        dog = self._process_dog or Watchdog(cfg.timeout, comm.rank)
        dog.configure(cfg.timeout, cfg.startup_timeout)
        self.watchdog = dog
        try:
            # Files first: a file that must not be appended to is refused before anything runs.
            with dog.starting("opening the output files"):
                files = open_files(comm, cfg)
            self.sinks = self._given + files
            with dog.starting(f"starting transport '{cfg.transport}'"):
                self.transport = start_transport(comm, cfg)
            if cfg.timeout and self.transport.enforces_timeout:
                # The transport's own waits name the rank they waited for; the
                # watchdog only backs them up.
                dog.timeout = cfg.timeout * 1.2 + 1
            with dog.starting("gathering where the ranks run"):
                self.ctx = context.gather(comm, self.transport, self._env_tweaks)
            dog.ranks = self.ctx["ranks"]  # who to wait for at the end of the job
        except BaseException:
            for s in self.sinks:
                s.close()
            self._release_watchdog()
            raise
        self.watchdog.on_expire = self.record_timeout
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            for s in self.sinks:
                s.close()
            if exc_type is not None:
                # What this rank alone can release (named shm segments): after an
                # error every rank agreed on (exit 2) no abort will do it.
                try:
                    self.transport.cleanup()
                except Exception:
                    pass
            # Closed only on success: after a failure the job is aborted, and
            # closing would wait for ranks that may be gone.
            if exc_type is None:
                self.watchdog.timeout = self.watchdog.requested
                with self.watchdog.watch("closing the transport"):
                    self.transport.close()
                # No rank leaves before every rank has closed: a rank stalled
                # anywhere before here ends the job through -T.
                with self.watchdog.watch("the closing barrier"):
                    self.comm.barrier()
        finally:
            self._release_watchdog()
        return False

    def _release_watchdog(self) -> None:
        if self._process_dog is None:
            self.watchdog.close()
        else:
            self.watchdog.finishing("finishing the job")

    def record_timeout(self, what: str) -> None:
        """Rank 0 writes the point in progress as a ``timeout`` row (watchdog thread or a
        transport's own timeout)."""
        rec = dict(self.current or {})
        if rec and self.comm.rank == 0:
            rec.update(status="timeout", reason=f"did not complete within -T {self.cfg.timeout:g} s: {what}",
                       timestamp=now())
            for s in self.sinks:
                s.record(rec)
                s.note(f"TIMEOUT: {rec['reason']}")

    # -- sinks -------------------------------------------------------------------
    def header(self, lines: List[str], columns=None) -> None:
        """``columns``: the two column groups' titles, or False when ``lines`` hold the runner's
        own column header (its rows then go out through :meth:`text`)."""
        info = {"header_lines": lines, "context": self.ctx, "config": self.cfg}
        if columns is not None:
            info["columns"] = tuple(columns) if columns is not False else False
        for s in self.sinks:
            s.header(info)

    def emit(self, rec: Dict) -> None:
        """One finished record, written (and flushed) by every sink at once."""
        for s in self.sinks:
            s.record(rec)

    def point(self, recs: Sequence[Dict]) -> None:
        for s in self.sinks:
            s.point(recs)

    def note(self, text: str) -> None:
        for s in self.sinks:
            s.note(text)

    def text(self, line: str) -> None:
        """One table line of a runner with columns of its own."""
        for s in self.sinks:
            s.text(line)

    def footer(self, summary: Dict) -> None:
        for s in self.sinks:
            s.footer(summary)

    # -- validation ----------------------------------------------------------------
    def check_key(self) -> validate.Key:
        """The key of the inputs that the next timed loop runs on (not a fresh check)."""
        return validate.Key(self.cfg.seed, self._checks)

    def validate(self, what: str, seed: Callable[[validate.Key], object], execute: Callable[[], object],
                 count: Callable[[object], int]) -> Optional[int]:
        """``-c`` validated runs of one point, outside the timed loop; #wrong summed over ranks.

        For each check: ``seed(key)`` writes fresh seeded inputs (and poisons
        outputs) and returns what ``count`` needs; ``execute()`` runs the
        operation once through the transport, which is then synchronised;
        ``count(state)`` returns this rank's wrong elements.  None when
        ``-c 0``.
        """
        if not self.cfg.check:
            return None
        dog, wrong = self.watchdog, 0
        for _ in range(self.cfg.check):
            self._checks += 1
            key = validate.Key(self.cfg.seed, self._checks)
            with dog.local("seeding inputs"):
                state = seed(key)
            with dog.watch(f"the validation run of {what}"):
                execute()
                self.transport.synchronize()
            with dog.local("checking results"):
                wrong += count(state)
        with dog.watch(f"summing #wrong of {what}"):
            return self.comm.allreduce(wrong, "sum")
