"""LiDAR input of depthfm_node: image + cloud synchronization, the LiDAR -> camera extrinsic, one frame's alignment.

- :class:`CloudImageSync` pairs images with clouds within a slop (message_filters' ApproximateTimeSynchronizer
  when importable, else :class:`depthfm_ros.sync.ApproximateTimeSync`) and counts messages that can no longer
  find a partner.
- :class:`LidarExtrinsic` gives ``T_cam_lidar`` from tf2 at the image stamp, falling back to parameters.
- :func:`align_frame` / :func:`complete_frame` are the maths of one frame (no ROS): fit log depth, metric maps,
  completion.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from ..camera import PinholeCamera
from ..errors import InputError
from ..fusion import LogDepthFit, complete_depth, fit_log_depth, metric_std, project_points, transform_from_xyz_quat
from ..sync import ApproximateTimeSync

try:
    import message_filters as _MESSAGE_FILTERS
except ImportError:
    _MESSAGE_FILTERS = None

IMAGE, CLOUD = 0, 1


def stamp_seconds(header) -> float:
    return header.stamp.sec + 1e-9 * header.stamp.nanosec


class CloudImageSync:
    """Pairs (image, cloud) whose stamps differ by at most ``slop_s``; ``on_pair(image, cloud)`` gets each pair.

    A message is counted in ``on_unsynchronized`` once it can no longer be paired: it is more than ``slop_s`` older
    than the newest message of the other stream (streams arrive in stamp order), it fell out of a full queue, or a
    newer message of its stream was paired first. With a 30 Hz camera and a 10 Hz LiDAR two of three images are
    counted: that is expected. A message with a negative stamp raises InputError (and is not queued).
    """

    def __init__(self, slop_s: float, queue_size: int, on_pair: Callable[[Any, Any], None],
                 on_unsynchronized: Callable[[], None], use_message_filters: bool = True):
        self.slop_s, self.queue_size = slop_s, queue_size
        self._on_pair, self._on_unsynchronized = on_pair, on_unsynchronized
        self._lock = threading.Lock()
        self._pending: list[deque[float]] = [deque(), deque()]  # stamps that may still pair, per stream
        self._newest = [float("-inf"), float("-inf")]
        self._matched_now: tuple | None = None
        if use_message_filters and _MESSAGE_FILTERS is not None:
            self._inputs = [_MESSAGE_FILTERS.SimpleFilter(), _MESSAGE_FILTERS.SimpleFilter()]
            sync = _MESSAGE_FILTERS.ApproximateTimeSynchronizer(self._inputs, queue_size, slop_s)
            sync.registerCallback(self._matched)
            self.implementation = "message_filters"
        else:
            self._inputs = None
            self._sync = ApproximateTimeSync(2, slop_s, queue_size, callback=self._matched)
            self.implementation = "depthfm_ros.sync"

    def _matched(self, image, cloud) -> None:
        self._matched_now = (image, cloud)

    def add_image(self, msg) -> None:
        self._add(IMAGE, msg)

    def add_cloud(self, msg) -> None:
        self._add(CLOUD, msg)

    def _add(self, stream: int, msg) -> None:
        if msg.header.stamp.sec < 0:  # message_filters (rclpy Time) raises on it: refuse it the same way here
            raise InputError(f"negative header stamp ({msg.header.stamp.sec} s) cannot be synchronized")
        stamp = stamp_seconds(msg.header)
        with self._lock:
            self._matched_now = None
            if self._inputs is not None:
                self._inputs[stream].signalMessage(msg)
            else:
                self._sync.add(stream, stamp, msg)
            pair, self._matched_now = self._matched_now, None
            lost = self._account(stream, stamp, msg, pair)
        for _ in range(lost):
            self._on_unsynchronized()
        if pair is not None:
            self._on_pair(*pair)

    def _account(self, stream: int, stamp: float, msg, pair) -> int:
        """Update the stamps that may still pair; return how many messages just lost every chance."""
        self._newest[stream] = max(self._newest[stream], stamp)
        pending = self._pending
        lost = 0
        if pair is None or all(m is not msg for m in pair):  # message_filters may pair older messages
            pending[stream].append(stamp)
            if len(pending[stream]) > 1 and pending[stream][-2] > stamp:
                pending[stream] = deque(sorted(pending[stream]))
        if pair is not None:  # the pair and everything older leave both queues
            for k, paired_msg in enumerate(pair):
                paired = stamp_seconds(paired_msg.header)
                while pending[k] and pending[k][0] <= paired:
                    if pending[k].popleft() < paired:
                        lost += 1
        for k in (IMAGE, CLOUD):
            while len(pending[k]) > self.queue_size:
                pending[k].popleft()
                lost += 1
            horizon = self._newest[1 - k] - self.slop_s
            while pending[k] and pending[k][0] < horizon:
                pending[k].popleft()
                lost += 1
        return lost


class LidarExtrinsic:
    """``T_cam_lidar`` (4x4) for a cloud frame and image frame at the image stamp.

    tf2 (when ``tf2_ros`` is importable) is asked first, waiting at most ``timeout_s``; when it has no transform
    the parameters' fixed transform is used. :meth:`lookup` returns (T, source, tf error or "").
    """

    def __init__(self, node, xyz_3, quat_xyzw_4, timeout_s: float):
        self.fixed = transform_from_xyz_quat(xyz_3, quat_xyzw_4)
        self.timeout_s = timeout_s
        try:
            import tf2_ros
        except ImportError:
            self.buffer = self.listener = None
        else:
            self.buffer = tf2_ros.Buffer(node=node)
            self.listener = tf2_ros.TransformListener(self.buffer, node)

    def lookup(self, cloud_frame: str, image_frame: str, image_stamp) -> tuple[np.ndarray, str, str]:
        if self.buffer is None:
            return self.fixed, "parameters", ""
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            tf = self.buffer.lookup_transform(image_frame, cloud_frame, Time.from_msg(image_stamp),
                                              timeout=Duration(seconds=self.timeout_s)).transform
        except Exception as exc:  # tf2 LookupException, ExtrapolationException, ...: use the parameters
            return self.fixed, "parameters", f"tf2 {cloud_frame!r} -> {image_frame!r}: {exc}"
        t, q = tf.translation, tf.rotation
        return transform_from_xyz_quat((t.x, t.y, t.z), (q.x, q.y, q.z, q.w)), "tf2", ""


@dataclass(frozen=True)
class AlignedFrame:
    """One frame in metres (all (H, W)): ``depth_hw_m`` = exp(a·z + b) float32 (NaN where not finite), ``std_hw_m``
    its first-order std, ``completed_hw_m`` the LiDAR-completed depth and ``lidar_mask_hw`` the LiDAR pixels it
    kept (both None until completed), and the fit."""

    depth_hw_m: np.ndarray
    std_hw_m: np.ndarray
    completed_hw_m: np.ndarray | None
    lidar_mask_hw: np.ndarray | None
    fit: LogDepthFit


def sparse_depth(points_n3: np.ndarray, camera: PinholeCamera, T_cam_lidar: np.ndarray, width: int, height: int,
                 min_range_m: float = 0.1, max_range_m: float = 0.0) -> np.ndarray:
    """LiDAR points as a sparse depth image ``(height, width)`` of the camera scaled to that size (NaN = none)."""
    return project_points(points_n3, camera, T_cam_lidar, size_wh=(width, height), min_depth_m=min_range_m,
                          max_depth_m=max_range_m if max_range_m > 0 else np.inf)


def align_frame(z_hw: np.ndarray, std_z_hw: np.ndarray, sparse_hw_m: np.ndarray, complete: bool = True) -> AlignedFrame:
    """Fit ``log d = a·z + b`` to the sparse depth (weighted by the ensemble std) and, with ``complete``, complete it
    (:func:`complete_frame`).

    Raises AlignmentError when the fit is refused (too few or degenerate points).
    """
    fit = fit_log_depth(z_hw, sparse_hw_m, std_z_hw)
    depth = fit.depth_m(z_hw)
    frame = AlignedFrame(depth, metric_std(std_z_hw, depth, fit), None, None, fit)
    return complete_frame(frame, z_hw, sparse_hw_m) if complete else frame


def complete_frame(frame: AlignedFrame, z_hw: np.ndarray, sparse_hw_m: np.ndarray) -> AlignedFrame:
    """``frame`` with its completed depth: the fit corrected towards the LiDAR (fusion.complete_depth, no guide
    image: on the synthetic benchmark the image guide changed RMSE by < 1 % at 3-4x the cost)."""
    completed = complete_depth(z_hw, sparse_hw_m, frame.fit)
    return replace(frame, completed_hw_m=completed.depth_hw_m, lidar_mask_hw=completed.lidar_mask_hw)
