"""depthfm_node: camera images in; relative depth and uncertainty on every frame, metric depth, uncertainty,
completed depth and points on frames with an accepted metric scale (ros/outputs.py has the topic contract). The
maths lives in the library (pipeline, fusion); the node converts messages, schedules and publishes.

One node serves one camera, or several (``cameras``: one model and engine for all, ros/camera.py has what each
camera owns). Inference runs on a worker thread that takes only each camera's newest image; frames of several
cameras that arrive within ``batch_window_sec`` run as one batch (cameras x ensemble members,
ros/workers.py: CameraSlots), and each camera's relative outputs go out at once. A frame replaced before the worker
took it is dropped and counted, so latency stays within one inference. The metric step (binding the frame's LiDAR
cloud, which may come before or after the image, the fit, the scale and the metric outputs) runs on each camera's
own metric worker, so the camera never waits for the LiDAR. Bad input, failed inference and failed publishing are
logged (once per kind and period), counted and shown in /diagnostics, per camera; the node keeps serving, and one
camera's bad frame never costs another camera its frame. Topics: README.md, docs/ros.md.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, PointCloud2

from ..backends import Backend, load_backend
from ..models.completion import completion_fn
from ..pipeline import DepthFMPipeline
from .camera import CameraStream
from .diagnostics import diagnostic_array
from .entry_points import NODE_NAME, run
from .outputs import DEPTH_TOPIC, RELATIVE_DEPTH_TOPIC, output_topic
from .params import declare_and_read
from .workers import CameraSlots


def qos_profile(name: str) -> QoSProfile:
    """'sensor_data' (best effort, keep last 5) or 'reliable' (keep last 5)."""
    if name == "sensor_data":
        return qos_profile_sensor_data
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)


class DepthFMNode(Node):
    """ROS 2 wrapper around :class:`DepthFMPipeline` and :func:`depthfm_ros.fusion.frame.fuse_frame`, for one camera
    or several (``cameras``).

    ``cameras`` holds a :class:`~depthfm_ros.ros.camera.CameraStream` per camera; ``stats``, ``outputs``, ``lidar``,
    ``metric_worker`` and ``error_log`` are the first camera's (the only one without ``cameras``).

    Args:
        backend: an engine to use instead of the one the parameters describe (tests, demos, custom engines).
        **node_kwargs: passed to ``rclpy.node.Node`` (``context``, ``namespace``, ``parameter_overrides``, ...).

    Raises:
        ParameterError: a parameter is invalid; the message names it.
    """

    cameras: list[CameraStream] = []

    def __init__(self, *, backend: Backend | None = None, **node_kwargs):
        super().__init__(node_kwargs.pop("node_name", NODE_NAME), **node_kwargs)
        self.config = declare_and_read(self)
        self._start(backend)

    def _start(self, backend: Backend | None) -> None:
        """Load the engine (``backend`` if given), then create the cameras (publishers, subscriptions, metric
        workers), the diagnostics timer and the inference worker from ``self.config`` (the managed node's configure
        step, ros/lifecycle.py)."""
        config = self.config
        settings = config.model_settings()
        settings.apply_torch_threads()
        self.backend = backend if backend is not None else load_backend(settings)
        self.pipeline = DepthFMPipeline.from_settings(settings, self.backend)
        self._running = True
        names = config.cameras or ("",)
        out_qos, in_qos = qos_profile(config.output_qos), qos_profile(config.input_qos)
        completion = completion_fn(config.completion_checkpoint, settings) \
            if any(config.camera(name).use_lidar for name in names) else None
        self.cameras = []
        try:
            for index, name in enumerate(names):
                self.cameras.append(CameraStream(self, name, index, config.camera(name), out_qos, self._put,
                                                 completion))
        except BaseException:  # the metric workers of the cameras made so far must not outlive the failed start
            for camera in self.cameras:
                camera.stop()
            self.cameras = []
            raise
        self._slots = CameraSlots([camera.stats.frame_dropped for camera in self.cameras], config.batch_window_sec)
        for camera in self.cameras:
            self.create_subscription(camera.image_type, camera.image_topic,
                                     lambda msg, camera=camera: self._on_image(msg, camera), in_qos)
            self.create_subscription(CameraInfo, camera.camera_info_topic,
                                     lambda msg, camera=camera: self._on_camera_info(msg, camera), in_qos)
        clouds = defaultdict(list)  # one subscription per LiDAR topic: a cloud is converted once for its cameras
        for camera in self.cameras:
            if camera.lidar is not None:
                clouds[self.resolve_topic_name(camera.lidar.topic)].append(camera.lidar)
        for lidars in clouds.values():
            first, *others = lidars
            self.create_subscription(PointCloud2, first.topic,
                                     lambda msg, first=first, others=tuple(others): first.on_cloud(msg, others),
                                     in_qos)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # a steady clock: /diagnostics keep coming under use_sim_time before (or without) /clock
        self.create_timer(config.diagnostics_period_sec, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))

        self._worker = threading.Thread(target=self._work, name="depthfm-inference", daemon=True)
        self._worker.start()
        self._log_start(names)

    def _log_start(self, names) -> None:
        log, config = self.get_logger(), self.config
        pipeline = (f"{self.backend.describe()}, ensemble {config.ensemble_size}, processing resolution "
                    f"{config.processing_resolution or 'native'}")
        if not config.cameras:
            log.info(f"DepthFM on {self.cameras[0].describe()} with {pipeline} -> "
                     f"{self.resolve_topic_name(RELATIVE_DEPTH_TOPIC)}, {self.resolve_topic_name(DEPTH_TOPIC)}")
        else:
            log.info(f"DepthFM on {len(names)} cameras with {pipeline}, up to {config.batch_limit} images per "
                     f"engine call, batch window {config.batch_window_sec} s: " + "; ".join(
                         f"{c.describe()} -> {self.resolve_topic_name(output_topic(RELATIVE_DEPTH_TOPIC, c.name))}"
                         for c in self.cameras))
        if self.pipeline.identical_members_warning():
            log.warning(self.pipeline.identical_members_warning())
        for camera in self.cameras:
            if camera.lidar is not None:
                camera.logger.info(camera.lidar.describe())
            (camera.logger.info if camera.outputs.metric.chain else camera.logger.warning)(
                output_topic(camera.outputs.metric.describe(), camera.name))  # it names the single camera's topics
            if camera.ground_tf is not None and camera.ground_tf.buffer is None:
                camera.logger.warning(
                    f"ground_frame '{camera.config.ground_frame}' is set but tf2_ros is not installed: the ground "
                    "source uses camera_height_m, camera_pitch_deg and camera_roll_deg instead")

    # -- the first (single) camera's parts, as before several cameras ----------------------------------------------

    @property
    def stats(self):
        return self.cameras[0].stats if self.cameras else None

    @property
    def outputs(self):
        return self.cameras[0].outputs if self.cameras else None

    @property
    def lidar(self):
        return self.cameras[0].lidar if self.cameras else None

    @property
    def error_log(self):
        return self.cameras[0].error_log if self.cameras else None

    @property
    def metric_worker(self):
        return self.cameras[0].metric_worker if self.cameras else None

    @metric_worker.setter
    def metric_worker(self, worker) -> None:  # a bench runs the metric step inline
        self.cameras[0].metric_worker = worker

    @property
    def _camera_info(self):
        return self.cameras[0].camera_info if self.cameras else None

    @_camera_info.setter
    def _camera_info(self, msg) -> None:
        self.cameras[0].camera_info = msg

    def camera(self, name: str) -> CameraStream:
        """The camera called ``name`` ("" for a single camera); KeyError for another."""
        for camera in self.cameras:
            if camera.name == name:
                return camera
        raise KeyError(f"no camera {name!r}; cameras: {[c.name for c in self.cameras]}")

    # -- executor thread ----------------------------------------------------------------------------------------

    def _put(self, index: int, item) -> None:
        self._slots.put(index, item)

    def _on_image(self, msg, camera: CameraStream | None = None) -> None:
        (camera or self.cameras[0]).on_image(msg)

    def _on_camera_info(self, msg: CameraInfo, camera: CameraStream | None = None) -> None:
        (camera or self.cameras[0]).on_camera_info(msg)

    def _publish_diagnostics(self) -> None:
        name = self.get_fully_qualified_name()
        statuses = [status for camera in self.cameras
                    for status in camera.statuses(name, self.backend.describe(), self.backend.name)]
        self.diagnostics_pub.publish(diagnostic_array(statuses, self.get_clock().now().to_msg()))

    # -- inference worker ---------------------------------------------------------------------------------------

    def _work(self) -> None:
        while (batch := self._slots.take()) is not None:
            now = time.perf_counter()
            self._run_frames([(self.cameras[index], msg, t_received, 1e3 * (now - t_received))
                              for index, (msg, t_received) in batch])

    def _process(self, msg, t_received: float, queue_ms: float = float("nan")) -> None:
        """One frame of the first (single) camera, as the inference worker runs it."""
        self._run_frames([(self.cameras[0], msg, t_received, queue_ms)])

    def _run_frames(self, frames: list[tuple[CameraStream, object, float, float]]) -> None:
        """Frames of different cameras ((camera, msg, when it arrived, ms it waited)): decode each (bad input is
        counted for its camera), then one engine call per processing size (at most max_batch frames each; a frame
        whose size the engine refuses fails alone), each group's relative outputs published as soon as it has run
        and its frames handed to their cameras' metric workers; the worker keeps serving whatever happens."""
        groups: dict[tuple[int, int], list] = {}
        for camera, msg, t_received, queue_ms in frames:
            rgb_hwc_u8 = camera.decode(msg)
            if rgb_hwc_u8 is None:
                continue
            try:
                size = self.pipeline.size_for(*rgb_hwc_u8.shape[:2])
            except Exception as exc:
                camera.inference_failed(exc)
                continue
            groups.setdefault(size, []).append((camera, msg, rgb_hwc_u8, t_received, queue_ms))
        limit = min(self.config.batch_limit, self.backend.max_batch or self.config.batch_limit)
        for group in groups.values():
            for start in range(0, len(group), limit):
                self._infer(group[start:start + limit])

    def _infer(self, ready: list) -> None:
        """One engine call for ``ready`` frames (one processing size), then their relative outputs. When the call
        fails, each frame is tried alone (one camera's frame must not cost the others theirs), with its camera's
        noise generator put back first, so its noise stays that of a single-camera run."""
        states = [camera.rng.bit_generator.state for camera, *_ in ready]
        try:
            t0 = time.perf_counter()
            predictions = self.pipeline([rgb for _, _, rgb, _, _ in ready],
                                        generators=[camera.rng for camera, *_ in ready])
            inference_ms = 1e3 * (time.perf_counter() - t0)
        except Exception as exc:
            for (camera, *_), state in zip(ready, states):
                camera.rng.bit_generator.state = state
            if len(ready) > 1:
                for frame in ready:
                    self._infer([frame])
            else:
                ready[0][0].inference_failed(exc)
            return
        if not self._running:
            return
        for (camera, msg, rgb, t_received, queue_ms), prediction in zip(ready, predictions):
            camera.publish(prediction, msg.header, rgb, t_received, inference_ms, queue_ms)

    def _stop_worker(self) -> None:
        """Stop the workers after the inference and metric steps in flight (no-op before :meth:`_start` ran)."""
        worker = getattr(self, "_worker", None)  # None if the constructor failed (rclpy destroys such nodes too)
        if worker is not None:
            self._running = False
            self._slots.stop()
            worker.join(timeout=10.0)
        for camera in self.cameras:
            camera.stop()

    def destroy_node(self) -> None:
        """Stop the workers (after the inference and metric steps in flight), then destroy the node."""
        self._stop_worker()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """``ros2 run depthfm_ros depthfm_node --ros-args -p checkpoint:=... -p vae:=...`` (the console script is
    :func:`depthfm_ros.ros.entry_points.depthfm_node`, which sets up Ctrl-C handling before this module's imports)."""
    return run(DepthFMNode, args)


if __name__ == "__main__":
    sys.exit(main())
