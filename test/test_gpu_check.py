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
                             "--sizes", "64x128"], capture_output=True, text=True, timeout=300,
                            env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path),
                                 **{k: os.environ[k] for k in ROS_ENV}})
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    fused, size_range, node = rows[:4], rows[4], rows[5]
    assert len(rows) == 6
    assert [(r["k"], r["M"]) for r in fused] == [("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")]
    assert all(r["status"] == "not run (dry run)" and r["profile_image"] == "(1, 3, 64, 128)" for r in fused)
    assert len({r["cache_key"] for r in fused}) == 4  # k and M are in every engine's key
    assert size_range["engine"] == "tensorrt fp16 size range" and size_range["status"] == "not run (dry run)"
    # the node really ran over DDS on the exported graph (onnxruntime on the CPU in a dry run)
    assert node["engine"] == "node over DDS (onnxruntime)" and node["status"] == "pass"
    assert 0 < float(node["p50_ms"]) <= float(node["p95_ms"]) < 60_000
    assert sorted(p.name for p in (tmp_path / "graphs").glob("*.onnx")) == sorted(
        [f"tiny_64x128_k{k}_m{m}.onnx" for k in (1, 2) for m in (1, 2)] + ["tiny_dynamic_k1_m1.onnx"])
    assert "GPU check (dry run, no GPU)" in (tmp_path / "report.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_refuses_to_run_without_a_gpu_unless_dry(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--dry-run" in result.stderr
