"""Other tools' real, published logs (tests/data/README.md says where each comes from) load as records.

For every log: how many records, the first and last size with their busbw (or
time), and the rank count where the log states it; plus what each generation
of each tool adds (old nccl-tests columns, launcher tags, NCCL INFO between
header and rows, concatenated tests, derived bandwidths of OSU and IMB).
"""

from pathlib import Path

import pytest

from analysis.load import points, reader
from facts import record, spec

DATA = Path(__file__).resolve().parents[1] / "data"


def load(name, strict=False):
    said = []
    df = points.load([str(DATA / name) if ":" not in name else f"{DATA}/{name}"], strict=strict,
                      warn=said.append)
    return df, said


def out_of_place(df):
    return df[df["placement"] == "out-of-place"].reset_index(drop=True)


# file, records, collective(s), nranks, (first size, first busbw or time), (last size, last busbw)
REAL = [
    ("polaris-nccl2.18-n2-all_reduce_output.dat", 58, "allreduce", 8, (4, 0.0), (1073741824, 9.45)),
    ("polaris-nccl2.18-n8-all_reduce_output.dat", 58, "allreduce", 32, (4, 0.0), (1073741824, 5.98)),
    ("polaris-nccl2.18-n128-all_reduce_output.dat", 58, "allreduce", 512, (4, 0.0), (1073741824, 4.64)),
    ("polaris-nccl2.18-n2-all_gather_output.dat", 58, "allgather", 8, (0, 0.0), (1073741824, 9.00)),
    ("a3mega-h100-nccl-tests-2025.txt", 62, "allreduce", 16, (8, 0.0), (8589934592, 338.82)),
    ("aws-efa-eks-p4d-nccl-tests-2021.txt", 60, "allreduce", 16, (8, 0.0), (4294967296, 43.81)),
    ("dgx2-v100-nccl-tests-2020.txt", 310, "allgather", 12, (0, 0.0), (8589934560, 64.16)),
]


@pytest.mark.parametrize("name, n, collective, nranks, first, last", REAL)
def test_nccl_tests_logs(name, n, collective, nranks, first, last):
    df, said = load(name)
    assert len(df) == n and (df["kind"] == "measured").all()
    assert df["collective"].iloc[0] == collective and set(df["nranks"]) == {nranks}
    oop = out_of_place(df)
    assert (oop["size_bytes"].iloc[0], oop["busbw_gbs"].iloc[0]) == first
    assert (oop["size_bytes"].iloc[-1], oop["busbw_gbs"].iloc[-1]) == last
    assert df["source_line"].str.startswith(str(DATA / name) + ":").all()
    assert df["source"].str.startswith("nccl-tests").all() and df["derived"].isna().all()
    assert said == []


def test_records_come_from_the_one_builder_and_carry_every_field():
    df, _ = load("polaris-nccl2.18-n2-all_reduce_output.dat")
    assert set(record.FIELDS) <= set(df.columns)
    assert (df["schema"] == record.SCHEMA).all() and df["timestamp"].isna().all()
    first = df.iloc[0]
    assert first["source_line"].endswith("polaris-nccl2.18-n2-all_reduce_output.dat:16")
    assert first["gpu"] == "NVIDIA A100-SXM4-40GB" and first["nhosts"] == 2 and first["dtype"] == "float32"
    assert first["iters"] == 20 and first["warmup"] == 5 and first["op"] == "sum" and first["root"] == -1
    assert "collective from the file name" in first["inferred"] and "rank list" in first["inferred"]
    assert first["busbw_factor"] == pytest.approx(2 * 7 / 8)


def test_elided_rank_list_keeps_nranks_and_forgets_hosts():
    df, _ = load("polaris-nccl2.18-n128-all_reduce_output.dat")
    assert set(df["nranks"]) == {512} and df["nhosts"].isna().all()
    assert "rank list elided (8 of 512 ranks listed)" in df["inferred"].iloc[0]


def test_concatenated_old_generation_tests():
    """2020's table: all_gather without redop or root, broadcast with root only, reduce with both, an
    error column (largest relative error), sizes 0 and 4080; five tests one after another."""
    df, _ = load("dgx2-v100-nccl-tests-2020.txt")
    assert list(df["collective"].drop_duplicates()) == ["allgather", "allreduce", "broadcast", "reduce",
                                                        "reduce_scatter"]
    assert df.groupby("collective").size().eq(62).all() and df["run_id"].nunique() == 5
    bcast = out_of_place(df[df["collective"] == "broadcast"].reset_index(drop=True))
    assert bcast["root"].iloc[0] == 0 and bcast["op"].isna().all() and bcast["busbw_gbs"].iloc[-1] == 122.15
    assert df["wrong"].isna().all() and df["error"].max() == 1.0
    assert df["source_line"].iloc[0].endswith(":21") and df["nhosts"].iloc[0] == 1


def test_launcher_tags_and_nccl_info_between_header_and_rows():
    df, _ = load("aws-efa-eks-p4d-nccl-tests-2021.txt")
    assert df["transport_version"].iloc[0] == "NCCL 2.9.9" and set(df["nhosts"]) == {2}
    assert "collective from the columns" in df["inferred"].iloc[0]  # count x 4 == size, a reduction: allreduce
    assert df["error"].iloc[0] == pytest.approx(2e-7)


def test_srun_label_and_a_row_cut_short(tmp_path):
    df, said = load("rccl-mi250x-all_gather-srun-label-excerpt.txt:ranks=32,transport=rccl-frontier")
    assert len(df) == 10 and set(df["nranks"]) == {32} and set(df["transport"]) == {"rccl-frontier"}
    assert "nranks given on the command line" in df["inferred"].iloc[0]
    oop = out_of_place(df)
    assert (oop["size_bytes"].iloc[0], oop["busbw_gbs"].iloc[0]) == (65536, 0.59)
    assert (oop["size_bytes"].iloc[-1], oop["busbw_gbs"].iloc[-1]) == (1048576, 0.70)
    assert len(said) == 1 and said[0].startswith(f"{DATA}/rccl-mi250x-all_gather-srun-label-excerpt.txt:8: skipped")
    assert "cut short" in said[0]
    with pytest.raises(reader.ResultsError, match=r"excerpt.txt:8: 12 fields where the table has 13.*--strict"):
        load("rccl-mi250x-all_gather-srun-label-excerpt.txt:ranks=32", strict=True)


def test_rccl_tests_json_lines():
    df, _ = load("rccl-tests-json-lines-pr93.jsonl")
    assert len(df) == 5 and set(df["nranks"]) == {4} and set(df["transport"]) == {"rccl-tests"}
    assert list(df["placement"][:2]) == ["out-of-place", "in-place"]
    assert df["busbw_gbs"].iloc[0] == pytest.approx(0.08006609623048194) and df["size_bytes"].iloc[-1] == 4096
    assert df["source_line"].iloc[-1].endswith("pr93.jsonl:5")


def test_osu_5_8_concatenated_with_one_sided_tests():
    df, said = load("osu-5.8-metrics-operator-2023.txt")
    assert len(df) == 89
    assert df.groupby("collective").size().to_dict() == {"allreduce": 19, "p2p_bibw": 23, "p2p_bw": 23,
                                                           "pingpong": 24}
    ar = df[df["collective"] == "allreduce"].reset_index(drop=True)
    assert set(ar["nranks"]) == {2} and "command line" in ar["inferred"][0]
    assert (ar["size_bytes"][0], ar["time_us"][0]) == (4, 17.67)
    # derived with collscale's definitions: algbw = S/t, busbw = algbw x 2(n-1)/n = algbw at 2 ranks
    assert ar["algbw_gbs"][18] == pytest.approx(1048576 / 845.90e-6 / 1e9)
    assert ar["busbw_gbs"][18] == pytest.approx(ar["algbw_gbs"][18]) and "busbw_gbs" in ar["derived"][0]
    bw = df[df["collective"] == "p2p_bw"].reset_index(drop=True)
    assert bw["algbw_gbs"].iloc[-1] == pytest.approx(4.11748) and bw["busbw_gbs"].iloc[-1] == pytest.approx(4.11748)
    assert bw["time_us"].iloc[-1] == pytest.approx(4194304 / 4117.48)  # one message's share of the stream
    assert bw["size_bytes"].iloc[-1] == 4194304 and set(bw["nranks"]) == {2} and "time_us" in bw["derived"][0]
    assert any("MPI_Get_accumulate latency (line 7)" in s for s in said)


def test_osu_7_5_datatype_line_and_rank_counts_from_the_command_line():
    df, said = load("osu-7.5-oci-cpu-2025.txt")
    assert len(df) == 56 and said == []
    a2a = df[df["collective"] == "alltoall"].reset_index(drop=True)
    assert len(a2a) == 27 and set(a2a["nranks"]) == {36} and set(a2a["dtype"]) == {"int8"}
    # OSU's alltoall size is what a rank sends to each peer: S = size x n
    assert (a2a["tool_size_bytes"][0], a2a["size_bytes"][0]) == (1, 36)
    assert a2a["busbw_gbs"][0] == pytest.approx(36 / 10.29e-6 / 1e9 * 35 / 36)
    ar = df[df["collective"] == "allreduce"].reset_index(drop=True)
    assert set(ar["nranks"]) == {144} and set(ar["dtype"]) == {"int32"}
    assert (ar["size_bytes"].iloc[-1], ar["time_us"].iloc[-1]) == (268435456, 496306.98)
    assert ar["busbw_gbs"].iloc[-1] == pytest.approx(268435456 / 496306.98e-6 / 1e9 * 2 * 143 / 144)
    bw = df[df["collective"] == "p2p_bw"]
    assert bw["algbw_gbs"].tolist() == [pytest.approx(12.25416)]


def test_osu_gpu_runs():
    df, _ = load("osu-7.5-oci-gpu-2025.txt")
    assert len(df) == 4 and set(df["buffer"]) == {"cuda"}
    assert df["transport"].tolist() == ["osu", "osu", "osu-nccl", "osu-nccl"]
    assert df["nranks"].tolist() == [2, 2, 8, 16] and df["time_us"].iloc[0] == 2.5
    assert df["busbw_gbs"].iloc[-1] == pytest.approx(1073741824 / 13482.19e-6 / 1e9 * 2 * 15 / 16)


def test_imb_tables():
    df, said = load("imb-oci-2023.txt")
    assert len(df) == 54 and said == []
    ar = df[df["collective"] == "allreduce"].reset_index(drop=True)
    assert set(ar["nranks"]) == {144} and ar["source"][0] == "IMB-MPI1 2018" and ar["dtype"][0] == "float32"
    assert (ar["size_bytes"][0], ar["busbw_gbs"][0]) == (0, 0.0)
    assert (ar["time_us"].iloc[-1], ar["time_us_min"].iloc[-1], ar["time_us_max"].iloc[-1]) == (
        343593.42, 331046.67, 353256.68)
    assert ar["busbw_gbs"].iloc[-1] == pytest.approx(268435456 / 343593.42e-6 / 1e9 * 2 * 143 / 144)
    assert ar["timestamp"][0].startswith("2023-07-20T16:27:27")
    pp = df[df["collective"] == "pingpong"].reset_index(drop=True)
    assert pp["source"][0] == "IMB-MPI1 2021.6" and set(pp["nranks"]) == {2}
    # IMB's own Mbytes/sec (1e6 bytes/s) is the algbw derived here
    assert pp["algbw_gbs"].iloc[-1] == pytest.approx(12240.91e-3, rel=1e-5)


def test_hccl_demo_benchmark_block():
    df, _ = load("hccl_demo-gaudi2-openshift-2025.txt")
    assert len(df) == 1
    r = df.iloc[0]
    assert (r["collective"], r["size_bytes"], r["busbw_gbs"], r["algbw_gbs"]) == ("allreduce", 33554432,
                                                                               258.209121, pytest.approx(147.548069))
    assert r["nranks"] == 8 and r["inferred"] == "nranks from NW / Algo Bandwidth"
    assert r["time_us"] == pytest.approx(33554432 / 147.548069e9 * 1e6) and "time_us" in r["derived"]


def test_foreign_size_facts_are_in_the_spec():
    assert spec.s_from_foreign_size("osu", "allgather", 1024, 8) == 8192
    assert spec.s_from_foreign_size("osu", "allgather", 1024, None) is None
    assert spec.s_from_foreign_size("osu", "reduce_scatter", 1024, None) == 1024
    assert spec.s_from_foreign_size("imb", "alltoall", 16, 4) == 64
    assert spec.s_from_foreign_size("nccl-tests", "allgather", 4096, 8) == 4096
    assert all(src for _, src in spec.FOREIGN_SIZES.values())


def test_a_log_that_is_none_of_the_formats_is_one_line():
    with pytest.raises(reader.ResultsError) as exc:
        load("polaris-launch-failed.dat")
    text = str(exc.value)
    assert "\n" not in text and text.startswith(f"{DATA}/polaris-launch-failed.dat:1:")
    assert "neither collscale results" in text and "OSU" in text and "IMB" in text
