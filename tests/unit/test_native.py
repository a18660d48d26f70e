"""Compiled loops without MPI: the build cache and its lock, the C reductions against numpy's,
the harness through a compiled call, the thread-level choice, and CUDA-graph replay with a
stand-in for torch.cuda (no GPU here)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from collectives import cli
from transports.native import shm as native_shm, thread_hint
from ground.native_build import BuildError, build, load
from transports.native.timer import NativeLoop, NativeTimer
from ground.comm import FUNNELED_MAX_BYTES, SelfComm, choose_thread_level
from ground.dtypes import DTYPES, ConfigError
from transports.base import Bound
from transports.shm import kernels
from transports.shm.compiled import Program

import transports
from tests.unit.fakes import Loopback, register_fakes

register_fakes()

SOURCE = "int cs_answer(void) { return 42; }\n"


def _counting_compiler(tmp_path: Path, delay: float = 0.0) -> Path:
    """A compiler that logs each run (and waits ``delay`` s) before calling cc."""
    log = tmp_path / "compiles.log"
    script = tmp_path / "logging-cc"
    script.write_text(f"#!/bin/sh\necho run >> {log}\nsleep {delay}\nexec cc \"$@\"\n")
    script.chmod(0o755)
    return script


def test_builds_once_then_loads_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COLLSCALE_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "answer.c"
    src.write_text(SOURCE)
    cc = _counting_compiler(tmp_path)
    first = build("answer", str(src), [str(cc)])
    second = build("answer", str(src), [str(cc)])
    assert first.compiled and not second.compiled and first.path == second.path
    assert first.data == second.data == Path(first.path).read_bytes()  # verified bytes, loaded from memory
    assert load(second).cs_answer() == 42
    assert (tmp_path / "compiles.log").read_text().count("run") == 1
    src.write_text(SOURCE + "int cs_other(void) { return 1; }\n")  # another source: another object
    os.utime(first.path, (1, 1))  # ... and the first, unused for long, is removed when it is built
    newer = build("answer", str(src), [str(cc)])
    assert newer.path != first.path and not os.path.exists(first.path) and os.path.exists(newer.path)


def test_two_processes_building_at_once_compile_once(tmp_path):
    src = tmp_path / "answer.c"
    src.write_text(SOURCE)
    cc = _counting_compiler(tmp_path, delay=0.5)  # the second one arrives while the first compiles
    code = textwrap.dedent(f"""
        import sys
        from ground.native_build import build
        b = build("answer", {str(src)!r}, [{str(cc)!r}])
        print(b.compiled, b.path)
    """)
    env = dict(os.environ, COLLSCALE_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(o[0] for o in outs) == ["False", "True"]  # one compiled, the other waited and loaded
    assert outs[0][1] == outs[1][1]
    assert (tmp_path / "compiles.log").read_text().count("run") == 1


def test_a_missing_compiler_is_one_line_and_one_attempt_per_job(tmp_path, monkeypatch):
    monkeypatch.setenv("COLLSCALE_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "answer.c"
    src.write_text(SOURCE)
    with pytest.raises(BuildError, match="compiler not found: /nonexistent/cc"):
        build("answer", str(src), ["/nonexistent/cc"], token="job1")
    broken = tmp_path / "broken-cc"
    broken.write_text(f"#!/bin/sh\necho run >> {tmp_path / 'broken.log'}\necho 'no way' >&2\nexit 1\n")
    broken.chmod(0o755)
    for _ in range(2):  # the job's second rank reads the first one's failure
        with pytest.raises(BuildError, match="no way"):
            build("answer", str(src), [str(broken)], token="job2")
    with pytest.raises(BuildError):  # another job tries again
        build("answer", str(src), [str(broken)], token="job3")
    assert (tmp_path / "broken.log").read_text().count("run") == 2


@pytest.fixture(scope="module")
def shm_lib():
    try:
        return native_shm.load()
    except BuildError as exc:
        pytest.skip(f"no C compiler here: {exc}")


def _run_program(lib, prog: Program) -> None:
    table, state, stamps = prog.table(), np.zeros(native_shm.STATE, np.int64), np.zeros(2)
    words = np.zeros(64, np.int64)
    cfg = np.array([words.ctypes.data, 1, 0, 0, 0, 0, 0, 0], np.int64)
    assert lib.run(cfg.ctypes.data, table.ctypes.data, table.shape[1], table.shape[0], prog.span,
                   state.ctypes.data, 1, stamps.ctypes.data) == 0
    assert stamps[1] >= stamps[0] > 0


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("op", ["sum", "prod", "min", "max", "avg"])
def test_c_reductions_equal_numpys_bit_for_bit(shm_lib, dtype, op):
    dt = DTYPES[dtype]
    rng = np.random.default_rng(7)
    for ninputs, n in ((1, 5), (2, 37), (3, 300), (5, 20000)):  # 20000: past one 32 KiB chunk
        ints = rng.integers(-3 if dt.signed else 0, 4, size=(ninputs, n))
        if op == "prod":
            ints = np.where(ints == 0, 1, ints)
        inputs = [dt.from_ints(row) for row in ints]
        want = np.empty_like(inputs[0])
        kernels.plan_reduce(dt, op, ninputs, want, inputs)()
        got = np.full_like(inputs[0], 99)
        prog = Program(native_shm, span=0)
        prog.reduce(dt, op, ninputs, got, inputs, shm_lib.reduces)
        if not shm_lib.reduces(dtype):
            assert not prog.ok
            continue
        _run_program(shm_lib, prog)
        assert got.tobytes() == want.tobytes(), (ninputs, got[:8], want[:8])


def test_in_place_reduction_and_copies(shm_lib):
    a, b, c = (np.arange(10, dtype=np.float32) * k for k in (1, 2, 3))
    out = np.empty(10, np.float32)
    prog = Program(native_shm, span=0).copy(out, c)
    prog.reduce(DTYPES["float32"], "sum", 2, a, [a, b], shm_lib.reduces)  # out aliases the first input
    _run_program(shm_lib, prog)
    assert a.tolist() == (np.arange(10) * 3).tolist() and out.tolist() == c.tolist()


class Compiled(Loopback):
    """Loopback whose calls also carry a 'compiled' form: numpy writing the stamps by address."""

    name = "compiled-fake"

    def __init__(self, comm, options):
        super().__init__(comm, options)
        self.native_calls = 0

    def _copy(self, send, recv, result=None):
        bound = super()._copy(send, recv, result)

        def call(iters, address):
            stamps = np.ctypeslib.as_array(ctypes.cast(address, ctypes.POINTER(ctypes.c_double)), (iters + 1,))
            stamps[0] = 1.0
            for i in range(1, iters + 1):
                self.native_calls += 1
                if send is not None:
                    recv[...] = send
                stamps[i] = 1.0 + i * 1e-6
            return 0
        return Bound(bound.run, bound.result, NativeLoop(call, lambda s: None))

    def describe(self):
        return dict(super().describe(), loop="compiled")


transports.register(Compiled.name, Compiled, description="test fake with a compiled form")


def test_the_harness_times_and_validates_through_the_compiled_call():
    comm = SelfComm()
    recs = cli.run("allreduce", comm, ["--transport", Compiled.name, "-b", "64", "-e", "64", "-n", "4", "-w", "2",
                                       "--out-of-place"])
    assert [(r["status"], r["loop"], r["wrong"]) for r in recs] == [("ok", "compiled", 0)]
    assert recs[0]["time_us"] == pytest.approx(1.0) and recs[0]["time_us_p50"] == pytest.approx(1.0)
    python = cli.run("allreduce", comm, ["--transport", Compiled.name, "-b", "64", "-e", "64", "-n", "4",
                                         "--out-of-place", "--loop", "python"])
    assert python[0]["loop"] == "python" and python[0]["wrong"] == 0
    fresh = cli.run("allreduce", comm, ["--transport", Compiled.name, "-b", "64", "-e", "64", "-n", "3",
                                        "--out-of-place", "--fresh-inputs"])
    assert fresh[0]["loop"] == "compiled" and fresh[0]["time_us"] == pytest.approx(1.0)


def test_loop_compiled_refuses_a_transport_without_one():
    with pytest.raises(ConfigError, match="--loop compiled: the loopback transport has no compiled loop"):
        cli.run("allreduce", SelfComm(), ["--transport", "loopback", "-e", "8", "-n", "2", "--loop", "compiled"])
    with pytest.raises(ConfigError, match="--cuda-graph"):
        cli.run("allreduce", SelfComm(), ["--transport", Compiled.name, "-e", "8", "-n", "2", "--cuda-graph"])


def test_native_timer_stamps_are_readable_by_the_watchdog():
    seen = []

    def call(iters, address):
        stamps = np.ctypeslib.as_array(ctypes.cast(address, ctypes.POINTER(ctypes.c_double)), (iters + 1,))
        stamps[:] = np.arange(1, iters + 2)
        seen.append((len(timer.stamps), bool(timer.stamps), timer.stamps[iters]))
        return 0
    timer = NativeTimer(NativeLoop(call, lambda s: None))
    stamps = timer.loop(None, 5, lambda: None)
    assert list(stamps) == [1, 2, 3, 4, 5, 6] and seen == [(6, True, 6.0)]
    from collectives.watchdog import Watchdog

    dog = Watchdog(0.0, 0)
    dog._timer = timer
    assert dog._progress() == 5


def test_thread_level_by_situation():
    assert thread_hint(["-b", "8", "-e", "1K"]) == (None, 1024)
    assert thread_hint(["-e1M", "--thread-level", "single"]) == ("single", 1 << 20)
    assert thread_hint(["--maxbytes=256K", "--thread-level=multiple"]) == ("multiple", 256 * 1024)
    assert thread_hint([]) == (None, None) and thread_hint(["-e", "lots"]) == (None, None)
    assert thread_hint(["-n", "5"], sized=False) == (None, 0)
    assert choose_thread_level(None, False, 1024) == "funneled"
    assert choose_thread_level(None, False, FUNNELED_MAX_BYTES) == "funneled"
    assert choose_thread_level(None, False, FUNNELED_MAX_BYTES + 1) == "multiple"
    assert choose_thread_level(None, False, None) == "multiple"  # the default sweep reaches 64 MiB
    assert choose_thread_level(None, True, 8) == "multiple"  # oversubscribed
    assert choose_thread_level("single", True, None) == "single"
    # MPICH tuned (large intra-node collectives off release_gather): FUNNELED for any sweep, not oversubscribed
    assert choose_thread_level(None, False, None, tuned=True) == "funneled"
    assert choose_thread_level(None, True, None, tuned=True) == "multiple"
    assert choose_thread_level("multiple", False, 8, tuned=True) == "multiple"
    with pytest.raises(ValueError):
        choose_thread_level("lots", False, 8)


MPICH = "MPICH Version:      5.0.2\nMPICH Release date: Fri Sep 25 2026\n"


def test_mpich_tuning_applies_to_mpich_only_and_never_over_the_users_choice():
    from ground import mpich_tuning as mt

    env = {}
    note = mt.apply(MPICH, env)
    assert env == {mt.TUNING_VAR: str(mt.TUNING_FILE)} and "256 KiB" in note
    assert mt.apply("Open MPI v4.1.4, package: Debian", {}) is None
    assert mt.why_not("Open MPI v4.1.4", {}) == "not MPICH"
    assert mt.why_not("Intel(R) MPI Library 2021.10", {}) == "not MPICH"
    assert mt.apply(MPICH, {"COLLSCALE_MPICH_TUNING": "0"}) is None
    assert "off" in mt.why_not(MPICH, {"COLLSCALE_MPICH_TUNING": "off"})
    for var in mt.USER_VARS:
        mine = {var: "mpir"}
        assert mt.apply(MPICH, mine) is None and mine == {var: "mpir"}
        assert var in mt.why_not(MPICH, mine)


def test_mpich_tuning_file_is_a_tree_mpich_accepts():
    """Every size test has an "any" sibling (MPICH asserts at MPI_Init otherwise), its bound is
    RELEASE_GATHER_MAX_BYTES, and above it no branch can match a job that is not multi-threaded."""
    import json

    from ground import mpich_tuning as mt

    tree = json.loads(mt.TUNING_FILE.read_text())
    assert set(tree) == {"collective=allreduce", "collective=bcast", "collective=reduce"}
    # reduce keeps MPICH's own rule: release_gather at every size (faster there than the fallback)
    assert tree["collective=reduce"]["comm_type=intra"]["is_multi_threaded=no"]["is_commutative=yes"] == {
        "algorithm=MPIDI_POSIX_mpi_reduce_release_gather": {}}
    for name in ("collective=allreduce", "collective=bcast"):
        assert f"avg_msg_size<={mt.RELEASE_GATHER_MAX_BYTES}" in json.dumps(tree[name])

    def walk(node):
        keys = list(node)
        sizes = [k for k in keys if k.startswith("avg_msg_size")]
        if sizes:
            assert sizes == [f"avg_msg_size<={mt.RELEASE_GATHER_MAX_BYTES}", "avg_msg_size=any"], sizes
            above = node["avg_msg_size=any"]
            assert list(above) == ["is_multi_threaded=yes"]  # never true where the parent said "no"
        for k in keys:
            walk(node[k])
    for name, sub in tree.items():
        walk(sub)
        assert "is_multi_threaded=no" in sub["comm_type=intra"], name


class _FakeCuda:
    """Just enough of torch.cuda for transports.nccl_graphs: capture records the calls, replay
    runs them on a fake GPU clock (1 ms per call)."""

    def __init__(self):
        self.capturing, self.clock, self.captures = None, 0.0, 0
        outer = self

        class Event:
            def __init__(self, enable_timing=False, external=False):
                assert enable_timing and external
                self.t = None

            def record(self):
                if outer.capturing is not None:
                    outer.capturing.append(self)
                else:
                    self.t = outer.clock

            def elapsed_time(self, other):
                return other.t - self.t

        class CUDAGraph:
            def __init__(self):
                self.ops = []

            def replay(self):
                for op in self.ops:
                    if isinstance(op, Event):
                        op.t = outer.clock
                    else:
                        op()
                        outer.clock += 1.0

        class Stream:
            def wait_stream(self, other):
                pass

        class _Ctx:
            def __init__(self, enter=lambda: None, leave=lambda: None):
                self.enter, self.leave = enter, leave

            def __enter__(self):
                self.enter()

            def __exit__(self, *exc):
                self.leave()

        def graph(g):
            def enter():
                outer.captures += 1
                outer.capturing = g.ops

            def leave():
                outer.capturing = None
            return _Ctx(enter, leave)

        self.Event, self.CUDAGraph, self.Stream = Event, CUDAGraph, Stream
        self.graph = graph
        self.stream = lambda s: _Ctx()
        self.current_stream = Stream
        self.synchronize = lambda: None


def test_cuda_graph_timer_replays_chunks_and_reads_gpu_times():
    from transports import nccl_graphs

    cuda = _FakeCuda()
    torch = type("torch", (), {"cuda": cuda})
    calls = []

    def run():
        if cuda.capturing is not None:
            cuda.capturing.append(lambda: calls.append("gpu"))
        else:
            calls.append("eager")
    cache = {}
    iters = nccl_graphs.CHUNK * 2 + 3
    stamps = nccl_graphs.GraphTimer(torch, cache).loop(run, iters, lambda: None)
    steps = np.diff(stamps)
    assert len(stamps) == iters + 1 and np.allclose(steps, 1e-3)  # 1 ms per call, from the events
    assert calls.count("gpu") == iters and cuda.captures == 2  # chunks of CHUNK and of 3
    nccl_graphs.GraphTimer(torch, cache).loop(run, 3, lambda: None)  # a later loop reuses the capture
    assert cuda.captures == 2 and calls.count("gpu") == iters + 3


def test_library_lines_compare_equal_across_a_trailing_nul():
    """Open MPI's version text through mpi4py ends in a NUL; read from C it stops before it."""
    from transports.native.mpi import _first_line

    text = "Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, repo rev: v4.1.4, May 26, 2022"
    assert _first_line(text + "\x00") == _first_line(text) == text
    assert _first_line("MPICH Version:      5.0.2\nMPICH Release date: x") == "MPICH Version: 5.0.2"
    assert _first_line("") == _first_line("\x00") == ""
