"""Which metric scale a frame gets, and whether it gets one at all (no ROS).

DepthFM's ``z`` is affine in log depth with a per-frame (a, b). A frame is published in metres only with an
accepted (a, b) from one of these sources, chosen by ``source``:

- ``lidar``: this frame's LiDAR fit (:func:`depthfm_ros.fusion.alignment.fit_log_depth`, refused when it cannot be
  trusted), smoothed by :class:`ScaleFilter`; through LiDAR gaps the filter *holds* the last accepted scale for up
  to ``hold_sec`` with a growing uncertainty.
- ``ground``: a flat ground at a known camera height (:func:`ground_plane_fit`), for camera-only robots.
- ``fixed``: a fixed (a, b) (a calibration of one model and camera; the explicit last resort).
- ``auto``: lidar (when configured), then the hold, then ground (when a camera height is given), then fixed (when a
  fixed scale is given); ``none``: never metric.

:class:`MetricScale.update` returns a :class:`MetricEstimate` per frame: the source used and (a, b) with its
log-depth variance, or why there is none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import AlignmentError, InputError
from ..geometry.camera import PinholeCamera
from .alignment import LogDepthFit, check_float_map, fit_log_depth

SOURCES = ("auto", "lidar", "ground", "fixed", "none")


@dataclass(frozen=True)
class MetricEstimate:
    """One frame's scale: ``source`` ('lidar', 'hold', 'ground', 'fixed') and ``fit`` (log d = a·z + b), or
    ``source`` '' and ``fit`` None with ``reason``. ``log_var`` is the variance of the scale in log depth (added to
    the per-pixel uncertainty); ``age_sec`` how old the measurement behind it is (0 for this frame's)."""

    source: str
    fit: LogDepthFit | None
    log_var: float = 0.0
    age_sec: float = 0.0
    reason: str = ""

    @property
    def metric(self) -> bool:
        return self.fit is not None


class ScaleFilter:
    """(a, b) filtered over frames, in log-depth units.

    A scalar Kalman filter on the log-depth offset of the scale: an accepted measurement with variance
    ``rms_log² / num_inliers + floor`` updates it; between measurements its variance grows by
    ``process_log_per_sec²`` per second. A measurement whose predicted log depth over the frame's z range differs
    from the filter's by more than ``gate_log`` (and ``gate_sigma`` combined stds) is *rejected* (one bad frame
    does not move the scale); ``reset_after`` rejections in a row mean the scene changed: the filter restarts
    from the new measurement.
    """

    def __init__(self, gate_log: float = 0.2, gate_sigma: float = 4.0, process_log_per_sec: float = 0.05,
                 floor_log: float = 0.01, reset_after: int = 3):
        self.gate_log, self.gate_sigma, self.reset_after = gate_log, gate_sigma, reset_after
        self.process_var_per_sec, self.floor_var = process_log_per_sec**2, floor_log**2
        self.fit: LogDepthFit | None = None
        self.var = math.inf
        self.t_sec = -math.inf
        self.rejected_in_a_row = 0

    def variance_at(self, t_sec: float) -> float:
        return self.var + self.process_var_per_sec * max(t_sec - self.t_sec, 0.0)

    def update(self, fit: LogDepthFit, t_sec: float, z_range: tuple[float, float]) -> tuple[bool, str]:
        """Fuse ``fit`` measured at ``t_sec`` on a frame whose z spans ``z_range``; (accepted, why not)."""
        r_var = fit.rms_log**2 / max(fit.num_inliers, 1) + self.floor_var
        if self.fit is None or t_sec < self.t_sec:  # first measurement, or time went backwards: start over
            self._reset(fit, t_sec, r_var)
            return True, ""
        p_var = self.variance_at(t_sec)
        gap = max(abs((fit.a - self.fit.a) * z + (fit.b - self.fit.b)) for z in z_range)
        if gap > max(self.gate_log, self.gate_sigma * math.sqrt(p_var + r_var)):
            self.rejected_in_a_row += 1
            if self.rejected_in_a_row >= self.reset_after:
                self._reset(fit, t_sec, r_var)
                return True, ""
            return False, (f"LiDAR scale jumps by {gap:.2f} in log depth from the filtered one "
                           f"({self.rejected_in_a_row} in a row; reset after {self.reset_after})")
        gain = p_var / (p_var + r_var)
        a, b = self.fit.a + gain * (fit.a - self.fit.a), self.fit.b + gain * (fit.b - self.fit.b)
        self.fit = LogDepthFit(a, b, fit.rms_log, fit.num_inliers, fit.num_points)
        self.var, self.t_sec, self.rejected_in_a_row = (1 - gain) * p_var, t_sec, 0
        return True, ""

    def _reset(self, fit: LogDepthFit, t_sec: float, r_var: float) -> None:
        self.fit, self.var, self.t_sec, self.rejected_in_a_row = fit, r_var, t_sec, 0


def ground_normal(pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Unit normal of a flat ground pointing down, in the camera optical frame (x right, y down, z forward), for a
    camera pitched down by ``pitch_deg`` and rolled by ``roll_deg`` from level."""
    pitch, roll = np.radians(pitch_deg), np.radians(roll_deg)
    return np.array([np.sin(roll), np.cos(roll) * np.cos(pitch), np.cos(roll) * np.sin(pitch)])


def ground_plane_fit(z_hw: np.ndarray, camera: PinholeCamera, camera_height_m: float,
                     down_cam: np.ndarray | None = None, *, min_ground_fraction: float = 0.1,
                     consensus_log: float = 0.05) -> LogDepthFit:
    """(a, b) that put a flat ground ``camera_height_m`` below the camera.

    A ground plane with unit normal n (``down_cam``, pointing down in the optical frame: from tf, or
    :func:`ground_normal` of the mounting; default a level camera, (0, 1, 0)) at distance h is seen at z-depth
    d = h / (n · r) along the pixel ray r = ((u - cx)/fx, (v - cy)/fy, 1). So every pixel of the lower image whose
    ray meets the ground has a known log depth, and :func:`fit_log_depth` (consensus with an absolute threshold)
    fits log d = a·z + b to those pixels: the ground agrees, boxes and walls are outliers. The orientation must be
    known: from a flat ground alone, a pitch error trades off against the scale. Raises AlignmentError when the
    ground covers less than ``min_ground_fraction`` of the lower image or the fit is refused.
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
    z = z_hw[v, u].astype(np.float32)
    along = ((u - camera.cx) / camera.fx) * normal[0] + ((v - camera.cy) / camera.fy) * normal[1] + normal[2]
    sparse = np.where(along > 0.02, camera_height_m / np.maximum(along, 1e-6), np.nan).astype(np.float32)
    try:
        return fit_log_depth(z, sparse, min_inlier_fraction=0.0, consensus_log=consensus_log,
                             min_points=max(20, int(min_ground_fraction * z.size)))
    except AlignmentError as exc:
        raise AlignmentError(f"ground plane: no flat ground {camera_height_m:g} m below the camera ({exc})") from exc


class MetricScale:
    """Per-frame choice of the metric scale (see the module docstring); state: the LiDAR :class:`ScaleFilter`.

    ``source``: one of :data:`SOURCES`; ``hold_sec``: how long a LiDAR scale is carried without a new accepted
    fit; ``camera_height_m`` (> 0) enables the ground source, with the ground normal ``ground_down_cam`` (optical
    frame; default a level camera) unless each frame brings one from tf; ``fixed_fit`` (a > 0) the fixed one.
    """

    def __init__(self, source: str = "auto", *, use_lidar: bool = False, hold_sec: float = 1.0,
                 camera_height_m: float = 0.0, ground_down_cam: np.ndarray | None = None,
                 ground_from_tf: bool = False, fixed_fit: LogDepthFit | None = None,
                 scale_filter: ScaleFilter | None = None):
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

    def describe(self) -> str:
        if not self.chain:
            return "no metric source: only relative depth (depthfm/relative_depth, depthfm/relative_uncertainty)"
        height = f"{self.camera_height_m:g} m" if self.camera_height_m > 0 else "the tf height"
        parts = {"lidar": f"LiDAR fit (held up to {self.hold_sec:g} s)",
                 "ground": f"ground plane at {height} below the camera", "fixed": "fixed scale"}
        return "metric depth from " + ", then ".join(parts[name] for name in self.chain)

    def update(self, t_sec: float, z_hw: np.ndarray, *, lidar_fit: LogDepthFit | None = None,
               lidar_reason: str = "no LiDAR cloud for this frame", camera: PinholeCamera | None = None,
               down_cam: np.ndarray | None = None, camera_height_m: float | None = None) -> MetricEstimate:
        """The scale of the frame at ``t_sec`` (seconds, any clock that does not jump) with decoded ``z_hw``;
        ``down_cam`` and ``camera_height_m`` are the ground normal and height from tf for this frame (else the
        mounting's ``ground_down_cam`` and ``camera_height_m``)."""
        reasons = []
        for name in self.chain:
            if name == "lidar":
                estimate = self._lidar(t_sec, z_hw, lidar_fit, lidar_reason)
            elif name == "ground":
                estimate = self._ground(z_hw, camera, self.ground_down_cam if down_cam is None else down_cam,
                                        camera_height_m or self.camera_height_m)
            else:
                estimate = MetricEstimate("fixed", self.fixed_fit)
            if estimate.metric:
                return estimate if not reasons else MetricEstimate(
                    estimate.source, estimate.fit, estimate.log_var, estimate.age_sec, "; ".join(reasons))
            reasons.append(estimate.reason)
        return MetricEstimate("", None, reason="; ".join(reasons) or "no metric source configured")

    def _lidar(self, t_sec, z_hw, fit, reason) -> MetricEstimate:
        if fit is not None:
            z_range = tuple(float(v) for v in np.nanpercentile(z_hw, [2, 98]))
            accepted, why = self.filter.update(fit, t_sec, z_range)
            if accepted:
                return MetricEstimate("lidar", self.filter.fit, self.filter.variance_at(t_sec), 0.0)
            reason = why
        held = self.filter.fit
        age = t_sec - self.filter.t_sec
        if held is not None and 0 <= age <= self.hold_sec:
            return MetricEstimate("hold", held, self.filter.variance_at(t_sec), age, reason)
        if held is not None and age > self.hold_sec:
            reason += f"; the last accepted LiDAR scale is {age:.1f} s old (metric_hold_sec {self.hold_sec:g})"
        return MetricEstimate("", None, reason=f"lidar: {reason}")

    def _ground(self, z_hw, camera, down_cam, height_m) -> MetricEstimate:
        if camera is None:
            return MetricEstimate("", None, reason="ground: no camera_info")
        if not height_m or not height_m > 0:
            return MetricEstimate("", None, reason="ground: no camera height (no tf to the ground frame, "
                                                   "camera_height_m 0)")
        try:
            fit = ground_plane_fit(z_hw, camera, height_m, down_cam)
        except AlignmentError as exc:
            return MetricEstimate("", None, reason=str(exc))
        return MetricEstimate("ground", fit, fit.rms_log**2)
