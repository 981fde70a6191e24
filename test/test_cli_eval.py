"""Evaluation: metrics on hand-made arrays match hand-computed values; depthfm-eval runs on a tiny folder."""

import json

import numpy as np
import pytest

from depthfm_ros.cli.eval import format_table, main
from depthfm_ros.errors import InputError
from depthfm_ros.training.data import ArrayDepthDataset, write_folder_dataset
from depthfm_ros.training.metrics import abs_rel, delta1, evaluate_log_aligned


def test_metrics_match_hand_computed_values():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])  # 0 = invalid
    pred = np.array([[1.1, 2.0], [3.0, 9.0]])
    # AbsRel over 3 valid pixels: (0.1/1 + 0 + 1/4) / 3
    assert abs_rel(pred, gt) == pytest.approx((0.1 + 0.0 + 0.25) / 3)
    # delta1: ratios 1.1, 1.0, 4/3 -> two below 1.25
    assert delta1(pred, gt) == pytest.approx(2 / 3)


def test_metrics_refuse_mismatched_shapes():
    gt = np.ones((2, 2))
    with pytest.raises(InputError, match="differ in shape"):
        abs_rel(np.ones((2, 3)), gt)
    with pytest.raises(InputError, match="mask"):
        delta1(gt, gt, mask=np.ones((1, 4), bool))  # would broadcast or fail deep in numpy


def test_log_alignment_recovers_scale_and_shift():
    gt = np.array([[1.0, 2.0], [4.0, 8.0]])
    z = (np.log(gt) - 0.5) / 2.0  # log gt = 2 z + 0.5 exactly
    out = evaluate_log_aligned(z, gt)
    assert out["a"] == pytest.approx(2.0) and out["b"] == pytest.approx(0.5)
    assert out["abs_rel"] == pytest.approx(0.0, abs=1e-9) and out["delta1"] == 1.0
    # hand-computed least squares: z = [0, 0, 1, 1] against log gt = [0, 0, 1, 2] -> a = 1.5, b = 0
    gt2 = np.exp(np.array([[0.0, 0.0], [1.0, 2.0]]))
    out2 = evaluate_log_aligned(np.array([[0.0, 0.0], [1.0, 1.0]]), gt2)
    assert out2["a"] == pytest.approx(1.5) and out2["b"] == pytest.approx(0.0, abs=1e-12)
    pred = np.exp(np.array([0.0, 0.0, 1.5, 1.5]))
    assert out2["abs_rel"] == pytest.approx(np.mean(np.abs(pred - gt2.ravel()) / gt2.ravel()))
    assert out2["delta1"] == pytest.approx(0.5)  # exp(0.5) = 1.65 > 1.25 for the last two pixels


def test_table_layout():
    table = format_table({1: {"abs_rel": 0.1, "delta1": 0.9}, 4: {"abs_rel": 0.05, "delta1": 0.95}})
    lines = table.splitlines()
    assert lines[0] == "| NFE | 1 | 4 |"
    assert lines[2] == "| AbsRel ↓ | 10.0 | 5.0 |" and lines[3] == "| δ1 ↑ | 90.0 | 95.0 |"


def test_eval_cli_runs_on_a_tiny_folder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    depths = [np.exp(rng.uniform(0, 2, (64, 64))).astype(np.float32) for _ in range(2)]
    rgbs = [(rng.random((64, 64, 3)) * 255).astype(np.uint8) for _ in range(2)]
    masks = [np.ones((64, 64), bool), np.tri(64, dtype=bool)]
    write_folder_dataset(tmp_path / "data", ArrayDepthDataset(rgbs, depths, masks))
    code = main(["--tiny-model", "--data", str(tmp_path / "data"), "--nfe", "1", "2", "--processing-resolution",
                 "64", "--quiet", "--json", str(tmp_path / "r.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "| NFE | 1 | 2 |" in out and "δ1" in out
    results = json.loads((tmp_path / "r.json").read_text())
    assert set(results) == {"1", "2"}
    for r in results.values():
        assert r["num_images"] == 2 and 0 <= r["delta1"] <= 1 and r["abs_rel"] >= 0


def test_eval_cli_reports_missing_data(capsys):
    assert main(["--tiny-model"]) == 2
    assert "--data" in capsys.readouterr().err
