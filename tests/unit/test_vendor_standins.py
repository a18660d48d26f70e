"""Control paths of transports whose hardware is absent, through stand-in packages.

tests/standins holds numpy-backed stand-ins for popxl, CuPy and Habana's
hccl registration.  They prove the wiring (graph built, sessions run,
results validated, labels honest), never the hardware.
"""

import sys
from pathlib import Path

import pytest

from collectives import cli
from ground.comm import SelfComm

STANDINS = str(Path(__file__).resolve().parents[1] / "standins")


@pytest.fixture
def popxl(monkeypatch):
    monkeypatch.syspath_prepend(STANDINS)
    import popxl

    popxl.CALLS.clear()
    yield popxl
    for mod in [m for m in sys.modules if m.startswith("popxl")]:
        del sys.modules[mod]  # later tests must see the real world: no popxl here


@pytest.mark.parametrize("collective, op, replicated", [
    ("allreduce", "sum", ("replicated_all_reduce", "add")),
    ("allreduce", "avg", ("replicated_all_reduce", "mean")),
    ("allreduce", "max", ("replicated_all_reduce", "max")),
    ("allgather", "sum", ("replicated_all_gather",)),
    ("reduce_scatter", "prod", ("replicated_reduce_scatter", "mul")),
])
def test_poplar_builds_replicated_collectives_and_validates(popxl, collective, op, replicated):
    recs = cli.run(collective, SelfComm(), ["--transport", "poplar", "-b", "64", "-e", "1K", "-n", "2",
                                            "-o", op, "--out-of-place"])
    assert recs and all(r["status"] == "ok" and r["wrong"] == 0 for r in recs)
    assert all(r["buffer"] == "host-streamed" and "UNTESTED" in r["transport_version"] for r in recs)
    assert replicated in popxl.CALLS
    assert ("Session", "ipu_hw") in popxl.CALLS


def test_poplar_reports_what_popxl_lacks(popxl):
    recs = cli.run("broadcast", SelfComm(), ["--transport", "poplar", "-e", "64", "-n", "1"])
    assert {r["status"] for r in recs} == {"unsupported"}
    assert "no replicated broadcast" in recs[0]["reason"]
    recs = cli.run("allreduce", SelfComm(), ["--transport", "poplar", "-e", "64", "-n", "1", "-d", "float64",
                                             "--in-place"])
    assert recs[0]["status"] == "unsupported" and "float64" in recs[0]["reason"]


def test_without_popxl_it_says_why(monkeypatch):
    import transports

    status = transports.available()
    assert "popxl is not installed" in status["poplar"]
    assert "no public collective API" in status["groq"] and "no public collective API" in status["cerebras"]


def test_groq_and_cerebras_cannot_be_asked_for():
    from ground.dtypes import ConfigError

    with pytest.raises(ConfigError, match="cannot be measured: .*no public collective API"):
        cli.run("allreduce", SelfComm(), ["--transport", "cerebras"])
