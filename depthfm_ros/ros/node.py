"""depthfm_node: camera images in; relative depth and uncertainty on every frame, metric depth, uncertainty,
completed depth and points on frames with an accepted metric scale (ros/outputs.py has the topic contract). The
maths lives in the library (pipeline, fusion); the node converts messages, schedules and publishes.

Inference runs on a worker thread that takes only the newest image as it arrives and publishes its relative outputs
at once; a frame replaced before the worker took it is dropped and counted, so latency stays within one inference.
The metric step (binding the frame's LiDAR cloud, which may come before or after the image, the fit, the scale and
the metric outputs) runs on a second worker, so the camera never waits for the LiDAR (ros/workers.py). Bad input,
failed inference and failed publishing are logged (once per kind and period), counted and shown in /diagnostics;
the node keeps serving. Topics: README.md, docs/ros.md.
"""

from __future__ import annotations

import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from ..backends import Backend, load_backend
from ..pipeline import DepthFMPipeline
from . import conversions
from .diagnostics import diagnostic_array, diagnostic_status
from .entry_points import NODE_NAME, run
from .error_log import ErrorLog, reason_kind
from .lidar import GroundFromTf, LidarInput
from .outputs import DEPTH_TOPIC, RELATIVE_DEPTH_TOPIC, FrameOutputs, PendingFrame
from .params import declare_and_read
from .stats import FrameStats
from .workers import MetricWorker, NewestOnly

#: the input is stale after this many diagnostics periods without an image (WARN), then ERROR after STALE_ERROR
STALE_WARN_PERIODS, STALE_ERROR_PERIODS = 2, 5


def qos_profile(name: str) -> QoSProfile:
    """'sensor_data' (best effort, keep last 5) or 'reliable' (keep last 5)."""
    if name == "sensor_data":
        return qos_profile_sensor_data
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)


class DepthFMNode(Node):
    """ROS 2 wrapper around :class:`DepthFMPipeline` and :func:`depthfm_ros.fusion.frame.fuse_frame`.

    Args:
        backend: an engine to use instead of the one the parameters describe (tests, demos, custom engines).
        **node_kwargs: passed to ``rclpy.node.Node`` (``context``, ``namespace``, ``parameter_overrides``, ...).

    Raises:
        ParameterError: a parameter is invalid; the message names it.
    """

    def __init__(self, *, backend: Backend | None = None, **node_kwargs):
        super().__init__(node_kwargs.pop("node_name", NODE_NAME), **node_kwargs)
        self.config = declare_and_read(self)
        self._start(backend)

    def _start(self, backend: Backend | None) -> None:
        """Load the engine (``backend`` if given), then create the publishers, subscriptions, timer and worker from
        ``self.config`` (the managed node's configure step, ros/lifecycle.py)."""
        config = self.config
        settings = config.model_settings()
        settings.apply_torch_threads()
        self.backend = backend if backend is not None else load_backend(settings)
        self.pipeline = DepthFMPipeline.from_settings(settings, self.backend)
        period = config.diagnostics_period_sec
        self.stats = FrameStats(stale_warn_sec=STALE_WARN_PERIODS * period,
                                stale_error_sec=STALE_ERROR_PERIODS * period)
        self.error_log = ErrorLog(self.get_logger().error, config.log_throttle_sec)
        self._camera_info: CameraInfo | None = None
        self._running = True
        self._slot = NewestOnly(self.stats.frame_dropped)  # (image, when it arrived) for the inference worker

        self.lidar = LidarInput(self, config, self._input_refused) if config.use_lidar else None
        ground_tf = GroundFromTf(self, config.ground_frame, config.lidar_tf_timeout_sec) if config.ground_frame \
            else None
        self.outputs = FrameOutputs(self, config, qos_profile(config.output_qos), self.lidar, self.stats, ground_tf,
                                    self._input_refused)
        self.metric_worker = MetricWorker(self._metric_step, self.stats.metric_skipped) if self.outputs.metric.chain \
            else None
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        in_qos = qos_profile(config.input_qos)
        compressed = config.image_transport == "compressed"
        image_type = CompressedImage if compressed else Image
        image_topic = self.resolve_topic_name("image") + "/compressed" if compressed else "image"
        self.create_subscription(image_type, image_topic, self._on_image, in_qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, in_qos)
        if self.lidar is not None:
            self.create_subscription(PointCloud2, "lidar", self.lidar.on_cloud, in_qos)
        # a steady clock: /diagnostics keep coming under use_sim_time before (or without) /clock
        self.create_timer(config.diagnostics_period_sec, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))

        self._worker = threading.Thread(target=self._work, name="depthfm-inference", daemon=True)
        self._worker.start()
        log = self.get_logger()
        log.info(f"DepthFM on {self.resolve_topic_name(image_topic)} ({config.image_transport}) with "
                 f"{self.backend.describe()}, ensemble {config.ensemble_size}, processing resolution "
                 f"{config.processing_resolution or 'native'} -> {self.resolve_topic_name(RELATIVE_DEPTH_TOPIC)}, "
                 f"{self.resolve_topic_name(DEPTH_TOPIC)}")
        if self.lidar is not None:
            log.info(self.lidar.describe())
        if self.pipeline.identical_members_warning():
            log.warning(self.pipeline.identical_members_warning())
        (log.info if self.outputs.metric.chain else log.warning)(self.outputs.metric.describe())
        if config.ground_frame and ground_tf.buffer is None:
            log.warning(f"ground_frame '{config.ground_frame}' is set but tf2_ros is not installed: the ground source "
                        "uses camera_height_m, camera_pitch_deg and camera_roll_deg instead")

    # -- executor thread ----------------------------------------------------------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.stats.frame_received()
        if self.lidar is not None:
            try:  # a stamp no cloud can be bound to (negative, far future): refused, never published
                self.lidar.check_image_stamp(msg.header)
            except Exception as exc:
                self._input_refused("image", exc)
                return
        self._slot.put((msg, time.perf_counter()))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _input_refused(self, what: str, exc: Exception) -> None:
        """Count a refused input message ('image', 'cloud' or 'camera_info') and log it at ERROR, each kind (where
        and why, :func:`~depthfm_ros.ros.diagnostics.reason_kind`) at most once per log_throttle_sec; callable from
        every thread."""
        self.stats.input_refused(what, str(exc))
        counts = self.stats.refused
        self.error_log(f"{what}:{reason_kind(exc)}",
                       f"dropping bad {what} message: {exc} ({counts[what]} {what} messages refused so far)")

    def _publish_diagnostics(self) -> None:
        name = self.get_fully_qualified_name()
        frames = self.stats.snapshot()
        statuses = [diagnostic_status(frames, f"{name}: depth", hardware_id=self.backend.describe(),
                                      backend=self.backend.name)]
        statuses.append(self.outputs.status(f"{name}: metric scale", frames))
        if self.lidar is not None:
            statuses.append(self.lidar.status(f"{name}: lidar alignment"))
        self.diagnostics_pub.publish(diagnostic_array(statuses, self.get_clock().now().to_msg()))

    # -- inference worker ---------------------------------------------------------------------------------------

    def _work(self) -> None:
        while (item := self._slot.take()) is not None:
            msg, t_received = item
            self._process(msg, t_received, 1e3 * (time.perf_counter() - t_received))

    def _process(self, msg: Image | CompressedImage, t_received: float, queue_ms: float = float("nan")) -> None:
        """One frame: convert (bad input is counted), infer (failures are counted as inference errors), publish the
        relative outputs (failures are counted as publishing errors) and hand the frame to the metric worker; the
        worker keeps serving whatever happens."""
        log, throttle = self.get_logger(), self.config.log_throttle_sec
        try:
            decode = conversions.compressed_image_to_rgb if isinstance(msg, CompressedImage) \
                else conversions.image_to_rgb
            rgb_hwc_u8 = decode(msg, self.config.max_image_pixels)
        except Exception as exc:  # a malformed message must never stop the node
            self._input_refused("image", exc)
            return
        try:
            t0 = time.perf_counter()
            prediction = self.pipeline(rgb_hwc_u8)
            inference_ms = 1e3 * (time.perf_counter() - t0)
        except Exception as exc:
            self.stats.inference_failed(f"{type(exc).__name__}: {exc}")
            log.error(f"inference failed: {exc} ({self.stats.inference_errors} so far)", throttle_duration_sec=throttle)
            return
        if not self._running:
            return
        try:  # one camera_info for the whole frame, though the executor may replace it meanwhile
            frame = self.outputs.publish_relative(prediction, msg.header, rgb_hwc_u8, self._camera_info)
        except Exception as exc:
            self.stats.publishing_failed(f"{type(exc).__name__}: {exc}")
            log.error(f"publishing failed: {type(exc).__name__}: {exc}", throttle_duration_sec=throttle)
            return
        self.stats.frame_processed(1e3 * (time.perf_counter() - t_received), inference_ms, queue_ms)
        if self.metric_worker is not None:
            self.metric_worker.submit((frame, t_received))

    # -- metric worker ------------------------------------------------------------------------------------------

    def _metric_step(self, item: tuple[PendingFrame, float], behind: bool) -> None:
        """The frame's cloud (nearest in time within the slop, waiting at most lidar_wait_sec after the image came
        for one that may still arrive), its scale and its metric outputs; completion only for the first frame bound
        to a cloud and while the worker keeps up."""
        frame, t_received = item
        cloud, first_use = None, False
        try:
            if self.lidar is not None:
                cloud, first_use = self.lidar.bind(frame.header, t_received + self.config.lidar_wait_sec)
            self.outputs.publish_metric(frame, cloud, complete=first_use and not behind)
        except Exception as exc:
            self.stats.publishing_failed(f"{type(exc).__name__}: {exc}")
            self.get_logger().error(f"metric step failed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=self.config.log_throttle_sec)
        self.stats.metric_published(1e3 * (time.perf_counter() - t_received))

    def _stop_worker(self) -> None:
        """Stop the workers after the inference and metric step in flight (no-op before :meth:`_start` ran)."""
        worker = getattr(self, "_worker", None)  # None if the constructor failed (rclpy destroys such nodes too)
        if worker is not None:
            self._running = False
            self._slot.stop()
            worker.join(timeout=10.0)
        if getattr(self, "metric_worker", None) is not None:
            self.metric_worker.stop()

    def destroy_node(self) -> None:
        """Stop the workers (after the inference and metric step in flight), then destroy the node."""
        self._stop_worker()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """``ros2 run depthfm_ros depthfm_node --ros-args -p checkpoint:=... -p vae:=...`` (the console script is
    :func:`depthfm_ros.ros.entry_points.depthfm_node`, which sets up Ctrl-C handling before this module's imports)."""
    return run(DepthFMNode, args)


if __name__ == "__main__":
    sys.exit(main())
