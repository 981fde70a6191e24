"""fusion.alignment: the robust log-depth fit and metric std."""

import numpy as np
import pytest

from depthfm_ros.errors import AlignmentError, InputError
from depthfm_ros.fusion.alignment import (
    SIGMA_FLOOR_LOG,
    FitChecks,
    LogDepthFit,
    align_to_lidar,
    cloud_contradicts,
    fit_log_depth,
    metric_std,
)


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


def test_metric_std_is_first_order_through_exp():
    std_z = np.full((4, 5), 0.02, dtype=np.float32)
    depth = np.linspace(1, 10, 20, dtype=np.float32).reshape(4, 5)
    fit = LogDepthFit(a=2.0, b=0.0, rms_log=0.0, num_inliers=10, num_points=10)
    std_m = metric_std(std_z, depth, fit, floor_log=0.0)
    np.testing.assert_allclose(std_m, 0.04 * depth, rtol=1e-6)
    np.testing.assert_allclose(metric_std(2 * std_z, depth, fit, floor_log=0.0), 2 * std_m, rtol=1e-6)
    np.testing.assert_allclose(metric_std(std_z, depth, LogDepthFit(-2.0, 0.0, 0.0, 10, 10), floor_log=0.0), std_m)
    # against the exact spread of exp(a z + b) for a small std
    z0, dz = 0.4, 1e-3
    exact = (np.exp(2 * (z0 + dz)) - np.exp(2 * (z0 - dz))) / 2
    assert metric_std(np.array([[dz]], np.float32), np.array([[np.exp(2 * z0)]], np.float32), fit,
                      floor_log=0.0)[0, 0] == pytest.approx(exact, rel=1e-4)
    # calibrated: sigma_scale x sqrt((a std_z)² + floor²), then the scale's own variance on top
    calibrated = metric_std(std_z, depth, fit, log_var=0.01, sigma_scale=1.5)
    np.testing.assert_allclose(calibrated, depth * np.sqrt(1.5**2 * (0.04**2 + SIGMA_FLOOR_LOG**2) + 0.01), rtol=1e-6)
    # one ensemble member (std_z = 0): the floor alone, still in metres and calibrated
    np.testing.assert_allclose(metric_std(np.zeros_like(std_z), depth, fit, sigma_scale=2.0),
                               2.0 * SIGMA_FLOOR_LOG * depth, rtol=1e-6)


def outlier_points(kind: str, seed: int, n: int = 2000, a: float = 2.2, b: float = 1.4):
    """2,000 LiDAR pixels: log d = a·z + b + 2 % noise, then 60 % uniform or 50 % one-sided gross outliers."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(-1.0, 1.0, n)
    y = a * z + b + rng.normal(0.0, 0.02, n)
    bad = rng.random(n) < (0.6 if kind == "uniform" else 0.5)
    if kind == "uniform":  # anywhere in the LiDAR's range, 0.3-100 m
        y[bad] = rng.uniform(np.log(0.3), np.log(100.0), bad.sum())
    else:  # all on one side (e.g. returns through glass, multipath): 1.3-4.5x too far
        y[bad] += rng.uniform(0.3, 1.5, bad.sum())
    z_hw = z.reshape(40, 50).astype(np.float32)
    return z_hw, np.exp(y).reshape(40, 50).astype(np.float32), (a, b)


@pytest.mark.parametrize("kind", ["uniform", "one-sided"])
@pytest.mark.parametrize("seed", range(10))
def test_majority_outliers_give_the_true_fit_or_a_refusal(kind, seed):
    """Past 50 % outliers the old LMedS start returned wrong scales (|Δa|+|Δb| 0.66-1.75) as good fits."""
    z_hw, sparse, (a, b) = outlier_points(kind, seed)
    fit = fit_log_depth(z_hw, sparse)  # this data has a clear consensus: it must be found, not refused
    assert abs(fit.a - a) + abs(fit.b - b) < 0.05, (fit, kind, seed)
    assert fit.rms_log < 0.05 and fit.num_inliers >= 0.35 * fit.num_points


def test_incoherent_clouds_are_refused_not_fitted():
    """A cloud decoded with the wrong byte order (values like 1e-38 .. 1e38) or pure noise: no fit the node uses.
    Noise uniform in 0.5-80 m is dense in log depth near 80 m: a flat line explains 40 % of it, which the bare fit
    may return; the acceptance refuses it."""
    rng = np.random.default_rng(5)
    z_hw = rng.uniform(-1, 1, (40, 50)).astype(np.float32)
    garbage = np.exp(rng.uniform(-80, 80, z_hw.shape)).astype(np.float32)
    noise = rng.uniform(0.5, 80.0, z_hw.shape).astype(np.float32)
    with pytest.raises(AlignmentError, match="agree|rms_log|implausible scale"):
        fit_log_depth(z_hw, garbage)
    for sparse in (garbage, noise):
        with pytest.raises(AlignmentError):
            align_to_lidar(z_hw, sparse)


def scene_points(seed=0, n=3000, shape=(120, 160), a=2.0, b=1.0):
    """A smooth z over the image (a ramp plus a bump) and n LiDAR pixels of exactly exp(a z + b), 2 % noise."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:shape[0], 0:shape[1]] / np.array(shape).reshape(2, 1, 1)
    z = (0.8 * v - 0.4 + 0.3 * np.exp(-((u - 0.5) ** 2 + (v - 0.4) ** 2) / 0.05)).astype(np.float32)
    sparse = np.full(shape, np.nan, np.float32)
    idx = rng.choice(z.size, n, replace=False)
    sparse.ravel()[idx] = np.exp(a * z.ravel()[idx] + b + rng.normal(0, 0.02, n))
    return z, sparse, np.full(shape, 0.01, np.float32)


def test_a_cloud_that_explains_the_scene_is_accepted_with_its_evidence():
    z, sparse, std = scene_points()
    fit = align_to_lidar(z, sparse, std)
    assert fit.a == pytest.approx(2.0, abs=0.01) and fit.b == pytest.approx(1.0, abs=0.005)
    e = fit.evidence
    assert e.inlier_share > 0.95 and e.region_offset < 1.0 and e.spread < 1.5 and e.z_coverage > 0.8
    assert e.regions == 9 + 4  # every tile and depth band had points
    # sigma_scale: 68 % of the residuals within sigma_scale x sqrt((a std_z)² + floor²) = 2 % noise
    assert fit.sigma_scale * np.hypot(2.0 * 0.01, SIGMA_FLOOR_LOG) == pytest.approx(0.02, rel=0.1)


def test_each_acceptance_check_refuses_what_it_is_for():
    z, sparse, std = scene_points()
    lidar = np.isfinite(sparse)
    cols = np.arange(z.shape[1])[None, :] * np.ones_like(z)
    # a part of the scene wrong by 30 %: the right third of the image (a wrong extrinsic explains a part)
    part = sparse.copy()
    part[lidar & (cols >= 107)] *= 1.3
    with pytest.raises(AlignmentError, match="regions disagree|explains only"):
        align_to_lidar(z, part, std)
    # every point 25 % off at random: residuals far beyond the model's 2 % uncertainty
    noisy = sparse * np.exp(np.random.default_rng(1).normal(0, 0.25, z.shape)).astype(np.float32)
    with pytest.raises(AlignmentError, match="residuals|explains only"):
        align_to_lidar(z, noisy, std)
    # points on a strip of the frame only (the LiDAR sees 10 % of the depth range): no extrapolation
    strip = np.where(lidar & (np.abs(z - 0.0) < 0.05), sparse, np.nan).astype(np.float32)
    with pytest.raises(AlignmentError, match="depth range"):
        align_to_lidar(z, strip, std)
    # the same data passes with each limit opened (the refusals above are the checks', not the fit's)
    opened = FitChecks(min_inlier_share=0.0, max_region_offset=1e9, max_spread=1e9, min_z_coverage=0.0)
    for sparse_case in (part, noisy, strip):
        align_to_lidar(z, sparse_case, std, opened)


def test_cloud_contradicts_says_when_a_held_scale_does_not_fit_this_cloud():
    z, sparse, std = scene_points()
    held = LogDepthFit(2.0, 1.0, 0.02, 3000, 3000)
    assert cloud_contradicts(held, z, sparse, std, tolerance_log=0.2) == ""
    assert "+0.69" in cloud_contradicts(held, z, sparse * 2, std, tolerance_log=0.2)  # a 2x range glitch
    few = np.full_like(sparse, np.nan)
    few.ravel()[np.flatnonzero(np.isfinite(sparse))[:5]] = 1.0
    assert cloud_contradicts(held, z, few, std, tolerance_log=0.2) == ""  # 5 points cannot contradict anything
