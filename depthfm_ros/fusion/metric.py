"""Which metric scale a frame gets, and whether it gets one at all (no ROS).

DepthFM's ``z`` is affine in log depth with a per-frame (a, b). A frame is published in metres only with an
accepted (a, b) from one of these sources, chosen by ``source``:

- ``lidar``: this frame's LiDAR fit (:func:`depthfm_ros.fusion.alignment.align_to_lidar`, refused unless it
  explains the scene), smoothed by :class:`ScaleFilter`; through LiDAR gaps the filter *holds* the last accepted
  scale, predicted to the frame's stamp, for up to ``hold_sec`` with a growing uncertainty -- never for a frame whose
  own cloud contradicts it.
- ``ground``: a flat ground at a known camera height (:func:`ground_plane_fit`, refused unless the prediction shows a
  ground surface there), for camera-only robots.
- ``fixed``: a fixed (a, b) (a calibration of one model and camera; the explicit last resort).
- ``auto``: lidar (when configured), then the hold, then ground (when a camera height is given), then fixed (when a
  fixed scale is given); ``none``: never metric.

Sources check each other: when more than one gives a scale for a frame, they must agree within their uncertainties
(and the temporal gate), or the frame gets no metres (``MetricEstimate.conflict``).

:class:`MetricScale.update` returns a :class:`MetricEstimate` per frame: the source used and (a, b) with its
log-depth variance and the calibration of the per-pixel uncertainty (``sigma_scale``, learned online from the LiDAR
fits' residuals), or why there is none.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import AlignmentError, InputError
from ..geometry.camera import PinholeCamera
from .alignment import LogDepthFit, check_float_map, fit_log_depth, frame_z_range

SOURCES = ("auto", "lidar", "ground", "fixed", "none")

#: (held fit, tolerance in log depth) -> "" when this frame's cloud agrees with the held scale, else why not
CloudCheck = Callable[[LogDepthFit, float], str]
#: (the scale about to be published, its log variance) -> the uncertainty calibration its residuals on this frame's
#: cloud ask for (:func:`depthfm_ros.fusion.alignment.residual_scale`)
CloudCalibration = Callable[[LogDepthFit, float], float]


@dataclass(frozen=True)
class MetricEstimate:
    """One frame's scale: ``source`` ('lidar', 'hold', 'ground', 'fixed') and ``fit`` (log d = a·z + b), or
    ``source`` '' and ``fit`` None with ``reason``. ``log_var`` is the variance of the scale in log depth (added to
    the per-pixel uncertainty); ``age_sec`` how old the measurement behind it is (0 for this frame's);
    ``sigma_scale`` the calibration of the per-pixel uncertainty (:func:`depthfm_ros.fusion.alignment.metric_std`);
    ``conflict``: no metres because two sources disagree."""

    source: str
    fit: LogDepthFit | None
    log_var: float = 0.0
    age_sec: float = 0.0
    reason: str = ""
    sigma_scale: float = 1.0
    conflict: bool = False

    @property
    def metric(self) -> bool:
        return self.fit is not None


def _gap(fit: LogDepthFit, other: LogDepthFit, z_range: tuple[float, float]) -> float:
    """The largest difference in log depth the two scales give over the frame's z range."""
    return max(abs((fit.a - other.a) * z + (fit.b - other.b)) for z in z_range)


class ScaleFilter:
    """(a, b) filtered over frames, in log-depth units.

    A scalar Kalman filter on the log-depth offset of the scale: an accepted measurement with variance
    ``rms_log² / num_inliers + floor`` updates it; between measurements its variance grows by
    ``process_log_per_sec²`` per second. A measurement whose predicted log depth over the frame's z range differs
    from the filter's by more than ``gate_log`` (and ``gate_sigma`` combined stds) *contradicts* it and is rejected
    (a glitch does not move the scale). The model's scale changes only with its view: contradicting measurements
    that agree with each other for ``reset_after`` frames and at least ``reset_after_sec``, on frames whose z range
    moved by more than ``view_change`` of its span since the last accepted one, mean the scene changed and restart
    the filter. A glitch of a few clouds never resets it, nor does a persistent LiDAR error while the camera sees the
    same scene.
    """

    def __init__(self, gate_log: float = 0.2, gate_sigma: float = 4.0, process_log_per_sec: float = 0.05,
                 floor_log: float = 0.01, reset_after: int = 3, reset_after_sec: float = 0.5,
                 view_change: float = 0.1):
        self.gate_log, self.gate_sigma = gate_log, gate_sigma
        self.reset_after, self.reset_after_sec, self.view_change = reset_after, reset_after_sec, view_change
        self.z_range: tuple[float, float] | None = None  # of the last accepted frame
        self.process_var_per_sec, self.floor_var = process_log_per_sec**2, floor_log**2
        self.fit: LogDepthFit | None = None
        self.var = math.inf
        self.t_sec = -math.inf
        self.rejected_in_a_row = 0
        self._contradiction: tuple[LogDepthFit, float] | None = None  # the first of a run, and when

    def variance_at(self, t_sec: float) -> float:
        return self.var + self.process_var_per_sec * max(t_sec - self.t_sec, 0.0)

    def tolerance(self, t_sec: float, measurement_var: float = 0.0) -> float:
        """How far (log depth) a measurement at ``t_sec`` may lie from the filtered scale."""
        return max(self.gate_log, self.gate_sigma * math.sqrt(self.variance_at(t_sec) + measurement_var))

    def update(self, fit: LogDepthFit, t_sec: float, z_range: tuple[float, float]) -> tuple[bool, str]:
        """Fuse ``fit`` measured at ``t_sec`` on a frame whose z spans ``z_range``; (accepted, why not)."""
        r_var = fit.rms_log**2 / max(fit.num_inliers, 1) + self.floor_var
        if self.fit is None or t_sec < self.t_sec:  # first measurement, or time went backwards: start over
            self._reset(fit, t_sec, r_var, z_range)
            return True, ""
        gap, tolerance = _gap(fit, self.fit, z_range), self.tolerance(t_sec, r_var)
        if gap > tolerance:
            first = self._contradiction
            if first is None or _gap(fit, first[0], z_range) > self.gate_log:  # not the same new scale
                self._contradiction = first = (fit, t_sec)
                self.rejected_in_a_row = 0
            self.rejected_in_a_row += 1
            moved = self._view_moved(z_range)
            if self.rejected_in_a_row >= self.reset_after and t_sec - first[1] >= self.reset_after_sec and moved:
                self._reset(fit, t_sec, r_var, z_range)
                return True, ""
            return False, (f"LiDAR scale jumps by {gap:.2f} in log depth from the filtered one (tolerance "
                           f"{tolerance:.2f}; {self.rejected_in_a_row} agreeing in a row"
                           + ("" if moved else " while the model's view did not change") + ")")
        gain = self.variance_at(t_sec) / (self.variance_at(t_sec) + r_var)
        a, b = self.fit.a + gain * (fit.a - self.fit.a), self.fit.b + gain * (fit.b - self.fit.b)
        self.fit = LogDepthFit(a, b, fit.rms_log, fit.num_inliers, fit.num_points, fit.sigma_scale)
        self.var, self.t_sec = (1 - gain) * self.variance_at(t_sec), t_sec
        self.rejected_in_a_row, self._contradiction, self.z_range = 0, None, z_range
        return True, ""

    def _view_moved(self, z_range: tuple[float, float]) -> bool:
        """The frame's z range differs from the last accepted frame's by more than ``view_change`` of its span."""
        if self.z_range is None:
            return True
        span = max(self.z_range[1] - self.z_range[0], 1e-6)
        return max(abs(z_range[0] - self.z_range[0]), abs(z_range[1] - self.z_range[1])) > self.view_change * span

    def _reset(self, fit: LogDepthFit, t_sec: float, r_var: float, z_range: tuple[float, float]) -> None:
        self.fit, self.var, self.t_sec = dataclasses.replace(fit, evidence=None), r_var, t_sec
        self.rejected_in_a_row, self._contradiction, self.z_range = 0, None, z_range


def ground_normal(pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Unit normal of a flat ground pointing down, in the camera optical frame (x right, y down, z forward), for a
    camera pitched down by ``pitch_deg`` and rolled by ``roll_deg`` from level."""
    pitch, roll = np.radians(pitch_deg), np.radians(roll_deg)
    return np.array([np.sin(roll), np.cos(roll) * np.cos(pitch), np.cos(roll) * np.sin(pitch)])


@dataclass(frozen=True)
class GroundChecks:
    """When :func:`ground_plane_fit` accepts a ground: the prediction must show a ground *surface*, not pixels that
    happen to match.

    The lower half of the image is cut into ``tiles`` (rows, columns); in at least one tile ``min_tile_share`` of
    the pixels whose ray meets the ground must lie within ``tile_tolerance_log`` of the plane's log depth with the
    fitted scale (a random-weight model's matches are scattered: at most 55 % in any tile on the synthetic scenes,
    a real floor 80-100 %). Back-projected with the fitted scale, that tile's ground pixels must form a plane whose
    normal is within ``max_normal_deg`` of the given orientation and whose distance is within
    ``max_height_error`` of the camera height.
    """

    tiles: tuple[int, int] = (2, 4)
    min_tile_share: float = 0.7
    tile_tolerance_log: float = 0.1
    max_normal_deg: float = 8.0
    max_height_error: float = 0.2


def ground_plane_fit(z_hw: np.ndarray, camera: PinholeCamera, camera_height_m: float,
                     down_cam: np.ndarray | None = None, *, std_z_hw: np.ndarray | None = None,
                     min_ground_fraction: float = 0.1, consensus_log: float = 0.05,
                     checks: GroundChecks = GroundChecks()) -> LogDepthFit:
    """(a, b) that put a flat ground ``camera_height_m`` below the camera.

    A ground plane with unit normal n (``down_cam``, pointing down in the optical frame: from tf, or
    :func:`ground_normal` of the mounting; default a level camera, (0, 1, 0)) at distance h is seen at z-depth
    d = h / (n · r) along the pixel ray r = ((u - cx)/fx, (v - cy)/fy, 1). So every pixel of the lower image whose
    ray meets the ground has a known log depth, and :func:`fit_log_depth` (consensus with an absolute threshold)
    fits log d = a·z + b to those pixels: the ground agrees, boxes and walls are outliers. The orientation must be
    known: from a flat ground alone, a pitch error trades off against the scale. Raises AlignmentError when the
    ground covers less than ``min_ground_fraction`` of the lower image, the fit is refused, or the prediction shows
    no ground surface there (``checks``, :class:`GroundChecks`).
    """
    z_hw = check_float_map("z_hw", z_hw)
    if not camera_height_m > 0:
        raise InputError(f"camera_height_m must be > 0, got {camera_height_m}")
    h, w = z_hw.shape
    if (camera.width, camera.height) != (w, h):
        camera = camera.scaled(w, h)
    normal = ground_normal() if down_cam is None else np.asarray(down_cam, np.float64)
    normal = normal / np.linalg.norm(normal)
    step = max(1, int(round(np.sqrt(h * w / 8000))))  # about 4000 pixels of the lower half at most
    v, u = np.mgrid[h // 2:h:step, 0:w:step]
    z = np.ascontiguousarray(z_hw[v, u], np.float32)
    std = np.ascontiguousarray(std_z_hw[v, u], np.float32) if std_z_hw is not None else None
    along = ((u - camera.cx) / camera.fx) * normal[0] + ((v - camera.cy) / camera.fy) * normal[1] + normal[2]
    ground = along > 0.02
    sparse = np.where(ground, camera_height_m / np.maximum(along, 1e-6), np.nan).astype(np.float32)
    try:
        fit = fit_log_depth(z, sparse, std, min_inlier_fraction=0.0, consensus_log=consensus_log,
                            min_points=max(20, int(min_ground_fraction * z.size)))
    except AlignmentError as exc:
        raise AlignmentError(f"ground plane: no flat ground {camera_height_m:g} m below the camera ({exc})") from exc
    # The best tile of the lower half: the share of its ground pixels on the plane with this scale.
    on_plane = ground & (np.abs(fit.a * z + fit.b - np.log(np.where(ground, sparse, 1.0))) <= checks.tile_tolerance_log)
    rows, cols = checks.tiles
    tile = (np.arange(v.shape[0])[:, None] * rows // v.shape[0]) * cols + np.arange(v.shape[1])[None, :] * cols \
        // v.shape[1]
    candidates = np.bincount(tile[ground], minlength=rows * cols)
    matches = np.bincount(tile[on_plane], minlength=rows * cols)
    big = candidates >= 0.5 * tile.size / (rows * cols)
    shares = np.where(big, matches / np.maximum(candidates, 1), 0.0)
    best = int(np.argmax(shares))
    if shares[best] < checks.min_tile_share:
        raise AlignmentError(f"ground plane: the prediction shows no ground surface {camera_height_m:g} m below the "
                             f"camera: at most {100 * shares[best]:.0f} % of a tile of the lower image lies on it with "
                             f"the fitted scale (need {100 * checks.min_tile_share:.0f} %)")
    pick = on_plane & (tile == best)
    depth = np.exp(fit.a * z[pick].astype(np.float64) + fit.b)
    points = np.stack([(u[pick] - camera.cx) / camera.fx * depth, (v[pick] - camera.cy) / camera.fy * depth,
                       depth], 1)
    centre = points.mean(axis=0)
    plane_normal = np.linalg.svd(points - centre, full_matrices=False)[2][2]
    tilt = float(np.degrees(np.arccos(min(1.0, abs(float(plane_normal @ normal))))))
    height = abs(float(centre @ plane_normal))
    if tilt > checks.max_normal_deg or abs(height / camera_height_m - 1) > checks.max_height_error:
        raise AlignmentError(f"ground plane: the predicted ground is tilted by {tilt:.1f} deg from the given "
                             f"orientation (limit {checks.max_normal_deg:g}) at {height:.2f} m (camera height "
                             f"{camera_height_m:g} m +-{100 * checks.max_height_error:.0f} %)")
    return fit


class MetricScale:
    """Per-frame choice of the metric scale (see the module docstring); state: the LiDAR :class:`ScaleFilter` and
    the calibration of the per-pixel uncertainty.

    ``source``: one of :data:`SOURCES`; ``hold_sec``: how long a LiDAR scale is carried without a new accepted
    fit; ``camera_height_m`` (> 0) enables the ground source, with the ground normal ``ground_down_cam`` (optical
    frame; default a level camera) unless each frame brings one from tf; ``fixed_fit`` (a > 0) the fixed one;
    ``calibration_weight``: how much each accepted LiDAR fit moves the learned uncertainty calibration (an
    exponential average in log; 1: the current fit's alone, which held-out residuals cover best).
    """

    def __init__(self, source: str = "auto", *, use_lidar: bool = False, hold_sec: float = 1.0,
                 camera_height_m: float = 0.0, ground_down_cam: np.ndarray | None = None,
                 ground_from_tf: bool = False, fixed_fit: LogDepthFit | None = None,
                 scale_filter: ScaleFilter | None = None, calibration_weight: float = 1.0):
        if source not in SOURCES:
            raise InputError(f"metric source must be one of {', '.join(SOURCES)}, got {source!r}")
        lidar = source == "lidar" or (source == "auto" and use_lidar)
        ground = source == "ground" or (source == "auto" and (camera_height_m > 0 or ground_from_tf))
        fixed = source == "fixed" or (source == "auto" and fixed_fit is not None and fixed_fit.a > 0)
        if lidar and not use_lidar:
            raise InputError("metric source 'lidar' needs use_lidar")
        if ground and not (camera_height_m > 0 or ground_from_tf):
            raise InputError("metric source 'ground' needs camera_height_m > 0 or a ground_frame in tf")
        if fixed and (fixed_fit is None or not fixed_fit.a > 0):
            raise InputError("metric source 'fixed' needs a fixed scale > 0")
        self.chain = tuple(name for name, on in (("lidar", lidar), ("ground", ground), ("fixed", fixed)) if on)
        self.hold_sec, self.camera_height_m, self.fixed_fit = hold_sec, camera_height_m, fixed_fit
        self.ground_down_cam = ground_down_cam
        self.filter = scale_filter or ScaleFilter()
        self.calibration_weight = calibration_weight
        self.sigma_scale = math.nan  # learned from the LiDAR fits; NaN before the first

    def describe(self) -> str:
        if not self.chain:
            return "no metric source: only relative depth (depthfm/relative_depth, depthfm/relative_uncertainty)"
        height = f"{self.camera_height_m:g} m" if self.camera_height_m > 0 else "the tf height"
        parts = {"lidar": f"LiDAR fit (held up to {self.hold_sec:g} s)",
                 "ground": f"ground plane at {height} below the camera", "fixed": "fixed scale"}
        checked = ", checked against each other" if len(self.chain) > 1 else ""
        return "metric depth from " + ", then ".join(parts[name] for name in self.chain) + checked

    def update(self, t_sec: float, z_hw: np.ndarray, *, lidar_fit: LogDepthFit | None = None,
               lidar_reason: str = "no LiDAR cloud for this frame", lidar_check: CloudCheck | None = None,
               lidar_calibration: CloudCalibration | None = None,
               camera: PinholeCamera | None = None, down_cam: np.ndarray | None = None,
               camera_height_m: float | None = None, std_z_hw: np.ndarray | None = None,
               z_range: tuple[float, float] | None = None) -> MetricEstimate:
        """The scale of the frame at ``t_sec`` (seconds, any clock that does not jump) with decoded ``z_hw``.

        ``lidar_fit``: this frame's accepted LiDAR fit, else ``lidar_reason`` says why there is none and
        ``lidar_check`` (when the frame has a cloud) says whether that cloud contradicts the held scale;
        ``lidar_calibration`` (when the frame has a cloud): the uncertainty calibration a scale's residuals on it ask
        for -- learned from an accepted fit, and never less for a held scale (else the fit's own is learned);
        ``down_cam`` and ``camera_height_m``: the ground normal and height from tf for this frame (else the
        mounting's); ``z_range``: the frame's :func:`~depthfm_ros.fusion.alignment.frame_z_range` if known.
        """
        z_range = frame_z_range(z_hw) if z_range is None else z_range
        estimates, reasons = [], []
        for name in self.chain:
            if name == "lidar":
                estimate = self._lidar(t_sec, z_range, lidar_fit, lidar_reason, lidar_check, lidar_calibration)
            elif name == "ground":
                estimate = self._ground(z_hw, std_z_hw, camera, self.ground_down_cam if down_cam is None else down_cam,
                                        camera_height_m or self.camera_height_m)
            else:
                estimate = MetricEstimate("fixed", self.fixed_fit, sigma_scale=self._calibration())
            (estimates if estimate.metric else reasons).append(estimate if estimate.metric else estimate.reason)
        if not estimates:
            return MetricEstimate("", None, reason="; ".join(reasons) or "no metric source configured")
        chosen = estimates[0]
        for other in estimates[1:]:  # sources check each other: disagreement beyond their uncertainties
            gap = _gap(chosen.fit, other.fit, z_range)
            tolerance = max(self.filter.gate_log, self.filter.gate_sigma * math.sqrt(chosen.log_var + other.log_var))
            if gap > tolerance:
                return MetricEstimate("", None, reason=(
                    f"{chosen.source} and {other.source} disagree by {gap:.2f} in log depth (tolerance "
                    f"{tolerance:.2f}): no metres until they agree"), conflict=True)
        return dataclasses.replace(chosen, reason="; ".join([chosen.reason, *reasons]).strip("; "))

    def _calibration(self) -> float:
        return self.sigma_scale if math.isfinite(self.sigma_scale) else 1.0

    def _learn(self, sigma_scale: float) -> None:
        """Move the uncertainty calibration towards this fit's (an exponential average of log sigma_scale)."""
        if not (math.isfinite(sigma_scale) and sigma_scale > 0):
            return
        if not math.isfinite(self.sigma_scale):
            self.sigma_scale = sigma_scale
        else:
            w = self.calibration_weight
            self.sigma_scale = math.exp((1 - w) * math.log(self.sigma_scale) + w * math.log(sigma_scale))

    def _lidar(self, t_sec, z_range, fit, reason, lidar_check, lidar_calibration) -> MetricEstimate:
        if fit is not None:
            accepted, why = self.filter.update(fit, t_sec, z_range)
            if accepted:
                variance = self.filter.variance_at(t_sec)
                self._learn(fit.sigma_scale if lidar_calibration is None else
                            lidar_calibration(self.filter.fit, variance))
                return MetricEstimate("lidar", self.filter.fit, variance, 0.0, sigma_scale=self._calibration())
            return MetricEstimate("", None, reason=f"lidar: {why}; no hold: this frame's own cloud contradicts the "
                                                   "held scale")
        held = self.filter.fit
        age = t_sec - self.filter.t_sec
        if held is None:
            return MetricEstimate("", None, reason=f"lidar: {reason}")
        if not 0 <= age <= self.hold_sec:
            return MetricEstimate("", None, reason=f"lidar: {reason}; the last accepted LiDAR scale is {age:.1f} s "
                                                   f"old (metric_hold_sec {self.hold_sec:g})")
        variance, calibration = self.filter.variance_at(t_sec), self._calibration()
        if lidar_check is not None:
            contradiction = lidar_check(held, self.filter.tolerance(t_sec))
            if contradiction:
                return MetricEstimate("", None, reason=f"lidar: {reason}; not holding the scale: this frame's "
                                                       f"cloud contradicts it ({contradiction})")
        if lidar_calibration is not None:  # the frame's own cloud says how far off the held scale is: never less
            needed = lidar_calibration(held, variance)
            calibration = max(calibration, needed) if math.isfinite(needed) else calibration
        return MetricEstimate("hold", held, variance, age, reason, calibration)

    def _ground(self, z_hw, std_z_hw, camera, down_cam, height_m) -> MetricEstimate:
        if camera is None:
            return MetricEstimate("", None, reason="ground: no camera_info")
        if not height_m or not height_m > 0:
            return MetricEstimate("", None, reason="ground: no camera height (no tf to the ground frame, "
                                                   "camera_height_m 0)")
        try:
            fit = ground_plane_fit(z_hw, camera, height_m, down_cam, std_z_hw=std_z_hw)
        except AlignmentError as exc:
            return MetricEstimate("", None, reason=str(exc))
        return MetricEstimate("ground", fit, fit.rms_log**2,
                              sigma_scale=fit.sigma_scale if math.isfinite(fit.sigma_scale) else 1.0)
