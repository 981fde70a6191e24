"""LiDAR fusion without ROS: projection to a sparse depth image, robust log-depth alignment, completion.

DepthFM predicts per pixel a value ``z`` that is affine in log depth. With sparse LiDAR depth we fit
``log d ≈ a·z + b`` robustly (:func:`fit_log_depth`), then correct what a global fit cannot explain with an
edge-aware interpolation of the log residual ``r = log d_lidar − (a·z + b)`` (:func:`complete_depth`).

Conventions: camera optical frame (x right, y down, z forward); pixel centres at integer coordinates (OpenCV);
a *sparse depth image* is ``(H, W) float32`` metres with NaN where there is no LiDAR return.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial.transform import Rotation

from .camera import PinholeCamera
from .errors import AlignmentError, InputError

# ---------------------------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------------------------


def transform_from_xyz_quat(xyz_3, quat_xyzw_4) -> np.ndarray:
    """4x4 homogeneous transform from a translation (x, y, z) and a unit quaternion (x, y, z, w), ROS order."""
    xyz = np.asarray(xyz_3, dtype=np.float64).ravel()
    quat = np.asarray(quat_xyzw_4, dtype=np.float64).ravel()
    if xyz.shape != (3,) or quat.shape != (4,) or not (np.all(np.isfinite(xyz)) and np.all(np.isfinite(quat))):
        raise InputError(f"need finite xyz (3,) and quaternion xyzw (4,), got shapes {xyz.shape} and {quat.shape}")
    norm = float(np.linalg.norm(quat))
    if norm < 1e-9:
        raise InputError("quaternion has zero norm")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(quat / norm).as_matrix()
    T[:3, 3] = xyz
    return T


def _check_transform(T_44) -> np.ndarray:
    T = np.asarray(T_44, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)) or not np.allclose(T[3], [0, 0, 0, 1]):
        raise InputError(f"transform must be a finite 4x4 homogeneous matrix, got shape {T.shape}")
    return T


def _max_monotonic_radius(D: np.ndarray) -> float:
    """Largest undistorted radius r = |(x/z, y/z)| up to which the radial distortion r·f(r) still increases.

    Beyond it the polynomial folds back and far off-axis points would land inside the image.
    """
    k = np.zeros(8)
    k[: min(len(D), 8)] = D[:8]
    k1, k2, _, _, k3, k4, k5, k6 = k
    r = np.linspace(0.0, 20.0, 4001)
    r2 = r * r
    rho = r * (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    bad = np.flatnonzero((np.diff(rho) <= 0) | ~np.isfinite(rho[1:]))
    return float(r[bad[0]]) if len(bad) else np.inf


def project_points(
    points_n3,
    camera: PinholeCamera,
    T_cam_lidar=None,
    *,
    size_wh: tuple[int, int] | None = None,
    min_depth_m: float = 0.1,
    max_depth_m: float = np.inf,
) -> np.ndarray:
    """Project LiDAR points into the camera as a sparse depth image ``(H, W) float32`` metres, NaN where empty.

    ``points_n3`` are in the LiDAR frame, ``T_cam_lidar`` maps them to the camera optical frame (identity if
    None). ``size_wh`` re-targets ``camera`` to a processing resolution with :meth:`PinholeCamera.scaled`.
    Distortion (plumb_bob / rational_polynomial) goes through ``cv2.projectPoints``. Points that are non-finite,
    closer than ``min_depth_m`` (or behind), farther than ``max_depth_m`` or outside the image are dropped; when
    several points hit one pixel the nearest wins (occlusion). Depth is the optical-axis z (REP-118).
    """
    points = np.asarray(points_n3)
    if points.ndim != 2 or points.shape[1] < 3 or not np.issubdtype(points.dtype, np.number):
        raise InputError(f"points must be a numeric (N, 3) array, got {points.dtype} {points.shape}")
    if size_wh is not None:
        camera = camera.scaled(int(size_wh[0]), int(size_wh[1]))
    w, h = camera.width, camera.height
    depth_hw_m = np.full((h, w), np.nan, dtype=np.float32)

    xyz = points[:, :3].astype(np.float64)
    if T_cam_lidar is not None:
        T = _check_transform(T_cam_lidar)
        xyz = xyz @ T[:3, :3].T + T[:3, 3]
    z = xyz[:, 2]
    keep = np.all(np.isfinite(xyz), axis=1) & (z > max(min_depth_m, 1e-9)) & (z <= max_depth_m)
    xyz, z = xyz[keep], z[keep]
    if len(z) == 0:
        return depth_hw_m

    distorted = camera.is_distorted and camera.distortion_model not in ("none", "")
    if distorted:
        # Far outside the field of view the polynomial folds back into the image; drop those first.
        inside = np.hypot(xyz[:, 0], xyz[:, 1]) / z < _max_monotonic_radius(camera.D)
        xyz, z = xyz[inside], z[inside]
        if len(z) == 0:
            return depth_hw_m
        uv = cv2.projectPoints(xyz.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), camera.K, camera.D)[0].reshape(-1, 2)
        u, v = uv[:, 0], uv[:, 1]
    else:
        K = camera.K
        u = (K[0, 0] * xyz[:, 0] + K[0, 1] * xyz[:, 1]) / z + K[0, 2]
        v = K[1, 1] * xyz[:, 1] / z + K[1, 2]

    col = np.floor(u + 0.5)
    row = np.floor(v + 0.5)
    inside = np.isfinite(col) & np.isfinite(row) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    flat = row[inside].astype(np.int64) * w + col[inside].astype(np.int64)
    z = z[inside]
    order = np.lexsort((z, flat))  # by pixel, nearest first
    flat, z = flat[order], z[order]
    first = np.ones(len(flat), dtype=bool)
    first[1:] = flat[1:] != flat[:-1]
    depth_hw_m.ravel()[flat[first]] = z[first]
    return depth_hw_m


# ---------------------------------------------------------------------------------------------------------------
# Alignment: log d ≈ a·z + b
# ---------------------------------------------------------------------------------------------------------------


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


def _check_image(name: str, arr, shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{name} must be a float (H, W) array, got {arr.dtype} {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise InputError(f"{name} has shape {arr.shape}, expected {shape} (same as z)")
    return arr


def _weighted_line(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """Weighted least squares y ≈ a·z + b; returns (a, b, weighted variance of z)."""
    sw = w.sum()
    zm, ym = (w * z).sum() / sw, (w * y).sum() / sw
    dz = z - zm
    var_z = (w * dz * dz).sum() / sw
    a = (w * dz * (y - ym)).sum() / sw / var_z if var_z > 0 else 0.0
    return float(a), float(ym - a * zm), float(var_z)


def fit_log_depth(
    z_hw: np.ndarray,
    sparse_depth_hw_m: np.ndarray,
    std_z_hw: np.ndarray | None = None,
    *,
    min_points: int = 20,
    min_z_spread: float = 1e-3,
    allow_negative_scale: bool = False,
    num_samples: int = 128,
    outlier_k: float = 3.0,
    huber_k: float = 1.345,
    max_iters: int = 30,
    seed: int = 0,
) -> LogDepthFit:
    """Fit ``log d ≈ a·z + b`` on the LiDAR pixels, robust to gross outliers and weighted by model uncertainty.

    Least-median-of-squares over random point pairs gives a start with 50% breakdown; IRLS with Huber weights,
    times ``1/(std_z² + eps)`` when ``std_z_hw`` is given, refines it on the points within ``outlier_k`` robust
    standard deviations (MAD). Residuals are compared after scaling by the relative precision ``1/std_z``. Raises :class:`AlignmentError` with fewer than ``min_points`` valid or inlier
    points, when z varies less than ``min_z_spread`` (z units, std) over them, or when ``a <= 0`` and
    ``allow_negative_scale`` is False. Deterministic for a given ``seed``.
    """
    z_hw = _check_image("z_hw", z_hw)
    sparse = _check_image("sparse_depth_hw_m", sparse_depth_hw_m, z_hw.shape)
    valid = np.isfinite(sparse) & (sparse > 0) & np.isfinite(z_hw)
    if std_z_hw is not None:
        std_z_hw = _check_image("std_z_hw", std_z_hw, z_hw.shape)
        valid &= np.isfinite(std_z_hw)
    z = z_hw[valid].astype(np.float64)
    y = np.log(sparse[valid].astype(np.float64))
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
        var = std_z_hw[valid].astype(np.float64) ** 2
        w0 = 1.0 / (var + 0.01 * np.median(var) + 1e-12)  # eps: no point weighs more than 100x the median one

    precision = np.sqrt(w0 / np.median(w0))  # residual x precision: comparable across points

    # Least median of squares on random pairs (scored on at most 2048 points), plus the plain weighted fit.
    rng = np.random.default_rng(seed)
    sub = rng.choice(n, size=min(n, 2048), replace=False)
    i, j = rng.integers(0, n, size=(2, num_samples))
    dz = z[i] - z[j]
    ok = np.abs(dz) > 1e-12
    a_s = np.append((y[i][ok] - y[j][ok]) / dz[ok], _weighted_line(z, y, w0)[0])
    z_ref = np.append(z[i][ok], z.mean())
    y_ref = np.append(y[i][ok], np.average(y, weights=w0))
    b_s = y_ref - a_s * z_ref
    if not allow_negative_scale:
        keep = a_s > 0
        a_s, b_s = (a_s[keep], b_s[keep]) if keep.any() else (a_s, b_s)
    abs_res = np.abs(y[sub][None, :] - (a_s[:, None] * z[sub][None, :] + b_s[:, None])) * precision[sub][None, :]
    med = np.median(abs_res, axis=1)
    best = int(np.argmin(med))
    a, b = float(a_s[best]), float(b_s[best])

    inliers = np.ones(n, dtype=bool)
    for _ in range(max_iters):
        e = np.abs(y - (a * z + b)) * precision
        scale = max(1.4826 * float(np.median(e)), 1e-9)
        inliers = e <= outlier_k * scale
        u = e / (huber_k * scale)
        w = w0 * inliers / np.maximum(u, 1.0)
        if inliers.sum() < 2:
            break
        a_new, b_new, _ = _weighted_line(z, y, w)
        done = abs(a_new - a) + abs(b_new - b) < 1e-12 * (1 + abs(a) + abs(b))
        a, b = a_new, b_new
        if done:
            break

    r = y - (a * z + b)
    num_inliers = int(inliers.sum())
    if num_inliers < max(min_points, 2):
        raise AlignmentError(f"only {num_inliers} of {n} LiDAR points agree with the alignment; need {min_points}")
    if z[inliers].std() < min_z_spread:
        raise AlignmentError(f"degenerate alignment: z is nearly constant on the {num_inliers} inlier points")
    if a <= 0 and not allow_negative_scale:
        raise AlignmentError(f"alignment gives a = {a:.4g} <= 0 (depth would fall as z rises); refusing the fit")
    return LogDepthFit(a, b, float(np.sqrt(np.mean(r[inliers] ** 2))), num_inliers, n)


def metric_std(std_z_hw: np.ndarray, depth_hw_m: np.ndarray, fit: LogDepthFit) -> np.ndarray:
    """Depth std in metres, first order through ``d = exp(a·z + b)``: ``|a|·std_z·depth``; float32."""
    std_z_hw = _check_image("std_z_hw", std_z_hw)
    depth_hw_m = _check_image("depth_hw_m", depth_hw_m, std_z_hw.shape)
    return (abs(fit.a) * std_z_hw * depth_hw_m).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Completion: global fit + edge-aware correction of the log residual
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletedDepth:
    """Output of :func:`complete_depth` (all ``(H, W)``).

    ``depth_hw_m`` float32 metres; ``correction_log_hw`` the interpolated log residual added to the global fit;
    ``support_hw`` in [0, 1], how much of the correction comes from nearby LiDAR (0 far away); ``lidar_mask_hw``
    the LiDAR pixels kept exactly; ``num_rejected`` LiDAR pixels dropped as local outliers.
    """

    depth_hw_m: np.ndarray
    correction_log_hw: np.ndarray
    support_hw: np.ndarray
    lidar_mask_hw: np.ndarray
    num_rejected: int


_BLUR_Z = float(np.exp(-0.5 * np.arange(-3, 4) ** 2).sum())  # mass of the unit-peak Gaussian, sigma 1 cell
_MAX_MOSAIC = 32000  # cv2.remap needs source images smaller than SHRT_MAX


class _BilateralGrid:
    """Splat / blur / slice over (row, col, guide...), every axis in units of its sigma, one cell per sigma.

    The points are fixed at construction (their multilinear corner weights are computed once). The blur is a
    unit-peak Gaussian of one cell, so a lone point contributes weight ~1 at its own position. Grids are
    ``(C, *shape)`` float32.
    """

    def __init__(self, lo_d: np.ndarray, hi_d: np.ndarray, coords_pd: np.ndarray):
        self.lo = np.asarray(lo_d, dtype=np.float64) - 2.0  # two cells of padding: the blur spreads past the data
        self.shape = tuple(int(s) for s in np.ceil(np.asarray(hi_d) - self.lo + 2.0).astype(int) + 1)
        strides = [int(np.prod(self.shape[k + 1 :])) for k in range(len(self.shape))]
        g = coords_pd - self.lo
        base = np.clip(np.floor(g).astype(np.int64), 0, np.array(self.shape) - 2)
        frac = np.clip(g - base, 0.0, 1.0).T.astype(np.float32)
        flat0 = base @ np.array(strides, dtype=np.int64)
        self.corners_idx, corner_w = [], []
        for bits in range(2 ** len(frac)):
            on = [bits >> k & 1 for k in range(len(frac))]
            corner_w.append(np.prod([frac[k] if on[k] else 1.0 - frac[k] for k in range(len(frac))], axis=0))
            self.corners_idx.append(flat0 + int(np.dot(on, strides)))
        self.corners_idx = np.stack(self.corners_idx)  # (2^D, P)
        self.corners_w = np.stack(corner_w).astype(np.float32)
        # What a point gives itself after splat, blur and sample (the multilinear weights are separable).
        self.self_weight = np.prod((1 - frac) ** 2 + frac**2 + 2 * np.exp(-0.5) * frac * (1 - frac), axis=0)

    def subset(self, keep: np.ndarray) -> "_BilateralGrid":
        out = object.__new__(_BilateralGrid)
        out.lo, out.shape, out.self_weight = self.lo, self.shape, self.self_weight[keep]
        out.corners_idx, out.corners_w = self.corners_idx[:, keep], self.corners_w[:, keep]
        return out

    def splat_blur(self, values_cp: np.ndarray) -> np.ndarray:
        """Grid ``(C, *shape)`` float32 of ``values`` (one row per channel) splatted at the points and blurred."""
        size = int(np.prod(self.shape))
        idx = self.corners_idx.ravel()
        out = np.stack([np.bincount(idx, weights=(self.corners_w * v).ravel(), minlength=size) for v in values_cp])
        out = out.reshape(-1, *self.shape)
        for c in range(len(out)):
            out[c] = gaussian_filter(out[c], sigma=1.0, mode="constant", truncate=3.0) * _BLUR_Z ** len(self.shape)
        return out.astype(np.float32)

    def sample(self, grid_c: np.ndarray) -> np.ndarray:
        """Multilinear lookup ``(C, P)`` of ``grid_c`` at the points."""
        flat = grid_c.reshape(len(grid_c), -1)
        return np.stack([(f.take(self.corners_idx) * self.corners_w).sum(0) for f in flat])

    def range_cells(self, range_hw: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per guide axis, the (cell index, fraction) of every pixel; shared by grids with the same guide axes."""
        parts = []
        for k, g in enumerate(range_hw):
            pos = np.clip(g - np.float32(self.lo[2 + k]), 0.0, self.shape[2 + k] - 1.001).astype(np.float32)
            base = np.floor(pos)
            parts.append((base, pos - base))
        return parts

    def slice_image(self, grid_c: np.ndarray, sigma_px: float, range_cells) -> np.ndarray:
        """Lookup ``(H, W, C)`` at every pixel: bilinear in space with cv2.remap, linear in the guide axes."""
        gy, gx = self.shape[:2]
        nr = len(range_cells)
        if nr not in (1, 2):
            raise InputError("the bilateral grid takes one or two guide axes")
        # Mosaic of spatial tiles: guide axis 0 along x, guide axis 1 (if any) along y.
        tiles = grid_c if nr == 2 else grid_c[..., None]  # (C, gy, gx, r0, r1)
        r0, r1 = tiles.shape[3], tiles.shape[4]
        if r0 * gx > _MAX_MOSAIC or r1 * gy > _MAX_MOSAIC:
            raise InputError("bilateral grid too large: raise spatial_sigmas_px, range_sigma_log or guide_sigma")
        mosaic = np.ascontiguousarray(tiles.transpose(4, 1, 3, 2, 0).reshape(r1 * gy, r0 * gx, -1))
        h, w = range_cells[0][0].shape
        map_y = (np.arange(h) / sigma_px - self.lo[0]).astype(np.float32)[:, None]
        map_x = (np.arange(w) / sigma_px - self.lo[1]).astype(np.float32)[None, :]
        mx0 = range_cells[0][0] * np.float32(gx) + map_x
        my0 = range_cells[1][0] * np.float32(gy) + map_y if nr == 2 else np.broadcast_to(map_y, (h, w))
        out = np.zeros((h, w, len(grid_c)), dtype=np.float32)
        for bits in range(2**nr):
            step0, step1 = bits & 1, bits >> 1 & 1
            frac0 = range_cells[0][1]
            wgt = frac0 if step0 else 1.0 - frac0
            if nr == 2:
                frac1 = range_cells[1][1]
                wgt = wgt * (frac1 if step1 else 1.0 - frac1)
            mx = mx0 + np.float32(gx) if step0 else mx0
            my = np.ascontiguousarray(my0 + np.float32(gy) if step1 else my0)
            sliced = cv2.remap(mosaic, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            out += wgt[..., None] * sliced.reshape(h, w, -1)
        return out


def _default_sigmas_px(h: int, w: int) -> tuple[float, ...]:
    diag = float(np.hypot(h, w))
    return (diag / 80.0, diag / 20.0, diag / 6.0)


def _leave_one_out(levels: list[_BilateralGrid], r: np.ndarray, keep: np.ndarray, prior_weight: float) -> np.ndarray:
    """Coarse-to-fine interpolation of the kept residuals at each point, without the point itself."""
    estimate = np.zeros(len(r))
    values = np.stack([r * keep, keep.astype(np.float64)])
    for grid in levels:
        num, den = grid.sample(grid.splat_blur(values))
        self_w = grid.self_weight * keep
        num, den = num - self_w * r, np.maximum(den - self_w, 0.0)
        estimate = (num + prior_weight * estimate) / (den + prior_weight)
    return estimate


def complete_depth(
    z_hw: np.ndarray,
    sparse_depth_hw_m: np.ndarray,
    fit: LogDepthFit,
    guide_hw: np.ndarray | None = None,
    *,
    spatial_sigmas_px: tuple[float, ...] | None = None,
    range_sigma_log: float = 0.15,
    guide_sigma: float = 0.1,
    prior_weight: float = 0.5,
    outlier_k: float = 4.0,
    min_outlier_log: float = 0.05,
    keep_lidar: bool = True,
) -> CompletedDepth:
    """Metric depth from the global fit plus an edge-aware, LiDAR-driven correction of its log residual.

    The residual ``r = log d_lidar − (a·z + b)`` at LiDAR pixels is interpolated by normalized convolution in a
    bilateral grid over (row, col, fitted log depth [, guide]), coarse to fine over ``spatial_sigmas_px``
    (default: image diagonal / 80, / 20, / 6). Each scale shrinks toward the next coarser one with
    ``prior_weight`` (in points) and the coarsest toward 0, so the correction fades to 0 far from LiDAR and the
    model's shape is kept there. Surfaces more than ~``range_sigma_log`` apart in log depth (or ``guide_sigma``
    apart in ``guide_hw``, a gray or RGB image in [0, 1] or uint8) barely mix. LiDAR pixels whose residual
    disagrees with the leave-one-out interpolation of their neighbours (``outlier_k`` robust stds, at least
    ``min_outlier_log``) are dropped; the others are kept exactly when ``keep_lidar``.
    """
    z_hw = _check_image("z_hw", z_hw)
    sparse = _check_image("sparse_depth_hw_m", sparse_depth_hw_m, z_hw.shape)
    h, w = z_hw.shape
    log_fit_hw = (fit.a * z_hw.astype(np.float32) + fit.b).astype(np.float32)

    guides = [log_fit_hw / np.float32(range_sigma_log)]
    if guide_hw is not None:
        g = np.asarray(guide_hw)
        if g.shape[:2] != (h, w) or g.ndim not in (2, 3):
            raise InputError(f"guide_hw must be (H, W) or (H, W, C) with H, W = {(h, w)}, got {g.shape}")
        g = g.astype(np.float32) / (255.0 if g.dtype == np.uint8 else 1.0)
        guides.append((g.mean(axis=2) if g.ndim == 3 else g) / np.float32(guide_sigma))

    lidar = np.isfinite(sparse) & (sparse > 0) & np.isfinite(log_fit_hw)
    rows, cols = np.nonzero(lidar)
    r = np.log(sparse[rows, cols].astype(np.float64)) - log_fit_hw[rows, cols]
    lo_range = np.array([np.nanmin(gd) for gd in guides], dtype=np.float64)
    hi_range = np.array([np.nanmax(gd) for gd in guides], dtype=np.float64)
    sigmas = sorted(spatial_sigmas_px or _default_sigmas_px(h, w), reverse=True)

    def grid_at(sigma: float) -> _BilateralGrid:
        lo = np.concatenate([[0.0, 0.0], lo_range])
        hi = np.concatenate([[(h - 1) / sigma, (w - 1) / sigma], hi_range])
        coords = np.column_stack([rows / sigma, cols / sigma, *[gd[rows, cols] for gd in guides]])
        return _BilateralGrid(lo, hi, coords)

    levels = [grid_at(sigma) for sigma in sigmas]
    keep = np.ones(len(r), dtype=bool)
    for _ in range(3):  # later passes re-judge every point against the previous pass's inliers only
        dev = r - _leave_one_out(levels, r, keep, prior_weight)
        scale = 1.4826 * float(np.median(np.abs(dev))) if len(r) else 0.0
        keep = np.abs(dev) <= max(outlier_k * scale, min_outlier_log)
    num_rejected = int((~keep).sum())
    rows, cols, r = rows[keep], cols[keep], r[keep]
    levels = [grid.subset(keep) for grid in levels]

    correction = np.zeros((h, w), dtype=np.float32)
    support = np.zeros((h, w), dtype=np.float32)
    if len(r) > 0:
        values = np.stack([r, np.ones_like(r)])
        range_cells = levels[0].range_cells(guides)  # the same for every level
        for level, (sigma, grid) in enumerate(zip(sigmas, levels)):
            num_den = grid.slice_image(grid.splat_blur(values), sigma, range_cells)
            num, den = num_den[..., 0], np.maximum(num_den[..., 1], 0.0)
            correction = (num + prior_weight * correction) / (den + prior_weight)
            if level == 0:
                support = den / (den + prior_weight)

    depth_hw_m = np.exp(log_fit_hw + correction).astype(np.float32)
    lidar_mask = np.zeros((h, w), dtype=bool)
    if keep_lidar:
        lidar_mask[rows, cols] = True
        depth_hw_m[rows, cols] = sparse[rows, cols]
    return CompletedDepth(depth_hw_m, correction.astype(np.float32), support.astype(np.float32), lidar_mask, num_rejected)
