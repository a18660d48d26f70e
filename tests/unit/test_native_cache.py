"""The compiled-object cache loads only objects it built, whole, from a private directory.

A truncated or random object is rebuilt (in a subprocess: a crash there would not end pytest); a
planted object (another's digest, another owner, a loose mode, a symbolic link) never runs its
constructor; a file swapped after the check is not what gets loaded (the verified bytes are, from
a sealed memfd); an untrusted or read-only cache gives a one-line BuildError, which the
transports turn into the Python loop's note; directories and files are private whatever the
umask; and a hypothesis property over random corruptions, truncations and modes: the bytes
loaded are always the bytes built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import example, given, settings, strategies as st

import tests.unit.hypothesis_profile  # noqa: F401  (derandomized, no deadline)
from transports.native import agree
from ground import native_verify as verify
from ground.native_build import BuildError, build, load

ROOT = Path(__file__).resolve().parents[2]
ANSWER = "int cs_answer(void) { return %d; }\n"
NOBODY = 65534


def _cc():
    cc = shutil.which(os.environ.get("CC") or "cc")
    if not cc:
        pytest.skip("no C compiler here")
    return cc


def _source(tmp_path: Path, value: int = 42, name: str = "answer.c") -> str:
    src = tmp_path / name
    src.write_text(ANSWER % value)
    return str(src)


def _planted(tmp_path: Path) -> tuple:
    """Someone else's object: its constructor leaves a marker (it must never run); cs_answer() is 666."""
    marker = tmp_path / "planted-ran"
    src = tmp_path / "planted.c"
    src.write_text(textwrap.dedent(f"""
        #include <stdio.h>
        __attribute__((constructor)) static void planted(void) {{
            FILE *f = fopen("{marker}", "w"); if (f) fclose(f);
        }}
        int cs_answer(void) {{ return 666; }}
    """))
    out = tmp_path / "planted.so"
    subprocess.run([_cc(), "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    return out.read_bytes(), marker


def _digest_of(data: bytes, path: str) -> None:
    Path(path + verify.DIGEST_SUFFIX).write_bytes(verify.digest_text(data, os.path.basename(path)))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    _cc()
    directory = tmp_path / "cache"
    monkeypatch.setenv("COLLSCALE_CACHE_DIR", str(directory))
    return directory


def _load_shm_in_a_subprocess(cache_dir: Path) -> dict:
    code = ("import json; from transports.native import shm; l = shm.load(); "
            "print(json.dumps(dict(compiled=l.built.compiled, note=l.built.note, path=l.built.path, "
            "reduces=l.reduces('float32'))))")
    env = dict(os.environ, COLLSCALE_CACHE_DIR=str(cache_dir), PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])  # a SIGBUS would be -7
    return json.loads(res.stdout)


@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
def test_a_torn_or_corrupt_object_is_rebuilt_never_loaded(cache, damage):
    first = _load_shm_in_a_subprocess(cache)
    assert first["compiled"] and first["reduces"]
    path = Path(first["path"])
    good = path.read_bytes()
    if damage == "truncated":
        os.truncate(path, min(40000, len(good) // 2))
    elif damage == "random":
        path.write_bytes(os.urandom(len(good)))
    else:
        os.truncate(path, 0)
    again = _load_shm_in_a_subprocess(cache)
    assert again["compiled"] and again["reduces"] and "does not match the digest" in again["note"]
    assert path.read_bytes() == good  # rebuilt, digest and all
    assert not _load_shm_in_a_subprocess(cache)["compiled"]  # ... and cached again


@pytest.mark.parametrize("how", ["another digest", "foreign with its digest", "0666 with its digest",
                                 "the real one 0666", "digest file 0620", "symbolic link"])
def test_a_planted_or_loose_object_is_never_used(cache, tmp_path, how):
    src = _source(tmp_path)
    built = build("answer", src, [_cc()])
    good = built.data
    bad, marker = _planted(tmp_path)
    path = built.path
    if how == "another digest":
        Path(path).write_bytes(bad)
        want = "does not match the digest"
    elif how == "foreign with its digest":
        Path(path).write_bytes(bad)
        _digest_of(bad, path)
        os.chown(path, NOBODY, NOBODY)
        os.chown(path + verify.DIGEST_SUFFIX, NOBODY, NOBODY)
        want = f"is owned by uid {NOBODY}"
    elif how == "0666 with its digest":
        Path(path).write_bytes(bad)
        _digest_of(bad, path)
        os.chmod(path, 0o666)
        want = "is writable by others (mode 0666)"
    elif how == "the real one 0666":
        os.chmod(path, 0o666)
        want = "is writable by others (mode 0666)"
    elif how == "digest file 0620":
        os.chmod(path + verify.DIGEST_SUFFIX, 0o620)
        want = "has a digest file that is writable by its group (mode 0620)"
    else:
        elsewhere = tmp_path / "elsewhere.so"
        elsewhere.write_bytes(good)
        os.unlink(path)
        os.symlink(elsewhere, path)
        want = "is a symbolic link"
    again = build("answer", src, [_cc()])
    assert again.compiled and want in again.note, again.note
    assert again.data == good and load(again).cs_answer() == 42
    st_ = os.lstat(path)
    assert stat.S_ISREG(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o700 and st_.st_uid == os.geteuid()
    assert Path(path).read_bytes() == good and not marker.exists()


def test_an_object_swapped_after_the_check_is_not_what_loads(cache, tmp_path, monkeypatch):
    src = _source(tmp_path)
    bad, marker = _planted(tmp_path)
    real_check = verify.read_verified

    def check_then_swap(dirfd, objname):  # another process replaces the file right after the check
        data, why = real_check(dirfd, objname)
        if data is not None:
            (tmp_path / "swap.so").write_bytes(bad)
            os.replace(tmp_path / "swap.so", cache / objname)
        return data, why
    built = build("answer", src, [_cc()])
    monkeypatch.setattr(verify, "read_verified", check_then_swap)
    cached = build("answer", src, [_cc()])
    assert not cached.compiled and Path(cached.path).read_bytes() == bad
    assert load(cached).cs_answer() == 42 and not marker.exists()  # the bytes checked, not the file
    monkeypatch.setattr(verify, "read_verified", real_check)
    rebuilt = build("answer", src, [_cc()])  # the next run finds the swap and rebuilds
    assert rebuilt.compiled and "does not match the digest" in rebuilt.note
    assert Path(rebuilt.path).read_bytes() == built.data and not marker.exists()


@pytest.mark.parametrize("problem", ["0777", "0775", "foreign"])
def test_an_untrusted_cache_directory_is_refused_with_one_line(cache, tmp_path, problem):
    cache.mkdir()
    if problem == "foreign":
        os.chown(cache, NOBODY, NOBODY)
        want = f"the cache directory {cache} is owned by uid {NOBODY}, not by this user"
    else:
        os.chmod(cache, int(problem, 8))
        want = f"the cache directory {cache} is writable by {'others' if problem == '0777' else 'its group'}"
    src = _source(tmp_path)
    with pytest.raises(BuildError) as exc:
        build("answer", src, [_cc()])
    msg = str(exc.value)
    assert msg.startswith(want) and "not used; set COLLSCALE_CACHE_DIR" in msg and "\n" not in msg
    assert os.listdir(cache) == []  # nothing written there
    from transports.native import shm

    loops, loop, note = agree(lambda x: [x], "auto", lambda: (shm.load(), ""), "the shm transport")
    assert loops is None and loop == "python"
    assert note.startswith(f"timed loop: Python (the compiled loop could not be built: {want}")


@pytest.fixture
def read_only(tmp_path):
    """Make a directory read-only with a bind mount (unmounted after the test)."""
    mounted = []

    def mount(path: Path):
        res = subprocess.run(f"mount --bind {path} {path}", shell=True, capture_output=True, text=True)
        if res.returncode:
            pytest.skip(f"cannot bind-mount here: {res.stderr.strip()}")
        mounted.append(path)
        res = subprocess.run(f"mount -o remount,ro,bind {path}", shell=True, capture_output=True, text=True)
        if res.returncode:
            pytest.skip(f"cannot remount read-only here: {res.stderr.strip()}")
    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_cache_loads_a_whole_object_and_refuses_a_torn_one(cache, tmp_path, read_only):
    src = _source(tmp_path)
    built = build("answer", src, [_cc()])
    other = _source(tmp_path, 7, "seven.c")
    torn = build("answer", other, [_cc()])
    os.truncate(torn.path, 100)
    read_only(cache)
    cached = build("answer", src, [_cc()])
    assert not cached.compiled and load(cached).cs_answer() == 42
    with pytest.raises(BuildError) as exc:
        build("answer", other, [_cc()])
    msg = str(exc.value)
    assert msg.startswith(f"the cached object {torn.path} does not match the digest") and "\n" not in msg
    assert "cache directory cannot be written (Read-only file system): not used" in msg
    with pytest.raises(BuildError, match=r"cannot write the cache directory .*\(Read-only file system\)"):
        build("answer", _source(tmp_path, 8, "eight.c"), [_cc()])  # no object yet


def test_created_private_whatever_the_umask(tmp_path, monkeypatch):
    _cc()
    src = _source(tmp_path)
    nested = tmp_path / "a" / "b" / "cache"
    xdg = tmp_path / "xdg"
    old = os.umask(0)
    try:
        monkeypatch.setenv("COLLSCALE_CACHE_DIR", str(nested))
        built = build("answer", src, [_cc()])
        monkeypatch.delenv("COLLSCALE_CACHE_DIR")
        monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
        default = build("answer", src, [_cc()])
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    for d in (tmp_path / "a", tmp_path / "a" / "b", nested, xdg, xdg / "collscale", xdg / "collscale" / "native"):
        assert mode(d) == 0o700, d
    assert default.path.startswith(str(xdg / "collscale" / "native"))
    for b in (built, default):
        assert mode(b.path) == 0o700
        assert mode(b.path + verify.DIGEST_SUFFIX) == 0o600 and mode(b.path + ".lock") == 0o600
        assert sorted(os.listdir(os.path.dirname(b.path))) == sorted(
            os.path.basename(b.path) + s for s in ("", ".lock", verify.DIGEST_SUFFIX))  # no temporaries


def test_ranks_finding_a_torn_object_at_once_rebuild_it_once(cache, tmp_path):
    src = _source(tmp_path)
    built = build("answer", src, [_cc()])
    os.truncate(built.path, 64)
    log = tmp_path / "compiles.log"  # the same key needs the same command: count the compiles inside
    code = textwrap.dedent(f"""
        import hashlib, os
        from ground import native_build as b
        real = b._compile
        def logged(*a, **k):
            open({str(log)!r}, "a").write("run\\n")
            import time; time.sleep(0.5)
            return real(*a, **k)
        b._compile = logged
        r = b.build("answer", {src!r}, [{_cc()!r}])
        print(r.compiled, hashlib.sha256(r.data).hexdigest(), b.load(r).cs_answer())
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(o[0] for o in outs) == ["False", "False", "True"]
    assert {o[1] for o in outs} == {hashlib.sha256(built.data).hexdigest()} and {o[2] for o in outs} == {"42"}
    assert log.read_text().count("run") == 1


def test_distinct_objects_load_distinctly_from_memory(cache, tmp_path):
    a = build("answer", _source(tmp_path), [_cc()])
    b = build("answer", _source(tmp_path, 7, "seven.c"), [_cc()])
    assert load(a).cs_answer() == 42 and load(b).cs_answer() == 7 and load(a) is load(a)


# --- the property: whatever happens to the cached files, what loads is what was built -----------------

@pytest.fixture(scope="module")
def property_cache(tmp_path_factory):
    """A cache with one good object, and a 'compiler' that copies it (a rebuild costs a cp)."""
    _cc()
    root = tmp_path_factory.mktemp("property")
    src = root / "answer.c"
    src.write_text(ANSWER % 42)
    good = root / "good.so"
    subprocess.run([_cc(), "-shared", "-fPIC", "-o", str(good), str(src)], check=True)
    copier = root / "copy-cc"
    copier.write_text(f'#!/bin/sh\nwhile [ "$1" != "-o" ]; do shift; done\nexec cp {good} "$2"\n')
    copier.chmod(0o755)
    old = os.environ.get("COLLSCALE_CACHE_DIR")
    os.environ["COLLSCALE_CACHE_DIR"] = str(root / "cache")
    try:
        built = build("answer", str(src), [str(copier)])
        yield built, str(src), str(copier)
    finally:
        if old is None:
            del os.environ["COLLSCALE_CACHE_DIR"]
        else:
            os.environ["COLLSCALE_CACHE_DIR"] = old


damage = st.one_of(
    st.tuples(st.just("keep"), st.just(0), st.just(b"")),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.just(b"")),
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255)),
    st.tuples(st.just("random"), st.just(0), st.binary(max_size=4096)),
    st.tuples(st.just("append"), st.just(0), st.binary(min_size=1, max_size=64)),
)


modes = st.one_of(st.sampled_from([0o700, 0o600, 0o500, 0o400, 0o755, 0o644]), st.integers(0, 0o777))


@settings(max_examples=80)
@given(damage=damage, obj_mode=modes, digest_mode=modes,
       digest=st.sampled_from(["keep", "keep", "keep", "missing", "garbage", "other"]))
@example(damage=("keep", 0, b""), obj_mode=0o700, digest_mode=0o600, digest="keep")  # whole: loaded as is
@example(damage=("keep", 0, b""), obj_mode=0o700, digest_mode=0o644, digest="keep")
@example(damage=("truncate", 40000, b""), obj_mode=0o700, digest_mode=0o600, digest="keep")
def test_property_only_the_built_bytes_ever_load(property_cache, damage, obj_mode, digest_mode, digest):
    built, src, copier = property_cache
    good, path, dpath = built.data, built.path, built.path + verify.DIGEST_SUFFIX
    _digest_of(good, path)
    kind, n, extra = damage
    i = n % len(good)
    if kind == "truncate":
        data = good[:i]
    elif kind == "flip":
        data = good[:i] + bytes([good[i] ^ extra]) + good[i + 1:]
    elif kind == "random":
        data = extra
    elif kind == "append":
        data = good + extra
    else:
        data = good
    Path(path).write_bytes(data)
    os.chmod(path, obj_mode)
    if digest == "missing":
        os.unlink(dpath)
    else:
        if digest == "garbage":
            Path(dpath).write_bytes(b"not a digest\n")
        elif digest == "other":
            _digest_of(data + b"x", path)
        os.chmod(dpath, digest_mode)
    whole = data == good and digest == "keep" and not (obj_mode | digest_mode) & 0o022
    dirfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        seen, why = verify.read_verified(dirfd, os.path.basename(path))
    finally:
        os.close(dirfd)
    assert (seen is not None) == whole and (seen is None or seen == good) and (why is None) == whole
    again = build("answer", src, [copier])
    assert again.data == good and again.compiled == (not whole)
    assert Path(path).read_bytes() == good and load(again).cs_answer() == 42
    assert stat.S_IMODE(os.stat(path).st_mode) == (obj_mode if whole else 0o700)
