"""evaluation.fusion and depthfm-eval-fusion: baselines, error models, every method scored, temporal stability."""

import numpy as np
import pytest

from depthfm_ros.cli.eval_fusion import main
from depthfm_ros.evaluation.fusion import (
    METHODS,
    SEQUENCE_SOURCES,
    evaluate_scene,
    ip_basic,
    ip_basic_multiscale,
    markdown_table,
    temporal_sequence,
)
from depthfm_ros.evaluation.metrics import rmse
from depthfm_ros.geometry.masks import nearest_fill
from depthfm_ros.geometry.projection import project_points
from depthfm_ros.sim import synthetic


@pytest.mark.parametrize("pattern", ["vlp16", "os64"])
def test_ip_basic_beats_nearest_fill_on_ring_lidars(pattern):
    rmses = []
    for seed in range(3):
        scene = synthetic.make_scene(np.random.default_rng(seed), 240, 180)
        scan = synthetic.simulate_lidar(scene, pattern, np.random.default_rng(seed), outlier_fraction=0.05)
        sparse = project_points(scan.points_n3, scene.camera, scan.T_cam_lidar)
        filled = ip_basic(sparse)
        assert np.isfinite(filled).all() and filled.min() > 0
        rmses.append((rmse(filled, scene.depth_hw_m), rmse(nearest_fill(sparse), scene.depth_hw_m)))
    ip, nearest = np.mean(rmses, axis=0)
    assert ip < 0.9 * nearest, (ip, nearest)


def test_ip_basic_multiscale_fills_below_the_highest_return_only():
    """The original multiscale pipeline (no extrapolation): each column is filled between its LiDAR returns and a
    little beyond, nothing above the highest one (a ring LiDAR's unseen top rows stay NaN); there it is closer than
    nearest fill."""
    scene = synthetic.make_scene(np.random.default_rng(0), 240, 180)
    scan = synthetic.simulate_lidar(scene, "vlp16", np.random.default_rng(0), outlier_fraction=0.05)
    sparse = project_points(scan.points_n3, scene.camera, scan.T_cam_lidar)
    filled = ip_basic_multiscale(sparse)
    has = np.isfinite(filled)
    lidar = np.isfinite(sparse)
    top = np.where(lidar.any(axis=0), lidar.argmax(axis=0), 180)
    bottom = np.where(lidar.any(axis=0), 179 - lidar[::-1].argmax(axis=0), -1)
    rows = np.arange(180)[:, None]
    assert not has[rows < top - 10].any()  # well above the highest return: empty (the 5x5 closing reaches 2 rows)
    assert has[(rows >= top) & (rows <= bottom)].mean() > 0.99
    assert 0.3 < has.mean() < 0.9 and filled[has].min() > 0
    gt = scene.depth_hw_m
    assert rmse(filled, gt) < 0.8 * rmse(nearest_fill(sparse), gt, has)
    assert not np.isfinite(ip_basic_multiscale(np.full((20, 30), np.nan, np.float32))).any()


def test_every_method_is_scored_on_the_pixels_all_of_them_filled():
    rows = {r["method"]: r for r in evaluate_scene(1, "vlp16", "smooth", width=240, height=180)}
    assert set(rows) == set(METHODS)
    assert rows["lidar_ip_basic_multiscale"]["coverage"] < 0.9
    for method in METHODS:
        if method != "lidar_ip_basic_multiscale":
            assert rows[method]["coverage"] == 1.0, method
    # the same pixels for all: the global fit, recomputed on the multiscale fill's pixels, gives the row's RMSE
    scene = synthetic.make_scene(np.random.default_rng(1), 240, 180)
    scan = synthetic.simulate_lidar(scene, "vlp16", np.random.default_rng([1, synthetic.LIDAR_PATTERNS.index("vlp16")]),
                                    outlier_fraction=0.05)
    pred = synthetic.simulate_prediction(scene, np.random.default_rng([1, 99]))
    sparse = project_points(scan.points_n3, scene.camera, scan.T_cam_lidar)
    common = np.isfinite(ip_basic_multiscale(sparse)) & np.isfinite(scene.depth_hw_m)
    from depthfm_ros.fusion.alignment import fit_log_depth

    fit = fit_log_depth(pred.z_hw, sparse, pred.std_z_hw)
    assert rows["global"]["rmse_m"] == pytest.approx(rmse(fit.depth_m(pred.z_hw), scene.depth_hw_m, common), rel=1e-6)
    assert rows["global"]["rmse_m"] != pytest.approx(rmse(fit.depth_m(pred.z_hw), scene.depth_hw_m), rel=1e-3)


def test_every_method_on_every_error_model_and_the_mid_frequency_error_hurts_completion():
    rows = [r for model in synthetic.ERROR_MODELS for r in evaluate_scene(0, "vlp16", model, width=240, height=180)]
    assert {(r["error_model"], r["method"]) for r in rows} == {(m, k) for m in synthetic.ERROR_MODELS for k in METHODS}
    by = {(r["error_model"], r["method"]): r for r in rows}
    assert by["mid-frequency", "completion"]["rmse_m"] > by["smooth", "completion"]["rmse_m"]
    for model in synthetic.ERROR_MODELS:  # the completion uses the LiDAR better than the global fit alone
        assert by[model, "completion"]["rmse_m"] < by[model, "global"]["rmse_m"]
    table = markdown_table(rows)
    assert table.count("\n") == 1 + len(rows) and "| vlp16 | mixed | lidar_ip_basic_multiscale |" in table
    assert "| vlp16 | mixed | lidar_ip_basic_fast |" in table and " % |" in table


def test_temporal_filter_steadies_a_noisy_source_and_the_hold_covers_gaps():
    result = temporal_sequence(30, width=128, height=96)
    assert set(result) == set(SEQUENCE_SOURCES)
    assert result["lidar+filter"]["metric_frames"] >= result["lidar"]["metric_frames"]
    assert result["lidar"]["metric_frames"] < 1.0  # gaps and corrupted clouds: the per-frame fit has holes
    assert result["ground+filter"]["frame_to_frame_log_std"] < result["ground"]["frame_to_frame_log_std"]
    for source, r in result.items():
        assert 0 <= r["abs_rel"] < 0.5, source


def test_cli_prints_the_table(capsys):
    assert main(["--seeds", "1", "--patterns", "random2pct", "--error-models", "smooth", "per-object",
                 "--width", "160", "--height", "120"]) == 0
    out = capsys.readouterr().out
    assert "| random2pct | per-object | completion |" in out and "lidar_ip_basic_multiscale" in out
