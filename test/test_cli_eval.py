"""Evaluation: metrics on hand-made arrays match hand-computed values; depthfm-eval runs on a tiny folder."""

import json

import numpy as np
import pytest

from depthfm_ros.cli.eval import main
from depthfm_ros.errors import InputError
from depthfm_ros.evaluation.metrics import abs_rel, delta1, evaluate_log_aligned
from depthfm_ros.evaluation.scoring import format_table
from depthfm_ros.training.data import ArrayDepthDataset, write_folder_dataset


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


def test_depth_space_alignment_is_marigolds_protocol_and_differs_from_log_space():
    from depthfm_ros.evaluation.metrics import evaluate
    from depthfm_ros.processing import relative_depth

    z = np.random.default_rng(0).uniform(-2.0, 2.0, (48, 64))
    rel = relative_depth(z[None].astype(np.float32))[0].astype(np.float64)
    gt = 3.0 * rel + 0.5  # affine in the relative output, not in log depth
    depth = evaluate(z, gt, alignment="depth")
    assert depth["abs_rel"] < 1e-5 and depth["delta1"] == 1.0
    assert (depth["a"], depth["b"]) == pytest.approx((3.0, 0.5), abs=1e-4)
    assert evaluate(z, gt, alignment="log")["abs_rel"] > 0.1  # the other protocol on the same prediction: 11 %
    capped = evaluate(z, gt * 10.0, alignment="depth", protocol="nyuv2")  # 5..35 m, NYUv2 keeps <= 10 m
    assert capped["abs_rel"] > 0 and capped["delta1"] <= 1.0
    with pytest.raises(InputError, match="alignment"):
        evaluate(z, gt, alignment="median")


def test_standard_crops_and_depth_caps():
    from depthfm_ros.evaluation.metrics import PROTOCOLS

    nyu = PROTOCOLS["nyuv2"].mask(np.full((480, 640), 5.0))
    assert nyu.sum() == (471 - 45) * (601 - 41) and nyu[45, 41] and not nyu[44, 41] and not nyu[45, 601]
    assert not PROTOCOLS["nyuv2"].mask(np.full((480, 640), 10.5)).any()  # beyond the 10 m cap
    kitti = PROTOCOLS["kitti"].mask(np.full((352, 1216), 50.0))
    rows, cols = np.nonzero(kitti)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (143, 349, 43, 1172)
    assert not PROTOCOLS["kitti"].mask(np.full((352, 1216), 81.0)).any()
    assert PROTOCOLS["none"].mask(np.array([[1.0, np.nan], [0.0, 2.0]])).tolist() == [[True, False], [False, True]]


def test_eval_cli_reports_both_alignments(tmp_path, capsys):
    rng = np.random.default_rng(1)
    depths = [np.exp(rng.uniform(0, 2, (64, 64))).astype(np.float32) for _ in range(2)]
    rgbs = [(rng.random((64, 64, 3)) * 255).astype(np.uint8) for _ in range(2)]
    write_folder_dataset(tmp_path / "data", ArrayDepthDataset(rgbs, depths))
    assert main(["--tiny-model", "--data", str(tmp_path / "data"), "--processing-resolution", "64", "--quiet",
                 "--alignment", "both", "--protocol", "nyuv2", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "log space" in out and "depth space (Marigold)" in out and out.count("| NFE |") == 2
    result = json.loads((tmp_path / "r.json").read_text())["2"]
    assert set(result) == {"log", "depth"} and result["log"] != result["depth"]


def test_eval_scores_the_mean_depth_prior_beside_the_model(tmp_path, capsys):
    """The prior of the evaluation scenes themselves is exact (AbsRel 0); of other scenes it is a real baseline."""
    argv = ["--tiny-model", "--synthetic", "2", "--synthetic-seed", "5", "--processing-resolution", "64", "--quiet",
            "--nfe", "1"]
    assert main(argv + ["--prior-synthetic", "1", "--prior-seed", "5", "--json", str(tmp_path / "a.json"),
                        "--synthetic", "1"]) == 0
    exact = json.loads((tmp_path / "a.json").read_text())["prior"]
    assert exact["abs_rel"] < 1e-4 and exact["delta1"] == 1.0
    assert main(argv + ["--prior-synthetic", "8", "--json", str(tmp_path / "b.json")]) == 0
    other = json.loads((tmp_path / "b.json").read_text())["prior"]
    assert 0.01 < other["abs_rel"] < 1.0 and 0.0 < other["delta1"] < 1.0
    out = capsys.readouterr().out
    assert "mean-depth prior (ignores the image)" in out
    wins = int(out.split("images where the model's AbsRel beats the prior's: NFE 1: ")[1].split("/")[0])
    model = json.loads((tmp_path / "b.json").read_text())["1"]["abs_rel_per_image"]
    assert wins == sum(m < p for m, p in zip(model, other["abs_rel_per_image"])) and len(model) == 2


def test_completion_evaluation_scores_every_method_on_the_pixels_not_given(tmp_path, capsys):
    from depthfm_ros.evaluation.completion import evaluate_completion
    from depthfm_ros.models.architectures import build_tiny_depthfm
    from depthfm_ros.models.completion import DepthCompletionFM

    folder = DepthCompletionFM.from_depthfm(build_tiny_depthfm(seed=0)).save_pretrained(tmp_path / "completion")
    assert main(["--tiny-model", "--completion", str(folder), "--synthetic", "2", "--synthetic-size", "64", "96",
                 "--processing-resolution", "64", "--steps", "1", "--quiet", "--sparse-density", "0.05",
                 "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "| uniform | completion_model |" in out and "| rings | ip_basic |" in out
    results = json.loads((tmp_path / "c.json").read_text())
    assert set(results) == {"uniform", "rings"}
    for methods in results.values():
        assert set(methods) == {"completion_model", "plain+log_fit", "plain+completion", "nearest_fill", "ip_basic"}
        for r in methods.values():
            assert r["images"] + r["refused"] == 2
            if r["images"]:
                assert 0 < r["mae_m"] <= r["rmse_m"] and 0 <= r["delta1"] <= 1

    from depthfm_ros.training.data import SyntheticDepthDataset

    data = SyntheticDepthDataset(2, 64, 96, seed=3)
    truth = iter([data.pair(i)[1] for i in range(2)])

    class Oracle:  # returns the ground truth: zero error on the pixels it was not given
        sparse_encoding = "filled"

        def complete(self, rgb, sparse, **kw):
            from types import SimpleNamespace

            return SimpleNamespace(depth_hw_m=next(truth))

    exact = evaluate_completion(data, "uniform", 0.05, completion_model=Oracle())["completion_model"]
    assert exact["rmse_m"] == 0.0 and exact["delta1"] == 1.0
    given = []

    class Recorder:
        def complete(self, rgb, sparse, **kw):
            from types import SimpleNamespace

            given.append(sparse)
            return SimpleNamespace(depth_hw_m=None)

    assert max(float(np.nanmax(data.pair(i)[1])) for i in range(2)) > 10  # the scenes reach beyond NYUv2's cap
    refused = evaluate_completion(data, "uniform", 0.2, completion_model=Recorder(), protocol="nyuv2")
    assert refused["completion_model"]["refused"] == 2
    for sparse in given:  # only points inside the Eigen crop and the 10 m cap are given
        assert 0 < sparse.max() <= 10.0 and not sparse[: int(45 / 480 * 64)].any()
