"""depthfm_node: camera images in, DepthFM depth, uncertainty and matching camera_info out.

Topics (relative, so a namespace moves them all):

- in  ``image`` (sensor_msgs/Image; ``<image>/compressed`` sensor_msgs/CompressedImage with
  ``image_transport: compressed``), ``camera_info`` (sensor_msgs/CameraInfo)
- out ``depthfm/depth`` (32FC1), ``depthfm/uncertainty`` (32FC1, ensemble std of log-depth z),
  ``depthfm/camera_info`` (intrinsics at the output size), ``/diagnostics``

Inference runs on a worker thread. The subscription keeps only the newest frame: a frame replaced before the worker
took it is dropped and counted, so latency stays within one inference. A bad message is logged (throttled) and
counted; the node keeps serving.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ..backends import Backend
from ..errors import DepthFMError
from ..pipeline import DepthFMPipeline, DepthPrediction
from . import conversions
from .diagnostics import FrameStats, diagnostic_array, diagnostic_status
from .params import NodeConfig, ParameterError, declare_and_read

NODE_NAME = "depthfm"
DEPTH_TOPIC = "depthfm/depth"
UNCERTAINTY_TOPIC = "depthfm/uncertainty"
CAMERA_INFO_TOPIC = "depthfm/camera_info"


def qos_profile(name: str) -> QoSProfile:
    """'sensor_data' (best effort, keep last 5) or 'reliable' (keep last 5)."""
    if name == "sensor_data":
        return qos_profile_sensor_data
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)


def load_backend(config: NodeConfig) -> Backend:
    """The engine the parameters ask for (the CLI's loader, so node and tools load models the same way)."""
    from ..cli.common import backend_from_args

    args = argparse.Namespace(tiny_model=config.model == "tiny", checkpoint=config.checkpoint or None,
                              vae=config.vae or None, vae_kind=config.vae_kind, tiny_vae=config.tiny_vae or None,
                              engine=config.engine or None, backend=config.backend,
                              steps=config.num_steps, dtype=config.dtype,
                              seed=max(config.seed, 0))
    return backend_from_args(args)


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
        self.backend = backend if backend is not None else load_backend(config)
        self.pipeline = DepthFMPipeline(self.backend, config.processing_resolution, config.ensemble_size,
                                        seed=None if config.seed < 0 else config.seed)
        self.stats = FrameStats()
        self._camera_info: CameraInfo | None = None
        self._newest: tuple[Image | CompressedImage, float] | None = None
        self._wake = threading.Condition()
        self._running = True

        out_qos = qos_profile(config.output_qos)
        self.depth_pub = self.create_publisher(Image, DEPTH_TOPIC, out_qos)
        self.uncertainty_pub = self.create_publisher(Image, UNCERTAINTY_TOPIC, out_qos)
        self.camera_info_pub = self.create_publisher(CameraInfo, CAMERA_INFO_TOPIC, out_qos)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        in_qos = qos_profile(config.input_qos)
        if config.image_transport == "compressed":
            image_type, image_topic = CompressedImage, self.resolve_topic_name("image") + "/compressed"
        else:
            image_type, image_topic = Image, "image"
        self.create_subscription(image_type, image_topic, self._on_image, in_qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, in_qos)
        self.create_timer(config.diagnostics_period_sec, self._publish_diagnostics)

        self._worker = threading.Thread(target=self._work, name="depthfm-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"DepthFM on {self.resolve_topic_name(image_topic)} ({config.image_transport}) with "
            f"{self.backend.describe()}, ensemble {config.ensemble_size}, processing resolution "
            f"{config.processing_resolution or 'native'} -> {self.resolve_topic_name(DEPTH_TOPIC)}")

    # -- executor thread ----------------------------------------------------------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.stats.frame_received()
        with self._wake:
            if self._newest is not None:
                self.stats.frame_dropped()
            self._newest = (msg, time.perf_counter())
            self._wake.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _publish_diagnostics(self) -> None:
        status = diagnostic_status(self.stats.snapshot(), f"{self.get_fully_qualified_name()}: depth",
                                   hardware_id=self.backend.describe(), backend=self.backend.name)
        self.diagnostics_pub.publish(diagnostic_array(status, self.get_clock().now().to_msg()))

    # -- inference worker ---------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._wake:
                while self._newest is None and self._running:
                    self._wake.wait()
                if not self._running:
                    return
                msg, t_received = self._newest
                self._newest = None
            self._process(msg, t_received)

    def _process(self, msg: Image | CompressedImage, t_received: float) -> None:
        log = self.get_logger()
        throttle = self.config.log_throttle_sec
        try:
            if isinstance(msg, CompressedImage):
                rgb_hwc_u8 = conversions.compressed_image_to_rgb(msg)
            else:
                rgb_hwc_u8 = conversions.image_to_rgb(msg)
        except Exception as exc:  # a malformed message must never stop the node
            self.stats.conversion_failed(str(exc))
            log.warning(f"dropping bad image message: {exc} ({self.stats.conversion_errors} so far)",
                        throttle_duration_sec=throttle)
            return
        try:
            t0 = time.perf_counter()
            prediction = self.pipeline(rgb_hwc_u8)
            inference_ms = 1e3 * (time.perf_counter() - t0)
            if not self._running:
                return
            self.publish(prediction, msg.header)
        except Exception as exc:  # keep serving; diagnostics reports the error
            self.stats.inference_failed(f"{type(exc).__name__}: {exc}")
            log.error(f"inference failed: {exc} ({self.stats.inference_errors} so far)",
                      throttle_duration_sec=throttle)
            return
        self.stats.frame_processed(1e3 * (time.perf_counter() - t_received), inference_ms)

    def depth_for_output(self, prediction: DepthPrediction, header) -> np.ndarray:
        """The depth map to publish, (H, W) float32. Hook for the metric phase.

        Now: the relative depth in [0, 1] (DepthPrediction.depth). With LiDAR alignment this returns metres
        (REP-118: 32FC1 in m, NaN where unknown) from ``prediction.z`` and the scan nearest ``header.stamp``.
        """
        return prediction.depth

    def publish(self, prediction: DepthPrediction, header) -> None:
        """Publish depth, uncertainty and camera_info with the input image's stamp and frame_id."""
        depth_hw = self.depth_for_output(prediction, header)
        self.depth_pub.publish(conversions.numpy_to_image(depth_hw.astype(np.float32), "32FC1", header))
        self.uncertainty_pub.publish(conversions.numpy_to_image(prediction.std.astype(np.float32), "32FC1", header))
        info = self._camera_info
        if info is None:
            self.get_logger().warning("no camera_info received yet: not publishing depthfm/camera_info",
                                      throttle_duration_sec=self.config.log_throttle_sec)
            return
        height, width = depth_hw.shape
        try:
            self.camera_info_pub.publish(self.output_camera_info(info, width, height, header))
        except DepthFMError as exc:  # e.g. an uncalibrated CameraInfo; depth is out already
            self.stats.conversion_failed(f"camera_info: {exc}")
            self.get_logger().warning(f"cannot publish depthfm/camera_info: {exc}",
                                      throttle_duration_sec=self.config.log_throttle_sec)

    def output_camera_info(self, info: CameraInfo, width: int, height: int, header) -> CameraInfo:
        """``info`` for an output of ``width`` x ``height`` with ``header``: as is when the sizes match, else scaled."""
        if (info.width, info.height) != (width, height):
            camera = conversions.camera_info_to_camera(info).scaled(width, height)
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
