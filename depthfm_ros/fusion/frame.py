"""One frame's fusion, from a prediction and a LiDAR cloud to one typed :class:`FusedFrame` (no ROS).

    prediction (z, std) + cloud (N, 3) + T_cam_lidar + camera
      -> sparse depth image (geometry.projection.project_points)
      -> log d = a·z + b (fusion.alignment.fit_log_depth) -> depth and its std in metres
      -> completed depth (fusion.completion.complete_depth, or a DepthCompletionFM's)

The node only converts the result to messages (and :func:`depthfm_ros.geometry.projection.points_from_depth` turns
a frame's metric depth into the point cloud the ``points_*`` parameters ask for).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import AlignmentError, DepthFMError
from ..geometry.camera import PinholeCamera
from ..geometry.projection import project_points
from ..pipeline import DepthPrediction
from .alignment import LogDepthFit, fit_log_depth, metric_std
from .completion import complete_depth

#: (rgb_hwc_u8, sparse_depth_hw_m) -> completed depth (H, W) metres, or None to fall back to complete_depth
CompletionFn = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]


@dataclass(frozen=True)
class FusedFrame:
    """A frame aligned to LiDAR, all maps (H, W) float32 at the prediction's size.

    ``depth_hw_m``: exp(a·z + b) of this frame's fit, NaN where not finite (None when refused; what is published
    comes from the filtered scale, :mod:`depthfm_ros.fusion.metric`); ``completed_hw_m``: the fit corrected towards
    the LiDAR; ``lidar_mask_hw``: the LiDAR pixels the
    completion kept (bool, None with a completion model); ``fit``: the alignment (None when refused);
    ``refused``: why there is no metric depth ("" when aligned); ``num_points``: LiDAR pixels in the image;
    ``timings_ms``: projection, fit and completion times.
    """

    depth_hw_m: np.ndarray | None
    completed_hw_m: np.ndarray | None
    lidar_mask_hw: np.ndarray | None
    fit: LogDepthFit | None
    refused: str
    num_points: int
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def aligned(self) -> bool:
        return self.fit is not None


def sparse_depth(points_n3: np.ndarray, camera: PinholeCamera, T_cam_lidar: np.ndarray, width: int, height: int,
                 min_range_m: float = 0.1, max_range_m: float = 0.0) -> np.ndarray:
    """LiDAR points as a sparse depth image ``(height, width)`` of the camera scaled to that size (NaN = none);
    ``max_range_m`` 0 = no limit."""
    return project_points(points_n3, camera, T_cam_lidar, size_wh=(width, height), min_depth_m=min_range_m,
                          max_depth_m=max_range_m if max_range_m > 0 else np.inf)


def check_depth_range(depth_hw_m: np.ndarray, min_range_m: float, max_range_m: float) -> None:
    """AlignmentError when most of a fitted depth map lies outside what the LiDAR can measure: its 10th..90th
    percentiles must fall within [min_range_m / 2, 2 max_range_m] (``max_range_m`` 0: no upper bound)."""
    finite = depth_hw_m[np.isfinite(depth_hw_m)]
    if finite.size == 0:
        raise AlignmentError("the fitted depth is not finite anywhere")
    p10, p90 = (float(v) for v in np.percentile(finite, [10, 90]))
    if p10 < 0.5 * min_range_m or (max_range_m > 0 and p90 > 2.0 * max_range_m):
        raise AlignmentError(f"fitted depths {p10:.3g}..{p90:.3g} m (10th..90th percentile) fall outside the "
                             f"LiDAR's range {min_range_m:g}..{max_range_m or float('inf'):g} m")


def metric_maps(fit: LogDepthFit, z_hw: np.ndarray, std_z_hw: np.ndarray,
                log_var: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Depth and its std in metres for ``fit``: exp(a·z + b) (NaN where not positive finite) and
    depth·sqrt((a·std_z)² + log_var) (``log_var``: the scale's own variance in log depth)."""
    depth_hw_m = fit.depth_m(z_hw)
    return depth_hw_m, metric_std(std_z_hw, depth_hw_m, fit, log_var)


def fuse_frame(prediction: DepthPrediction, points_n3: np.ndarray, camera: PinholeCamera,
               T_cam_lidar: np.ndarray, *, min_range_m: float = 0.1, max_range_m: float = 0.0,
               rgb_hwc_u8: np.ndarray | None = None, completion_fn: CompletionFn | None = None) -> FusedFrame:
    """Align one prediction to one cloud (in the LiDAR frame; ``T_cam_lidar`` maps it to the camera optical frame).

    A refused fit (too few or degenerate points) or a bad cloud gives a frame with ``refused`` set and no metric
    maps; it never raises for bad data.
    """
    t0 = time.perf_counter()
    height, width = prediction.z_hw.shape
    num_points = 0
    try:
        sparse = sparse_depth(points_n3, camera, T_cam_lidar, width, height, min_range_m, max_range_m)
        num_points = int(np.isfinite(sparse).sum())
        t1 = time.perf_counter()
        fit = fit_log_depth(prediction.z_hw, sparse, prediction.std_z_hw)
        depth_hw_m = fit.depth_m(prediction.z_hw)
        check_depth_range(depth_hw_m, min_range_m, max_range_m)
        t2 = time.perf_counter()
        completed, lidar_mask = None, None
        if completion_fn is not None and rgb_hwc_u8 is not None:
            completed = completion_fn(rgb_hwc_u8, sparse)
        if completed is None:
            result = complete_depth(prediction.z_hw, sparse, fit)
            completed, lidar_mask = result.depth_hw_m, result.lidar_mask_hw
        t3 = time.perf_counter()
    except DepthFMError as exc:  # AlignmentError, a cloud that does not project, ...
        return FusedFrame(None, None, None, None, str(exc), num_points,
                          {"fusion": 1e3 * (time.perf_counter() - t0)})
    timings = {"fusion": 1e3 * (t3 - t0), "projection": 1e3 * (t1 - t0), "fit": 1e3 * (t2 - t1),
               "completion": 1e3 * (t3 - t2)}
    return FusedFrame(depth_hw_m, completed.astype(np.float32, copy=False), lidar_mask, fit, "",
                      num_points, timings)
