"""fusion: projection (pinhole exact, distorted = cv2, occlusion, drops), robust alignment, completion, std."""

import cv2
import numpy as np
import pytest

from depthfm_ros.cli.eval_fusion import lidar_only_depth
from depthfm_ros.errors import AlignmentError, InputError
from depthfm_ros.fusion.alignment import LogDepthFit, fit_log_depth, metric_std
from depthfm_ros.fusion.completion import complete_depth
from depthfm_ros.geometry.camera import PinholeCamera
from depthfm_ros.geometry.projection import project_points, transform_from_xyz_quat
from depthfm_ros.sim import synthetic
from depthfm_ros.training.metrics import rmse

CAM = PinholeCamera(160, 120, np.array([[100.0, 0, 80], [0, 110.0, 60], [0, 0, 1]]))


def filled(depth_hw_m):
    return {(int(r), int(c)): float(depth_hw_m[r, c]) for r, c in zip(*np.nonzero(np.isfinite(depth_hw_m)))}


# --- projection -------------------------------------------------------------------------------------------------


def test_pinhole_projection_lands_on_expected_pixels():
    points = np.array([[0.0, 0.0, 2.0], [0.2, -0.2, 2.0], [-0.3, 0.33, 3.0], [0.64, 0.0, 1.0]])
    depth = project_points(points, CAM)
    assert depth.dtype == np.float32 and depth.shape == (120, 160)
    assert filled(depth) == pytest.approx({(60, 80): 2.0, (49, 90): 2.0, (72, 70): 3.0, (60, 144): 1.0})


def test_extrinsic_from_xyz_quaternion_maps_lidar_to_camera():
    T = transform_from_xyz_quat([0.0, -0.1, -0.05], [0.5, -0.5, 0.5, 0.5])  # REP-103 LiDAR -> optical frame
    np.testing.assert_allclose(T, synthetic.T_CAM_LIDAR_DEFAULT, atol=1e-12)
    depth = project_points(np.array([[5.0, 0.0, 0.1]]), CAM, T)  # 5 m ahead, 10 cm above the LiDAR
    row = int(np.floor(60 + 110 * -0.2 / 4.95 + 0.5))
    assert filled(depth) == pytest.approx({(row, 80): 4.95})
    with pytest.raises(InputError):
        transform_from_xyz_quat([0, 0, 0], [0, 0, 0, 0])


def test_occlusion_keeps_the_nearest_point_in_any_order():
    far_first = np.array([[0.5, 0.0, 5.0], [0.2, 0.0, 2.0], [0.4, 0.0, 4.0]])  # one ray, three depths
    for points in (far_first, far_first[::-1]):
        assert filled(project_points(points, CAM)) == pytest.approx({(60, 90): 2.0})


def test_behind_outside_nonfinite_and_out_of_range_points_are_dropped():
    points = np.array(
        [
            [0.0, 0.0, -2.0],  # behind
            [0.0, 0.0, 0.05],  # closer than min_depth_m
            [5.0, 0.0, 1.0],  # right of the image
            [0.0, -2.0, 1.0],  # above the image
            [np.nan, 0.0, 1.0],
            [0.0, np.inf, 1.0],
            [0.0, 0.0, 80.0],  # beyond max_depth_m
            [0.0, 0.0, 3.0],  # the only keeper
        ]
    )
    assert filled(project_points(points, CAM, max_depth_m=50.0)) == pytest.approx({(60, 80): 3.0})
    assert np.isnan(project_points(points[:7], CAM, max_depth_m=50.0)).all()
    with pytest.raises(InputError):
        project_points(np.zeros((4, 2)), CAM)
    with pytest.raises(InputError):
        project_points(points, CAM, np.eye(3))


@pytest.mark.parametrize(
    "model, D",
    [("plumb_bob", [0.1, -0.3, 0.001, -0.002, 0.05]),
     ("rational_polynomial", [0.2, -0.1, 0.001, 0.002, 0.01, 0.05, 0.02, 0.01])],
)
def test_distorted_projection_matches_cv2(model, D):
    cam = PinholeCamera(160, 120, CAM.K, np.array(D), model)
    rng = np.random.default_rng(0)
    z = rng.uniform(1.0, 10.0, 400)
    points = np.stack([rng.uniform(-0.7, 0.7, 400) * z, rng.uniform(-0.5, 0.5, 400) * z, z], 1)
    uv = cv2.projectPoints(points, np.zeros(3), np.zeros(3), cam.K, cam.D)[0].reshape(-1, 2)
    col, row = np.floor(uv[:, 0] + 0.5).astype(int), np.floor(uv[:, 1] + 0.5).astype(int)
    inside = (col >= 0) & (col < 160) & (row >= 0) & (row < 120)
    expected = {}
    for r, c, d in sorted(zip(row[inside], col[inside], z[inside]), key=lambda t: -t[2]):
        expected[(int(r), int(c))] = float(d)  # nearest written last
    got = filled(project_points(points, cam))
    assert len(got) > 300 and got == pytest.approx(expected, rel=1e-6)


def test_distortion_fold_back_from_far_outside_the_view_is_dropped():
    cam = PinholeCamera(160, 120, CAM.K, np.array([0.1, -0.3, 0.0, 0.0, 0.0]), "plumb_bob")
    point = np.array([[1.5, 0.1, 1.0]])  # 56 degrees off-axis; the polynomial folds it back to u ~ 34
    u = cv2.projectPoints(point, np.zeros(3), np.zeros(3), cam.K, cam.D)[0].ravel()[0]
    assert 0 <= u < 160
    assert np.isnan(project_points(point, cam)).all()


def test_size_wh_uses_the_scaled_camera():
    big = PinholeCamera(320, 240, np.array([[200.0, 0, 159.5], [0, 220.0, 119.5], [0, 0, 1]]))
    points = np.random.default_rng(1).uniform([-2, -1, 2], [2, 1, 8], (300, 3))
    np.testing.assert_array_equal(project_points(points, big, size_wh=(160, 120)),
                                  project_points(points, big.scaled(160, 120)))


# --- alignment --------------------------------------------------------------------------------------------------


def sparse_scene(n=600, a=2.5, b=1.2, outlier_fraction=0.0, noise_log=0.0, seed=0, shape=(120, 160)):
    """z on a random field; sparse depth exp(a z + b) at n random pixels, some corrupted by gross errors."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(-0.8, 0.8, shape).astype(np.float32)
    sparse = np.full(shape, np.nan, dtype=np.float32)
    idx = rng.choice(z.size, n, replace=False)
    log_d = a * z.ravel()[idx].astype(np.float64) + b + rng.normal(0, noise_log, n)
    bad = rng.random(n) < outlier_fraction
    log_d[bad] += rng.choice([-1, 1], bad.sum()) * rng.uniform(0.3, 1.5, bad.sum())
    sparse.ravel()[idx] = np.exp(log_d)
    return z, sparse


def test_fit_recovers_a_b_exactly_on_clean_data():
    z, sparse = sparse_scene()
    fit = fit_log_depth(z, sparse)
    assert fit.a == pytest.approx(2.5, abs=1e-6) and fit.b == pytest.approx(1.2, abs=1e-6)
    assert fit.rms_log < 1e-6 and fit.num_inliers == fit.num_points == 600


@pytest.mark.parametrize("seed", range(3))
def test_fit_ignores_20_percent_gross_outliers(seed):
    z, sparse = sparse_scene(outlier_fraction=0.2, noise_log=0.01, seed=seed)
    std = np.full_like(z, 0.01)
    fit = fit_log_depth(z, sparse, std)
    assert fit.a == pytest.approx(2.5, rel=0.01) and fit.b == pytest.approx(1.2, abs=0.005)
    assert 0.75 * 600 < fit.num_inliers < 0.85 * 600 and fit.rms_log < 0.015
    plain = np.polyfit(z[np.isfinite(sparse)], np.log(sparse[np.isfinite(sparse)]), 1)
    assert abs(plain[0] - 2.5) > 5 * abs(fit.a - 2.5)  # least squares alone is pulled off


def test_fit_weights_points_by_model_uncertainty():
    z, sparse = sparse_scene(n=400, noise_log=0.01, seed=3)
    biased = np.zeros_like(z, dtype=bool)
    biased[:, 80:] = True  # right half: a mild slope bias, too small to be rejected, flagged as uncertain
    sparse[biased] *= np.exp(0.05 * z[biased])
    std = np.where(biased, 0.2, 0.01).astype(np.float32)
    assert fit_log_depth(z, sparse, std).a == pytest.approx(2.5, abs=0.006)
    assert fit_log_depth(z, sparse).a > 2.515


def test_fit_refuses_too_few_degenerate_or_inverted():
    z, sparse = sparse_scene(n=10)
    with pytest.raises(AlignmentError, match="too few"):
        fit_log_depth(z, sparse)
    assert fit_log_depth(z, sparse, min_points=5).a == pytest.approx(2.5)
    _, sparse = sparse_scene()
    with pytest.raises(AlignmentError, match="constant"):
        fit_log_depth(np.full_like(z, 0.3), sparse)
    z, sparse = sparse_scene(a=-2.0)
    with pytest.raises(AlignmentError, match="a = "):
        fit_log_depth(z, sparse)
    assert fit_log_depth(z, sparse, allow_negative_scale=True).a == pytest.approx(-2.0)
    with pytest.raises(InputError):
        fit_log_depth(z, sparse[:, :10])


def test_fit_skips_nonfinite_pixels():
    z, sparse = sparse_scene()
    z[:, :20] = np.nan
    sparse.ravel()[np.flatnonzero(sparse > 0)[:3]] = 0.0  # zero range = no return
    fit = fit_log_depth(z, sparse)
    assert fit.num_points < 600 and fit.a == pytest.approx(2.5)


# --- metric std -------------------------------------------------------------------------------------------------


def test_metric_std_is_first_order_through_exp():
    std_z = np.full((4, 5), 0.02, dtype=np.float32)
    depth = np.linspace(1, 10, 20, dtype=np.float32).reshape(4, 5)
    fit = LogDepthFit(a=2.0, b=0.0, rms_log=0.0, num_inliers=10, num_points=10)
    std_m = metric_std(std_z, depth, fit)
    np.testing.assert_allclose(std_m, 0.04 * depth, rtol=1e-6)
    np.testing.assert_allclose(metric_std(2 * std_z, depth, fit), 2 * std_m, rtol=1e-6)
    np.testing.assert_allclose(metric_std(std_z, depth, LogDepthFit(-2.0, 0.0, 0.0, 10, 10)), std_m)
    # against the exact spread of exp(a z + b) for a small std
    z0, dz = 0.4, 1e-3
    exact = (np.exp(2 * (z0 + dz)) - np.exp(2 * (z0 - dz))) / 2
    assert metric_std(np.array([[dz]]), np.array([[np.exp(2 * z0)]]), fit)[0, 0] == pytest.approx(exact, rel=1e-4)


# --- completion -------------------------------------------------------------------------------------------------


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
        results.append(dict(a=rmse(lidar_only_depth(sparse), gt), b=rmse(fit.depth_m(pred.z_hw), gt),
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
