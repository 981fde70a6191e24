"""scripts/gpu_check.sh --dry-run: the GPU check's CPU part (export, parser-ready graphs, engine specs and profiles,
the torch fp32 reference, the report) runs in CI."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ROS_ENV = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_DOMAIN_ID")  # set by conftest: loopback only


def test_gpu_check_dry_run_writes_its_report(tmp_path):
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path),
                             "--sizes", "64x128", "128x64"], capture_output=True, text=True, timeout=300,
                            env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path),
                                 "OMP_NUM_THREADS": "1", **{k: os.environ[k] for k in ROS_ENV}})
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    split, fused, node = rows[:8], rows[8], rows[9]
    assert len(rows) == 10
    assert [(r["size"], r["k"], r["M"]) for r in split] == [
        (size, k, m) for size in ("64x128", "128x64") for k in ("1", "2") for m in ("1", "2")]
    # ONE split engine set serves every size, k and M: its profile spans the sizes (the first is the optimum) and
    # up to 4 members, and every case has the same engine key (nothing is rebuilt per case)
    assert all(r["engine"] == "tensorrt fp16 split" and r["status"] == "not run (dry run)" for r in split)
    assert {r["profile_image"] for r in split} == {"((1, 3, 64, 64), (1, 3, 64, 128), (1, 3, 128, 128))"}
    assert {r["profile_x_t"] for r in split} == {"((1, 4, 8, 8), (4, 4, 8, 16), (4, 4, 16, 16))"}
    assert len({r["cache_key"] for r in split}) == 1
    assert fused["engine"] == "tensorrt fp16 fused" and (fused["k"], fused["M"]) == ("1", "1")
    # the node really ran over DDS on the exported graph (onnxruntime on the CPU in a dry run)
    assert node["engine"] == "node over DDS (onnxruntime)" and node["status"] == "pass"
    assert 0 < float(node["p50_ms"]) <= float(node["p95_ms"]) < 60_000
    assert sorted(p.name for p in (tmp_path / "graphs" / "tiny").glob("*.onnx")) == [
        "depthfm_decoder.onnx", "depthfm_encoder.onnx", "depthfm_step.onnx", "fused_k1_m1.onnx"]
    assert "GPU check (dry run, no GPU)" in (tmp_path / "report.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_refuses_to_run_without_a_gpu_unless_dry(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--dry-run" in result.stderr
