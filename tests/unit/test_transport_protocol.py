"""The Transport protocols are declared whole, and the registry imports lazily.

* Every transport class has every member of :class:`transports.base.Transport`.
* Every runner uses nothing outside the protocols: a run through a proxy that
  exposes only the declared members succeeds for the harness (every
  collective), weight streaming (two ranks as threads) and replicate (gloo at
  one rank, through :class:`transports.base.TorchTransport`).
* Naming a transport imports that transport only: a run over shm or mpi
  never imports torch.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import transports
from collectives import cli
from facts.spec import SPECS
from ground.comm import SelfComm
from ground.dtypes import ConfigError
from transports.base import (TorchTransport, Transport, TransportBase, TransportOptions, missing_members,
                             protocol_members)

from tests.unit.fakes import Loopback, Peers, ThreadWorld

MEMBERS = protocol_members(Transport)
TORCH_MEMBERS = protocol_members(TorchTransport)
# Members some protocol declares: a runner may ask whether a transport has them (an optional protocol).
DECLARED = TORCH_MEMBERS


def _classes():
    from transports.mpi.host import MPITransport
    from transports.poplar import PoplarTransport
    from transports.shm.transport import ShmTransport
    from transports.torch_dist import TorchDistTransport

    return [TransportBase, ShmTransport, MPITransport, TorchDistTransport, PoplarTransport, Loopback]


def test_the_protocol_names_what_the_harness_needs():
    assert {"alloc", "view", "fill", "to_host", "from_host", "synchronize", "timer", "describe", "close",
            "p2p", "cleanup", "enforces_timeout", "rank", "size", "name"} <= MEMBERS
    assert {spec.name for spec in SPECS.values()} <= MEMBERS  # one method per collective


def test_the_torch_protocol_adds_what_replicate_needs():
    assert TORCH_MEMBERS - MEMBERS == {"torch", "dist", "group", "device"}
    assert MEMBERS <= TORCH_MEMBERS


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_every_transport_class_has_every_member(cls):
    instance_only = {"rank", "size"}  # set in __init__
    missing = [m for m in MEMBERS - instance_only if not hasattr(cls, m)]
    assert missing == []
    assert isinstance(cls.enforces_timeout, bool)


class StrictProxy:
    """A transport seen only through ``members``: a member another protocol declares is absent
    (AttributeError, as on a transport without it); any other is an undeclared use, recorded in
    :attr:`undeclared` and raised as an AssertionError (the tests assert none was recorded, in case a
    runner's ``except`` swallowed it)."""

    undeclared: list = []

    def __init__(self, inner, members=MEMBERS):
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_members", members)

    def __getattr__(self, name):
        if name in self._members:
            return getattr(self._inner, name)
        if name in DECLARED:
            raise AttributeError(f"{name}: not a member of this proxy's protocol")
        StrictProxy.undeclared.append(name)
        raise AssertionError(f"a runner used '{name}', which no transport protocol declares")


@pytest.fixture
def strict():
    """The undeclared uses recorded by the test's proxies (asserted empty by the test)."""
    StrictProxy.undeclared = []
    yield StrictProxy.undeclared


def _strict_loopback(comm, options):
    assert isinstance(options, TransportOptions)
    return StrictProxy(Loopback(comm, options))


transports.register("strict", _strict_loopback, description="test: protocol members only")
transports.register("strict-peers", lambda comm, options: StrictProxy(Peers(comm, options)),
                    description="test: point-to-point between threads, protocol members only")


def test_proxy_is_a_transport(strict):
    proxy = StrictProxy(Loopback(None, TransportOptions()))
    assert missing_members(proxy, Transport) == []  # isinstance would not see a proxy's members on 3.12+
    assert missing_members(proxy, TorchTransport) == ["device", "dist", "group", "torch"]
    assert strict == []
    with pytest.raises(AssertionError, match="declares"):
        proxy.buffers  # noqa: B018  (an undeclared member)
    assert strict == ["buffers"]


@pytest.mark.parametrize("collective", sorted(n for n, s in SPECS.items() if s.exact_ranks is None))
def test_harness_uses_only_protocol_members(collective, strict):
    recs = cli.run(collective, SelfComm(), ["--transport", "strict", "-b", "64", "-e", "256", "-n", "2",
                                            "-w", "1", "--fresh-inputs"])
    assert recs and all(r["status"] in ("ok", "unsupported") for r in recs)
    assert any(r["status"] == "ok" for r in recs)
    assert strict == []


def test_weight_stream_uses_only_protocol_members(strict):
    from collectives import weight_stream

    argv = ["--transport", "strict-peers", "--layers", "64,256,128", "-n", "2", "-w", "1", "-c", "1"]
    per_rank = ThreadWorld(3).run(lambda comm: weight_stream.run(comm, argv))
    recs = per_rank[0]
    assert [(r["phase"], r["layers"]) for r in recs] == [("down", 1), ("up", 1)] * 3 + [("down", 3), ("up", 3)]
    assert all(r["status"] == "ok" and r["wrong"] == 0 and r["time_us"] > 0 for r in recs)
    assert strict == []


def _gloo_here():
    torch = pytest.importorskip("torch")
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    if torch.distributed.is_initialized():
        pytest.skip("a torch.distributed group is already open in this process")
    return torch


def test_replicate_uses_only_torch_protocol_members(strict, monkeypatch):
    from collectives import replicate

    torch = _gloo_here()
    create = transports.create

    def through_proxy(name, comm, options=None):
        return StrictProxy(create(name, comm, options), TORCH_MEMBERS)
    monkeypatch.setattr(transports, "create", through_proxy)
    threads = torch.get_num_threads()
    try:
        (rec,) = replicate.run(SelfComm(), ["--model", "braggnn", "--batch", "1", "-n", "1", "-w", "0",
                                            "--steps", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
        if torch.distributed.is_initialized():  # a failed run leaves its group open: close it for the next test
            torch.distributed.destroy_process_group()
            pytest.fail("replicate left its torch.distributed group open")
    assert strict == []
    assert rec["status"] == "ok" and rec["kind"] == "measured" and rec["transport"] == "gloo"
    # The record says what replicate measured, and nothing it did not.
    assert rec["time_us"] == pytest.approx(rec["step_ms"] * 1e3) and rec["iters"] == rec["rounds_timed"] == 1
    for field in ("time_us_min", "time_us_p50", "time_us_p99", "time_us_max", "time_us_rank_min",
                  "time_us_rank_max", "algbw_gbs", "busbw_gbs", "busbw_factor", "wrong"):
        assert rec[field] is None, field
    assert rec["checks"] == 0 and rec["size_bytes"] == 4 * rec["params"] == 4 * rec["count"]


def test_replicate_refuses_a_transport_without_the_torch_members():
    from collectives import replicate

    with pytest.raises(ConfigError, match="^--transport shm: replicate runs DDP over a torch backend: "
                                          "gloo, nccl or hccl$"):
        replicate.parse_args(["--transport", "shm"])
    with pytest.raises(ConfigError) as info:
        replicate.torch_transport(Loopback(None, TransportOptions()), "gloo")
    assert str(info.value) == ("--transport gloo: replicate runs DDP over a torch backend: gloo, nccl or hccl "
                               "(it lacks device, dist, group, torch of transports.base.TorchTransport)")
    assert "\n" not in str(info.value)


def test_transport_options_are_typed():
    opts = TransportOptions.coerce({"algo": "ring", "timeout": 5.0})
    assert opts.algo == "ring" and opts.timeout == 5.0 and opts.buffer is None
    assert TransportOptions.coerce(opts) is opts
    with pytest.raises(TypeError, match="fanout"):
        TransportOptions.coerce({"fanout": 2})


def _modules_after(code: str) -> set:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=120, check=True)
    return set(out.stdout.split())


def test_registry_imports_nothing_at_start():
    mods = _modules_after("import transports, collectives.cli")
    assert not {"torch", "transports.torch_dist", "transports.shm", "transports.mpi", "mpi4py"} & mods


@pytest.mark.parametrize("name", ["shm", "mpi"], ids=["via-shm", "via-mpi-transport"])
def test_a_shm_or_mpi_run_never_imports_torch(name):
    # A whole run through the real CLI entry point at one rank (shm), or the
    # mpi transport's resolution and start-up checks.
    code = ("import transports\n"
            f"assert transports.resolve({name!r}) == {name!r}\n")
    if name == "shm":
        code += ("from collectives import cli\nfrom ground.comm import SelfComm\n"
                 "recs = cli.run('allreduce', SelfComm(), ['--transport', 'shm', '-e', '1K', '-n', '2'])\n"
                 "assert recs and all(r['status'] == 'ok' for r in recs)\n")
    mods = _modules_after(code)
    assert "torch" not in mods and "transports.torch_dist" not in mods
    assert f"transports.{name}" in mods


def test_unknown_transport_lists_every_known_one():
    from ground.dtypes import ConfigError

    with pytest.raises(ConfigError) as info:
        transports.resolve("nosuch")
    for known in ("shm", "mpi", "gloo", "nccl", "poplar", "groq"):
        assert known in str(info.value)
