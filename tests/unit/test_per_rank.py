"""facts.per_rank (the record's per-rank fields) and analysis.load.ranks / analysis.stragglers (pure)."""

import json

from analysis import stragglers
from analysis.load import ranks
from facts import per_rank, record


def test_reservoir_keeps_order_cap_and_is_seeded():
    values = list(range(100))
    a = per_rank.reservoir(values, 10, seed=7)
    assert len(a) == 10 and a == sorted(a) and set(a) <= set(values)
    assert a == per_rank.reservoir(values, 10, seed=7) != per_rank.reservoir(values, 10, seed=8)
    assert per_rank.reservoir(values[:5], 10, seed=1) == values[:5]


def test_iteration_summary():
    s = per_rank.iteration_summary([1.0, 2.0, 3.0, 4.0])
    assert s["n"] == 4 and s["mean"] == 2.5 and s["p50"] == 2.5
    assert abs(s["stdev"] - 1.2909944) < 1e-6 and abs(s["cv"] - 1.2909944 / 2.5) < 1e-6
    assert per_rank.iteration_summary([]) == {"n": 0}


def test_rank_iterations_skip_and_cap():
    it = per_rank.rank_iterations([100.0] + [1.0] * 50, skip=1, cap=5, seed=0)
    assert it["stats"]["n"] == 50 and it["stats"]["mean"] == 1.0 and len(it["samples"]) == 5


def test_fields_name_the_slowest_rank_and_host():
    hosts = per_rank.host_of_rank({"a": [0, 2], "b": [1]})
    f = per_rank.fields([1.0, 3.0, 2.0], hosts)
    assert (f["slowest_rank"], f["slowest_host"]) == (1, "b")
    assert f["rank_time_us"] == [1.0, 3.0, 2.0] and f["rank_host"] == ["a", "b", "a"]
    assert f["host_time_us"] == {"a": [2, 2.0], "b": [1, 3.0]}
    assert "iter_us" not in f


def test_beyond_the_list_limit_only_hosts_are_kept(monkeypatch):
    monkeypatch.setattr(per_rank, "RANK_LIST_MAX", 2)
    f = per_rank.fields([1.0, 3.0, 2.0], {0: "a", 1: "a", 2: "b"})
    assert f["rank_time_us"] is None and f["rank_host"] is None and f["host_time_us"] == {"a": [1, 3.0], "b": [2, 2.0]}


def _rec(size, means, iterations=None, **kw):
    stats = {"mean": max(means), "min": 1, "p50": 1, "p99": 1, "max": 1, "rank_min": min(means),
             "rank_max": max(means), "rank_means": means, "iterations": iterations}
    fields = dict(collective="allreduce", transport="mpi", nranks=len(means), size_bytes=size, dtype="float32",
                  op="sum", in_place=False, run_id="r", **kw)
    fields.update(record.timing_fields(10, stats, size, 4 / 3, {0: "h0", 1: "h0", 2: "h1"}))
    return record.new("measured", "ok", **fields)


def test_the_ranks_frame_unfolds_a_record_per_rank():
    its = [per_rank.rank_iterations([1.0, 2.0, 3.0], 0, 2, r) for r in range(3)]
    recs = [_rec(1024, [1.0, 5.0, 2.0], its), _rec(2048, [2.0, 6.0, 3.0])]
    recs = [json.loads(json.dumps(r)) for r in recs]
    for r in recs:  # as the loader keeps them: nested values as JSON text
        for k in per_rank.FIELDS_JSON:
            if isinstance(r.get(k), (list, dict)):
                r[k] = json.dumps(r[k])
    df = ranks.frame(recs)
    assert len(df) == 6 and list(df["rank"]) == [0, 1, 2, 0, 1, 2]
    assert list(df["host"]) == ["h0", "h0", "h1"] * 2 and df["slowest"].sum() == 2
    assert df.loc[df["slowest"], "rank"].tolist() == [1, 1]
    assert df["iter_n"].iloc[0] == 3 and df["iter_n"].isna().iloc[3]
    t = stragglers.series_table(df)
    assert len(t) == 1 and t["rank"].iloc[0] == 1 and t["host"].iloc[0] == "h0" and t["share"].iloc[0] == 1.0
    assert abs(t["excess_pct"].iloc[0] - 125.0) < 1e-9  # 5/2 and 6/3 over the median rank: +150 %, +100 %


def test_a_damaged_host_entry_is_left_out():
    rec = _rec(1024, [1.0, 2.0, 3.0])
    rec.update(rank_time_us=None, host_time_us={"h0": [None, None], "h1": [2, 3.0]})
    df = ranks.frame([rec])
    assert list(df["rank"]) == [2] and list(df["host"]) == ["h1"]
