"""collectives.split: the schedule of --split (pure)."""

import argparse
import itertools

import pytest

from collectives import split
from ground.dtypes import ConfigError


@pytest.mark.parametrize("hosts", range(2, 10))
def test_pair_rounds_cover_every_pair_once(hosts):
    rounds = split.pair_rounds(hosts)
    assert len(rounds) == (hosts - 1 if hosts % 2 == 0 else hosts)
    seen = [p for rnd in rounds for p in rnd]
    assert sorted(seen) == list(itertools.combinations(range(hosts), 2))
    for rnd in rounds:  # a round's pairs run at once: no host twice
        members = [h for p in rnd for h in p]
        assert len(members) == len(set(members)) and len(rnd) == hosts // 2


def test_plans():
    hosts = ["a", "a", "b", "b", "c", "c"]
    assert split.plan("hosts", hosts) == [[[0, 1], [2, 3], [4, 5]]]
    assert split.plan(3, hosts) == [[[0, 1, 2], [3, 4, 5]]]
    pairs = split.plan("pairs", hosts)  # leaders 0, 2, 4: three hosts, three rounds of one pair
    assert sorted(tuple(g) for rnd in pairs for g in rnd) == [(0, 2), (0, 4), (2, 4)] and len(pairs) == 3
    with pytest.raises(ConfigError, match="do not divide into groups of 4"):
        split.plan(4, hosts)
    with pytest.raises(ConfigError, match="runs on 1 host"):
        split.plan("pairs", ["a", "a"])


def test_parse_spec():
    assert split.parse_spec("Pairs") == "pairs" and split.parse_spec("4") == 4
    for bad in ("0", "-2", "x", "٣"):
        with pytest.raises(argparse.ArgumentTypeError):
            split.parse_spec(bad)


def test_summary_line_names_ranks_hosts_and_the_slowest():
    recs = [dict(status="ok", size_bytes=s, in_place=False, time_us=10.0 * s, busbw_gbs=0.5, slowest_rank=3,
                 slowest_host="h3", split_round=1, group=0, group_ranks="0,3", group_hosts="h0,h3", wrong=0)
            for s in (1, 2)]
    assert split.summary_line(recs) == ("round 1 group 0: ranks 0,3 on h0,h3: 2 B 20.00 us, busbw 0.500 GB/s, "
                                        "slowest rank 3 (h3)")
