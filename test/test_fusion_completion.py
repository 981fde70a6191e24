"""fusion.completion: edge-aware completion of the log residual, on hand-made and synthetic scenes."""

import numpy as np
import pytest

from depthfm_ros.errors import InputError
from depthfm_ros.evaluation.metrics import rmse
from depthfm_ros.fusion.alignment import LogDepthFit, fit_log_depth
from depthfm_ros.fusion.completion import complete_depth
from depthfm_ros.geometry.masks import nearest_fill
from depthfm_ros.geometry.projection import project_points
from depthfm_ros.sim import synthetic


def filled(depth_hw_m):
    return {(int(r), int(c)): float(depth_hw_m[r, c]) for r, c in zip(*np.nonzero(np.isfinite(depth_hw_m)))}


def two_surfaces(h=120, w=160):
    """Left half a box at 2 m, right half a wall at 6 m; the model is off by +0.2 (box) and -0.15 (wall) in log."""
    true_log = np.where(np.arange(w)[None, :] < w // 2, np.log(2.0), np.log(6.0)) * np.ones((h, 1))
    offset = np.where(np.arange(w)[None, :] < w // 2, 0.2, -0.15) * np.ones((h, 1))
    z = ((true_log + offset - 1.0) / 2.0).astype(np.float32)
    return true_log, z


def test_completion_keeps_edges_and_fades_far_from_lidar():
    true_log, z = two_surfaces()
    sparse = np.full(z.shape, np.nan, dtype=np.float32)
    sparse[40:80:4, ::3] = np.exp(true_log[40:80:4, ::3])  # a band of scan lines across both surfaces
    fit = LogDepthFit(2.0, 1.0, 0.0, 1, 1)
    out = complete_depth(z, sparse, fit, spatial_sigmas_px=(3.0, 8.0))
    err_log = np.log(out.depth_hw_m) - true_log
    band = slice(40, 77)
    assert np.abs(err_log[band]).max() < 0.01  # both sides corrected up to the very edge
    assert np.abs(out.correction_log_hw[band, 78:80] + 0.2).max() < 0.01
    assert np.abs(out.correction_log_hw[band, 80:82] - 0.15).max() < 0.01
    # far above and below the band the model's own shape comes back: correction and support fade out
    assert np.abs(out.correction_log_hw[0]).max() < 0.5 * np.abs(out.correction_log_hw[60]).min()
    assert out.support_hw[60].min() > 0.9 and out.support_hw[0].max() < out.support_hw[60].min()
    far = complete_depth(z, np.where(np.arange(160)[None, :] < 10, sparse, np.nan).astype(np.float32), fit,
                         spatial_sigmas_px=(2.0, 6.0))
    assert np.abs(far.correction_log_hw[:, 150:]).max() < 1e-3 and far.support_hw[:, 150:].max() < 1e-3


def test_completion_rejects_outliers_and_keeps_the_other_lidar_pixels_exactly():
    true_log, z = two_surfaces()
    sparse = np.full(z.shape, np.nan, dtype=np.float32)
    sparse[::3, ::3] = np.exp(true_log[::3, ::3])
    bad = np.zeros(z.shape, dtype=bool)
    bad[::3, ::3] = np.random.default_rng(0).random((40, 54)) < 0.1
    sparse[bad] *= 3.0
    out = complete_depth(z, sparse, LogDepthFit(2.0, 1.0, 0.0, 1, 1))
    assert out.num_rejected == bad.sum() and not (out.lidar_mask_hw & bad).any()
    kept = np.isfinite(sparse) & ~bad
    assert (out.lidar_mask_hw == kept).all()
    np.testing.assert_array_equal(out.depth_hw_m[kept], sparse[kept])
    assert np.abs(np.log(out.depth_hw_m) - true_log).max() < 0.02


def test_completion_with_image_guide_and_bad_inputs():
    true_log, z = two_surfaces()
    sparse = np.full(z.shape, np.nan, dtype=np.float32)
    sparse[::4, ::4] = np.exp(true_log[::4, ::4])
    rgb = np.zeros((*z.shape, 3), dtype=np.uint8)
    rgb[:, 80:] = 200
    out = complete_depth(z, sparse, LogDepthFit(2.0, 1.0, 0.0, 1, 1), rgb)
    assert np.abs(np.log(out.depth_hw_m) - true_log).max() < 0.01
    with pytest.raises(InputError):
        complete_depth(z, sparse, LogDepthFit(2.0, 1.0, 0.0, 1, 1), rgb[:10])
    empty = complete_depth(z, np.full_like(sparse, np.nan), LogDepthFit(2.0, 1.0, 0.0, 1, 1))
    np.testing.assert_allclose(empty.depth_hw_m, np.exp(2.0 * z + 1.0), rtol=1e-6)


SCENES = [(seed, pattern) for seed in range(3) for pattern in ("vlp16", "random2pct")]


@pytest.fixture(scope="module")
def synthetic_results():
    """RMSE [m] of (a) LiDAR-only, (b) global fit, (c) completion on small synthetic scenes, 10% outliers."""
    results = []
    for seed, pattern in SCENES:
        scene = synthetic.make_scene(np.random.default_rng(seed), 160, 120)
        scan = synthetic.simulate_lidar(scene, pattern, np.random.default_rng([seed, 1]), outlier_fraction=0.1)
        pred = synthetic.simulate_prediction(scene, np.random.default_rng([seed, 2]))
        sparse = project_points(scan.points_n3, scene.camera, scan.T_cam_lidar)
        fit = fit_log_depth(pred.z_hw, sparse, pred.std_z_hw)
        out = complete_depth(pred.z_hw, sparse, fit)
        gt = scene.depth_hw_m
        results.append(dict(a=rmse(nearest_fill(sparse), gt), b=rmse(fit.depth_m(pred.z_hw), gt),
                            c=rmse(out.depth_hw_m, gt), fit=fit, pred=pred, sparse=sparse, out=out, gt=gt))
    return results


def test_completion_beats_lidar_only_and_global_alignment(synthetic_results):
    # Measured at 160x120 over these scenes: c/b 0.35-0.65, c/a 0.03-0.3.
    for res in synthetic_results:
        assert res["c"] < 0.8 * res["b"] and res["c"] < 0.5 * res["a"], res
    assert np.mean([r["c"] for r in synthetic_results]) < 0.65 * np.mean([r["b"] for r in synthetic_results])


def test_synthetic_fit_is_close_to_the_simulated_map(synthetic_results):
    for res in synthetic_results:
        assert res["fit"].a == pytest.approx(res["pred"].a, rel=0.15)
        assert res["fit"].b == pytest.approx(res["pred"].b, abs=0.1)


def test_synthetic_lidar_pixels_are_kept_exactly(synthetic_results):
    for res in synthetic_results:
        mask, sparse = res["out"].lidar_mask_hw, res["sparse"]
        np.testing.assert_array_equal(res["out"].depth_hw_m[mask], sparse[mask])
        # Outliers (10%, and they win the z-buffer when short) are dropped; few good pixels go with them.
        good = np.isfinite(sparse) & (np.abs(np.log(sparse / res["gt"])) < 0.05)
        assert (good & ~mask).sum() < 0.06 * np.isfinite(sparse).sum()
        assert np.abs(np.log(sparse[mask] / res["gt"][mask])).mean() < 0.02
