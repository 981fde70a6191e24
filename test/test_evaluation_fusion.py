"""evaluation.fusion and depthfm-eval-fusion: baselines, error models, every method scored, temporal stability."""

import numpy as np
import pytest

from depthfm_ros.cli.eval_fusion import main
from depthfm_ros.evaluation.fusion import (
    METHODS,
    SEQUENCE_SOURCES,
    evaluate_scene,
    ip_basic,
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


def test_every_method_on_every_error_model_and_the_mid_frequency_error_hurts_completion():
    rows = [r for model in synthetic.ERROR_MODELS for r in evaluate_scene(0, "vlp16", model, width=240, height=180)]
    assert {(r["error_model"], r["method"]) for r in rows} == {(m, k) for m in synthetic.ERROR_MODELS for k in METHODS}
    by = {(r["error_model"], r["method"]): r for r in rows}
    assert by["mid-frequency", "completion"]["rmse_m"] > by["smooth", "completion"]["rmse_m"]
    for model in synthetic.ERROR_MODELS:  # the completion uses the LiDAR better than the global fit alone
        assert by[model, "completion"]["rmse_m"] < by[model, "global"]["rmse_m"]
    table = markdown_table(rows)
    assert table.count("\n") == 1 + len(rows) and "| vlp16 | mixed | lidar_ip_basic |" in table


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
    assert "| random2pct | per-object | completion |" in out and "lidar_ip_basic" in out
