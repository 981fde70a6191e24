"""LiDAR input of depthfm_node: the LiDAR -> camera extrinsic (tf2 at the image stamp when available, else
parameters) and :class:`LidarInput`, which pairs clouds with images and fuses each pair through the library."""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

import numpy as np
from rclpy.duration import Duration
from rclpy.time import Time

from ..errors import DepthFMError
from ..fusion.frame import FusedFrame, fuse_frame
from ..geometry.camera import PinholeCamera
from ..geometry.projection import transform_from_xyz_quat
from ..models.completion import completion_fn
from ..pipeline import DepthPrediction
from . import conversions
from .diagnostics import AlignmentStats, alignment_status
from .sync import CloudImageSync


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
    """The LiDAR side of depthfm_node: the cloud subscription's callback, image + cloud pairing, staleness, the
    extrinsic, one frame's fusion (:func:`depthfm_ros.fusion.frame.fuse_frame`) and its /diagnostics status.

    ``hand_over(image, cloud)`` gets each synchronized pair (and images while the LiDAR is stale, with cloud None);
    ``input_refused(what, exc)`` each message the synchronizer refuses.
    """

    def __init__(self, node, config, hand_over: Callable, input_refused: Callable):
        self.node, self.config = node, config
        self._hand_over, self._input_refused = hand_over, input_refused
        self.stats = AlignmentStats(config.lidar_timeout_sec)
        self.extrinsic = LidarExtrinsic(node, config.lidar_to_camera_xyz, config.lidar_to_camera_quat_xyzw,
                                        config.lidar_tf_timeout_sec)
        self.sync = CloudImageSync(config.lidar_slop_sec, config.lidar_queue_size, self._on_pair,
                                   self.stats.message_unsynchronized,
                                   now_sec=lambda: node.get_clock().now().nanoseconds * 1e-9)
        self.completion_fn = completion_fn(config.completion_checkpoint, config.model_settings())
        self._stale = False  # executor thread only: for the log lines when the LiDAR goes and comes back
        self._published_alone: deque = deque(maxlen=2 * config.lidar_queue_size)  # images sent without a cloud

    def describe(self) -> str:
        config, timeout = self.config, self.config.lidar_timeout_sec
        return (f"LiDAR alignment with {self.node.resolve_topic_name('lidar')} (slop {config.lidar_slop_sec} s, "
                + (f"images alone after {timeout} s without a cloud, " if timeout else "strict pairing, ")
                + f"{self.sync.implementation}; extrinsic from {'tf2, else ' if self.extrinsic.buffer else ''}"
                f"parameters; completed depth by "
                f"{'DepthCompletionFM' if self.completion_fn else 'log-residual interpolation'})")

    # -- executor thread
    def add_image(self, msg) -> bool:
        """Give an image to the synchronizer; False when the LiDAR is stale (no pair for lidar_timeout_sec): the
        caller then publishes it alone, and a pair it may still form later only ends the staleness."""
        stale = self.stats.is_stale()
        if stale:
            if not self._stale:
                self._stale = True
                self.node.get_logger().warning(
                    f"no image + cloud pair for over {self.config.lidar_timeout_sec} s: frames go out without "
                    "LiDAR until pairing resumes")
            self._published_alone.append(msg)
        try:
            self.sync.add_image(msg)
        except Exception as exc:  # e.g. a negative or far-future stamp: never out of an executor callback
            self._input_refused("image", exc)
        return not stale

    def on_cloud(self, msg) -> None:
        self.stats.cloud_received()
        try:
            self.sync.add_cloud(msg)
        except Exception as exc:
            self._input_refused("cloud", exc)

    def _on_pair(self, image, cloud) -> None:
        self.stats.pair_matched()
        if self._stale:
            self._stale = False
            self.node.get_logger().info("image + cloud pairs are back: fusing LiDAR again")
        if not any(image is published for published in self._published_alone):  # else it is out already
            self._hand_over(image, cloud)

    def status(self, name: str):
        return alignment_status(self.stats.snapshot(), name, hardware_id=self.node.resolve_topic_name("lidar"))

    # -- worker thread
    def fuse(self, prediction: DepthPrediction, header, cloud, camera: PinholeCamera | None, camera_error: str,
             rgb_hwc_u8: np.ndarray | None) -> FusedFrame | None:
        """This frame in metres from ``cloud`` (refused: the reason goes to diagnostics and a throttled warning);
        None without a cloud (the LiDAR is stale: counted as unaligned)."""
        if cloud is None:
            self.stats.frame_unaligned()
            return None
        config, t0 = self.config, time.perf_counter()
        source = ""
        try:
            if camera is None:
                raise DepthFMError(f"cannot project the cloud: {camera_error}")
            T_cam_lidar, source, tf_error = self.extrinsic.lookup(cloud.header.frame_id, header.frame_id,
                                                                  header.stamp)
            if tf_error:
                self.node.get_logger().warning(f"{tf_error}; using lidar_to_camera_xyz/_quat_xyzw",
                                               throttle_duration_sec=config.log_throttle_sec)
            points_n3 = conversions.pointcloud2_to_xyz(cloud)
        except Exception as exc:  # a bad cloud or camera: no LiDAR scale for this frame, and why
            reason = str(exc) if isinstance(exc, DepthFMError) else f"{type(exc).__name__}: {exc}"
            fused = FusedFrame(None, None, None, reason, 0, {"fusion": 1e3 * (time.perf_counter() - t0)})
        else:
            fused = fuse_frame(prediction, points_n3, camera, T_cam_lidar, min_range_m=config.lidar_min_range_m,
                               max_range_m=config.lidar_max_range_m, rgb_hwc_u8=rgb_hwc_u8,
                               completion_fn=self.completion_fn)
        times = fused.timings_ms
        if fused.aligned:
            self.stats.fit_accepted(fused.fit, source, times["fusion"], times["fit"], times["completion"])
        else:
            self.stats.fit_refused(fused.refused, fused.num_points, source, times["fusion"])
            self.node.get_logger().warning(f"LiDAR fit refused: {fused.refused}",
                                           throttle_duration_sec=config.log_throttle_sec)
        return fused

