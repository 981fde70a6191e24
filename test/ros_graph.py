"""A real ROS 2 graph for node tests: the node under test and a probe node on the package's InProcessGraph, with
bounded waits; plus the test images and camera_info."""

from __future__ import annotations

import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from depthfm_ros.backends.base import Backend
from depthfm_ros.ros import conversions
from depthfm_ros.ros.graph import InProcessGraph
from depthfm_ros.ros.node import DepthFMNode
from depthfm_ros.sim.engine import SceneBackend  # noqa: F401  (the tests' perfect engine)

H, W = 96, 128
TIMEOUT = 10.0


def rgb_frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def image_msg(seed: int, stamp_ns: int, frame_id: str = "camera_optical") -> Image:
    msg = Image(height=H, width=W, encoding="rgb8", step=3 * W, data=rgb_frame(seed).tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = frame_id
    return msg


def camera_info_msg(width: int, height: int) -> CameraInfo:
    f = 0.8 * width
    return CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=[f, 0.0, (width - 1) / 2, 0.0, f, (height - 1) / 2, 0.0, 0.0, 1.0],
                      r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                      p=[f, 0.0, (width - 1) / 2, 0.0, 0.0, f, (height - 1) / 2, 0.0, 0.0, 0.0, 1.0, 0.0])


def stamp_ns(msg) -> int:
    return conversions.stamp_ns(msg.header.stamp)


OUTPUTS = {"relative_depth": (Image, "depthfm/relative_depth"),
           "relative_uncertainty": (Image, "depthfm/relative_uncertainty"),
           "camera_info": (CameraInfo, "depthfm/camera_info")}
METRIC_OUTPUTS = {"depth": (Image, "depthfm/depth"), "uncertainty": (Image, "depthfm/uncertainty")}


class Graph(InProcessGraph):
    """The node under test and a probe node in one private context (depthfm_ros.ros.graph.InProcessGraph: its
    executor thread, and ``close`` destroys both nodes); the probe records every output and /diagnostics."""

    def __init__(self, backend: Backend, parameters: dict, namespace: str = "", remaps: list[str] = (),
                 outputs: dict[str, tuple[type, str]] = OUTPUTS):
        super().__init__()
        cli_args = ["--ros-args", *[arg for remap in remaps for arg in ("-r", remap)]] if remaps else None
        try:
            self.node = self.add(DepthFMNode(
                backend=backend, context=self.context, namespace=namespace, cli_args=cli_args,
                parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()]))
        except BaseException:
            self.close()
            raise
        self.probe = self.add(rclpy.create_node("probe", context=self.context))
        self.received: dict[str, list] = {key: [] for key in [*outputs, "diagnostics"]}
        self._cond = threading.Condition()
        prefix = f"/{namespace}" if namespace else ""
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self._output_subscriptions = [self.probe.create_subscription(msg_type, f"{prefix}/{topic}",
                                                                     self._collector(key), reliable)
                                      for key, (msg_type, topic) in outputs.items()]
        self.probe.create_subscription(DiagnosticArray, "/diagnostics", self._collector("diagnostics"), reliable)
        self.start()

    def _collector(self, key):
        def collect(msg):
            with self._cond:
                self.received[key].append(msg)
                self._cond.notify_all()
        return collect

    def publisher(self, msg_type, topic):
        pub = self.probe.create_publisher(msg_type, topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        topics = {sub.topic_name for sub in self._output_subscriptions}
        outputs = [out for out in self.node.publishers if out.topic_name in topics]
        assert len(outputs) == len(topics), f"node does not publish all of {sorted(topics)}"
        self.wait_for(lambda: pub.get_subscription_count() > 0 and
                      all(out.get_subscription_count() > 0 for out in outputs), "discovery")
        return pub

    def wait_for(self, predicate, what: str, timeout: float = TIMEOUT):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; stats {self.node.stats.snapshot()}")
                self._cond.wait(min(left, 0.05))

    def diagnostics(self, suffix: str) -> list[dict[str, str]]:
        """Key/values of every received status whose name ends with ``suffix``, oldest first."""
        with self._cond:
            arrays = list(self.received["diagnostics"])
        return [{kv.key: kv.value for kv in s.values} for a in arrays for s in a.status if s.name.endswith(suffix)]
