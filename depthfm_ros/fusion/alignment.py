"""Metric alignment without ROS: DepthFM's ``z`` is affine in log depth, so sparse metric depth fixes
``log d ≈ a·z + b`` per frame (the paper's evaluation protocol).

:func:`fit_log_depth` is robust (a consensus stage with an absolute threshold, then Huber IRLS weighted by the
ensemble uncertainty) and refuses with :class:`~depthfm_ros.errors.AlignmentError` when it cannot be trusted.
:class:`LogDepthFit` maps z to metres (REP-118: NaN where unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import AlignmentError, InputError


@dataclass(frozen=True)
class LogDepthFit:
    """Metric alignment ``log depth_m ≈ a·z + b``; ``rms_log`` is the inlier residual RMS in log space."""

    a: float
    b: float
    rms_log: float
    num_inliers: int
    num_points: int

    def log_depth(self, z_hw: np.ndarray) -> np.ndarray:
        return self.a * z_hw + self.b

    def depth_m(self, z_hw: np.ndarray) -> np.ndarray:
        """Metric depth of the global fit, exp(a·z + b), float32; NaN where that is not a positive finite number
        (REP-118)."""
        with np.errstate(over="ignore", invalid="ignore"):
            depth = np.exp(np.float32(self.a) * np.asarray(z_hw, np.float32) + np.float32(self.b)).astype(np.float32)
        depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
        return depth


def check_float_map(name: str, arr, shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{name} must be a float (H, W) array, got {arr.dtype} {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise InputError(f"{name} has shape {arr.shape}, expected {shape} (same as z)")
    return arr


def _weighted_line(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """Weighted least squares y ≈ a·z + b; returns (a, b, weighted variance of z)."""
    sw = w.sum()
    zm, ym = np.dot(w, z) / sw, np.dot(w, y) / sw
    dz = z - zm
    wdz = w * dz
    var_z = np.dot(wdz, dz) / sw
    a = np.dot(wdz, y - ym) / sw / var_z if var_z > 0 else 0.0
    return float(a), float(ym - a * zm), float(var_z)


def _median(x: np.ndarray, guess: float = 0.0) -> float:
    """``np.median(x)``, exactly; with a ``guess`` near it (the previous IRLS iteration's) only the values within
    [0.97, 1.03] x guess are partitioned when the median is among them, which it nearly always is."""
    n = len(x)
    k_lo, k_hi = (n - 1) // 2, n // 2  # sorted positions whose mean is the median
    if guess > 0 and n >= 256:
        lo, hi = 0.97 * guess, 1.03 * guess
        below = np.count_nonzero(x < lo)
        window = x[(x >= lo) & (x <= hi)]
        if below <= k_lo and k_hi < below + len(window):
            part = np.partition(window, [k_lo - below, k_hi - below])
            return float(np.mean(part[[k_lo - below, k_hi - below]]))
    return float(np.median(x))


def _best_supported(a_s: np.ndarray, b_s: np.ndarray, z: np.ndarray, y: np.ndarray, threshold: float) -> int:
    """Index of the line (a_s, b_s) with the most points within ``threshold`` of it, ties (and near ties) broken by
    the smaller median residual: argmax of ``count - median``, the first on equal scores.

    The median (a partition per line) is computed only for lines whose count can still win: ``count - median <=
    count``, so after sorting by count the search stops at the first count below the best score so far.
    """
    f4 = np.float32  # float32 halves the cost; the IRLS that follows refines in float64
    abs_res = a_s.astype(f4)[:, None] * z.astype(f4)[None, :]
    abs_res += b_s.astype(f4)[:, None]
    np.subtract(y.astype(f4)[None, :], abs_res, out=abs_res)
    np.abs(abs_res, out=abs_res)
    counts = np.count_nonzero(abs_res <= threshold, axis=1)
    best, best_score = -1, -np.inf
    for k in np.argsort(-counts, kind="stable"):
        if counts[k] < best_score:
            break
        score = counts[k] - np.median(abs_res[k])
        if score > best_score or (score == best_score and k < best):
            best, best_score = int(k), score
    return best


def fit_log_depth(
    z_hw: np.ndarray,
    sparse_depth_hw_m: np.ndarray,
    std_z_hw: np.ndarray | None = None,
    *,
    min_points: int = 20,
    min_z_spread: float = 1e-3,
    allow_negative_scale: bool = False,
    num_samples: int = 256,
    consensus_log: float = 0.15,
    min_inlier_fraction: float = 0.2,
    max_rms_log: float = 0.25,
    min_log_depth_std: float = 0.03,
    outlier_k: float = 3.0,
    huber_k: float = 1.345,
    max_iters: int = 30,
    seed: int = 0,
) -> LogDepthFit:
    """Fit ``log d ≈ a·z + b`` on the LiDAR pixels, robust to most points being wrong, weighted by model uncertainty.

    1. Consensus: lines through random point pairs (and the plain weighted fit) are scored by how many points lie
       within ``consensus_log`` of them in log depth (an absolute threshold: ~16 % in depth), so a majority of gross
       outliers cannot outvote a coherent minority.
    2. IRLS with Huber weights, times ``1/(std_z² + eps)`` when ``std_z_hw`` is given, on the points within twice
       that band, keeping those within ``outlier_k`` robust standard deviations (MAD of the precision-scaled
       residual ``r / std_z``).

    Raises :class:`AlignmentError` (the fit is refused, never returned wrong) with fewer than ``min_points`` valid
    points, fewer inliers than ``min_points`` or ``min_inlier_fraction`` of the points, an inlier residual RMS over
    ``max_rms_log``, z varying less than ``min_z_spread`` over them, ``a <= 0`` (unless ``allow_negative_scale``),
    or an implausible scale: fitted log depth varying by less than ``min_log_depth_std`` (std over the frame's z)
    -- a flat depth map that matches noise. Deterministic for a given ``seed``.
    """
    z_hw = check_float_map("z_hw", z_hw)
    sparse = check_float_map("sparse_depth_hw_m", sparse_depth_hw_m, z_hw.shape)
    if std_z_hw is not None:
        std_z_hw = check_float_map("std_z_hw", std_z_hw, z_hw.shape)
    # The LiDAR pixels first (a few % of the frame), then the finiteness tests on them only.
    pixels = np.flatnonzero(sparse.ravel() > 0)  # NaN compares False
    d = sparse.ravel()[pixels].astype(np.float64)
    z = z_hw.ravel()[pixels].astype(np.float64)
    valid = np.isfinite(d) & np.isfinite(z)
    if std_z_hw is not None:
        s = std_z_hw.ravel()[pixels].astype(np.float64)
        valid &= np.isfinite(s)
    z, y = z[valid], np.log(d[valid])
    n = len(z)
    if n < max(min_points, 2):
        raise AlignmentError(f"too few LiDAR points for alignment: {n} valid, need at least {min_points}")
    if z.std() < min_z_spread:
        raise AlignmentError(
            f"degenerate alignment: z is nearly constant on the {n} LiDAR points (std {z.std():.3g} < {min_z_spread})"
        )
    if std_z_hw is None:
        w0 = np.ones(n)
    else:
        var = s[valid] ** 2
        w0 = 1.0 / (var + 0.01 * np.median(var) + 1e-12)  # eps: no point weighs more than 100x the median one

    precision = np.sqrt(w0 / np.median(w0))  # residual x precision: comparable across points

    # 1. Consensus over lines through random pairs (scored on at most 2048 points) and the plain weighted fit.
    rng = np.random.default_rng(seed)
    sub = rng.choice(n, size=min(n, 2048), replace=False)
    i, j = rng.integers(0, n, size=(2, num_samples))
    dz = z[i] - z[j]
    ok = np.abs(dz) > 1e-3 * max(z.std(), 1e-12)
    a_s = np.append((y[i][ok] - y[j][ok]) / dz[ok], _weighted_line(z, y, w0)[0])
    b_s = np.append(y[i][ok], np.average(y, weights=w0)) - a_s * np.append(z[i][ok], np.average(z, weights=w0))
    if not allow_negative_scale:
        keep = a_s > 0
        a_s, b_s = (a_s[keep], b_s[keep]) if keep.any() else (a_s, b_s)
    best = _best_supported(a_s, b_s, z[sub], y[sub], consensus_log)
    a, b = float(a_s[best]), float(b_s[best])
    band = np.abs(y - (a * z + b)) <= 2.0 * consensus_log

    # 2. IRLS on the consensus band (every inlier lies in it: the loop runs on the band's points only).
    zb, yb, wb, pb = z[band], y[band], w0[band], precision[band]
    inliers_b = np.ones(len(zb), dtype=bool)
    median_e = 0.0
    for _ in range(max_iters):
        e = np.abs(yb - (a * zb + b)) * pb
        median_e = _median(e, median_e) if len(e) else 0.0
        scale = max(1.4826 * median_e, 1e-9)
        inliers_b = e <= outlier_k * scale
        if inliers_b.sum() < 2:
            break
        u = e / (huber_k * scale)
        a_new, b_new, _ = _weighted_line(zb, yb, wb * inliers_b / np.maximum(u, 1.0))
        done = abs(a_new - a) + abs(b_new - b) < 1e-9 * (1 + abs(a) + abs(b))  # far below float32
        a, b = a_new, b_new
        if done:
            break
    inliers = np.zeros(n, dtype=bool)
    inliers[np.flatnonzero(band)[inliers_b]] = True

    r = y - (a * z + b)
    num_inliers = int(inliers.sum())
    needed = max(min_points, 2, int(np.ceil(min_inlier_fraction * n)))
    if num_inliers < needed:
        raise AlignmentError(f"only {num_inliers} of {n} LiDAR points agree with the alignment; need {needed}")
    if z[inliers].std() < min_z_spread:
        raise AlignmentError(f"degenerate alignment: z is nearly constant on the {num_inliers} inlier points")
    if a <= 0 and not allow_negative_scale:
        raise AlignmentError(f"alignment gives a = {a:.4g} <= 0 (depth would fall as z rises); refusing the fit")
    frame_z_std = float(z_hw.std() if np.isfinite(z_hw).all() else np.nanstd(z_hw))
    if abs(a) * frame_z_std < min_log_depth_std:
        raise AlignmentError(f"implausible scale a = {a:.3g}: fitted depth varies by {abs(a) * frame_z_std:.3g} "
                             f"in log over the frame (< {min_log_depth_std}); the LiDAR does not explain the image")
    rms_log = float(np.sqrt(np.mean(r[inliers] ** 2)))
    if rms_log > max_rms_log:
        raise AlignmentError(f"alignment residual rms_log {rms_log:.3f} > {max_rms_log} on {num_inliers} of {n} "
                             "points: the LiDAR does not match the image (extrinsic, stamps, cloud layout?)")
    return LogDepthFit(a, b, rms_log, num_inliers, n)


def metric_std(std_z_hw: np.ndarray, depth_hw_m: np.ndarray, fit: LogDepthFit, log_var: float = 0.0) -> np.ndarray:
    """Depth std in metres, first order through ``d = exp(a·z + b)``: ``depth·sqrt((a·std_z)² + log_var)``, where
    ``log_var`` is the variance of the scale itself in log depth (0: exact scale, ``|a|·std_z·depth``); float32."""
    std_z_hw = check_float_map("std_z_hw", std_z_hw)
    depth_hw_m = check_float_map("depth_hw_m", depth_hw_m, std_z_hw.shape)
    if log_var <= 0:
        return (abs(fit.a) * std_z_hw * depth_hw_m).astype(np.float32)
    a_std = np.float32(abs(fit.a)) * std_z_hw.astype(np.float32)
    return (np.sqrt(a_std * a_std + np.float32(log_var)) * depth_hw_m).astype(np.float32)
