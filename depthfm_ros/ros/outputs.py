"""The outputs of depthfm_node and their contract (REP-118), one frame at a time.

Every frame: ``depthfm/relative_depth`` (the official min-max of exp(z), [0, 1], 0 near) and
``depthfm/relative_uncertainty`` (ensemble std of z), both 32FC1. Only frames with an accepted metric scale
(:class:`depthfm_ros.fusion.metric.MetricScale`): ``depthfm/depth`` (metres, NaN unknown),
``depthfm/uncertainty`` (metres), ``depthfm/completed_depth`` (metres, frames whose scale is this frame's LiDAR
fit) and ``depthfm/points``. A metre topic never carries anything but metres.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from ..fusion.frame import metric_maps
from ..geometry.projection import points_from_depth
from ..geometry.rectify import Rectifier
from ..pipeline import DepthPrediction
from . import conversions
from .diagnostics import MetricStats, metric_status
from .sync import stamp_seconds

DEPTH_TOPIC = "depthfm/depth"
UNCERTAINTY_TOPIC = "depthfm/uncertainty"
RELATIVE_DEPTH_TOPIC = "depthfm/relative_depth"
RELATIVE_UNCERTAINTY_TOPIC = "depthfm/relative_uncertainty"
CAMERA_INFO_TOPIC = "depthfm/camera_info"
COMPLETED_DEPTH_TOPIC = "depthfm/completed_depth"
POINTS_TOPIC = "depthfm/points"


class FrameOutputs:
    """Publishers of one node and the metric scale state; :meth:`publish` sends one frame."""

    def __init__(self, node, config, qos, lidar, stats, ground_tf=None):
        self.node, self.config, self.lidar, self.stats, self.ground_tf = node, config, lidar, stats, ground_tf
        pub = node.create_publisher
        self.depth = pub(Image, DEPTH_TOPIC, qos)
        self.uncertainty = pub(Image, UNCERTAINTY_TOPIC, qos)
        self.relative_depth = pub(Image, RELATIVE_DEPTH_TOPIC, qos)
        self.relative_uncertainty = pub(Image, RELATIVE_UNCERTAINTY_TOPIC, qos)
        self.camera_info = pub(CameraInfo, CAMERA_INFO_TOPIC, qos)
        self.completed_depth = pub(Image, COMPLETED_DEPTH_TOPIC, qos) if config.use_lidar else None
        self.points = pub(PointCloud2, POINTS_TOPIC, qos) if config.publish_points else None
        self.points_options = config.points_options()
        self.metric = config.metric_scale()
        self.metric_stats = MetricStats(self.metric.describe(), bool(self.metric.chain))
        self.rectifier = Rectifier()

    def status(self, name: str):
        return metric_status(self.metric_stats.snapshot(), name, hardware_id="")

    def publish(self, prediction: DepthPrediction, header, rgb_hwc_u8: np.ndarray, cloud, camera_info) -> None:
        """Every output of one frame, with the input image's stamp and frame_id."""
        throttle, log = self.config.log_throttle_sec, self.node.get_logger()
        height, width = prediction.z_hw.shape
        image = conversions.numpy_to_image
        self.relative_depth.publish(image(prediction.relative_depth_hw, "32FC1", header))
        self.relative_uncertainty.publish(image(prediction.std_z_hw, "32FC1", header))
        camera, camera_error = conversions.output_camera(camera_info, width, height, self.config.image_rectified)
        if camera_info is not None and camera is None:  # an unusable CameraInfo: say so, keep serving
            self.stats.conversion_failed(f"camera_info: {camera_error}")
        if camera is not None and camera.is_distorted:  # a raw image: what follows is rectified (image_pipeline)
            prediction, rgb_hwc_u8, camera = rectified_frame(self.rectifier, prediction, rgb_hwc_u8, camera)
        fused = self.lidar.fuse(prediction, header, cloud, camera, camera_error, rgb_hwc_u8) if self.lidar else None
        down_cam, height_m = self.ground_tf(header) if self.ground_tf else (None, None)
        estimate = self.metric.update(
            stamp_seconds(header), prediction.z_hw,
            lidar_fit=fused.fit if fused is not None else None, camera=camera, down_cam=down_cam,
            camera_height_m=height_m,
            lidar_reason=fused.refused if fused is not None else "no LiDAR cloud for this frame (stale LiDAR)")
        self.metric_stats.frame(estimate)
        depth_m = std_m = None
        if estimate.metric:
            depth_m, std_m = metric_maps(estimate.fit, prediction.z_hw, prediction.std_z_hw, estimate.log_var)
            self.depth.publish(image(depth_m, "32FC1", header))
            self.uncertainty.publish(image(std_m, "32FC1", header))
            if estimate.source == "lidar" and fused is not None and fused.completed_hw_m is not None:
                self.completed_depth.publish(image(fused.completed_hw_m, "32FC1", header))
        elif self.metric.chain:
            log.warning(f"no metric depth for this frame: {estimate.reason}", throttle_duration_sec=throttle)
        if camera is None:
            what = "depthfm/camera_info" + (" or depthfm/points" if self.points else "")
            log.warning(f"not publishing {what}: {camera_error}", throttle_duration_sec=throttle)
            return
        self.camera_info.publish(conversions.output_camera_info(camera_info, camera, header))
        if self.points is not None and depth_m is not None:
            t0 = time.perf_counter()
            points = points_from_depth(depth_m, std_m, camera, self.points_options, rgb_hwc_u8)
            self.points.publish(conversions.xyz_to_pointcloud2(points.xyz, header, points.rgb))
            self.stats.points_published(1e3 * (time.perf_counter() - t0))


def rectified_frame(rectifier: Rectifier, prediction: DepthPrediction, rgb_hwc_u8: np.ndarray, raw_camera):
    """(prediction, rgb, camera) of a raw distorted camera as its rectified camera sees them: z and its std remapped
    (NaN where the rectified view sees past the raw image), so depth, uncertainty, completed depth, the LiDAR
    projection and the points all follow P with D = 0, as depth_image_proc and image_geometry read them. The
    relative topics, published before, keep the raw image's pixels."""
    camera = rectifier.use(raw_camera)
    return (dataclasses.replace(prediction, z_hw=rectifier(prediction.z_hw), std_z_hw=rectifier(prediction.std_z_hw)),
            rectifier(rgb_hwc_u8), camera)
