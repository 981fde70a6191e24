"""LiDAR input of depthfm_node: the LiDAR -> camera extrinsic (tf2 at the image stamp when available, else
parameters) and :class:`LidarInput`, which keeps the recent clouds, binds each frame to the one nearest in time and
fuses the two through the library."""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import numpy as np
from rclpy.duration import Duration
from rclpy.time import Time

from ..errors import DepthFMError
from ..fusion.alignment import cloud_contradicts, residual_scale
from ..fusion.frame import FusedFrame, fuse_frame
from ..geometry.camera import PinholeCamera
from ..geometry.projection import transform_from_xyz_quat
from ..pipeline import DepthPrediction
from . import conversions
from .diagnostics import alignment_status
from .stats import AlignmentStats
from .sync import CloudBuffer, check_stamp, stamp_seconds

#: a stamp further ahead of the node's clock is refused (a wrongly stamped message must not block binding)
MAX_FUTURE_SEC = 10.0


class Cloud(NamedTuple):
    """A received cloud, converted once on arrival: its header and its (N, 3) points in its own frame."""

    header: object
    points_n3: np.ndarray


class TfLookup:
    """4x4 transforms from tf2 when ``tf2_ros`` is importable (``buffer`` None otherwise), waiting at most
    ``timeout_sec``; one buffer and listener per node."""

    def __init__(self, node, timeout_sec: float):
        self.timeout_sec = timeout_sec
        try:
            import tf2_ros
        except ImportError:
            self.buffer = self.listener = None
        else:
            self.buffer = getattr(node, "_depthfm_tf_buffer", None) or tf2_ros.Buffer(node=node)
            if getattr(node, "_depthfm_tf_buffer", None) is None:
                node._depthfm_tf_buffer = self.buffer
                node._depthfm_tf_listener = tf2_ros.TransformListener(self.buffer, node)
            self.listener = node._depthfm_tf_listener

    def lookup(self, target_frame: str, source_frame: str, stamp) -> tuple[np.ndarray | None, str]:
        """(T_target_source, "") or (None, why not)."""
        if self.buffer is None:
            return None, "tf2_ros is not installed"
        try:
            tf = self.buffer.lookup_transform(target_frame, source_frame, Time.from_msg(stamp),
                                              timeout=Duration(seconds=self.timeout_sec)).transform
        except Exception as exc:  # tf2 LookupException, ExtrapolationException, ...
            return None, f"tf2 {source_frame!r} -> {target_frame!r}: {exc}"
        t, q = tf.translation, tf.rotation
        return transform_from_xyz_quat((t.x, t.y, t.z), (q.x, q.y, q.z, q.w)), ""


class LidarExtrinsic(TfLookup):
    """``T_cam_lidar`` (4x4) for a cloud frame and image frame at the image stamp.

    tf2 (when ``tf2_ros`` is importable) is asked first, waiting at most ``timeout_sec``; when it has no transform
    the parameters' fixed transform is used. :meth:`lookup` returns (T, source, tf error or "").
    """

    def __init__(self, node, xyz_3, quat_xyzw_4, timeout_sec: float):
        super().__init__(node, timeout_sec)
        self.fixed = transform_from_xyz_quat(xyz_3, quat_xyzw_4)

    def lookup(self, cloud_frame: str, image_frame: str, image_stamp) -> tuple[np.ndarray, str, str]:
        if self.buffer is None:
            return self.fixed, "parameters", ""
        T, error = super().lookup(image_frame, cloud_frame, image_stamp)
        return (self.fixed, "parameters", error) if T is None else (T, "tf2", "")


class GroundFromTf(TfLookup):
    """The ground normal (pointing down, camera optical frame) and the camera height above ``ground_frame`` (a tf
    frame on the ground, z up: base_footprint) at the image stamp; (None, None) without tf (the parameters are
    used then)."""

    def __init__(self, node, ground_frame: str, timeout_sec: float):
        super().__init__(node, timeout_sec)
        self.ground_frame = ground_frame

    def __call__(self, header) -> tuple[np.ndarray | None, float | None]:
        T_ground_cam, _ = super().lookup(self.ground_frame, header.frame_id, header.stamp)
        return ground_from_transform(T_ground_cam) if T_ground_cam is not None else (None, None)


def ground_from_transform(T_ground_cam: np.ndarray) -> tuple[np.ndarray, float]:
    """(down vector in the camera frame, camera height above the ground plane z = 0) for T_ground_cam."""
    return T_ground_cam[:3, :3].T @ np.array([0.0, 0.0, -1.0]), float(T_ground_cam[2, 3])


class LidarInput:
    """The LiDAR side of depthfm_node: the cloud subscription's callback, the cloud buffer, binding each frame to
    its cloud, staleness, the extrinsic, one frame's fusion (:func:`depthfm_ros.fusion.frame.fuse_frame`) and its
    /diagnostics status.

    The camera never waits: frames are bound on the metric worker after their relative outputs went out, to the
    cloud nearest in time within ``lidar_slop_sec`` (before or after the image), waiting at most until
    ``lidar_wait_sec`` after the image arrived for a cloud that may still come (not at all while the LiDAR is
    stale: no cloud for ``lidar_timeout_sec``). ``input_refused(what, exc)`` gets each cloud this refuses.
    ``topic``: the cloud topic (the node's 'lidar', or a camera's '<camera>/lidar'); ``logger``: where its lines go
    (default the node's); ``completion``: the completed-depth model's function
    (:func:`~depthfm_ros.models.completion.completion_fn`, loaded once by the node for all its cameras; None: the
    log-residual interpolation).
    """

    def __init__(self, node, config, input_refused: Callable, topic: str = "lidar", logger=None,
                 completion: Callable | None = None):
        self.node, self.config, self.topic = node, config, topic
        self.logger = logger or node.get_logger()
        self._input_refused = input_refused
        self.stats = AlignmentStats(config.lidar_timeout_sec)
        self.extrinsic = LidarExtrinsic(node, config.lidar_to_camera_xyz, config.lidar_to_camera_quat_xyzw,
                                        config.lidar_tf_timeout_sec)
        self.buffer = CloudBuffer(config.lidar_slop_sec, config.lidar_queue_size)
        self.completion_fn = completion
        self._stale = False  # worker thread only: for the log lines when the LiDAR goes and comes back

    def describe(self) -> str:
        config, timeout = self.config, self.config.lidar_timeout_sec
        return (f"LiDAR alignment with {self.node.resolve_topic_name(self.topic)} (each frame takes the cloud nearest "
                f"in time within {config.lidar_slop_sec} s, waiting at most {config.lidar_wait_sec} s for it"
                + (f", stale after {timeout} s without a cloud" if timeout else "")
                + f"; extrinsic from {'tf2, else ' if self.extrinsic.buffer else ''}parameters; completed depth by "
                f"{'DepthCompletionFM' if self.completion_fn else 'log-residual interpolation'})")

    def _now_sec(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    # -- executor thread
    def check_image_stamp(self, header) -> float:
        """The image's stamp in seconds; InputError for a stamp no cloud can be bound to (negative, far future)."""
        return check_stamp(header, self._now_sec(), MAX_FUTURE_SEC)

    def on_cloud(self, msg, also: tuple["LidarInput", ...] = ()) -> None:
        """A cloud arrived: its stamp and layout are checked and its points converted now (each refusal counted
        once, whether or not a frame would have used it), then it waits in the buffer for frames. ``also``: the
        inputs of the node's other cameras on the same topic: the cloud is converted once and counted and buffered
        for each."""
        inputs = (self, *also)
        for lidar in inputs:
            lidar.stats.cloud_received()
        try:
            stamp = check_stamp(msg.header, self._now_sec(), MAX_FUTURE_SEC)
            cloud = Cloud(msg.header, conversions.pointcloud2_to_xyz(msg))
        except Exception as exc:  # never out of an executor callback
            for lidar in inputs:
                lidar._input_refused("cloud", exc)
            return
        for lidar in inputs:
            lidar.buffer.add(stamp, cloud)

    def status(self, name: str):
        return alignment_status(self.stats.snapshot(self.buffer.unused, self.buffer.resets), name,
                                hardware_id=self.node.resolve_topic_name(self.topic))

    # -- metric worker thread
    def bind(self, header, deadline: float) -> tuple[object | None, bool]:
        """(the cloud of the frame with ``header`` or None, whether this is the first frame bound to it); waits
        until no nearer cloud can come, the LiDAR is stale, or ``deadline`` (time.perf_counter) has passed."""
        stamp = stamp_seconds(header)
        buffer = self.buffer
        with buffer.changed:
            while True:
                stale = self.stats.is_stale()
                _, decided = buffer.nearest(stamp)
                left = deadline - time.perf_counter()
                if decided or stale or left <= 0:
                    break
                buffer.changed.wait(min(left, 0.05))
            cloud, used = buffer.bind(stamp)
        if stale != self._stale:
            self._stale = stale
            log = self.logger
            if stale:
                log.warning(f"no cloud for over {self.config.lidar_timeout_sec} s: the LiDAR is stale, frames take "
                            "the held scale (up to metric_hold_sec) or the next metric source")
            else:
                log.info("clouds are back: fusing LiDAR again")
        self.stats.frame_bound(cloud is not None)
        return cloud, cloud is not None and not used

    def fuse(self, prediction: DepthPrediction, header, cloud: Cloud, camera: PinholeCamera | None,
             camera_error: str, rgb_hwc_u8: np.ndarray | None, complete: bool = True) -> FusedFrame:
        """This frame in metres from ``cloud`` (refused: the reason goes to diagnostics and a throttled warning);
        ``complete``: compute the completed depth too."""
        config, t0 = self.config, time.perf_counter()
        source = ""
        try:
            if camera is None:
                raise DepthFMError(f"cannot project the cloud: {camera_error}")
            points_n3 = cloud.points_n3
            T_cam_lidar, source, tf_error = self.extrinsic.lookup(cloud.header.frame_id, header.frame_id,
                                                                  header.stamp)
            if tf_error:
                self.logger.warning(f"{tf_error}; using lidar_to_camera_xyz/_quat_xyzw",
                                               throttle_duration_sec=config.log_throttle_sec)
        except Exception as exc:  # a bad cloud or camera: no LiDAR scale for this frame, and why
            reason = str(exc) if isinstance(exc, DepthFMError) else f"{type(exc).__name__}: {exc}"
            fused = FusedFrame(None, None, None, reason, 0, {"fusion": 1e3 * (time.perf_counter() - t0)})
        else:
            fused = fuse_frame(prediction, points_n3, camera, T_cam_lidar, min_range_m=config.lidar_min_range_m,
                               max_range_m=config.lidar_max_range_m, rgb_hwc_u8=rgb_hwc_u8,
                               completion_fn=self.completion_fn, complete=complete)
        times = fused.timings_ms
        if fused.aligned:
            self.stats.fit_accepted(fused.fit, source, times["fusion"], times["fit"], times["completion"])
        else:
            self.stats.fit_refused(fused.refused, fused.num_points, source, times["fusion"])
            self.logger.warning(f"LiDAR fit refused: {fused.refused}",
                                           throttle_duration_sec=config.log_throttle_sec)
        return fused

    @staticmethod
    def cloud_checks(fused: FusedFrame, prediction: DepthPrediction):
        """What :meth:`depthfm_ros.fusion.metric.MetricScale.update` asks of this frame's own cloud: does it
        contradict a held scale, and what uncertainty calibration does a scale's residuals on it ask for? (None, None)
        when the cloud did not project."""
        sparse = fused.sparse_hw_m
        if sparse is None:
            return None, None
        z, std = prediction.z_hw, prediction.std_z_hw
        return (lambda held, tolerance: cloud_contradicts(held, z, sparse, std, tolerance_log=tolerance),
                lambda scale, log_var: residual_scale(scale, z, sparse, std, log_var))
