"""The Transport protocol is declared whole, and the registry imports lazily.

* Every transport class has every member of :class:`transports.base.Transport`.
* The harness and the runner core use nothing outside the protocol: a run
  through a proxy that exposes only the declared members succeeds for every
  collective.
* Naming a transport imports that transport only: a run over shm or mpi
  never imports torch.
"""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest

import transports
from collectives import cli
from facts.spec import SPECS
from ground.comm import SelfComm
from transports.base import Transport, TransportBase, TransportOptions

from tests.unit.fakes import Loopback

MEMBERS = set(typing.get_type_hints(Transport)) | {
    n for n, v in vars(Transport).items() if callable(v) and not n.startswith("_")}


def _classes():
    from transports.mpi.host import MPITransport
    from transports.poplar import PoplarTransport
    from transports.shm.transport import ShmTransport
    from transports.torch_dist import TorchTransport

    return [TransportBase, ShmTransport, MPITransport, TorchTransport, PoplarTransport, Loopback]


def test_the_protocol_names_what_the_harness_needs():
    assert {"alloc", "view", "fill", "to_host", "from_host", "synchronize", "timer", "describe", "close",
            "p2p", "cleanup", "enforces_timeout", "rank", "size", "name"} <= MEMBERS
    assert {spec.name for spec in SPECS.values()} <= MEMBERS  # one method per collective


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_every_transport_class_has_every_member(cls):
    instance_only = {"rank", "size"}  # set in __init__
    missing = [m for m in MEMBERS - instance_only if not hasattr(cls, m)]
    assert missing == []
    assert isinstance(cls.enforces_timeout, bool)


class StrictProxy:
    """A transport seen only through the protocol: any other member is an error."""

    def __init__(self, inner):
        object.__setattr__(self, "_inner", inner)

    def __getattr__(self, name):
        if name not in MEMBERS:
            raise AssertionError(f"the harness used '{name}', which the Transport protocol does not declare")
        return getattr(self._inner, name)


def _strict_loopback(comm, options):
    assert isinstance(options, TransportOptions)
    return StrictProxy(Loopback(comm, options))


transports.register("strict", _strict_loopback, description="test: protocol members only")


def test_proxy_is_a_transport():
    assert isinstance(StrictProxy(Loopback(None, TransportOptions())), Transport)


@pytest.mark.parametrize("collective", sorted(n for n, s in SPECS.items() if s.exact_ranks is None))
def test_harness_uses_only_protocol_members(collective):
    recs = cli.run(collective, SelfComm(), ["--transport", "strict", "-b", "64", "-e", "256", "-n", "2",
                                            "-w", "1", "--fresh-inputs"])
    assert recs and all(r["status"] in ("ok", "unsupported") for r in recs)
    assert any(r["status"] == "ok" for r in recs)


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
