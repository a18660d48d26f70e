"""gloo in-process under mpirun (pytest-mpi): every collective validated, at every rank count run."""

import pytest

from collectives import cli
from facts.spec import SPECS

torch = pytest.importorskip("torch")


def _world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("collective", [n for n in SPECS if n != "pingpong"])
def test_gloo_every_collective(collective):
    if _world().Get_size() > 3:
        pytest.skip("gloo is tested at 2 and 3 ranks (TCP on oversubscribed cores is slow)")
    recs = cli.run(collective, _world(), ["--transport", "gloo", "-b", "8", "-e", "16K", "-f", "16", "-n", "2",
                                          "-w", "1", "-d", "float32,int8,bfloat16,float16", "-o", "all"])
    assert any(r["status"] == "ok" for r in recs)
    assert all(r["wrong"] in (0, None) for r in recs)
    reasons = {r["reason"] for r in recs if r["status"] == "unsupported"}
    assert all("in place only" in x or "no in-place" in x for x in reasons), reasons
