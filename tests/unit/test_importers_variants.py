"""Every variant the importers read, on SYNTHETIC fixtures (tests/data/synthetic/ and inline text):
formats no public log was found for (nccl-tests -J, rccl-tests' JSON list, hccl_demo's summary), and the
shapes logs take (rows cut short, headers from several processes, no header, warnings between rows),
damaged files, the per-file options, and ``python -m analysis.results``."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import tests.unit.hypothesis_profile  # noqa: F401  (the project's hypothesis profile)
from analysis import results
from analysis.load import importers, points, reader
from facts import fabrics

DATA = Path(__file__).resolve().parents[1] / "data"
SYN = DATA / "synthetic"
HEADER = ("#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   "
          "busbw #wrong")


def load(path, strict=False):
    said = []
    return points.load([str(path)], strict=strict, warn=said.append), said


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


# -- nccl-tests stdout ----------------------------------------------------------------------------

def test_2_19_per_iteration_columns_na_wrong_and_a_row_cut_short():
    df, said = load(SYN / "nccl-tests-2.19-per-iteration-cut.log")
    assert len(df) == 10 and set(df["collective"]) == {"reduce_scatter"} and set(df["nranks"]) == {4}
    assert df["source"].iloc[0] == "nccl-tests 2.19.6" and df["transport_version"].iloc[0] == "NCCL 2.28.3"
    first = df.iloc[0]
    assert (first["time_us"], first["time_us_min"], first["time_us_max"], first["time_us_p99"]) == (10.0, 9.5, 11, 11)
    assert df["wrong"].iloc[1] is None or df["wrong"].isna().iloc[1]  # N/A
    assert df.loc[6, "status"] == "wrong" and df.loc[6, "wrong"] == 2
    assert len(said) == 1 and ":22: skipped: 10 fields where the table has 21 (a row cut short?)" in said[0]


def _table(rows, prefix=""):
    return "\n".join(prefix + r for r in [HEADER, "#        (B)    (elements)"] + rows) + "\n"


ROWS = ["        1024     256  float  sum  -1    10.00    0.10    0.18      0    10.00    0.10    0.18      0",
        "        2048     512  float  sum  -1    11.00    0.19    0.33      0    11.00    0.19    0.33      0"]


def test_headers_printed_by_several_processes(tmp_path):
    """nccl-tests built without MPI and started by mpirun: each process prints its own header and rows."""
    head = ("# nThread 1 nGpus 1 minBytes 1024 maxBytes 2048 step: 2(factor) warmup iters: 5 iters: 20 validation: 1\n"
            "# Using devices\n#   Rank  0 Pid   1320 on hostA device  0 [0x00] Tesla V100-SXM2-16GB\n")
    text = head + head.replace("hostA", "hostB") + _table(ROWS) + "\n".join(ROWS) + "\n"
    df, _ = load(write(tmp_path, "all_reduce.log", text))
    assert len(df) == 8 and set(df["nranks"]) == {1}
    assert "several processes printed their own rank list" in df["inferred"].iloc[0]


def test_rows_without_their_header_and_a_starting_line(tmp_path):
    text = "# Collective test starting: all_reduce_perf\n" + "\n".join(ROWS) + "\n# Avg bus bandwidth : 0.2\n"
    df, _ = load(f"{write(tmp_path, 'log.txt', text)}:ranks=8")
    assert len(df) == 4 and set(df["collective"]) == {"allreduce"} and set(df["nranks"]) == {8}


def test_an_untagged_command_line_counts_for_tagged_rows(tmp_path):
    p = write(tmp_path, "x.txt", "$ mpirun -np 8 ./build/all_reduce_perf -b 1K -e 2K\n" + _table(ROWS, "[1,0]<stdout>:"))
    df, _ = load(p)
    assert set(df["collective"]) == {"allreduce"} and set(df["nranks"]) == {8}
    assert "nranks from the launcher's command line" in df["inferred"].iloc[0]


def test_per_file_ranks_option(tmp_path):
    p = write(tmp_path, "x.txt", "# Collective test starting: all_reduce_perf\n" + _table(ROWS, " 0: "))
    df, _ = load(f"{p}:ranks=8")
    assert set(df["nranks"]) == {8} and df["busbw_factor"].iloc[0] == pytest.approx(1.75)
    df, _ = load(f"{p}:transport=clusterA")
    assert set(df["transport"]) == {"clusterA"} and df["nranks"].isna().all()


@pytest.mark.parametrize("suffix, words", [(":ranks=abc", "is not a whole number"), (":ranks=0", "whole number"),
                                           (":transport=a b", "use letters")])
def test_bad_per_file_options_are_one_line(tmp_path, suffix, words):
    p = write(tmp_path, "x.txt", _table(ROWS))
    with pytest.raises(reader.ResultsError, match=words):
        load(f"{p}{suffix}")


def test_ranks_option_on_collscale_results_is_refused(tmp_path):
    rec = {"schema": "collscale.row/1", "kind": "measured", "status": "ok", "collective": "allreduce",
           "transport": "mpi", "nranks": 2, "size_bytes": 8, "time_us": 1.0}
    p = write(tmp_path, "r.jsonl", json.dumps(rec) + "\n")
    with pytest.raises(reader.ResultsError, match="r.jsonl: ranks=/transport= are for other tools' logs"):
        load(f"{p}:ranks=4")


def test_unknown_collective_is_one_note_and_nothing_is_invented(tmp_path):
    text = ("# nThread 1 nGpus 1 minBytes 8 maxBytes 8 step: 2(factor) warmup iters: 5 iters: 20\n" + _table(
        ["           8       2   float   none   -1   10.00   0.00   0.00   0   10.00   0.00   0.00   0"]))
    with pytest.raises(reader.ResultsError, match="log.txt: a log of nccl-tests/rccl-tests, but no row could be read: "
                       ".*does not say which collective"):
        load(write(tmp_path, "log.txt", text))


# -- JSON outputs ---------------------------------------------------------------------------------

def test_nccl_tests_json_and_a_json_cut_short(tmp_path):
    df, _ = load(SYN / "nccl-tests-2.19-J.json")
    assert len(df) == 6 and set(df["collective"]) == {"allgather"} and set(df["nranks"]) == {2}
    assert df["transport_version"].iloc[0] == "NCCL 2.28.3" and df["gpu"].iloc[0] == "NVIDIA H100 80GB HBM3"
    assert df["source_line"].tolist()[::2] == [f"{SYN}/nccl-tests-2.19-J.json:{n}" for n in (5, 6, 7)]
    text = (SYN / "nccl-tests-2.19-J.json").read_text()
    cut = text[:text.index('"size":4194304') + 40]  # killed while writing the third result
    df, said = load(write(tmp_path, "killed.json", cut))
    assert len(df) == 4 and "killed.json:7: skipped: a result without a whole size (cut short?)" in said[0]


def test_rccl_tests_json_list_and_json_lines_cut_short(tmp_path):
    df, _ = load(SYN / "rccl-tests-list.json")
    assert df["size_bytes"].tolist() == [1048576, 2097152] and df["source_line"].iloc[1].endswith(":3")
    lines = (DATA / "rccl-tests-json-lines-pr93.jsonl").read_text()
    df, said = load(write(tmp_path, "cut.jsonl", lines[:-40]))
    assert len(df) == 4 and "cut.jsonl:5: skipped: not an rccl-tests result" in said[0]


def test_a_json_file_of_no_known_tool_keeps_the_collscale_message(tmp_path):
    with pytest.raises(reader.ResultsError, match="a.json:1: not a collscale record"):
        load(write(tmp_path, "a.json", '{"foo": 1}\n'))


# -- hccl_demo, OSU, IMB ----------------------------------------------------------------------------

def test_hccl_demo_summary_report():
    df, _ = load(SYN / "hccl_demo-summary.txt")
    assert len(df) == 3 and set(df["collective"]) == {"allgather"} and set(df["nranks"]) == {8}
    # hccl_demo's all_gather size is one rank's block: S = size x n; NW bandwidth is busbw
    assert (df["tool_size_bytes"][0], df["size_bytes"][0], df["time_us"][0]) == (1048576, 8388608, 100.0)
    assert df["busbw_gbs"][2] == pytest.approx(117.440512)
    assert df["algbw_gbs"][2] == pytest.approx(8 * 4194304 / 250e-6 / 1e9)
    assert df["busbw_gbs"][2] == pytest.approx(df["algbw_gbs"][2] * 7 / 8)


def test_osu_full_columns_without_hash_warnings_barrier_and_unknown_ranks():
    df, said = load(SYN / "osu-full-nohash-warnings.txt")
    red = df[df["collective"] == "reduce"].reset_index(drop=True)
    assert red["size_bytes"].tolist() == [4, 8, 16, 2048] and red["iters"].tolist() == [1000, 1000, 1000, 100]
    assert (red["time_us_min"][0], red["time_us_max"][0]) == (1.9, 2.4)
    assert red["busbw_gbs"][0] == pytest.approx(4 / 2.1e-6 / 1e9)  # factor 1: no rank count needed
    bar = df[df["collective"] == "barrier"]
    assert bar["time_us"].tolist() == [12.57] and bar["busbw_gbs"].tolist() == [0.0]
    ag = df[df["collective"] == "allgather"]
    assert ag["size_bytes"].isna().all() and ag["busbw_gbs"].isna().all()  # S needs the rank count
    assert any(":7: skipped: 4 fields where the OSU header has 5" in s for s in said)
    assert any("7 OSU rows without a rank count" in s and "FILE:ranks=N" in s for s in said)
    df, _ = load(f"{SYN / 'osu-full-nohash-warnings.txt'}:ranks=4")
    ag = df[df["collective"] == "allgather"].reset_index(drop=True)
    assert ag["size_bytes"].tolist() == [4, 4096] and ag["busbw_gbs"][1] == pytest.approx(4096 / 9e-6 / 1e9 * 3 / 4)


def test_imb_unknown_benchmark_defects_and_a_cut_row(tmp_path):
    text = ("#    Intel(R) MPI Benchmarks 2021.7, MPI-1 part\n# MPI_Datatype : MPI_BYTE\n"
            "# Benchmarking Gatherv\n# #processes = 4\n"
            "       #bytes #repetitions  t_min[usec]  t_max[usec]  t_avg[usec]\n"
            "            8         1000         1.00         2.00         1.50\n"
            "# Benchmarking Allgather\n# #processes = 4\n"
            "       #bytes #repetitions  t_min[usec]  t_max[usec]  t_avg[usec] defects\n"
            "            8         1000         1.00         2.00         1.50        0.00\n"
            "           16         1000         1.00         2.00         2.00        3.00\n"
            "           32         1000         1.00\n")
    df, said = load(write(tmp_path, "imb.txt", text))
    assert df["size_bytes"].tolist() == [32, 64] and df["tool_size_bytes"].tolist() == [8, 16]
    assert df["status"].tolist() == ["ok", "wrong"] and df["dtype"].tolist() == ["uint8", "uint8"]
    assert any("Gatherv (line 3)" in s for s in said) and any("imb.txt:12: skipped" in s for s in said)


# -- damaged and foreign files ------------------------------------------------------------------------

@pytest.mark.parametrize("text, words", [
    ("", "no records"),
    (HEADER + "\n", "a log of nccl-tests/rccl-tests, but no row could be read"),
    ("# OSU MPI Allreduce Latency Test v7.5\n# Size  Avg Latency(us)\n4 x\n", "a log of OSU micro-benchmarks, but no"),
    ("hello\nworld\n", "neither collscale results"),
])
def test_damaged_files_are_one_line(tmp_path, text, words):
    with pytest.raises(reader.ResultsError) as exc:
        load(write(tmp_path, "f.log", text))
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_a_binary_file_is_one_line(tmp_path):
    p = tmp_path / "b.log"
    p.write_bytes(b"# OSU MPI Allreduce Latency Test\x00\x01\x02")
    with pytest.raises(reader.ResultsError, match="a binary file"):
        load(p)


@settings(max_examples=60)
@given(st.lists(st.sampled_from(["# OSU MPI Allreduce Latency Test v7.5", "# Size Avg Latency(us)", HEADER,
                                 "# nThread 1 nGpus 1", "# Benchmarking Allreduce", "# #processes = 4",
                                 "#bytes #repetitions t_avg[usec]",
                                 "[BENCHMARK] hcclAllReduce(count=4, dtype=float)",
                                 "[BENCHMARK]     NW Bandwidth   : 1 GB/s", "[BENCHMARK]     Algo Bandwidth : x GB/s",
                                 "4 5", "8 2 float sum -1 1 2 3 0", "{", "]", "N/A", "[1,0]<stdout>:", " 0: 4 1.0"]),
                max_size=12), st.text(max_size=30))
def test_any_mix_of_fragments_never_raises_anything_but_one_line(tmp_path_factory, fragments, junk):
    p = tmp_path_factory.mktemp("mix") / "m.log"
    p.write_text("\n".join(fragments + [junk]))
    try:
        load(p)
    except reader.ResultsError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=40)
@given(rows=st.lists(st.tuples(st.integers(0, 40), st.floats(0.01, 1e6), st.integers(0, 3)), min_size=1,
                     max_size=8, unique_by=lambda r: r[0]),
       prefix=st.sampled_from(["", "[1,0]<stdout>:", " 0: ", "[0] "]), noise=st.booleans())
def test_generated_tables_round_trip(tmp_path_factory, rows, prefix, noise):
    """Any nccl-tests table, tagged by any launcher, with NCCL INFO lines anywhere: every row comes back."""
    lines = ["# Collective test starting: all_reduce_perf", "#  Rank  0 Group  0 Pid 1 on h0 device  0 [0x0] G",
             "#  Rank  1 Group  0 Pid 2 on h1 device  0 [0x0] G", HEADER]
    for exp, t, wrong in sorted(rows):
        size = 4 << exp
        t = max(t, size / 5e7)  # physical: at most 50 TB/s (the loader leaves out what is faster)
        if noise:
            lines.append("h0:1:1 [0] NCCL INFO comm 0x1 rank 0 nranks 2 - Init COMPLETE")
        lines.append(f"{size:12d} {size // 4:13d}     float     sum      -1 {t:8.2f} {1.0:7.2f} {2.0:7.2f} {wrong:6d}"
                     f" {t:8.2f} {1.0:7.2f} {2.0:7.2f} {wrong:6d}")
    p = tmp_path_factory.mktemp("gen") / "g.log"
    p.write_text("\n".join(prefix + ln for ln in lines) + "\n")
    df, _ = load(p)
    assert len(df) == 2 * len(rows) and set(df["nranks"]) == {2}
    assert sorted(set(df["size_bytes"])) == sorted(4 << e for e, _, _ in rows)
    want = {4 << e: float(f"{max(t, (4 << e) / 5e7):.2f}") for e, t, _ in rows}
    assert all(r.time_us == pytest.approx(want[r.size_bytes]) for r in df.itertuples())


def test_detection_is_by_content_not_name(tmp_path):
    osu = (DATA / "osu-7.5-oci-cpu-2025.txt").read_text()
    assert importers.detect(osu)[0] == "OSU micro-benchmarks"
    df, _ = load(write(tmp_path, "results.csv", osu))
    assert len(df) == 56


# -- python -m analysis.results ----------------------------------------------------------------------

def test_results_cli_table_csv_and_errors(tmp_path, capsys):
    code = results.main([str(DATA / "hccl_demo-gaudi2-openshift-2025.txt")])
    out = capsys.readouterr().out
    assert code == 0 and "hccl_demo" in out and "258.209121" in out and "source_line" in out
    csv = tmp_path / "out.csv"
    assert results.main([str(DATA / "imb-oci-2023.txt"), "--csv", str(csv)]) == 0
    header = csv.read_text().splitlines()[0].split(",")
    assert header[:3] == ["schema", "kind", "status"] and {"source", "source_line", "derived"} <= set(header)
    assert len(csv.read_text().splitlines()) == 55
    capsys.readouterr()
    code = results.main([f"{DATA}/rccl-mi250x-all_gather-srun-label-excerpt.txt:ranks=32", "--strict"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("analysis.results: error: ") and ":8: " in err
    code = results.main([str(DATA / "polaris-launch-failed.dat")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "polaris-launch-failed.dat" in err


# -- AMD Instinct fabric models -----------------------------------------------------------------------

def test_amd_fabrics_name_their_topology_and_sources():
    mi250x, mi300x = fabrics.get("mi250x-if"), fabrics.get("mi300x-if")
    for fab in (mi250x, mi300x):
        assert fab.devices_per_node == 8 and fab.kind == "modelled" and "RCCL" in fab.notes
        for fig in (fab.up.alpha, fab.up.beta, fab.out.alpha, fab.out.beta, fab.peak_tflops):
            assert fig.kind in ("measured", "datasheet", "derived", "assumed") and fig.source
    assert mi250x.up.beta.kind == "derived" and "200 GB/s" in mi250x.notes and "50 or 100 GB/s" in mi250x.notes
    assert fabrics.MI250X_LINKS["same package (GCD pair)"] == (4, 200.0)
    assert {links * 50.0 for links, _ in fabrics.MI250X_LINKS.values()} == {gbs for _, gbs in
                                                                            fabrics.MI250X_LINKS.values()}
    # MI300X: one 64 GB/s link to each peer; 8 GPUs use all 7 at once
    n = 1 << 30
    assert n / mi300x.allreduce_time(n, 2) * 1 / 1e9 == pytest.approx(64.0, rel=1e-3)
    assert n / mi300x.allreduce_time(n, 8) * 1.75 / 1e9 == pytest.approx(7 * 64.0, rel=1e-2)
    assert n / mi250x.allreduce_time(n, 8) * 1.75 / 1e9 == pytest.approx(100.0, rel=1e-2)


def test_torch_nccl_backend_on_rocm_is_named_rccl():
    import transports

    assert "RCCL" in transports.description("nccl")
