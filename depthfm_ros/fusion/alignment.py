"""Metric alignment without ROS: DepthFM's ``z`` is affine in log depth, so sparse metric depth fixes
``log d ≈ a·z + b`` per frame (the paper's evaluation protocol).

:func:`fit_log_depth` is robust (a consensus stage with an absolute threshold, then Huber IRLS weighted by the
ensemble uncertainty) and refuses with :class:`~depthfm_ros.errors.AlignmentError` when it cannot be trusted.
:func:`align_to_lidar` adds what a planner needs before it bets on the scale: the fit must explain the scene, not a
part of it (:class:`FitChecks`: inlier share, agreement of the image tiles and depth bands, residuals within the
model's own uncertainty, depth range covered), which a wrong extrinsic or an unrelated cloud cannot fake.
:class:`LogDepthFit` maps z to metres (REP-118: NaN where unknown).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from ..errors import AlignmentError, InputError

#: log-depth std added to the model's own (a·std_z) in every residual's sigma: LiDAR noise and what an ensemble
#: cannot see (a 1-member ensemble has std_z = 0)
SIGMA_FLOOR_LOG = 0.02
#: the share of residuals within one sigma of a normal distribution (what a calibrated uncertainty covers)
ONE_SIGMA_SHARE = 0.6827


@dataclass(frozen=True)
class FitEvidence:
    """What :func:`align_to_lidar` measured on the LiDAR pixels of one fit (``FitChecks`` says what passes).

    ``inlier_share``: the share of the LiDAR pixels in the image the fit explains (its inliers, or within three
    sigmas of the model's own uncertainty); ``region_offset``: the largest |median normalised
    residual| of an image tile or depth band (``region`` names it), in units of the model's uncertainty;
    ``spread``: robust std (1.4826·MAD) of the normalised residuals; ``z_coverage``: the share of the frame's z range
    (2nd..98th percentile) that the LiDAR pixels span (5th..95th); ``regions``: tiles and bands compared.
    """

    inlier_share: float
    region_offset: float
    region: str
    spread: float
    z_coverage: float
    regions: int


@dataclass(frozen=True)
class LogDepthFit:
    """Metric alignment ``log depth_m ≈ a·z + b``; ``rms_log`` is the inlier residual RMS in log space.

    ``num_points``: the valid LiDAR pixels; ``num_inliers``: those that agree with the fit (counted on the points
    fitted, at most ``FitOptions.max_fit_points``, and scaled to ``num_points``); ``sigma_scale``: the factor that
    makes ``sigma_scale·sqrt((a·std_z)² + SIGMA_FLOOR_LOG²)`` cover 68 % of this fit's residuals (NaN when not
    measured); ``evidence``: the acceptance measurements (None for a bare fit).
    """

    a: float
    b: float
    rms_log: float
    num_inliers: int
    num_points: int
    sigma_scale: float = float("nan")
    evidence: FitEvidence | None = None

    def log_depth(self, z_hw: np.ndarray) -> np.ndarray:
        return self.a * z_hw + self.b

    def depth_m(self, z_hw: np.ndarray) -> np.ndarray:
        """Metric depth of the global fit, exp(a·z + b), float32; NaN where that is not a positive finite number
        (REP-118)."""
        z_hw = np.asarray(z_hw, np.float32)
        depth = np.multiply(z_hw, np.float32(self.a))
        depth += np.float32(self.b)
        lo, hi = sorted(self.a * float(v) + self.b for v in (z_hw.min(), z_hw.max()))  # NaN z: both NaN
        cv2.exp(depth, depth)  # in place, SIMD
        if not (-80.0 < lo and hi < 80.0):  # under- or overflow somewhere (or NaN): those pixels are unknown
            depth[~(depth > 0) | (depth == np.inf)] = np.nan
        return depth


def check_float_map(name: str, arr, shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{name} must be a float (H, W) array, got {arr.dtype} {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise InputError(f"{name} has shape {arr.shape}, expected {shape} (same as z)")
    return arr


def frame_sample(z_hw: np.ndarray, max_pixels: int = 8192) -> np.ndarray:
    """The finite values of a regular grid of at most ~``max_pixels`` pixels of ``z_hw`` (frame statistics such as
    percentiles and std within sampling noise of the whole frame's, at a fraction of the cost)."""
    step = max(1, int(math.ceil(math.sqrt(z_hw.size / max_pixels))))
    sample = np.asarray(z_hw[step // 2::step, step // 2::step], np.float32).ravel()
    return sample if np.isfinite(sample).all() else sample[np.isfinite(sample)]


def frame_z_range(z_hw: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0)) -> tuple[float, float]:
    """The ``percentiles`` of the frame's z (from :func:`frame_sample`); (NaN, NaN) when nothing is finite."""
    sample = np.sort(frame_sample(z_hw))
    if sample.size == 0:
        return float("nan"), float("nan")
    return _sorted_quantile(sample, percentiles[0] / 100), _sorted_quantile(sample, percentiles[1] / 100)


def _sorted_quantile(sorted_x: np.ndarray, q: float) -> float:
    """np.quantile of sorted values (linear interpolation) without its overhead."""
    position = q * (len(sorted_x) - 1)
    k = int(position)
    upper = sorted_x[min(k + 1, len(sorted_x) - 1)]
    return float(sorted_x[k] + (position - k) * (upper - sorted_x[k]))


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
            return 0.5 * (float(part[k_lo - below]) + float(part[k_hi - below]))
    part = np.partition(x, [k_lo, k_hi])  # np.median without its overhead (NaN-free input)
    return 0.5 * (float(part[k_lo]) + float(part[k_hi]))


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
        score = counts[k] - _median(abs_res[k])
        if score > best_score or (score == best_score and k < best):
            best, best_score = int(k), score
    return best


class _Points(NamedTuple):
    """A random subset of the valid LiDAR pixels of one frame (at most ``FitOptions.max_fit_points``): flat pixel
    index, z, log depth, std_z (None without one); ``total``: how many valid LiDAR pixels the frame has."""

    pixel: np.ndarray
    z: np.ndarray
    y: np.ndarray
    std_z: np.ndarray | None
    total: int


def _lidar_points(z_hw: np.ndarray, sparse: np.ndarray, std_z_hw: np.ndarray | None, max_points: int,
                  rng: np.random.Generator) -> _Points:
    pixels = np.flatnonzero(sparse.ravel() > 0)  # NaN compares False: the LiDAR pixels (a few % of the frame) first
    d = sparse.ravel()[pixels]
    if not np.isfinite(d).all():
        pixels, d = pixels[np.isfinite(d)], d[np.isfinite(d)]
    total = len(pixels)
    if total > max_points:
        keep = np.sort(rng.choice(total, size=max_points, replace=False))
        pixels, d = pixels[keep], d[keep]
    z = z_hw.ravel()[pixels]
    s = std_z_hw.ravel()[pixels] if std_z_hw is not None else None
    finite = np.isfinite(z if s is None else z + s)
    if not finite.all():  # the model gave NaN or inf there: not a LiDAR pixel to fit
        total -= int(round((len(z) - np.count_nonzero(finite)) * total / len(z)))
        pixels, d, z = pixels[finite], d[finite], z[finite]
        s = s[finite] if s is not None else None
    return _Points(pixels, z.astype(np.float64), np.log(d.astype(np.float64)),
                   s.astype(np.float64) if s is not None else None, total)


def _sigma_log(a: float, std_z: np.ndarray | None, n: int, floor_log: float = SIGMA_FLOOR_LOG) -> np.ndarray:
    """Each residual's log-depth sigma before calibration: sqrt((a·std_z)² + floor²)."""
    if std_z is None:
        return np.full(n, floor_log)
    return np.sqrt((a * std_z) ** 2 + floor_log**2)


@dataclass(frozen=True)
class FitOptions:
    """Parameters of :func:`fit_log_depth` (its keyword arguments), see there."""

    min_points: int = 20
    min_z_spread: float = 1e-3
    allow_negative_scale: bool = False
    num_samples: int = 128
    consensus_log: float = 0.15
    min_inlier_fraction: float = 0.2
    max_rms_log: float = 0.25
    min_log_depth_std: float = 0.03
    outlier_k: float = 3.0
    huber_k: float = 1.345
    max_iters: int = 30
    max_fit_points: int = 2048
    seed: int = 0


def fit_log_depth(z_hw: np.ndarray, sparse_depth_hw_m: np.ndarray, std_z_hw: np.ndarray | None = None,
                  **options) -> LogDepthFit:
    """Fit ``log d ≈ a·z + b`` on the LiDAR pixels, robust to most points being wrong, weighted by model uncertainty.

    1. Consensus: ``num_samples`` lines through random point pairs (and the plain weighted fit) are scored by how
       many of 1024 points lie within ``consensus_log`` of them in log depth (an absolute threshold: ~16 % in
       depth), so a majority of gross outliers cannot outvote a coherent minority.
    2. IRLS with Huber weights (``huber_k``), times ``1/(std_z² + eps)`` when ``std_z_hw`` is given, on the points
       within twice that band, keeping those within ``outlier_k`` robust standard deviations (MAD of the
       precision-scaled residual ``r / std_z``), at most ``max_iters`` iterations.

    Both stages run on a random subset of at most ``max_fit_points`` LiDAR pixels (a and b within ~2e-3 of the
    whole set's: the residual's std over sqrt(2048)); inliers and the residual RMS are counted on every pixel.

    Raises :class:`AlignmentError` (the fit is refused, never returned wrong) with fewer than ``min_points`` valid
    points, fewer inliers than ``min_points`` or ``min_inlier_fraction`` of the points, an inlier residual RMS over
    ``max_rms_log``, z varying less than ``min_z_spread`` over them, ``a <= 0`` (unless ``allow_negative_scale``),
    or an implausible scale: fitted log depth varying by less than ``min_log_depth_std`` (std over the frame's z)
    -- a flat depth map that matches noise. Deterministic for a given ``seed``. ``options``: the fields of
    :class:`FitOptions`.
    """
    options = FitOptions(**options)
    z_hw, points = _checked_points(z_hw, sparse_depth_hw_m, std_z_hw, options)
    return _fit(z_hw, points, options)[0]


def _checked_points(z_hw, sparse_depth_hw_m, std_z_hw, options: FitOptions) -> tuple[np.ndarray, _Points]:
    z_hw = check_float_map("z_hw", z_hw)
    sparse = check_float_map("sparse_depth_hw_m", sparse_depth_hw_m, z_hw.shape)
    if std_z_hw is not None:
        std_z_hw = check_float_map("std_z_hw", std_z_hw, z_hw.shape)
    return z_hw, _lidar_points(z_hw, sparse, std_z_hw, options.max_fit_points, np.random.default_rng(options.seed))


def _fit(z_hw, points: _Points, options: FitOptions,
         frame_std: float | None = None) -> tuple[LogDepthFit, np.ndarray, np.ndarray]:
    """:func:`fit_log_depth` on the extracted points; returns the fit, the points' residuals and inlier mask.
    ``frame_std``: the std of the frame's z, when the caller has it."""
    o = options
    consensus_log, outlier_k = o.consensus_log, o.outlier_k
    z, y, n = points.z, points.y, points.total
    m = len(z)  # the points fitted (a subset of the n when n > max_fit_points)
    if n < max(o.min_points, 2):
        raise AlignmentError(f"too few LiDAR points for alignment: {n} valid, need at least {o.min_points}")
    z_std = float(z.std())
    if z_std < o.min_z_spread:
        raise AlignmentError(f"degenerate alignment: z is nearly constant on the {n} LiDAR points "
                             f"(std {z_std:.3g} < {o.min_z_spread})")
    rng = np.random.default_rng(o.seed + 1)
    if points.std_z is None:
        w0 = np.ones(m)
    else:
        var = points.std_z**2
        w0 = 1.0 / (var + 0.01 * _median(var) + 1e-12)  # eps: no point weighs more than 100x the median one
    precision = np.sqrt(w0 / _median(w0))  # residual x precision: comparable across points

    # 1. Consensus over lines through random pairs (scored on at most 1024 points) and the plain weighted fit.
    sub = rng.choice(m, size=min(m, 1024), replace=False)
    i, j = rng.integers(0, m, size=(2, o.num_samples))
    dz = z[i] - z[j]
    ok = np.abs(dz) > 1e-3 * max(z_std, 1e-12)
    a_w, b_w, _ = _weighted_line(z, y, w0)
    a_s = np.append((y[i][ok] - y[j][ok]) / dz[ok], a_w)
    b_s = np.append(y[i][ok] - a_s[:-1] * z[i][ok], b_w)
    if not o.allow_negative_scale:
        keep = a_s > 0
        a_s, b_s = (a_s[keep], b_s[keep]) if keep.any() else (a_s, b_s)
    best = _best_supported(a_s, b_s, z[sub], y[sub], consensus_log)
    a, b = a_band, b_band = float(a_s[best]), float(b_s[best])
    band = np.abs(y - (a * z + b)) <= 2.0 * consensus_log

    # 2. IRLS on the consensus band (every inlier lies in it: the loop runs on the band's points only).
    zb, yb, wb, pb = z[band], y[band], w0[band], precision[band]
    median_e, scale = 0.0, 1e-9
    for _ in range(o.max_iters):
        e = np.abs(yb - (a * zb + b)) * pb
        median_e = _median(e, median_e) if len(e) else 0.0
        scale = max(1.4826 * median_e, 1e-9)
        inliers_b = e <= outlier_k * scale
        if inliers_b.sum() < 2:
            break
        u = e / (o.huber_k * scale)
        a_new, b_new, _ = _weighted_line(zb, yb, wb * inliers_b / np.maximum(u, 1.0))
        done = abs(a_new - a) + abs(b_new - b) < 1e-7 * (1 + abs(a) + abs(b))  # far below float32 depth
        a, b = a_new, b_new
        if done:
            break

    # Inliers: in the consensus band and within outlier_k robust stds.
    r = y - (a * z + b)
    inliers = (np.abs(r) * precision <= outlier_k * scale) & (np.abs(y - (a_band * z + b_band)) <= 2 * consensus_log)
    num_inliers = int(round(np.count_nonzero(inliers) * n / m))  # counted on the fitted points, scaled to all
    needed = max(o.min_points, 2, int(np.ceil(o.min_inlier_fraction * n)))
    if num_inliers < needed:
        raise AlignmentError(f"only {num_inliers} of {n} LiDAR points agree with the alignment; need {needed}")
    if z[inliers].std() < o.min_z_spread:
        raise AlignmentError(f"degenerate alignment: z is nearly constant on the {num_inliers} inlier points")
    if a <= 0 and not o.allow_negative_scale:
        raise AlignmentError(f"alignment gives a = {a:.4g} <= 0 (depth would fall as z rises); refusing the fit")
    frame_z_std = float(frame_sample(z_hw).std()) if frame_std is None else frame_std
    if abs(a) * frame_z_std < o.min_log_depth_std:
        raise AlignmentError(f"implausible scale a = {a:.3g}: fitted depth varies by {abs(a) * frame_z_std:.3g} "
                             f"in log over the frame (< {o.min_log_depth_std}); the LiDAR does not explain the image")
    rms_log = float(np.sqrt(np.mean(r[inliers] ** 2)))
    if rms_log > o.max_rms_log:
        raise AlignmentError(f"alignment residual rms_log {rms_log:.3f} > {o.max_rms_log} on {num_inliers} of {n} "
                             "points: the LiDAR does not match the image (extrinsic, stamps, cloud layout?)")
    normalised = np.abs(r) / _sigma_log(a, points.std_z, m)
    sigma_scale = float(np.partition(normalised, int(ONE_SIGMA_SHARE * (m - 1)))[int(ONE_SIGMA_SHARE * (m - 1))])
    return LogDepthFit(a, b, rms_log, num_inliers, n, sigma_scale), r, inliers


@dataclass(frozen=True)
class FitChecks:
    """When :func:`align_to_lidar` accepts a fit: evidence that the LiDAR explains the whole scene it sees.

    Residuals are normalised by the model's own uncertainty, ``sqrt((a·std_z)² + floor_log²)`` (``floor_log``:
    LiDAR noise and what a 1-member ensemble cannot see), so a model that knows where it is unsure is not refused
    for it, and a wrong extrinsic cannot hide behind a large tolerance.

    - ``min_inlier_share``: inliers among the LiDAR pixels in the image (a wrong extrinsic explains a part);
    - ``max_region_offset``: every image tile (``tiles`` x ``tiles``) and depth band (``bands`` z quantiles) with
      at least ``min_region_share`` of the pixels must agree with the global (a, b): |median normalised residual|
      at most this (independent regions of a wrongly registered cloud disagree on a or b);
    - ``max_spread``: robust std of the normalised residuals (a wrong extrinsic leaves residuals far beyond what the
      model's uncertainty allows);
    - ``min_z_coverage``: the LiDAR pixels span at least this share of the frame's z range (a fit on a strip of the
      frame extrapolates to the rest).
    """

    min_inlier_share: float = 0.8
    max_region_offset: float = 4.0
    max_spread: float = 3.0
    min_z_coverage: float = 0.5
    floor_log: float = SIGMA_FLOOR_LOG
    tiles: int = 3
    bands: int = 4
    min_region_share: float = 0.03


def fit_evidence(z_hw: np.ndarray, points: _Points, fit: LogDepthFit, residual: np.ndarray, inliers: np.ndarray,
                 checks: FitChecks, z_range: tuple[float, float] | None = None) -> FitEvidence:
    """The measurements :class:`FitChecks` judges, on the points the fit used (with their ``residual`` and
    ``inliers``); ``z_range``: the frame's :func:`frame_z_range` when the caller has it."""
    m = len(residual)
    normalised = residual / _sigma_log(fit.a, points.std_z, m, checks.floor_log)
    explained = float(np.count_nonzero(inliers | (np.abs(normalised) <= 3.0))) / m
    by_value = np.argsort(normalised)
    spread = 1.4826 * _median(np.abs(normalised))
    h, w = z_hw.shape
    rows, cols = np.divmod(points.pixel, w)
    tiles = (rows * checks.tiles // h) * checks.tiles + cols * checks.tiles // w
    z_sorted = np.sort(points.z)
    edges = [_sorted_quantile(z_sorted, k / checks.bands) for k in range(1, checks.bands)]
    bands = np.searchsorted(edges, points.z, side="right")
    min_count = max(10, int(checks.min_region_share * m))
    worst, worst_name, regions = 0.0, "", 0
    for kind, labels, count in (("tile", tiles, checks.tiles**2), ("depth band", bands, checks.bands)):
        labels = labels[by_value].astype(np.int16)  # small integers: a radix sort
        grouped = normalised[by_value[np.argsort(labels, kind="stable")]]  # by region, sorted within each
        sizes = np.bincount(labels, minlength=count)
        starts = np.cumsum(sizes) - sizes
        for k in np.flatnonzero(sizes >= min_count):
            first, size = starts[k], sizes[k]
            offset = abs(0.5 * float(grouped[first + (size - 1) // 2] + grouped[first + size // 2]))  # median
            regions += 1
            if offset > worst:
                worst, worst_name = offset, (f"tile row {k // checks.tiles + 1} column {k % checks.tiles + 1}"
                                             if kind == "tile" else f"depth band {k + 1} of {checks.bands}")
    lo, hi = frame_z_range(z_hw) if z_range is None else z_range
    spanned = _sorted_quantile(z_sorted, 0.95) - _sorted_quantile(z_sorted, 0.05)
    coverage = float(spanned / (hi - lo)) if hi > lo else 0.0
    return FitEvidence(explained, worst, worst_name, spread, coverage, regions)


def align_to_lidar(z_hw: np.ndarray, sparse_depth_hw_m: np.ndarray, std_z_hw: np.ndarray | None = None,
                   checks: FitChecks = FitChecks(), options: FitOptions = FitOptions(),
                   z_range: tuple[float, float] | None = None) -> LogDepthFit:
    """:func:`fit_log_depth`, accepted only when the fit explains the scene (:class:`FitChecks`); the returned fit
    carries its :class:`FitEvidence`. Raises AlignmentError naming the check that failed and its figure.
    ``z_range``: the frame's :func:`frame_z_range`, when the caller has it already."""
    z_hw, points = _checked_points(z_hw, sparse_depth_hw_m, std_z_hw, options)
    fit, residual, inliers = _fit(z_hw, points, options)
    evidence = fit_evidence(z_hw, points, fit, residual, inliers, checks, z_range)
    if evidence.inlier_share < checks.min_inlier_share:
        raise AlignmentError(f"the fit explains only {100 * evidence.inlier_share:.0f} % of the {fit.num_points} "
                             f"LiDAR points in the image (need {100 * checks.min_inlier_share:.0f} %): wrong "
                             "extrinsic, unrelated cloud or clutter?")
    if evidence.region_offset > checks.max_region_offset:
        raise AlignmentError(f"the image regions disagree on the scale: {evidence.region} is off by "
                             f"{evidence.region_offset:.1f} sigma (limit {checks.max_region_offset:g}): wrong "
                             "extrinsic?")
    if evidence.spread > checks.max_spread:
        raise AlignmentError(f"residuals {evidence.spread:.1f}x the model's uncertainty (limit "
                             f"{checks.max_spread:g}x): the LiDAR does not match the image (extrinsic, stamps?)")
    if evidence.z_coverage < checks.min_z_coverage:
        raise AlignmentError(f"the LiDAR points span {100 * evidence.z_coverage:.0f} % of the frame's depth range "
                             f"(need {100 * checks.min_z_coverage:.0f} %): too little of the scene to scale it")
    return dataclasses.replace(fit, evidence=evidence)


def cloud_contradicts(fit: LogDepthFit, z_hw: np.ndarray, sparse_depth_hw_m: np.ndarray,
                      std_z_hw: np.ndarray | None = None, *, tolerance_log: float, min_points: int = 20) -> str:
    """Why this frame's LiDAR pixels contradict the scale ``fit`` ("" when they agree with it, or are too few to
    tell): the median of their log-depth residuals lies beyond ``tolerance_log``, or fewer than half of them lie
    within it. What keeps a held scale off a frame whose own cloud says otherwise."""
    z_hw, points = _checked_points(z_hw, sparse_depth_hw_m, std_z_hw, FitOptions())
    if len(points.z) < min_points:
        return ""
    residual = points.y - (fit.a * points.z + fit.b)
    median = float(np.median(residual))
    within = float(np.mean(np.abs(residual) <= tolerance_log))
    if abs(median) > tolerance_log:
        return (f"its {points.total} points lie {median:+.2f} in log depth from it (median; tolerance "
                f"{tolerance_log:.2f})")
    if within < 0.5:
        return (f"only {100 * within:.0f} % of its {points.total} points lie within {tolerance_log:.2f} of it in "
                "log depth")
    return ""


def residual_scale(fit: LogDepthFit, z_hw: np.ndarray, sparse_depth_hw_m: np.ndarray,
                   std_z_hw: np.ndarray | None = None, log_var: float = 0.0,
                   floor_log: float = SIGMA_FLOOR_LOG) -> float:
    """The calibration of the uncertainty published with the scale ``fit`` (and its variance ``log_var``) on this
    frame's LiDAR pixels: the factor ``s`` that puts 68 % of their log residuals r within
    ``sqrt(s²·((a·std_z)² + floor_log²) + log_var)`` (:func:`metric_std`); NaN with fewer than 20 points."""
    z_hw, points = _checked_points(z_hw, sparse_depth_hw_m, std_z_hw, FitOptions())
    m = len(points.z)
    if m < 20:
        return float("nan")
    r = points.y - (fit.a * points.z + fit.b)
    needed = np.sqrt(np.maximum(r * r - max(log_var, 0.0), 0.0)) / _sigma_log(fit.a, points.std_z, m, floor_log)
    k = int(ONE_SIGMA_SHARE * (m - 1))
    return float(np.partition(needed, k)[k])


def metric_std(std_z_hw: np.ndarray, depth_hw_m: np.ndarray, fit: LogDepthFit, log_var: float = 0.0,
               sigma_scale: float = 1.0, floor_log: float = SIGMA_FLOOR_LOG) -> np.ndarray:
    """Depth std in metres, first order through ``d = exp(a·z + b)``:
    ``depth·sqrt(sigma_scale²·((a·std_z)² + floor_log²) + log_var)``, where ``sigma_scale`` calibrates the model's
    own uncertainty to the residuals of the LiDAR fits (:attr:`LogDepthFit.sigma_scale`: 68 % within one sigma),
    ``floor_log`` is what every residual has beyond the ensemble spread (LiDAR noise; all of it for one member), and
    ``log_var`` the variance of the scale itself in log depth (it grows while a scale is held); float32."""
    std_z_hw = check_float_map("std_z_hw", std_z_hw)
    depth_hw_m = check_float_map("depth_hw_m", depth_hw_m, std_z_hw.shape)
    constant = np.float32(sigma_scale**2 * floor_log**2 + max(log_var, 0.0))
    if not std_z_hw.any():  # one ensemble member: the floor and the scale's variance alone
        return np.multiply(depth_hw_m, np.sqrt(constant), dtype=np.float32)
    std = np.multiply(std_z_hw, np.float32(sigma_scale * abs(fit.a)), dtype=np.float32)  # in place from here
    np.multiply(std, std, out=std)
    std += constant
    np.sqrt(std, out=std)
    np.multiply(std, depth_hw_m, out=std)
    return std
