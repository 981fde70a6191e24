"""depthfm_node: camera images in, DepthFM depth, uncertainty and matching camera_info out; optionally aligned to
LiDAR (metres) and as a point cloud.

Topics (relative, so a namespace moves them all):

- in  ``image`` (sensor_msgs/Image; ``<image>/compressed`` sensor_msgs/CompressedImage with
  ``image_transport: compressed``), ``camera_info`` (sensor_msgs/CameraInfo), ``lidar`` (sensor_msgs/PointCloud2,
  with ``use_lidar``)
- out ``depthfm/depth`` (32FC1; relative, or metres when LiDAR-aligned), ``depthfm/uncertainty`` (32FC1; std of z,
  or metres when aligned), ``depthfm/camera_info`` (intrinsics at the output size), ``depthfm/completed_depth``
  (32FC1 metres, with ``use_lidar``), ``depthfm/points`` (PointCloud2, with ``publish_points``), ``/diagnostics``

Inference runs on a worker thread. The subscription keeps only the newest frame (with ``use_lidar``: the newest
synchronized image + cloud pair, or the newest image while the LiDAR is stale, i.e. no cloud for
``lidar_timeout_sec``): one replaced before the worker took it is dropped and counted, so latency stays within one
inference. A bad message is logged (throttled) and counted; a refused LiDAR fit or a stale LiDAR publishes
relative depth and says why in /diagnostics; the node keeps serving.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import replace

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from .. import backends
from ..backends import Backend
from ..camera import PinholeCamera
from ..errors import DepthFMError
from ..fusion import LogDepthFit, metric_std
from ..pipeline import DepthFMPipeline, DepthPrediction
from ..pointcloud import combined_mask, depth_to_points
from . import conversions
from .diagnostics import AlignmentStats, FrameStats, alignment_status, diagnostic_array, diagnostic_status
from .lidar import (AlignedFrame, CloudImageSync, LidarExtrinsic, align_frame, complete_frame,
                    sparse_depth)
from .params import NodeConfig, ParameterError, declare_and_read

NODE_NAME = "depthfm"
DEPTH_TOPIC = "depthfm/depth"
UNCERTAINTY_TOPIC = "depthfm/uncertainty"
CAMERA_INFO_TOPIC = "depthfm/camera_info"
COMPLETED_DEPTH_TOPIC = "depthfm/completed_depth"
POINTS_TOPIC = "depthfm/points"


def qos_profile(name: str) -> QoSProfile:
    """'sensor_data' (best effort, keep last 5) or 'reliable' (keep last 5)."""
    if name == "sensor_data":
        return qos_profile_sensor_data
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)


def load_backend(config: NodeConfig) -> Backend:
    """The engine the parameters ask for (the loader the command-line tools use too)."""
    return backends.load_backend(config.backend, checkpoint=config.checkpoint or None, vae=config.vae or None,
                                 engine=config.engine or None, tiny_model=config.model == "tiny",
                                 vae_kind=config.vae_kind, tiny_vae=config.tiny_vae or None,
                                 num_steps=config.num_steps, dtype=config.dtype,
                                 ensemble_size=config.ensemble_size, seed=max(config.seed, 0))


def apply_torch_threads(num_threads: int) -> None:
    """torch.set_num_threads(num_threads) unless 0 (keep torch's default)."""
    if num_threads > 0:
        import torch

        torch.set_num_threads(num_threads)


def load_completion_model(folder: str):
    """The DepthCompletionFM of ``folder`` on the GPU when there is one."""
    import torch

    from ..completion import DepthCompletionFM

    model = DepthCompletionFM.from_pretrained(folder)
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval()


class DepthFMNode(Node):
    """ROS 2 wrapper around :class:`DepthFMPipeline`.

    Args:
        backend: an engine to use instead of the one the parameters describe (tests, demos, custom engines).
        **node_kwargs: passed to ``rclpy.node.Node`` (``context``, ``namespace``, ``parameter_overrides``, ...).

    Raises:
        ParameterError: a parameter is invalid; the message names it.
    """

    def __init__(self, *, backend: Backend | None = None, **node_kwargs):
        super().__init__(node_kwargs.pop("node_name", NODE_NAME), **node_kwargs)
        self.config = config = declare_and_read(self)
        apply_torch_threads(config.torch_threads)
        self.backend = backend if backend is not None else load_backend(config)
        self.pipeline = DepthFMPipeline(self.backend, config.processing_resolution, config.ensemble_size,
                                        seed=None if config.seed < 0 else config.seed)
        self.completion_model = load_completion_model(config.completion_checkpoint) \
            if config.use_lidar and config.completion_checkpoint else None
        self.stats = FrameStats()
        self.alignment = AlignmentStats(config.lidar_timeout_sec if config.use_lidar else 0.0)
        self._lidar_stale = False  # executor thread only: for the log lines when the LiDAR goes and comes back
        self._camera_info: CameraInfo | None = None
        # newest work item: an image, or (image, cloud) with use_lidar; and when it arrived
        self._newest: tuple[Image | CompressedImage | tuple, float] | None = None
        self._wake = threading.Condition()
        self._running = True

        out_qos = qos_profile(config.output_qos)
        self.depth_pub = self.create_publisher(Image, DEPTH_TOPIC, out_qos)
        self.uncertainty_pub = self.create_publisher(Image, UNCERTAINTY_TOPIC, out_qos)
        self.camera_info_pub = self.create_publisher(CameraInfo, CAMERA_INFO_TOPIC, out_qos)
        self.completed_depth_pub = self.create_publisher(Image, COMPLETED_DEPTH_TOPIC, out_qos) \
            if config.use_lidar else None
        self.points_pub = self.create_publisher(PointCloud2, POINTS_TOPIC, out_qos) if config.publish_points else None
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        in_qos = qos_profile(config.input_qos)
        if config.image_transport == "compressed":
            image_type, image_topic = CompressedImage, self.resolve_topic_name("image") + "/compressed"
        else:
            image_type, image_topic = Image, "image"
        self.create_subscription(image_type, image_topic, self._on_image, in_qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, in_qos)
        self.sync = self.extrinsic = None
        if config.use_lidar:
            self.extrinsic = LidarExtrinsic(self, config.lidar_to_camera_xyz, config.lidar_to_camera_quat_xyzw,
                                            config.lidar_tf_timeout_sec)
            self.sync = CloudImageSync(config.lidar_slop_sec, config.lidar_queue_size, self._on_pair,
                                       self.alignment.message_unsynchronized)
            self.create_subscription(PointCloud2, "lidar", self._on_cloud, in_qos)
        self.create_timer(config.diagnostics_period_sec, self._publish_diagnostics)

        self._worker = threading.Thread(target=self._work, name="depthfm-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"DepthFM on {self.resolve_topic_name(image_topic)} ({config.image_transport}) with "
            f"{self.backend.describe()}, ensemble {config.ensemble_size}, processing resolution "
            f"{config.processing_resolution or 'native'} -> {self.resolve_topic_name(DEPTH_TOPIC)}")
        if config.use_lidar:
            timeout = config.lidar_timeout_sec
            self.get_logger().info(
                f"LiDAR alignment with {self.resolve_topic_name('lidar')} (slop {config.lidar_slop_sec} s, "
                + (f"images alone after {timeout} s without a cloud, " if timeout else "strict pairing, ") +
                f"{self.sync.implementation}; extrinsic from {'tf2, else ' if self.extrinsic.buffer else ''}"
                f"parameters; completed depth by "
                f"{'DepthCompletionFM' if self.completion_model is not None else 'log-residual interpolation'})")

    # -- executor thread ----------------------------------------------------------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.stats.frame_received()
        if self.sync is None:
            self._hand_over(msg)
        elif self.alignment.is_stale():  # not given to the sync: a returning cloud must not publish it twice
            if not self._lidar_stale:
                self._lidar_stale = True
                self.get_logger().warning(f"no LiDAR cloud for over {self.config.lidar_timeout_sec} s: publishing "
                                          "depth without LiDAR (relative) until clouds return")
            self._hand_over(msg)
        else:
            try:
                self.sync.add_image(msg)
            except Exception as exc:  # e.g. a negative stamp: never out of an executor callback
                self._input_refused("image", exc)

    def _on_cloud(self, msg: PointCloud2) -> None:
        self.alignment.cloud_received()
        if self._lidar_stale:
            self._lidar_stale = False
            self.get_logger().info("LiDAR clouds are back: pairing images with clouds again")
        try:
            self.sync.add_cloud(msg)
        except Exception as exc:
            self._input_refused("cloud", exc)

    def _input_refused(self, what: str, exc: Exception) -> None:
        """Count a bad input message and log it (throttled); callable from the executor and the worker."""
        self.stats.conversion_failed(str(exc))
        self.get_logger().warning(f"dropping bad {what} message: {exc} ({self.stats.conversion_errors} so far)",
                                  throttle_duration_sec=self.config.log_throttle_sec)

    def _on_pair(self, image: Image | CompressedImage, cloud: PointCloud2) -> None:
        self.alignment.pair_matched()
        self._hand_over((image, cloud))

    def _hand_over(self, item) -> None:
        """Make ``item`` the worker's next frame; a frame it replaces is dropped and counted."""
        with self._wake:
            if self._newest is not None:
                self.stats.frame_dropped()
            self._newest = (item, time.perf_counter())
            self._wake.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _publish_diagnostics(self) -> None:
        name = self.get_fully_qualified_name()
        statuses = [diagnostic_status(self.stats.snapshot(), f"{name}: depth",
                                      hardware_id=self.backend.describe(), backend=self.backend.name)]
        if self.config.use_lidar:
            statuses.append(alignment_status(self.alignment.snapshot(), f"{name}: lidar alignment",
                                             hardware_id=self.resolve_topic_name("lidar")))
        self.diagnostics_pub.publish(diagnostic_array(statuses, self.get_clock().now().to_msg()))

    # -- inference worker ---------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._wake:
                while self._newest is None and self._running:
                    self._wake.wait()
                if not self._running:
                    return
                item, t_received = self._newest
                self._newest = None
            msg, cloud = item if isinstance(item, tuple) else (item, None)
            self._process(msg, t_received, cloud)

    def _process(self, msg: Image | CompressedImage, t_received: float, cloud: PointCloud2 | None = None) -> None:
        log = self.get_logger()
        throttle = self.config.log_throttle_sec
        try:
            if isinstance(msg, CompressedImage):
                rgb_hwc_u8 = conversions.compressed_image_to_rgb(msg)
            else:
                rgb_hwc_u8 = conversions.image_to_rgb(msg)
        except Exception as exc:  # a malformed message must never stop the node
            self._input_refused("image", exc)
            return
        try:
            t0 = time.perf_counter()
            prediction = self.pipeline(rgb_hwc_u8)
            inference_ms = 1e3 * (time.perf_counter() - t0)
            if not self._running:
                return
            self.publish(prediction, msg.header, rgb_hwc_u8, cloud)
        except Exception as exc:  # keep serving; diagnostics reports the error
            self.stats.inference_failed(f"{type(exc).__name__}: {exc}")
            log.error(f"inference failed: {exc} ({self.stats.inference_errors} so far)",
                      throttle_duration_sec=throttle)
            return
        self.stats.frame_processed(1e3 * (time.perf_counter() - t_received), inference_ms)

    def publish(self, prediction: DepthPrediction, header, rgb_hwc_u8: np.ndarray | None = None,
                cloud: PointCloud2 | None = None) -> None:
        """Publish every output of one frame with the input image's stamp and frame_id.

        With a ``cloud`` (use_lidar) the frame is aligned to it: depth and uncertainty in metres plus the completed
        depth; when alignment is refused they stay relative and /diagnostics says why. With use_lidar but no cloud
        (the LiDAR is stale) the frame goes out as without LiDAR and is counted as unaligned.
        """
        throttle = self.config.log_throttle_sec
        height, width = prediction.z.shape
        info = self._camera_info  # one camera_info for the whole frame, though the executor may replace it
        camera, camera_error = self.output_camera(info, width, height)
        aligned = None
        if cloud is not None:
            aligned = self.align(prediction, header, cloud, camera, camera_error, rgb_hwc_u8)
        elif self.config.use_lidar:
            self.alignment.frame_unaligned()
        if aligned is not None:
            depth_hw, std_hw = aligned.depth_hw_m, aligned.std_hw_m
        else:
            depth_hw, std_hw = prediction.depth.astype(np.float32), prediction.std.astype(np.float32)
        self.depth_pub.publish(conversions.numpy_to_image(depth_hw, "32FC1", header))
        self.uncertainty_pub.publish(conversions.numpy_to_image(std_hw, "32FC1", header))
        if aligned is not None:
            self.completed_depth_pub.publish(conversions.numpy_to_image(aligned.completed_hw_m, "32FC1", header))
        if info is None:
            self.get_logger().warning("no camera_info received yet: not publishing depthfm/camera_info"
                                      + (" or depthfm/points" if self.points_pub else ""),
                                      throttle_duration_sec=throttle)
            return
        if camera is None:  # e.g. an uncalibrated CameraInfo; depth is out already
            self.stats.conversion_failed(f"camera_info: {camera_error}")
            self.get_logger().warning(f"cannot publish depthfm/camera_info: {camera_error}",
                                      throttle_duration_sec=throttle)
            return
        self.camera_info_pub.publish(self.output_camera_info(info, camera, header))
        if self.points_pub is not None:
            t0 = time.perf_counter()
            if self.publish_points(prediction, header, camera, aligned, rgb_hwc_u8):
                self.stats.points_published(1e3 * (time.perf_counter() - t0))

    @staticmethod
    def output_camera(info: CameraInfo | None, width: int, height: int) -> tuple[PinholeCamera | None, str]:
        """``info``'s intrinsics at ``width`` x ``height``, or (None, why not)."""
        if info is None:
            return None, "no camera_info received yet"
        try:
            camera = conversions.camera_info_to_camera(info)
        except DepthFMError as exc:
            return None, str(exc)
        return (camera if (camera.width, camera.height) == (width, height) else camera.scaled(width, height)), ""

    def align(self, prediction: DepthPrediction, header, cloud: PointCloud2, camera: PinholeCamera | None,
              camera_error: str, rgb_hwc_u8: np.ndarray | None) -> AlignedFrame | None:
        """This frame in metres from ``cloud``, or None (reason in diagnostics and a throttled warning)."""
        config, t0 = self.config, time.perf_counter()
        source, num_points = "", 0
        try:
            if camera is None:
                raise DepthFMError(f"cannot project the cloud: {camera_error}")
            T_cam_lidar, source, tf_error = self.extrinsic.lookup(cloud.header.frame_id, header.frame_id,
                                                                  header.stamp)
            if tf_error:
                self.get_logger().warning(f"{tf_error}; using lidar_to_camera_xyz/_quat_xyzw",
                                          throttle_duration_sec=config.log_throttle_sec)
            height, width = prediction.z.shape
            sparse = sparse_depth(conversions.pointcloud2_to_xyz(cloud), camera, T_cam_lidar, width, height,
                                  config.lidar_min_range, config.lidar_max_range)
            num_points = int(np.isfinite(sparse).sum())
            t_fit = time.perf_counter()
            aligned = align_frame(prediction.z, prediction.std, sparse, complete=False)
            t_completion = time.perf_counter()
            aligned = self._model_completion(aligned, prediction.z, rgb_hwc_u8, sparse) \
                if self.completion_model is not None else complete_frame(aligned, prediction.z, sparse)
            t_end = time.perf_counter()
        except Exception as exc:  # AlignmentError, a bad cloud, ...: publish relative and say why
            reason = str(exc) if isinstance(exc, DepthFMError) else f"{type(exc).__name__}: {exc}"
            self.alignment.fit_refused(reason, num_points, source, 1e3 * (time.perf_counter() - t0))
            self.get_logger().warning(f"LiDAR alignment refused, publishing relative depth: {reason}",
                                      throttle_duration_sec=config.log_throttle_sec)
            return None
        self.alignment.fit_accepted(aligned.fit, source, 1e3 * (t_end - t0), 1e3 * (t_completion - t_fit),
                                    1e3 * (t_end - t_completion))
        return aligned

    def _model_completion(self, aligned: AlignedFrame, z_hw: np.ndarray, rgb_hwc_u8: np.ndarray,
                          sparse: np.ndarray) -> AlignedFrame:
        """``aligned`` with its completed depth from the DepthCompletionFM; when the model gives none, the
        log-residual interpolation's."""
        config = self.config
        result = self.completion_model.complete(rgb_hwc_u8, sparse, num_steps=config.num_steps,
                                                ensemble_size=config.ensemble_size,
                                                processing_resolution=config.processing_resolution,
                                                seed=None if config.seed < 0 else config.seed)
        if result.depth_hw_m is None:
            return complete_frame(aligned, z_hw, sparse)
        return replace(aligned, completed_hw_m=result.depth_hw_m.astype(np.float32))

    def points_depth(self, prediction: DepthPrediction, aligned: AlignedFrame | None) -> tuple[np.ndarray, np.ndarray]:
        """Metric depth and its std for the cloud: the LiDAR-aligned ones, else ``exp(points_scale·z + points_shift)``
        (a fixed calibration, not a measurement)."""
        if aligned is not None:
            return aligned.depth_hw_m, aligned.std_hw_m
        fixed = LogDepthFit(self.config.points_scale, self.config.points_shift, float("nan"), 0, 0)
        depth = fixed.depth_m(prediction.z)
        return depth, metric_std(prediction.std, depth, fixed)

    def publish_points(self, prediction: DepthPrediction, header, camera: PinholeCamera,
                       aligned: AlignedFrame | None, rgb_hwc_u8: np.ndarray | None) -> bool:
        """depthfm/points in the image's optical frame at its stamp (the filters of the points_* parameters);
        False when not published (a distorted camera)."""
        config = self.config
        if camera.is_distorted:
            self.get_logger().warning("camera_info has distortion: depthfm/points needs a rectified image "
                                      "(subscribe image_rect); not publishing points",
                                      throttle_duration_sec=config.log_throttle_sec)
            return False
        depth, std = self.points_depth(prediction, aligned)
        keep = combined_mask(depth, std, min_range_m=config.points_min_range, max_range_m=config.points_max_range,
                             max_std_m=config.points_max_std_m, max_relative_std=config.points_max_relative_std,
                             edge_ratio=config.points_edge_ratio)
        points = depth_to_points(depth, camera, config.points_stride,
                                 rgb_hwc_u8 if config.points_rgb else None, config.points_organized, keep)
        self.points_pub.publish(conversions.xyz_to_pointcloud2(points.xyz, header, points.rgb))
        return True

    @staticmethod
    def output_camera_info(info: CameraInfo, camera: PinholeCamera, header) -> CameraInfo:
        """``info`` with ``header`` for the output ``camera`` (:meth:`output_camera`): as is when the sizes match,
        else ``camera``'s scaled intrinsics."""
        if (info.width, info.height) != (camera.width, camera.height):
            return conversions.camera_to_camera_info(camera, header)
        out = CameraInfo()
        out.header = header
        out.height, out.width = info.height, info.width
        out.distortion_model, out.d, out.k, out.r, out.p = info.distortion_model, info.d, info.k, info.r, info.p
        out.binning_x, out.binning_y, out.roi = info.binning_x, info.binning_y, info.roi
        return out

    def destroy_node(self) -> None:
        """Stop the worker (after the inference in flight), then destroy the node."""
        worker = getattr(self, "_worker", None)  # None if the constructor failed (rclpy destroys such nodes too)
        if worker is not None:
            with self._wake:
                self._running = False
                self._wake.notify()
            worker.join(timeout=10.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """``ros2 run depthfm_ros depthfm_node --ros-args -p checkpoint:=... -p vae:=...``"""
    rclpy.init(args=args)
    try:
        try:
            node = DepthFMNode()
        except (ParameterError, DepthFMError) as exc:
            rclpy.logging.get_logger(NODE_NAME).fatal(f"not starting: {exc}")
            return 2
        except Exception as exc:  # e.g. a backend whose runtime is missing on this machine
            rclpy.logging.get_logger(NODE_NAME).fatal(f"not starting: {type(exc).__name__}: {exc}")
            return 2
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            node.destroy_node()
        return 0
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
