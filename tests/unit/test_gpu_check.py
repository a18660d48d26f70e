"""benchmarks/gpu_check.py: on this machine (no GPU) every path is skipped and it exits 0; the plan (which
paths run, which are skipped and why), the judging of a finished job and the exit status, from given inputs.

Nothing here touches a GPU: what the check does on one is untested until a device is lent.
"""

from __future__ import annotations

import glob
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


g = _load()
CUDA_TORCH = g.Library(version="2.13.0+cu128", cuda="12.8", nccl=True, devices=2)
CUPY = g.Library(version="13.6.0", cuda="12080", devices=2)


def _hw(n, torch=CUDA_TORCH, cupy=CUPY):
    return g.Hardware(tuple(f"NVIDIA H100 80GB HBM3 #{i}" for i in range(n)), g.NO_GPU, torch, cupy)


def _by_path(steps):
    return {s.path: s for s in steps}


def _has_gpu() -> bool:
    return bool(shutil.which("nvidia-smi") or glob.glob("/dev/nvidia[0-9]*"))


@pytest.mark.skipif(_has_gpu(), reason="this machine has a GPU: the check would run every path for real")
def test_without_a_gpu_every_path_is_skipped_and_it_exits_0(tmp_path):
    out = tmp_path / "check.jsonl"
    res = subprocess.run([sys.executable, str(SCRIPT), "--json", str(out)], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("gpu_check: ") and "GPUs: none" in lines[0]
    paths = lines[1:-1]
    assert [ln.split(": ")[1] for ln in paths] == list(g.PATHS)
    for ln in paths:
        assert ln.split(": ")[2] == "skipped" and "no NVIDIA GPU" in ln, ln
    assert lines[-1].startswith("gpu_check: 0 ran, 0 failed, 6 skipped of 6") and lines[-1].endswith("(exit 0)")
    assert len(out.read_text().splitlines()) == len(g.PATHS)


def test_bad_input_is_exit_2_in_one_line():
    res = subprocess.run([sys.executable, str(SCRIPT), "--only", "nccl-9"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "nccl-9" in res.stderr and "gpu_check: error:" in res.stderr


def test_no_gpu_skips_every_path_with_the_hardware_reason():
    steps = g.plan(g.Hardware())
    assert [s.path for s in steps] == list(g.PATHS)
    assert all(s.skip == g.NO_GPU and not s.fail for s in steps)


def test_one_gpu_runs_everything_but_two_rank_nccl():
    steps = _by_path(g.plan(_hw(1)))
    assert steps["nccl-2"].skip == "2-rank nccl needs >= 2 GPUs (found 1)"
    assert [p for p, s in steps.items() if s.skip or s.fail] == ["nccl-2"]
    assert steps["replicate-unet"].ranks == 1 and steps["nccl-1"].ranks == 1
    assert steps["mpi-cupy"].ranks == 2 and steps["gloo-cuda"].ranks == 2  # two ranks may share a GPU there


def test_two_gpus_run_every_path_with_the_flags_each_needs():
    steps = _by_path(g.plan(_hw(2)))
    assert not [s for s in steps.values() if s.skip or s.fail]
    assert steps["nccl-2"].ranks == 2 and steps["replicate-unet"].ranks == 2
    assert "--cuda-graph" in steps["cuda-graph"].argv and steps["cuda-graph"].expect["loop"] == "cuda-graph"
    assert ("--buffer", "cupy") == steps["mpi-cupy"].argv[-2:]
    assert ("--device", "cuda") == steps["gloo-cuda"].argv[-2:]
    assert {"--model", "unet", "collectives.replicate"} <= set(steps["replicate-unet"].argv)


def test_a_torch_without_cuda_skips_the_torch_paths_only():
    steps = _by_path(g.plan(_hw(2, torch=g.Library(version="2.13.0+cpu", cuda=None))))
    for path in g.TORCH_PATHS:
        assert "torch.version.cuda is None" in steps[path].skip
    assert not steps["mpi-cupy"].skip


def test_a_torch_without_nccl_still_runs_gloo_on_cuda():
    steps = _by_path(g.plan(_hw(2, torch=g.Library(version="2.13.0", cuda="12.8", nccl=False))))
    assert all("is_nccl_available" in steps[p].skip for p in g.NCCL_PATHS)
    assert not steps["gloo-cuda"].skip


def test_cupy_missing_skips_its_path_and_a_broken_one_fails_it():
    steps = _by_path(g.plan(_hw(2, cupy=g.Library(installed=False))))
    assert steps["mpi-cupy"].skip == "cupy not installed" and not steps["nccl-1"].skip
    broken = _by_path(g.plan(_hw(2, cupy=g.Library(error="CUDADriverError: insufficient driver"))))
    assert broken["mpi-cupy"].fail and not broken["mpi-cupy"].skip


def test_only_skips_the_rest():
    steps = _by_path(g.plan(_hw(2), only=("nccl-1",)))
    assert not steps["nccl-1"].skip and steps["nccl-2"].skip == "not asked for (--only)"


def test_gpus_are_counted_from_nvidia_smi_else_the_device_files(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-a)'\n"
                   "echo '  MIG 1g.10gb Device 0: (UUID: MIG-b)'\necho 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-c)'\n")
    smi.chmod(0o755)
    assert g.find_gpus(str(smi), devices=[])[0] == ("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")
    assert g.find_gpus("", devices=["/dev/nvidia0"])[0] == ("unnamed (/dev/nvidia0)",)
    assert g.find_gpus("", devices=[]) == ((), g.NO_GPU)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    names, why = g.find_gpus(str(smi), devices=[])
    assert names == () and "CUDA_VISIBLE_DEVICES" in why


def _row(**kw):
    row = dict(status="ok", collective="allreduce", nranks=2, buffer="cuda", loop="python", size_bytes=8,
               busbw_gbs=0.001, time_us=20.0, wrong=0, checks=1)
    row.update(kw)
    return row


def test_a_job_is_judged_from_its_exit_and_records():
    step = _by_path(g.plan(_hw(2)))["nccl-2"]
    rows = [_row(), _row(size_bytes=16 << 20, busbw_gbs=310.5, time_us=99.0), _row(status="unsupported")]
    status, why, wrong = g.judge(step, 0, "", "", rows)
    assert status == "ran" and not wrong and "310 GB/s at 16 MiB" in why and "20.0 us at 8 B" in why
    assert g.judge(step, 1, "", "", [_row(wrong=3)]) == ("failed", "3 wrong elements (exit 1)", True)
    status, why, wrong = g.judge(step, 3, "NCCL WARN x\ncollscale: rank 1: error: DistBackendError: boom\n", "", [])
    assert (status, wrong) == ("failed", False) and why == "exit 3: collscale: rank 1: error: DistBackendError: boom"
    assert "buffer cpu, not cuda" in g.judge(step, 0, "", "", [_row(buffer="cpu")])[1]
    assert "ranks, not 2" in g.judge(step, 0, "", "", [_row(nranks=1)])[1]
    assert "0 checks" in g.judge(step, 0, "", "", [_row(checks=0)])[1]
    assert g.judge(step, 0, "", "", [_row(status="unsupported", reason="no")])[0] == "failed"


def test_replicate_is_judged_by_its_device_and_shows_its_step():
    step = _by_path(g.plan(_hw(2)))["replicate-unet"]
    rec = dict(status="ok", collective="replicate", nranks=2, device="cuda", model="unet", batch=2, step_ms=12.5,
               forward_ms=3.0, backward_ms=8.0, optimizer_ms=1.5, steps_per_phase=2, efficiency=0.9, wrong=None,
               checks=0)
    status, why, _ = g.judge(step, 0, "", "", [rec])
    assert status == "ran" and "step 12.5 ms" in why and "E(2) 90.0 %" in why
    assert "device cpu, not cuda" in g.judge(step, 0, "", "", [dict(rec, device="cpu")])[1]


def test_exit_status_and_summary():
    ran, skipped = g.Outcome("nccl-1", "ran", "x"), g.Outcome("nccl-2", "skipped", "y")
    failed, wrong = g.Outcome("gloo-cuda", "failed", "exit 3"), g.Outcome("mpi-cupy", "failed", "w", wrong=True)
    assert g.exit_status([ran, skipped]) == 0 and g.exit_status([skipped]) == 0
    assert g.exit_status([ran, failed]) == 3
    assert g.exit_status([failed, wrong]) == 1
    assert g.summary([ran, failed, skipped]).startswith("gpu_check: 1 ran, 1 failed, 1 skipped of 3")
    assert skipped.line() == "gpu_check: nccl-2: skipped: y"
