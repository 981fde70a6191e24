"""One frame's fusion, from a prediction and a LiDAR cloud to one typed :class:`FusedFrame` (no ROS).

    prediction (z, std) + cloud (N, 3) + T_cam_lidar + camera
      -> sparse depth image (geometry.projection.project_points)
      -> log d = a·z + b, accepted only when it explains the scene (fusion.alignment.align_to_lidar)
      -> depth and its std in metres
      -> completed depth (fusion.completion.complete_depth, or a DepthCompletionFM's)

The node only converts the result to messages (and :func:`depthfm_ros.geometry.projection.points_from_depth` turns
a frame's metric depth into the point cloud the ``points_*`` parameters ask for).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import AlignmentError, DepthFMError
from ..geometry.camera import PinholeCamera
from ..geometry.projection import project_points
from ..pipeline import DepthPrediction
from .alignment import FitChecks, LogDepthFit, align_to_lidar, frame_z_range, metric_std
from .completion import complete_depth

#: (rgb_hwc_u8, sparse_depth_hw_m) -> completed depth (H, W) metres, or None to fall back to complete_depth
CompletionFn = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]


@dataclass(frozen=True)
class FusedFrame:
    """A frame aligned to LiDAR, all maps (H, W) float32 at the prediction's size.

    ``fit``: the alignment (None when refused), with its acceptance evidence; ``depth_hw_m``: exp(a·z + b) of this
    frame's fit, NaN where not finite, computed when first read (None when refused; what is published comes from
    the filtered scale, :mod:`depthfm_ros.fusion.metric`); ``completed_hw_m``: the fit corrected towards the LiDAR;
    ``lidar_mask_hw``: the LiDAR pixels the completion kept (bool, None with a completion model); ``sparse_hw_m``:
    the projected cloud (NaN = no point; None when it did not project); ``refused``: why there is no metric depth
    ("" when aligned); ``num_points``: LiDAR pixels in the image; ``timings_ms``: projection, fit and completion
    times.
    """

    completed_hw_m: np.ndarray | None
    lidar_mask_hw: np.ndarray | None
    fit: LogDepthFit | None
    refused: str
    num_points: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    sparse_hw_m: np.ndarray | None = None
    z_hw: np.ndarray | None = field(default=None, repr=False)

    @property
    def aligned(self) -> bool:
        return self.fit is not None

    @functools.cached_property
    def depth_hw_m(self) -> np.ndarray | None:
        return self.fit.depth_m(self.z_hw) if self.fit is not None and self.z_hw is not None else None


def sparse_depth(points_n3: np.ndarray, camera: PinholeCamera, T_cam_lidar: np.ndarray, width: int, height: int,
                 min_range_m: float = 0.1, max_range_m: float = 0.0) -> np.ndarray:
    """LiDAR points as a sparse depth image ``(height, width)`` of the camera scaled to that size (NaN = none);
    ``max_range_m`` 0 = no limit."""
    return project_points(points_n3, camera, T_cam_lidar, size_wh=(width, height), min_depth_m=min_range_m,
                          max_depth_m=max_range_m if max_range_m > 0 else np.inf)


def check_depth_range(fit: LogDepthFit, z_hw: np.ndarray, min_range_m: float, max_range_m: float) -> None:
    """AlignmentError when most of the fitted depth lies outside what the LiDAR can measure: its 10th..90th
    percentiles (of exp(a·z + b), monotonic in z: from the frame's z percentiles) must fall within
    [min_range_m / 2, 2 max_range_m] (``max_range_m`` 0: no upper bound)."""
    z10, z90 = frame_z_range(z_hw, (10.0, 90.0))
    with np.errstate(over="ignore"):
        p10, p90 = sorted(float(np.exp(fit.a * z + fit.b)) for z in (z10, z90))
    if not np.isfinite(p10) or not p10 > 0:
        raise AlignmentError(f"the fitted depth is not finite ({p10:.3g}..{p90:.3g} m, 10th..90th percentile)")
    if p10 < 0.5 * min_range_m or (max_range_m > 0 and p90 > 2.0 * max_range_m):
        raise AlignmentError(f"fitted depths {p10:.3g}..{p90:.3g} m (10th..90th percentile) fall outside the "
                             f"LiDAR's range {min_range_m:g}..{max_range_m or float('inf'):g} m")


def metric_maps(fit: LogDepthFit, z_hw: np.ndarray, std_z_hw: np.ndarray, log_var: float = 0.0,
                sigma_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Depth and its std in metres for ``fit``: exp(a·z + b) (NaN where not positive finite) and
    :func:`~depthfm_ros.fusion.alignment.metric_std` (``log_var``: the scale's own variance in log depth;
    ``sigma_scale``: the calibration of the model's uncertainty, :class:`~depthfm_ros.fusion.metric.MetricEstimate`)."""
    depth_hw_m = fit.depth_m(z_hw)
    return depth_hw_m, metric_std(std_z_hw, depth_hw_m, fit, log_var, sigma_scale)


def fuse_frame(prediction: DepthPrediction, points_n3: np.ndarray, camera: PinholeCamera,
               T_cam_lidar: np.ndarray, *, min_range_m: float = 0.1, max_range_m: float = 0.0,
               rgb_hwc_u8: np.ndarray | None = None, completion_fn: CompletionFn | None = None,
               checks: FitChecks = FitChecks(), complete: bool = True) -> FusedFrame:
    """Align one prediction to one cloud (in the LiDAR frame; ``T_cam_lidar`` maps it to the camera optical frame).

    The fit must explain the scene (``checks``, :func:`depthfm_ros.fusion.alignment.align_to_lidar`) and put most
    of the frame within the LiDAR's range. A refused fit (too few, degenerate or contradicting points) or a bad
    cloud gives a frame with ``refused`` set and no metric maps; it never raises for bad data. ``complete``: also
    compute the completed depth (the node skips it for a frame whose scale it does not use).
    """
    t0 = time.perf_counter()
    height, width = prediction.z_hw.shape
    num_points, sparse = 0, None
    try:
        sparse = sparse_depth(points_n3, camera, T_cam_lidar, width, height, min_range_m, max_range_m)
        t1 = time.perf_counter()
        fit = align_to_lidar(prediction.z_hw, sparse, prediction.std_z_hw, checks)
        num_points = fit.num_points
        check_depth_range(fit, prediction.z_hw, min_range_m, max_range_m)
        t2 = time.perf_counter()
        completed, lidar_mask = None, None
        if complete and completion_fn is not None and rgb_hwc_u8 is not None:
            completed = completion_fn(rgb_hwc_u8, sparse)
        if complete and completed is None:
            result = complete_depth(prediction.z_hw, sparse, fit)
            completed, lidar_mask = result.depth_hw_m, result.lidar_mask_hw
        t3 = time.perf_counter()
    except DepthFMError as exc:  # AlignmentError, a cloud that does not project, ...
        if sparse is not None and not num_points:
            num_points = int(np.count_nonzero(sparse > 0))
        return FusedFrame(None, None, None, str(exc), num_points, {"fusion": 1e3 * (time.perf_counter() - t0)},
                          sparse, prediction.z_hw)
    timings = {"fusion": 1e3 * (t3 - t0), "projection": 1e3 * (t1 - t0), "fit": 1e3 * (t2 - t1),
               "completion": 1e3 * (t3 - t2)}
    if completed is not None:
        completed = completed.astype(np.float32, copy=False)
    return FusedFrame(completed, lidar_mask, fit, "", num_points, timings, sparse, prediction.z_hw)
