"""Is the published metric uncertainty calibrated? Held-out LiDAR residuals on synthetic sequences (no ROS).

The node publishes ``depthfm/uncertainty`` = depth·sqrt(s²·((a·std_z)² + floor²) + var_scale), with ``s`` learned
online from the residuals of the LiDAR fits (:class:`depthfm_ros.fusion.metric.MetricScale`). A mapper can take it
as a 1-sigma error in metres when about 68 % of independent LiDAR measurements fall within it.
:func:`held_out_coverage` checks exactly that: a camera moves through a synthetic scene; each frame's LiDAR pixels are
split at random into the points the node fits (80 %) and held-out points (20 %); the frame goes through the node's
metric path (:func:`~depthfm_ros.fusion.frame.fuse_frame`, :class:`~depthfm_ros.fusion.metric.MetricScale`,
:func:`~depthfm_ros.fusion.frame.metric_maps`) on the fitted points, and the share of held-out points with
|LiDAR depth - published depth| <= published sigma is counted.
"""

from __future__ import annotations

import numpy as np

from ..errors import AlignmentError
from ..fusion.alignment import align_to_lidar, cloud_contradicts, frame_z_range, residual_scale
from ..fusion.frame import check_depth_range, metric_maps
from ..fusion.metric import MetricScale
from ..geometry.projection import project_points
from ..sim import synthetic

PERFECT = {"distortion_log": 0.0, "object_offset_log": 0.0, "curvature_log": 0.0}


def held_out_coverage(seed: int = 0, pattern: str = "vlp16", error_model: str = "smooth", *, num_frames: int = 20,
                      width: int = 320, height: int = 240, rate_hz: float = 10.0, held_out: float = 0.2,
                      outlier_fraction: float = 0.02, calibration_weight: float = 1.0) -> dict[str, float]:
    """Share of held-out LiDAR depths within one published sigma over a moving-camera sequence (``error_model``
    one of :data:`depthfm_ros.sim.synthetic.ERROR_MODELS` or 'perfect'); also the frames in metres and the median
    published relative sigma."""
    rng = np.random.default_rng(seed)
    spec = synthetic.random_scene_spec(rng)
    camera = synthetic.default_camera(width, height)
    scale = MetricScale("lidar", use_lidar=True, calibration_weight=calibration_weight)
    model = PERFECT if error_model == "perfect" else synthetic.ERROR_MODELS[error_model]
    within, total, metric_frames, relative_sigma = 0, 0, 0, []
    for k in range(num_frames):
        scene = synthetic.render_scene(synthetic.moved_scene(spec, synthetic.camera_path(k) * 0.3), camera,
                                       np.random.default_rng([seed, k]))
        pred = synthetic.simulate_prediction(scene, np.random.default_rng([seed, 1000 + k]),
                                             a=2.2 + 0.3 * np.sin(k / 17.0), **model)  # the model's scale drifts
        scan = synthetic.simulate_lidar(scene, pattern, np.random.default_rng([seed, 2000 + k]),
                                        outlier_fraction=outlier_fraction)
        sparse = project_points(scan.points_n3, camera, scan.T_cam_lidar)
        lidar = np.flatnonzero(np.isfinite(sparse.ravel()))
        test = np.random.default_rng([seed, 3000 + k]).random(len(lidar)) < held_out
        fitted = sparse.copy()
        fitted.ravel()[lidar[test]] = np.nan
        z_range = frame_z_range(pred.z_hw)
        try:
            fit = align_to_lidar(pred.z_hw, fitted, pred.std_z_hw, z_range=z_range)
            check_depth_range(fit, pred.z_hw, 0.1, 100.0)
        except AlignmentError:
            fit = None
        estimate = scale.update(  # as the node does (ros/outputs.py publish_metric)
            k / rate_hz, pred.z_hw, lidar_fit=fit, z_range=z_range,
            lidar_check=lambda held, tolerance: cloud_contradicts(held, pred.z_hw, fitted, pred.std_z_hw,
                                                                 tolerance_log=tolerance),
            lidar_calibration=lambda published, var: residual_scale(published, pred.z_hw, fitted, pred.std_z_hw, var))
        if not estimate.metric:
            continue
        metric_frames += 1
        depth, sigma = metric_maps(estimate.fit, pred.z_hw, pred.std_z_hw, estimate.log_var, estimate.sigma_scale)
        pixels = lidar[test]
        error = np.abs(sparse.ravel()[pixels] - depth.ravel()[pixels])
        within += int(np.count_nonzero(error <= sigma.ravel()[pixels]))
        total += len(pixels)
        relative_sigma.append(float(np.median(sigma.ravel()[pixels] / depth.ravel()[pixels])))

    return {"coverage": within / total if total else float("nan"), "held_out_points": total,
            "metric_frames": metric_frames / num_frames,
            "relative_sigma": float(np.median(relative_sigma)) if relative_sigma else float("nan")}
