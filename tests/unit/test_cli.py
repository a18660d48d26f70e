"""Size parsing, sweeps and flag checks: everything decided before MPI matters."""

import pytest

from collectives.cli import check_against_ranks, parse_args
from collectives.config import Config, parse_size, sweep_sizes
from ground.dtypes import ConfigError


@pytest.mark.parametrize(
    "text, expected",
    [("8", 8), ("1K", 1024), ("1k", 1024), ("64M", 64 << 20), ("1G", 1 << 30), ("2T", 2 << 40),
     ("4KB", 4096), ("4KiB", 4096), ("0.5K", 512), ("1.5M", 3 << 19), (" 16 ", 16)],
)
def test_parse_size_accepts_nccl_suffixes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-5", "1Q", "0.3", "1e3", "M", "1..2K"])
def test_parse_size_rejects_garbage(text):
    with pytest.raises(ConfigError):
        parse_size(text)


def test_sweep_by_factor_and_by_step():
    assert sweep_sizes(8, 64, 2.0, None) == (8, 16, 32, 64)
    assert sweep_sizes(8, 60, 2.0, None) == (8, 16, 32)
    assert sweep_sizes(1, 10, None, 4) == (1, 5, 9)
    # A factor that does not grow an integer size still advances.
    assert sweep_sizes(1, 3, 1.2, None) == (1, 2, 3)


def test_default_sweep_is_8B_to_64MiB_by_2():
    cfg = parse_args("allreduce", [])
    assert cfg.sizes[0] == 8 and cfg.sizes[-1] == 64 << 20
    assert len(cfg.sizes) == 24
    assert cfg.iters is None and cfg.warmup == 5 and cfg.check == 1 and cfg.average == 1
    assert cfg.placements == ("out", "in")
    assert cfg.transport == "auto"


def test_one_sided_bounds_follow_the_given_one():
    assert parse_args("allreduce", ["-b", "1G"]).sizes == (1 << 30,)
    assert parse_args("allreduce", ["-e", "4"]).sizes == (4,)
    assert parse_args("allreduce", ["-b", "1K", "-e", "4K"]).sizes == (1024, 2048, 4096)


def test_nccl_flag_names_and_long_forms():
    cfg = parse_args(
        "reduce",
        ["--minbytes", "1K", "--maxbytes", "1M", "--stepfactor", "4", "--iters", "7",
         "--warmup_iters", "0", "--check", "2", "--datatype", "half,double", "--op", "all",
         "--root", "1", "--average", "3", "-T", "9", "--out-of-place", "--json", "x.jsonl"],
    )
    assert cfg.sizes == (1024, 4096, 16384, 65536, 262144, 1 << 20)
    assert cfg.iters == 7 and cfg.warmup == 0 and cfg.check == 2
    assert [d.name for d in cfg.dtypes] == ["float16", "float64"]
    assert [o.name for o in cfg.ops] == ["sum", "prod", "min", "max", "avg"]
    assert cfg.root == 1 and cfg.aggregation == "max" and cfg.timeout == 9
    assert cfg.placements == ("out",) and cfg.json == "x.jsonl"


def test_all_roots_and_all_types():
    cfg = parse_args("broadcast", ["-r", "all", "-d", "all"])
    assert cfg.root is None
    assert len(cfg.dtypes) == 10


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-b", "0"], "at least 1 byte"),
        (["-b", "2K", "-e", "1K"], "larger than the maximum"),
        (["-b", "x"], "invalid size"),
        (["-f", "1"], "greater than 1"),
        (["-f", "2", "-i", "8"], "not both"),
        (["-i", "0"], "at least 1"),
        (["-n", "0"], "must be at least 1"),
        (["-n", "-1"], "must be at least 1"),
        (["-n", "99999999999"], "must be at most 10000000"),
        (["-w", "-1"], "must be at least 0"),
        (["-c", "99999"], "must be at most 10000"),
        (["-f", "inf"], "finite"),
        (["--time-budget", "inf"], "finite"),
        (["-T", "nan"], "finite"),
        (["--timeout=-inf"], "finite"),
        (["--startup-timeout", "-1"], "must be >= 0"),
        (["--json", ""], "needs a file name"),
        (["--csv", " "], "needs a file name"),
        (["--json", "x.out", "--csv", "./x.out"], "name the same file"),
        (["-a", "7"], "invalid choice"),
        (["-d", "float8"], "unknown datatype 'float8'"),
        (["-o", "xor"], "unknown op 'xor'"),
        (["-r", "-1"], "ranks start at 0"),
        (["-r", "first"], "invalid root"),
        (["--time-budget", "0"], "must be > 0"),
        (["-T", "soon"], "not a number"),
        (["--in-place", "--out-of-place"], "not allowed with"),
        (["--frobnicate"], "unrecognized arguments"),
        (["-b", "1", "-e", "100M", "-i", "1"], "sizes"),
    ],
)
def test_bad_input_is_one_clear_config_error(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_args("allreduce", argv)


def test_unknown_collective():
    with pytest.raises(ConfigError, match="unknown collective 'allreduse'"):
        parse_args("allreduse", [])


@pytest.mark.parametrize(
    "collective, argv, nranks, message",
    [
        ("pingpong", [], 3, "exactly 2 ranks"),
        ("pingpong", [], 1, "exactly 2 ranks"),
        ("broadcast", ["-r", "4"], 4, "root 4 does not exist"),
        ("reduce", ["-r", "2"], 2, "root 2 does not exist"),
        ("pingpong", ["--in-place"], 2, "no in-place form"),
        ("allreduce", ["--inject-fault", "5"], 3, "has 3 ranks"),
    ],
)
def test_checks_that_need_the_rank_count(collective, argv, nranks, message):
    cfg = parse_args(collective, argv)
    with pytest.raises(ConfigError, match=message):
        check_against_ranks(cfg, nranks)


def test_root_is_ignored_by_unrooted_collectives():
    check_against_ranks(parse_args("allreduce", ["-r", "9"]), 2)


def test_config_is_frozen():
    cfg = parse_args("allreduce", [])
    assert isinstance(cfg, Config)
    with pytest.raises(Exception):
        cfg.iters = 3
