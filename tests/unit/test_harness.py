"""The harness end to end in one process (no MPI): rows, checks, statistics, watchdog."""

import threading
import time

import pytest

from collectives import cli
from collectives.timed_loop import aggregate, iteration_stats
from collectives.output import Sink
from collectives.watchdog import Watchdog
from ground.comm import SelfComm
from ground.dtypes import ConfigError

from tests.unit.fakes import register_fakes

register_fakes()


class Collect(Sink):
    def __init__(self):
        self.headers, self.records, self.points, self.footers = [], [], [], []

    def header(self, info):
        self.headers.append(info)

    def record(self, rec):
        self.records.append(rec)

    def point(self, recs):
        self.points.append(list(recs))

    def footer(self, summary):
        self.footers.append(summary)


def _run(collective, *argv):
    sink = Collect()
    recs = cli.run(collective, SelfComm(), list(argv), [sink])
    return recs, sink


def test_rows_for_every_size_and_placement():
    recs, sink = _run("allreduce", "--transport", "loopback", "-b", "8", "-e", "1K", "-n", "3", "-w", "1")
    assert [r["size_bytes"] for r in recs] == [s for s in (8, 16, 32, 64, 128, 256, 512, 1024) for _ in (0, 1)]
    assert [r["in_place"] for r in recs[:2]] == [False, True]
    assert all(r["status"] == "ok" and r["wrong"] == 0 and r["iters"] == 3 for r in recs)
    assert all(r["kind"] == "measured" and r["nranks"] == 1 for r in recs)
    assert len(sink.points) == 8 and sink.records == recs
    assert sink.footers[0]["wrong"] == 0
    r = recs[0]
    assert r["time_us_min"] <= r["time_us_p50"] <= r["time_us_p99"] <= r["time_us_max"]
    assert r["algbw_gbs"] == pytest.approx(8 / (r["time_us"] * 1e-6) / 1e9)
    assert r["busbw_gbs"] == 0.0  # one rank moves nothing: factor 2(n-1)/n = 0


def test_wrong_results_are_counted():
    recs, sink = _run("allgather", "--transport", "wrong", "-b", "64", "-e", "64", "-n", "2", "-c", "3")
    assert [r["wrong"] for r in recs] == [3, 3]
    assert all(r["status"] == "wrong" for r in recs)
    assert sink.footers[0]["wrong"] == 6


def test_check_zero_means_not_checked():
    recs, _ = _run("allreduce", "--transport", "wrong", "-b", "64", "-e", "64", "-n", "2", "-c", "0")
    assert all(r["wrong"] is None and r["status"] == "ok" for r in recs)


def test_fault_injection_is_caught():
    recs, _ = _run("broadcast", "--transport", "loopback", "-e", "64", "-n", "2", "--inject-fault", "0")
    assert all(r["wrong"] == 1 for r in recs)


def test_unsupported_is_reported_not_faked():
    recs, sink = _run("alltoall", "--transport", "noinplace", "-b", "64", "-e", "128", "-n", "2")
    assert [r["status"] for r in recs] == ["ok", "unsupported"] * 2
    assert recs[1]["reason"] == "this fake has no in-place form" and recs[1]["time_us"] is None
    assert len(sink.footers[0]["unsupported"]) == 1


def test_time_budget_picks_the_iteration_count():
    recs, _ = _run("allreduce", "--transport", "slow", "-b", "64", "-e", "64", "--time-budget", "0.05",
                   "-w", "0", "--out-of-place")
    # ~2 ms per call and 50 ms of budget: about 25 (never below the floor of 5).
    assert 5 <= recs[0]["iters"] <= 40


def test_fixed_iterations_are_exact():
    recs, _ = _run("allreduce", "--transport", "slow", "-b", "64", "-e", "64", "-n", "4", "-w", "0")
    assert [r["iters"] for r in recs] == [4, 4]


def test_barrier_is_one_unsized_row():
    recs, _ = _run("barrier", "--transport", "loopback", "-n", "3")
    assert len(recs) == 1 and recs[0]["size_bytes"] == 0 and recs[0]["wrong"] is None
    assert recs[0]["dtype"] is None and recs[0]["algbw_gbs"] == 0.0


def test_sizes_that_round_to_the_same_count_are_measured_once():
    recs, _ = _run("allreduce", "--transport", "loopback", "-b", "1", "-e", "8", "-n", "1", "--out-of-place")
    assert [r["size_bytes"] for r in recs] == [4, 8]


def test_all_types_ops_and_roots():
    recs, _ = _run("reduce", "--transport", "loopback", "-b", "64", "-e", "64", "-n", "1",
                   "-d", "all", "-o", "all", "-r", "all")
    assert len(recs) == 10 * 5 * 1 * 2
    assert {r["dtype"] for r in recs} >= {"bfloat16", "float16", "uint64"}
    assert all(r["wrong"] == 0 for r in recs)


def test_unknown_transport_lists_what_exists():
    with pytest.raises(ConfigError, match="(?s)unknown transport 'nope'.*mpi +available"):
        _run("allreduce", "--transport", "nope")


def test_mpi_transport_needs_mpi():
    with pytest.raises(ConfigError, match="needs the job to run under MPI"):
        _run("allreduce", "--transport", "mpi")


def test_json_written_as_measured(tmp_path):
    path = tmp_path / "out.jsonl"
    recs, _ = _run("sendrecv", "--transport", "loopback", "-e", "64", "-n", "1", "--json", str(path))
    assert len(path.read_text().splitlines()) == len(recs)


def test_iteration_stats():
    stats = iteration_stats([0.0, 1e-6, 3e-6, 4e-6, 10e-6])
    assert stats["mean"] == pytest.approx(2.5)
    assert stats["min"] == pytest.approx(1.0) and stats["max"] == pytest.approx(6.0)
    assert stats["p50"] == pytest.approx(1.5)
    assert iteration_stats([0.0, 4e-6], divisor=2)["mean"] == pytest.approx(2.0)


@pytest.mark.parametrize("average, mean", [(0, 1.0), (1, 2.0), (2, 1.0), (3, 3.0)])
def test_aggregate_like_nccl_tests(average, mean):
    ranks = [{"mean": m, "min": m, "p50": m, "p99": m, "max": m} for m in (1.0, 2.0, 3.0)]
    out = aggregate(ranks, average)
    assert out["mean"] == mean and out["rank_min"] == 1.0 and out["rank_max"] == 3.0


def _fired_within(event: threading.Event, seconds: float = 30.0) -> bool:
    """Whether the watchdog fired: waits on its own callback, a generous bound, no fixed sleep."""
    return event.wait(seconds)


def test_watchdog_fires_on_a_stall_and_reports():
    fired, exited, done = [], [], threading.Event()
    wd = Watchdog(0.2, 0, on_expire=fired.append, exit=lambda code: (exited.append(code), done.set()))
    with wd.watch("allreduce of 8 B"):
        assert _fired_within(done)
    wd.close()
    assert fired[:1] == ["allreduce of 8 B"] and exited[:1] == [124]


class _Advancing:
    """A timed loop that finishes one more iteration each time the watchdog looks at it: progress
    is seen at every look, whatever the scheduler does, so the watchdog can never fire."""

    def __init__(self, n: int):
        self._stamps = [0.0] * n
        self.looks = 0
        self.looked = threading.Event()

    @property
    def stamps(self):
        if self.looks < len(self._stamps):
            self._stamps[self.looks] = 1.0 + self.looks
        self.looks += 1
        self.looked.set()
        return self._stamps


def test_watchdog_counts_iterations_as_progress():
    fired = []
    wd = Watchdog(0.2, 0, on_expire=fired.append, exit=lambda code: None)
    timer = _Advancing(10_000)
    with wd.watch("a long loop", timer):
        start = time.monotonic()
        # Long enough that a loop seen standing still would have fired several times over.
        while timer.looks < 10 or time.monotonic() - start < 3 * wd.timeout:
            timer.looked.wait(1.0)
            timer.looked.clear()
    wd.close()
    assert fired == [] and timer.looks < 10_000


def test_watchdog_off_at_zero():
    assert Watchdog(0, 0)._thread is None


def test_watchdog_grace_lets_rank0_report_first():
    dogs = [Watchdog(10, 0), Watchdog(10, 3)]
    assert [d.grace for d in dogs] == [0.0, 2.0]
    for d in dogs:
        d.close()
        d._thread.join(2)
        assert not d._thread.is_alive()


def test_watchdog_stays_armed_between_phases():
    fired, done = [], threading.Event()
    wd = Watchdog(0.2, 0, on_expire=fired.append, exit=lambda code: done.set())
    with wd.watch("phase one"):
        pass
    assert _fired_within(done)  # between phases, a stuck agreement must still be caught
    wd.close()
    assert fired[:1] == [Watchdog.IDLE]


def test_watchdog_paused_for_local_work():
    fired = []
    wd = Watchdog(0.2, 0, on_expire=fired.append, exit=lambda code: None)
    with wd.local("building validation data"):
        time.sleep(0.6)
    wd.close()
    assert fired == []
