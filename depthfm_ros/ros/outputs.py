"""The outputs of depthfm_node and their contract (REP-118), one frame at a time.

Every frame: ``depthfm/relative_depth`` (the official min-max of exp(z), [0, 1], 0 near) and
``depthfm/relative_uncertainty`` (ensemble std of z), both 32FC1, as soon as the model has run. Only frames with an
accepted metric scale (:class:`depthfm_ros.fusion.metric.MetricScale`): ``depthfm/depth`` (metres, NaN unknown),
``depthfm/uncertainty`` (metres, calibrated: about 68 % of LiDAR residuals within one sigma),
``depthfm/completed_depth`` (metres, frames whose scale is this frame's LiDAR fit) and ``depthfm/points``. A metre
topic never carries anything but metres.

The node publishes a frame in two steps on two threads: :meth:`FrameOutputs.publish_relative` right after the
model (the camera never waits for the LiDAR), :meth:`FrameOutputs.publish_metric` once the frame's cloud is bound
(or known not to come).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from ..errors import InputError
from ..fusion.alignment import frame_z_range
from ..fusion.frame import metric_maps
from ..fusion.metric import MetricEstimate
from ..geometry.camera import PinholeCamera
from ..geometry.projection import points_from_depth
from ..geometry.rectify import Rectifier
from ..pipeline import DepthPrediction
from . import conversions
from .diagnostics import input_stale, metric_status
from .stats import MetricStats
from .sync import stamp_seconds

DEPTH_TOPIC = "depthfm/depth"
UNCERTAINTY_TOPIC = "depthfm/uncertainty"
RELATIVE_DEPTH_TOPIC = "depthfm/relative_depth"
RELATIVE_UNCERTAINTY_TOPIC = "depthfm/relative_uncertainty"
CAMERA_INFO_TOPIC = "depthfm/camera_info"
COMPLETED_DEPTH_TOPIC = "depthfm/completed_depth"
POINTS_TOPIC = "depthfm/points"


@dataclass(frozen=True)
class PendingFrame:
    """A frame whose relative outputs are out and whose metric outputs are to come: the prediction, the input
    header and image, the output camera (None, with ``camera_error``, without a usable camera_info) and when the
    image arrived (``time.perf_counter``)."""

    prediction: DepthPrediction
    header: object
    rgb_hwc_u8: np.ndarray
    camera: PinholeCamera | None
    camera_error: str
    t_received: float


def output_topic(topic: str, camera: str = "") -> str:
    """The topic of output ``topic`` (one of the *_TOPIC names; or a text naming them) for ``camera``:
    depthfm/<camera>/<output> for a named camera of a node serving several, the name itself for a single camera."""
    return topic.replace("depthfm/", f"depthfm/{camera}/") if camera else topic


class FrameOutputs:
    """Publishers of one camera and its metric scale state; :meth:`publish_relative` and :meth:`publish_metric`
    send one frame. ``camera``: the camera's name in a node serving several ("" for a single camera), which puts its
    topics under depthfm/<camera>/; ``logger``: where its warnings go (default the node's)."""

    def __init__(self, node, config, qos, lidar, stats, ground_tf=None, input_refused=None, camera: str = "",
                 logger=None):
        self.node, self.config, self.lidar, self.stats, self.ground_tf = node, config, lidar, stats, ground_tf
        self.logger = logger or node.get_logger()
        self._input_refused = input_refused or (lambda what, exc: stats.input_refused(what, str(exc)))

        def pub(msg_type, topic):
            return node.create_publisher(msg_type, output_topic(topic, camera), qos)

        self.depth = pub(Image, DEPTH_TOPIC)
        self.uncertainty = pub(Image, UNCERTAINTY_TOPIC)
        self.relative_depth = pub(Image, RELATIVE_DEPTH_TOPIC)
        self.relative_uncertainty = pub(Image, RELATIVE_UNCERTAINTY_TOPIC)
        self.camera_info = pub(CameraInfo, CAMERA_INFO_TOPIC)
        self.completed_depth = pub(Image, COMPLETED_DEPTH_TOPIC) if config.use_lidar else None
        self.points = pub(PointCloud2, POINTS_TOPIC) if config.publish_points else None
        self.points_options = config.points_options()
        self.metric = config.metric_scale()
        self.metric_stats = MetricStats(self.metric.describe(), bool(self.metric.chain))
        self.rectifier = Rectifier()
        self._refused_camera_info = None  # the last CameraInfo refused (each counted once)

    def status(self, name: str, frame_stats=None):
        """The metric scale's status; with ``frame_stats`` (a diagnostics.StatsSnapshot) it goes stale with the
        input."""
        stale = input_stale(frame_stats) if frame_stats is not None else None
        return metric_status(self.metric_stats.snapshot(), name, hardware_id="", stale=stale)

    def publish_relative(self, prediction: DepthPrediction, header, rgb_hwc_u8: np.ndarray,
                         camera_info) -> PendingFrame:
        """The outputs every frame gets (relative depth and uncertainty, camera_info); returns the frame for
        :meth:`publish_metric`."""
        t0 = time.perf_counter()
        height, width = prediction.z_hw.shape
        image = conversions.numpy_to_image
        self.relative_depth.publish(image(prediction.relative_depth_hw, "32FC1", header))
        self.relative_uncertainty.publish(image(prediction.std_z_hw, "32FC1", header))
        camera, camera_error = conversions.output_camera(camera_info, width, height, self.config.image_rectified)
        if camera_info is not None and camera is None and camera_info is not self._refused_camera_info:
            self._refused_camera_info = camera_info  # an unusable CameraInfo: counted once, the frame goes on
            self._input_refused("camera_info", InputError(camera_error))
        if camera is not None and camera.is_distorted:  # a raw image: what follows is rectified (image_pipeline)
            prediction, rgb_hwc_u8, camera = rectified_frame(self.rectifier, prediction, rgb_hwc_u8, camera)
        if camera is None:
            what = "depthfm/camera_info" + (" or depthfm/points" if self.points else "")
            self.logger.warning(f"not publishing {what}: {camera_error}",
                                           throttle_duration_sec=self.config.log_throttle_sec)
        else:
            self.camera_info.publish(conversions.output_camera_info(camera_info, camera, header))
        return PendingFrame(prediction, header, rgb_hwc_u8, camera, camera_error, t0)

    def publish_metric(self, frame: PendingFrame, cloud=None, complete: bool = True) -> MetricEstimate:
        """The metric outputs of ``frame`` with its LiDAR ``cloud`` (None: none within the slop): its scale from
        the configured sources (:class:`~depthfm_ros.fusion.metric.MetricScale`), then depth, uncertainty, completed
        depth (``complete`` and this frame's own LiDAR scale) and points. Returns the frame's estimate."""
        prediction, header, camera = frame.prediction, frame.header, frame.camera
        z_range = frame_z_range(prediction.z_hw)
        fused, lidar_check, lidar_calibration = None, None, None
        if self.lidar is not None and cloud is not None:
            fused = self.lidar.fuse(prediction, header, cloud, camera, frame.camera_error, frame.rgb_hwc_u8,
                                    complete=complete)
            lidar_check, lidar_calibration = self.lidar.cloud_checks(fused, prediction)
        down_cam, height_m = self.ground_tf(header) if self.ground_tf else (None, None)
        estimate = self.metric.update(
            stamp_seconds(header), prediction.z_hw, lidar_fit=fused.fit if fused is not None else None,
            lidar_reason=fused.refused if fused is not None else "no LiDAR cloud within lidar_slop_sec of this frame",
            lidar_check=lidar_check, lidar_calibration=lidar_calibration, camera=camera, down_cam=down_cam,
            camera_height_m=height_m, std_z_hw=prediction.std_z_hw, z_range=z_range)
        self.metric_stats.frame(estimate)
        if not estimate.metric:
            if self.metric.chain:
                self.logger.warning(f"no metric depth for this frame: {estimate.reason}",
                                               throttle_duration_sec=self.config.log_throttle_sec)
            return estimate
        image = conversions.numpy_to_image
        depth_m, std_m = metric_maps(estimate.fit, prediction.z_hw, prediction.std_z_hw, estimate.log_var,
                                     estimate.sigma_scale)
        self.depth.publish(image(depth_m, "32FC1", header))
        self.uncertainty.publish(image(std_m, "32FC1", header))
        if estimate.source == "lidar" and fused is not None and fused.completed_hw_m is not None:
            self.completed_depth.publish(image(fused.completed_hw_m, "32FC1", header))
        if self.points is not None and camera is not None:
            t0 = time.perf_counter()
            points = points_from_depth(depth_m, std_m, camera, self.points_options, frame.rgb_hwc_u8)
            self.points.publish(conversions.xyz_to_pointcloud2(points.xyz, header, points.rgb))
            self.stats.points_published(1e3 * (time.perf_counter() - t0))
        return estimate


def rectified_frame(rectifier: Rectifier, prediction: DepthPrediction, rgb_hwc_u8: np.ndarray, raw_camera):
    """(prediction, rgb, camera) of a raw distorted camera as its rectified camera sees them: z and its std remapped
    (NaN where the rectified view sees past the raw image), so depth, uncertainty, completed depth, the LiDAR
    projection and the points all follow P with D = 0, as depth_image_proc and image_geometry read them. The
    relative topics, published before, keep the raw image's pixels."""
    camera = rectifier.use(raw_camera)
    return (dataclasses.replace(prediction, z_hw=rectifier(prediction.z_hw), std_z_hw=rectifier(prediction.std_z_hw)),
            rectifier(rgb_hwc_u8), camera)
