"""Depth completion without a second network: the global log-depth fit corrected towards the LiDAR by an
edge-aware interpolation of its log residual ``r = log d_lidar − (a·z + b)``.

The interpolation is a bilateral grid over (row, col, fitted log depth) with a spatial pyramid: the LiDAR residuals
are splatted once into the finest grid (one cell per ``sigma`` px and per ``range_sigma_log``), summed into coarser
grids, every level blurred by a one-cell Gaussian, and the levels combined coarse to fine *at the grid vertices*, so
that only one grid is sliced at the image's pixels. On numpy arrays it runs with OpenCV and a SciPy sparse matrix on
one core; on torch tensors (a CUDA engine's device) the same steps run with torch (:mod:`.completion_torch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import cv2
import numpy as np
from scipy.sparse import csr_matrix

from ..errors import InputError
from .alignment import LogDepthFit, check_float_map


@dataclass(frozen=True)
class CompletedDepth:
    """Output of :func:`complete_depth` (all ``(H, W)``; numpy arrays, or torch tensors for tensor inputs).

    ``depth_hw_m`` float32 metres (NaN where the fit is not finite); ``correction_log_hw`` the interpolated log
    residual added to the global fit; ``lidar_mask_hw`` the LiDAR pixels kept exactly; ``num_rejected`` LiDAR pixels
    dropped as local outliers; ``support_hw`` (computed when read) in [0, 1], how much of the correction comes from
    LiDAR within the finest scale (0 far away).
    """

    depth_hw_m: np.ndarray
    correction_log_hw: np.ndarray
    lidar_mask_hw: np.ndarray
    num_rejected: int
    _support: Callable[[], np.ndarray] = field(repr=False, compare=False)

    @property
    def support_hw(self) -> np.ndarray:
        return self._support()


_TAPS = 3  # the one-cell Gaussian blur is truncated at 3 cells
_KERNEL = np.exp(-0.5 * np.arange(-_TAPS, _TAPS + 1) ** 2).astype(np.float32)[:, None]  # unit peak
_IDENTITY = np.ones((1, 1), np.float32)
_RANGE_MARGIN = _TAPS  # range cells beyond the LiDAR's: as far as the blur reaches (further out: 0)
_PAD = 2.0  # spatial cells before the first pixel (the last pixel needs one after it for the bilinear lookup)
_MAX_CHANNELS = 128  # OpenCV's Python binding wraps at most this many channels
_SHRT_MAX = 32767  # cv2.remap and cv2.warpAffine need images smaller than this


def self_weight(frac_pd):
    """What a point gives itself after its trilinear splat, the unit-peak blur and a trilinear lookup at itself, from
    its fractional cell position ``(P, D)`` (separable: a product over the axes)."""
    return ((1 - frac_pd) ** 2 + frac_pd**2 + 2 * float(np.exp(-0.5)) * frac_pd * (1 - frac_pd)).prod(1)


def _trilinear_matrix(coords_p3: np.ndarray, shape: tuple[int, int, int]) -> tuple[csr_matrix, np.ndarray]:
    """Sparse (points x cells) matrix of the points' trilinear weights in a grid of ``shape`` (C order), and the
    points' :func:`self_weight`."""
    gy, gx, num_range = shape
    if gy * gx * num_range >= 2**31:
        raise InputError(f"bilateral grid of {gy}x{gx}x{num_range} cells is too large")
    base = np.floor(coords_p3)
    frac = (coords_p3 - base).astype(np.float32)
    base = base.astype(np.int32)
    self_w = self_weight(frac)
    flat0 = (base[:, 0] * gx + base[:, 1]) * num_range + base[:, 2]
    num_points = len(coords_p3)
    indices = np.empty((num_points, 8), np.int32)
    weights = np.empty((num_points, 8), np.float32)
    (f_y, f_x, f_r), k = frac.T, 0
    for dy, w_y in ((0, 1 - f_y), (1, f_y)):
        for dx, w_x in ((0, 1 - f_x), (1, f_x)):
            w_yx = w_y * w_x
            for dr, w_r in ((0, 1 - f_r), (1, f_r)):
                np.multiply(w_yx, w_r, out=weights[:, k])
                np.add(flat0, (dy * gx + dx) * num_range + dr, out=indices[:, k])
                k += 1
    points = csr_matrix((weights.reshape(-1), indices.reshape(-1), np.arange(0, 8 * num_points + 1, 8, dtype=np.int32)),
                        shape=(num_points, gy * gx * num_range))
    return points, self_w


class _NumpyGrid:
    """The bilateral grid's operations on numpy arrays, a grid being ``(gy, gx, R, C)`` float32 (C channels last),
    for the pyramid of ``shapes`` (the finest first).

    The points are fixed at construction (cell coordinates in the finest level): their trilinear corner weights form
    a sparse (points x cells) matrix with 8 entries per row, so a splat is one sparse product (its transpose) and a
    lookup at the points another.
    """

    def __init__(self, coords_p3: np.ndarray, shapes: list[tuple[int, int, int]]):
        self.shapes = shapes
        self.points, self.self_weight = _trilinear_matrix(coords_p3, shapes[0])

    def splat(self, values_pc: np.ndarray) -> np.ndarray:
        """Finest grid ``(gy, gx, R, C)`` of ``values`` (one column per channel) splatted at the points."""
        return (self.points.T @ values_pc).reshape(*self.shapes[0], values_pc.shape[1])

    def sample(self, grid: np.ndarray) -> np.ndarray:
        """Trilinear lookup ``(P, C)`` of a finest grid at the points."""
        return self.points @ grid.reshape(-1, grid.shape[-1])

    @staticmethod
    def blur(grid: np.ndarray) -> np.ndarray:
        """Unit-peak Gaussian of one cell along every axis but the channels, zero outside the grid."""
        gy, gx, num_range, c = grid.shape
        flat = grid.reshape(gy, gx, num_range * c)
        spatial = [cv2.sepFilter2D(np.ascontiguousarray(flat[..., k:k + _MAX_CHANNELS]), -1, _KERNEL, _KERNEL,
                                   borderType=cv2.BORDER_CONSTANT) for k in range(0, num_range * c, _MAX_CHANNELS)]
        flat = spatial[0] if len(spatial) == 1 else np.concatenate(spatial, axis=2)
        out = cv2.sepFilter2D(flat.reshape(gy * gx, num_range, c), -1, _KERNEL, _IDENTITY,
                              borderType=cv2.BORDER_CONSTANT)
        return out.reshape(grid.shape)

    @staticmethod
    def down(grid: np.ndarray, f: int, shape_yx: tuple[int, int]) -> np.ndarray:
        """Sums over f x f spatial blocks (``grid``'s sides are multiples of f), zero-padded to ``shape_yx``."""
        gy, gx = grid.shape[:2]
        rows = grid.reshape(gy // f, f, -1)
        acc = rows[:, 0].copy()
        for k in range(1, f):
            acc += rows[:, k]
        cols = acc.reshape(gy // f, gx // f, f, -1)
        out = np.zeros((*shape_yx, *grid.shape[2:]), np.float32)
        sub = out[: gy // f, : gx // f].reshape(gy // f, gx // f, -1)
        np.add(cols[:, :, 0], cols[:, :, 1], out=sub)
        for k in range(2, f):
            sub += cols[:, :, k]
        return out

    @staticmethod
    def up(est_yxr: np.ndarray, f: int, shape_yx: tuple[int, int]) -> np.ndarray:
        """Bilinear resampling of a coarse level at the vertices of the next finer one (cell i of the coarse level
        sits at fine cell f·i + (f − 1)/2: OpenCV's half-pixel convention)."""
        ny, nx, num_range = est_yxr.shape
        parts = [cv2.resize(np.ascontiguousarray(est_yxr[..., k:k + _MAX_CHANNELS]), (nx * f, ny * f),
                            interpolation=cv2.INTER_LINEAR) for k in range(0, num_range, _MAX_CHANNELS)]
        out = parts[0] if len(parts) == 1 else np.concatenate([p.reshape(ny * f, nx * f, -1) for p in parts], axis=2)
        return out.reshape(ny * f, nx * f, num_range)[: shape_yx[0], : shape_yx[1]]


@lru_cache(maxsize=8)
def _band_rows(band: int, w: int, sigma_px: float, gx: int) -> np.ndarray:
    """cv2.remap's y map for a band of image rows: the (row, spatial x cell) position of every pixel, read-only."""
    rows = (np.arange(band, dtype=np.float32) * gx)[:, None] + (np.arange(w) / sigma_px + _PAD).astype(np.float32)
    rows.flags.writeable = False
    return rows


def _slice_numpy(est_yxr: np.ndarray, u_hw: np.ndarray, sigma_px: float) -> np.ndarray:
    """Trilinear lookup of ``est_yxr`` (gy, gx, R) at every pixel (range cell ``u_hw``, outside the grid: 0).

    A band of image rows at a time: the grid is first resampled at the band's rows (cv2.warpAffine, linear in y),
    which makes an image whose rows are (image row, spatial x cell) and whose columns are range cells; one
    cv2.remap then interpolates bilinearly in x and range at every pixel of the band."""
    gy, gx, num_range = est_yxr.shape
    h, w = u_hw.shape
    if gx * num_range >= _SHRT_MAX:
        raise InputError(f"the fitted log depth spans {num_range} range cells: too many for the grid")
    band = min(h, _SHRT_MAX // gx - 1)
    image = est_yxr.reshape(gy, gx * num_range)
    out = np.empty((h, w), np.float32)
    for top in range(0, h, band):
        rows = min(band, h - top)
        to_grid = np.array([[1.0, 0.0, 0.0], [0.0, 1.0 / sigma_px, top / sigma_px + _PAD]])
        at_rows = cv2.warpAffine(image, to_grid, (gx * num_range, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        cv2.remap(at_rows.reshape(rows * gx, num_range), u_hw[top:top + rows], _band_rows(band, w, sigma_px, gx)[:rows],
                  cv2.INTER_LINEAR, dst=out[top:top + rows], borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out


def default_sigmas_px(h: int, w: int) -> tuple[float, ...]:
    """Spatial scales of the pyramid: image diagonal / 80, 4x and 12x that (10, 40, 120 px at 640x480)."""
    finest = float(np.hypot(h, w)) / 80.0
    return (finest, 4 * finest, 12 * finest)


def _pyramid(sigmas_px: tuple[float, ...]) -> tuple[float, list[int]]:
    """The finest sigma and the integer factor between each level and the next coarser one (at least 2)."""
    sigmas = sorted(float(s) for s in sigmas_px)
    if not sigmas or sigmas[0] <= 0:
        raise InputError(f"spatial_sigmas_px must be positive, got {sigmas_px}")
    return sigmas[0], [max(2, int(round(b / a))) for a, b in zip(sigmas, sigmas[1:])]


def _coarse_to_fine(grid, splat0, factors: list[int], prior_weight: float):
    """The pyramid over the finest splat ``splat0`` (channels: weighted residual, weight; a level's splat is the
    next finer one's summed over f x f cells), every level blurred by the one-cell Gaussian and the levels combined
    coarse to fine *at the grid vertices*: a level's estimate is (num + w·coarser) / (den + w), the coarsest
    shrinking toward 0. Returns the finest level's blurred grid with w·(the coarser levels' estimate) added to num."""
    splats = [splat0]
    for f, shape in zip(factors, grid.shapes[1:]):
        splats.append(grid.down(splats[-1], f, shape[:2]))
    est = None
    for level in range(len(splats) - 1, 0, -1):
        blurred = grid.blur(splats[level])
        num = blurred[..., 0]
        if est is not None:
            num = num + prior_weight * grid.up(est, factors[level], grid.shapes[level][:2])
        est = num / (blurred[..., 1] + prior_weight)
    finest = grid.blur(splat0)
    if est is not None:
        finest[..., 0] += prior_weight * grid.up(est, factors[0], grid.shapes[0][:2])
    return finest


def complete_depth(
    z_hw,
    sparse_depth_hw_m,
    fit: LogDepthFit,
    *,
    spatial_sigmas_px: tuple[float, ...] | None = None,
    range_sigma_log: float = 0.15,
    prior_weight: float = 0.1,
    outlier_k: float = 4.0,
    min_outlier_log: float = 0.05,
    outlier_passes: int = 2,
    gross_residual_log: float = 0.5,
    keep_lidar: bool = True,
) -> CompletedDepth:
    """Metric depth from the global fit plus an edge-aware, LiDAR-driven correction of its log residual.

    The residual ``r = log d_lidar − (a·z + b)`` at LiDAR pixels is interpolated by normalized convolution in a
    bilateral grid over (row, col, fitted log depth), coarse to fine over ``spatial_sigmas_px`` (default: image
    diagonal / 80, 4x and 12x that; a coarser sigma is rounded to an integer multiple of the next finer). Each scale
    shrinks toward the next coarser one with ``prior_weight`` (in points) and the coarsest toward 0, so the
    correction fades to 0 far from LiDAR and the model's shape is kept there. Surfaces more than ~``range_sigma_log``
    apart in log depth barely mix. In ``outlier_passes`` passes, LiDAR pixels whose residual disagrees with the
    leave-one-out interpolation of the previous pass's inliers (``outlier_k`` robust stds, at least
    ``min_outlier_log``) are dropped; the others are kept exactly when ``keep_lidar``. The first pass has no inliers
    yet: it weighs each point by min(1, (``gross_residual_log`` / |r|)²), so that gross outliers barely pull their
    neighbours' estimates (two passes then do what five did without it at 30 % outliers).

    ``z_hw`` and ``sparse_depth_hw_m`` are numpy arrays (OpenCV on the CPU) or torch tensors (the same steps in
    torch on their device; the result holds tensors there).
    """
    if type(z_hw).__module__.startswith("torch"):
        from .completion_torch import TorchOps

        ops = TorchOps(z_hw, sparse_depth_hw_m)
    else:
        ops = _NumpyOps(check_float_map("z_hw", z_hw), check_float_map("sparse_depth_hw_m", sparse_depth_hw_m,
                                                                       np.shape(z_hw)))
    if outlier_passes < 0 or range_sigma_log <= 0 or prior_weight <= 0 or gross_residual_log <= 0:
        raise InputError("need outlier_passes >= 0, and range_sigma_log, prior_weight, gross_residual_log > 0")
    h, w = ops.shape
    sigma, factors = _pyramid(spatial_sigmas_px or default_sigmas_px(h, w))
    log_fit = ops.affine(ops.z, fit.a, fit.b)
    idx = ops.lidar_pixels(log_fit)
    if len(idx) == 0:
        zero = ops.zeros_hw()
        return CompletedDepth(ops.exp_depth(log_fit, None), zero, ops.mask_hw(idx), 0, lambda: zero)
    log_fit_pts = log_fit.reshape(-1)[idx]
    r = ops.log_sparse(idx) - log_fit_pts
    u_pts = log_fit_pts * (1.0 / range_sigma_log)
    lo_u = float(u_pts.min()) - _RANGE_MARGIN
    num_range = int(np.ceil(float(u_pts.max()) + _RANGE_MARGIN - lo_u)) + 1

    # level shapes: the finest covers the image with two cells of padding, each a multiple of the next factor
    shapes = []
    extent = ((h - 1) / sigma + 2 * _PAD, (w - 1) / sigma + 2 * _PAD)
    for k in range(len(factors) + 1):
        f = factors[k] if k < len(factors) else 1
        size = [int(np.ceil(e)) + 1 for e in extent] if k == 0 else [-(-s // factors[k - 1]) for s in shapes[-1][:2]]
        shapes.append((*(-(-s // f) * f for s in size), num_range))
    rows = idx // w
    cols = idx - rows * w
    grid = ops.grid(ops.stack_cols([rows * (1.0 / sigma) + _PAD, cols * (1.0 / sigma) + _PAD, u_pts - lo_u]), shapes)
    values = ops.stack_cols([r, ops.ones_like(r)])

    keep, rejected = ops.ones_like(r) > 0, idx[:0]
    for outlier_pass in range(outlier_passes + 1):  # each pass judges every point against the last one's inliers
        if outlier_pass == 0 and outlier_passes:
            weight = (gross_residual_log / abs(r).clip(min=gross_residual_log)) ** 2
        else:
            weight = keep
        finest = _coarse_to_fine(grid, grid.splat(values * weight[:, None]), factors, prior_weight)
        if outlier_pass == outlier_passes:
            break
        # leave-one-out: each point's own share taken out of the finest level (coarser ones barely feel it)
        num, den = grid.sample(finest).T
        own = grid.self_weight * weight
        deviation = abs(r - (num - own * r) / ((den - own).clip(min=0.0) + prior_weight))
        keep = deviation <= max(outlier_k * 1.4826 * ops.median(deviation), min_outlier_log)
        rejected = ops.nonzero(~keep)
    den = finest[..., 1] + prior_weight
    correction = ops.slice(finest[..., 0] / den, log_fit, 1.0 / range_sigma_log, -lo_u, sigma)

    kept = idx[keep]
    depth = ops.exp_depth(log_fit, correction)
    if keep_lidar:
        depth.reshape(-1)[kept] = ops.sparse.reshape(-1)[kept]

    def support():
        return ops.slice(finest[..., 1] / den, log_fit, 1.0 / range_sigma_log, -lo_u, sigma)

    return CompletedDepth(depth, correction, ops.mask_hw(kept if keep_lidar else kept[:0]),
                          int(len(rejected)), support)


class _NumpyOps:
    """What :func:`complete_depth` does per pixel and per point, on numpy arrays with OpenCV."""

    def __init__(self, z_hw: np.ndarray, sparse_hw: np.ndarray):
        self.z = np.asarray(z_hw, np.float32)
        self.sparse = np.asarray(sparse_hw, np.float32)
        self.shape = self.z.shape
        self.finite = bool(np.isfinite(self.z.min()) and np.isfinite(self.z.max()))  # NaN or inf anywhere?

    grid = _NumpyGrid

    @staticmethod
    def affine(x_hw: np.ndarray, scale: float, offset: float) -> np.ndarray:
        return cv2.addWeighted(x_hw, float(scale), x_hw, 0.0, float(offset))

    def lidar_pixels(self, log_fit_hw: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            lidar = self.sparse > 0
            if not self.finite:
                lidar &= np.isfinite(log_fit_hw)
            idx = np.flatnonzero(lidar)
        return idx[np.isfinite(self.sparse.reshape(-1)[idx])]

    def log_sparse(self, idx: np.ndarray) -> np.ndarray:
        return np.log(self.sparse.reshape(-1)[idx])

    def zeros_hw(self) -> np.ndarray:
        return np.zeros(self.shape, np.float32)

    def mask_hw(self, idx: np.ndarray) -> np.ndarray:
        mask = np.zeros(self.shape, bool)
        mask.reshape(-1)[idx] = True
        return mask

    def exp_depth(self, log_fit_hw: np.ndarray, correction_hw: np.ndarray | None) -> np.ndarray:
        depth = log_fit_hw.copy() if correction_hw is None else cv2.add(log_fit_hw, correction_hw)
        cv2.exp(depth, dst=depth)
        if not self.finite:
            with np.errstate(invalid="ignore"):
                depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
        return depth

    @staticmethod
    def stack_cols(columns) -> np.ndarray:
        return np.stack(columns, axis=1).astype(np.float32)

    @staticmethod
    def ones_like(x: np.ndarray) -> np.ndarray:
        return np.ones_like(x)

    @staticmethod
    def nonzero(mask: np.ndarray) -> np.ndarray:
        return np.flatnonzero(mask)

    @staticmethod
    def clamp_min(x: np.ndarray, lo: float) -> np.ndarray:
        return np.maximum(x, lo)

    @staticmethod
    def median(x: np.ndarray) -> float:
        return float(np.median(x))

    def slice(self, est_yxr: np.ndarray, log_fit_hw: np.ndarray, scale: float, offset: float,
              sigma_px: float) -> np.ndarray:
        return _slice_numpy(est_yxr, self.affine(log_fit_hw, scale, offset), sigma_px)
