"""The compiled-loop cache through the real CLI under mpirun: a truncated object (which used to end
every later run with SIGBUS) is rebuilt and the compiled loop runs; a cache directory others can
write is not used, and the header says the Python loop ran and why.  The runner fixture fails a
test that leaves a process or a /dev/shm segment behind."""

import hashlib
import os

import pytest

from tests.conftest import read_jsonl

ARGS = ("-b", "8", "-e", "64", "-n", "5")


def _objects(cache):
    return sorted(p for p in cache.iterdir() if p.suffix == ".so")


@pytest.mark.parametrize("transport", ["shm", "mpi"], ids=["via-shm", "via-MPI"])
def test_a_truncated_object_is_rebuilt_and_the_compiled_loop_runs(runner, tmp_path, transport):
    cache = tmp_path / "cache"
    runner.env.update(COLLSCALE_CACHE_DIR=str(cache))
    first = runner.cli(2, "allreduce", "--transport", transport, *ARGS, timeout=120)
    assert first.returncode == 0, first.stderr
    [obj] = _objects(cache)
    good = obj.read_bytes()
    os.truncate(obj, min(40000, len(good) // 2))
    out = tmp_path / "r.jsonl"
    again = runner.cli(2, "allreduce", "--transport", transport, *ARGS, "--json", out, timeout=120)
    assert again.returncode == 0, (again.returncode, again.stderr[-2000:])  # was 7 (SIGBUS)
    assert "Traceback" not in again.stderr
    assert "loop: compiled" in again.stdout and "compiled in" in again.stdout, again.stdout
    assert {r["loop"] for r in read_jsonl(out)} == {"compiled"}
    assert obj.read_bytes() == good  # rebuilt whole, and its digest recorded again
    digest = (cache / (obj.name + ".sha256")).read_text().split()[0]
    assert digest == hashlib.sha256(good).hexdigest()


def test_a_cache_others_can_write_is_not_used_and_the_header_says_why(runner, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    runner.env.update(COLLSCALE_CACHE_DIR=str(cache))
    res = runner.cli(2, "allreduce", "--transport", "shm", *ARGS, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "loop: python" in res.stdout
    assert (f"# note: timed loop: Python (the compiled loop could not be built: the cache directory {cache} "
            "is writable by others (mode 0777): not used; set COLLSCALE_CACHE_DIR to a private directory)"
            ) in res.stdout, res.stdout
    assert list(cache.iterdir()) == []
