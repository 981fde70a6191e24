"""Depth completion without a second network: the global log-depth fit corrected towards the LiDAR by an
edge-aware interpolation of its log residual ``r = log d_lidar − (a·z + b)`` (a bilateral grid at three scales)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.sparse import csr_matrix

from ..errors import InputError
from .alignment import LogDepthFit, check_float_map


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

    The points are fixed at construction: their multilinear corner weights form a sparse (points x cells) matrix
    with 2^D entries per row, built without sorting, so a splat is one sparse product (its transpose) and a
    lookup at the points another. The blur is a unit-peak Gaussian of one cell, so a lone point contributes weight
    ~1 at its own position. Grids are ``(C, *shape)`` float32.
    """

    def __init__(self, lo_d: np.ndarray, hi_d: np.ndarray, coords_pd: np.ndarray):
        self.lo = np.asarray(lo_d, dtype=np.float64) - 2.0  # two cells of padding: the blur spreads past the data
        self.shape = tuple(int(s) for s in np.ceil(np.asarray(hi_d) - self.lo + 2.0).astype(int) + 1)
        strides = np.array([int(np.prod(self.shape[k + 1 :])) for k in range(len(self.shape))], dtype=np.int64)
        g = coords_pd - self.lo
        base = np.clip(np.floor(g).astype(np.int64), 0, np.array(self.shape) - 2)
        frac = np.clip(g - base, 0.0, 1.0).astype(np.float32)  # (P, D)
        num_points, dims = frac.shape
        flat0 = base @ strides
        # corner c has offset bit k = (c >> k) & 1 on axis k; the weights below are built in the same order
        bits = (np.arange(2**dims)[:, None] >> np.arange(dims)[None, :]) & 1  # (2^D, D)
        corners_idx = flat0[:, None] + (bits @ strides)[None, :]  # (P, 2^D)
        corners_w = np.ones((num_points, 1), np.float32)
        for k in range(dims):  # grows (P, 1) -> (P, 2^D) in the order of ``bits``
            pair = np.stack([1.0 - frac[:, k], frac[:, k]], axis=1)  # (P, 2): this axis' lower / upper corner
            corners_w = (pair[:, :, None] * corners_w[:, None, :]).reshape(num_points, 2 ** (k + 1))
        size = int(np.prod(self.shape))
        self.points = csr_matrix(
            (corners_w.ravel(), corners_idx.ravel(), np.arange(0, corners_w.size + 1, 2**dims)),
            shape=(num_points, size))
        # What a point gives itself after splat, blur and sample (the multilinear weights are separable).
        self.self_weight = np.prod((1 - frac) ** 2 + frac**2 + 2 * np.exp(-0.5) * frac * (1 - frac), axis=1)

    def splat_blur(self, values_cp: np.ndarray) -> np.ndarray:
        """Grid ``(C, *shape)`` float32 of ``values`` (one row per channel) splatted at the points and blurred."""
        out = (self.points.T @ np.asarray(values_cp, np.float32).T).T.reshape(-1, *self.shape)
        out = gaussian_filter(out, sigma=(0.0,) + (1.0,) * len(self.shape), mode="constant", truncate=3.0)
        out *= np.float32(_BLUR_Z ** len(self.shape))
        return out

    def sample(self, grid_c: np.ndarray) -> np.ndarray:
        """Multilinear lookup ``(C, P)`` of ``grid_c`` at the points."""
        return (self.points @ grid_c.reshape(len(grid_c), -1).T).T

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
        def lookup(step0: int, step1: int) -> np.ndarray:
            mx = mx0 + np.float32(gx) if step0 else mx0
            my = np.ascontiguousarray(my0 + np.float32(gy) if step1 else my0)
            out = cv2.remap(mosaic, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            return out.reshape(h, w, -1)

        def lerp(lo: np.ndarray, hi: np.ndarray, frac: np.ndarray) -> np.ndarray:  # lo + frac (hi - lo), in place
            hi -= lo
            hi *= frac[..., None]
            hi += lo
            return hi

        out = lerp(lookup(0, 0), lookup(1, 0), range_cells[0][1])
        if nr == 2:
            out = lerp(out, lerp(lookup(0, 1), lookup(1, 1), range_cells[0][1]), range_cells[1][1])
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
    z_hw = check_float_map("z_hw", z_hw)
    sparse = check_float_map("sparse_depth_hw_m", sparse_depth_hw_m, z_hw.shape)
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
    r_all, rows, cols, r = r, rows[keep], cols[keep], r[keep]

    correction = np.zeros((h, w), dtype=np.float32)
    support = np.zeros((h, w), dtype=np.float32)
    if len(r) > 0:
        values = np.stack([r_all * keep, keep])  # the rejected points splat nothing
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
    return CompletedDepth(depth_hw_m, correction.astype(np.float32), support.astype(np.float32), lidar_mask,
                          num_rejected)
