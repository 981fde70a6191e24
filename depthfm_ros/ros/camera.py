"""One camera of depthfm_node: its subscriptions' callbacks, input checks, noise generator, outputs, metric worker,
counters and /diagnostics statuses. A node serves one camera (today's topics) or several (``cameras``); the model,
engine and inference worker are the node's and shared (ros/node.py).

A camera named ``front`` subscribes ``front/image`` (``front/image/compressed``), ``front/camera_info`` and, with
``use_lidar``, ``front/lidar``, publishes ``depthfm/front/<output>``, reads ``front.<parameter>`` for its per-camera
parameters and logs as ``<node>.front``; the single camera of a node without ``cameras`` has the name "" and the
node's own topics (``image``, ``depthfm/depth``, ...), parameters and logger.
"""

from __future__ import annotations

import time

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ..pipeline import DepthPrediction
from . import conversions
from .diagnostics import diagnostic_status
from .error_log import ErrorLog, reason_kind
from .lidar import GroundFromTf, LidarInput
from .outputs import FrameOutputs, PendingFrame
from .stats import FrameStats
from .workers import MetricWorker

#: the input is stale after this many diagnostics periods without an image (WARN), then ERROR after STALE_ERROR
STALE_WARN_PERIODS, STALE_ERROR_PERIODS = 2, 5


def input_topic(name: str, camera: str = "") -> str:
    """Input topic ``name`` ('image', 'camera_info', 'lidar') of ``camera``: '<camera>/<name>' for a named camera."""
    return f"{camera}/{name}" if camera else name


class CameraStream:
    """One camera's state and steps (module docstring). The node calls :meth:`on_image` (executor), then on its
    inference worker :meth:`decode`, runs the engine, and :meth:`publish` (relative outputs, then the metric step on
    this camera's own metric worker, so one camera's LiDAR wait never delays another camera).

    Args:
        node: the rclpy node (publishers, subscriptions, clock, logger).
        name: the camera's name ("" for a node's single camera).
        index: its slot in the node's :class:`~depthfm_ros.ros.workers.CameraSlots`.
        config: its parameters (:meth:`~depthfm_ros.ros.params.NodeConfig.camera`).
        qos: the output QoS profile.
        put: ``put(index, item)`` of the node's slots.
        completion: the completed-depth model's function (shared by the node's cameras; None: interpolation).
    """

    def __init__(self, node, name: str, index: int, config, qos, put, completion=None):
        self.node, self.name, self.index, self.config, self._put = node, name, index, config, put
        self.logger = node.get_logger().get_child(name) if name else node.get_logger()
        period = config.diagnostics_period_sec
        self.stats = FrameStats(stale_warn_sec=STALE_WARN_PERIODS * period,
                                stale_error_sec=STALE_ERROR_PERIODS * period)
        self.error_log = ErrorLog(self.logger.error, config.log_throttle_sec)
        self.camera_info: CameraInfo | None = None
        seed = config.model_settings().seed
        self.rng = np.random.default_rng(seed)  # the noise a single-camera node with this seed would draw
        self.lidar = LidarInput(node, config, self.input_refused, topic=input_topic("lidar", name),
                                logger=self.logger, completion=completion) if config.use_lidar else None
        self.ground_tf = GroundFromTf(node, config.ground_frame, config.lidar_tf_timeout_sec) \
            if config.ground_frame else None
        self.outputs = FrameOutputs(node, config, qos, self.lidar, self.stats, self.ground_tf, self.input_refused,
                                    camera=name, logger=self.logger)
        self.metric_worker = MetricWorker(self.metric_step, self.stats.metric_skipped,
                                          name=f"depthfm-metric{'-' + name if name else ''}") \
            if self.outputs.metric.chain else None
        compressed = config.image_transport == "compressed"
        self.image_type = CompressedImage if compressed else Image
        image = input_topic("image", name)
        self.image_topic = node.resolve_topic_name(image) + "/compressed" if compressed else image
        self.camera_info_topic = input_topic("camera_info", name)

    def describe(self) -> str:
        return self.node.resolve_topic_name(self.image_topic) + f" ({self.config.image_transport})"

    # -- executor thread ----------------------------------------------------------------------------------------

    def on_image(self, msg: Image | CompressedImage) -> None:
        self.stats.frame_received()
        if self.lidar is not None:
            try:  # a stamp no cloud can be bound to (negative, far future): refused, never published
                self.lidar.check_image_stamp(msg.header)
            except Exception as exc:
                self.input_refused("image", exc)
                return
        self._put(self.index, (msg, time.perf_counter()))

    def on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    def input_refused(self, what: str, exc: Exception) -> None:
        """Count a refused input message ('image', 'cloud' or 'camera_info') and log it at ERROR, each kind (where
        and why, :func:`~depthfm_ros.ros.error_log.reason_kind`) at most once per log_throttle_sec; callable from
        every thread."""
        self.stats.input_refused(what, str(exc))
        counts = self.stats.refused
        self.error_log(f"{what}:{reason_kind(exc)}",
                       f"dropping bad {what} message: {exc} ({counts[what]} {what} messages refused so far)")

    def statuses(self, node_name: str, hardware_id: str, backend: str) -> list:
        """This camera's /diagnostics statuses: depth, metric scale and (with use_lidar) lidar alignment, named
        '<node>: depth' for a single camera, '<node>: <camera>: depth' for one of several."""
        prefix = f"{node_name}: {self.name + ': ' if self.name else ''}"
        frames = self.stats.snapshot()
        out = [diagnostic_status(frames, f"{prefix}depth", hardware_id=hardware_id, backend=backend),
               self.outputs.status(f"{prefix}metric scale", frames)]
        if self.lidar is not None:
            out.append(self.lidar.status(f"{prefix}lidar alignment"))
        return out

    # -- inference worker ---------------------------------------------------------------------------------------

    def decode(self, msg: Image | CompressedImage) -> np.ndarray | None:
        """The image as RGB uint8 (H, W, 3), or None when the message is bad (counted and logged)."""
        try:
            decode = conversions.compressed_image_to_rgb if isinstance(msg, CompressedImage) \
                else conversions.image_to_rgb
            return decode(msg, self.config.max_image_pixels)
        except Exception as exc:  # a malformed message must never stop the node
            self.input_refused("image", exc)
            return None

    def inference_failed(self, exc: Exception) -> None:
        self.stats.inference_failed(f"{type(exc).__name__}: {exc}")
        self.logger.error(f"inference failed: {exc} ({self.stats.inference_errors} so far)",
                          throttle_duration_sec=self.config.log_throttle_sec)

    def publish(self, prediction: DepthPrediction, header, rgb_hwc_u8: np.ndarray, t_received: float,
                inference_ms: float, queue_ms: float) -> None:
        """The frame's relative outputs now (failures are counted as publishing errors), then its metric step on
        this camera's metric worker."""
        try:  # one camera_info for the whole frame, though the executor may replace it meanwhile
            frame = self.outputs.publish_relative(prediction, header, rgb_hwc_u8, self.camera_info)
        except Exception as exc:
            self.stats.publishing_failed(f"{type(exc).__name__}: {exc}")
            self.logger.error(f"publishing failed: {type(exc).__name__}: {exc}",
                              throttle_duration_sec=self.config.log_throttle_sec)
            return
        self.stats.frame_processed(1e3 * (time.perf_counter() - t_received), inference_ms, queue_ms,
                                   prediction.batch_size)
        if self.metric_worker is not None:
            self.metric_worker.submit((frame, t_received))

    # -- metric worker ------------------------------------------------------------------------------------------

    def metric_step(self, item: tuple[PendingFrame, float], behind: bool) -> None:
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
            self.logger.error(f"metric step failed: {type(exc).__name__}: {exc}",
                              throttle_duration_sec=self.config.log_throttle_sec)
        self.stats.metric_published(1e3 * (time.perf_counter() - t_received))

    def stop(self) -> None:
        """Stop the metric worker after the frame in progress."""
        if self.metric_worker is not None:
            self.metric_worker.stop()
