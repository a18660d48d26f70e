"""Property-based: any argv gives a Config or one clean ConfigError, never a traceback."""

import tests.unit.hypothesis_profile  # noqa: F401  (the project's derandomized profile)

import pytest
from hypothesis import given, strategies as st

from collectives import weight_stream
from collectives.cli import check_against_ranks, parse_args
from ground.dtypes import ConfigError

FLAGS = ["-b", "-e", "-f", "-i", "-n", "-w", "-c", "-d", "-o", "-r", "-a", "-T", "--time-budget",
         "--startup-timeout", "--json", "--csv", "--transport", "--algo", "--buffer", "--seed",
         "--inject-fault", "--device", "--iface"]
SWITCHES = ["--in-place", "--out-of-place", "--both", "--fresh-inputs"]
STREAM_FLAGS = ["--fanout", "--layers", "-d", "-n", "-w", "-c", "-a", "-T", "--startup-timeout", "--json",
                "--csv", "--transport", "--time-budget", "--seed"]
NASTY = ["0", "1", "-1", "2", "8", "64K", "1G", "4T", "1.5", "1e3", "inf", "-inf", "nan", "1e309",
         "99999999999", "99999999999999999999999", "", " ", "all", "float32,int8", "sum,max", "x", "-",
         "--", "1,,2", "0x10", "/tmp/x.jsonl", "../x", "64M", "1KiB"]
values = st.one_of(st.sampled_from(NASTY), st.text(alphabet="0123456789.eE+-KMGTbix,/ ", max_size=10))


def _argv(flags):
    pair = st.tuples(st.sampled_from(flags), values).map(list)
    return st.lists(st.one_of(pair, st.sampled_from(SWITCHES).map(lambda s: [s])), max_size=6).map(
        lambda parts: [x for part in parts for x in part])


def _clean(exc: ConfigError) -> None:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text


@given(argv=_argv(FLAGS), nranks=st.integers(1, 9))
@pytest.mark.parametrize("collective", ["allreduce", "broadcast", "pingpong", "barrier"])
def test_collective_flags_give_a_config_or_one_clean_error(collective, argv, nranks):
    try:
        cfg = parse_args(collective, argv, quiet=True)
        check_against_ranks(cfg, nranks)
    except ConfigError as exc:
        _clean(exc)
        return
    except SystemExit as exc:  # only --help exits, and it is not generated here
        raise AssertionError(f"argparse exited ({exc.code}) instead of raising ConfigError")
    assert cfg.sizes and all(s >= 1 for s in cfg.sizes) or not cfg.spec.sized
    assert cfg.timeout >= 0 and cfg.startup_timeout >= 0 and cfg.time_budget > 0
    assert cfg.iters is None or 1 <= cfg.iters <= 10_000_000


@given(argv=_argv(STREAM_FLAGS))
def test_weight_stream_flags_give_a_config_or_one_clean_error(argv):
    try:
        cfg = weight_stream.parse_args(argv, quiet=True)
    except ConfigError as exc:
        _clean(exc)
        return
    assert cfg.fanout >= 1 and cfg.sizes and min(cfg.sizes) >= 1
