"""The demo graph of depthfm-demo: depthfm_node fed by a synthetic moving camera, in this process."""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from ..sim.synthetic import camera_path, default_camera, moved_scene, random_scene_spec, render_scene
from .conversions import camera_to_camera_info, image_to_array, numpy_to_image, stamp_ns
from .graph import InProcessGraph
from .node import DepthFMNode
from .stats import StatsSnapshot

CAMERA_NS = "/depthfm_demo/camera"


@dataclass(frozen=True)
class DemoRun:
    """What came out: per collected frame the input image, relative depth and uncertainty (same order), frames
    sent, the node's counters, seconds taken, whether all frames came before the timeout, and per collected frame the
    end-to-end latency over DDS (image stamped and published -> relative depth received, ms)."""

    rgb_hwc_u8: list[np.ndarray]
    depth_hw: list[np.ndarray]
    uncertainty_hw: list[np.ndarray]
    frames_sent: int
    stats: StatsSnapshot
    elapsed_sec: float
    finished: bool
    latencies_ms: list[float]


def demo_frame(spec, camera, k: int, seed: int):
    """Frame ``k`` of the demo camera: a slow forward drive that loops every 16 frames, so the camera never leaves
    the scene however many frames the node drops."""
    return render_scene(moved_scene(spec, 0.5 * camera_path(k % 16)), camera, np.random.default_rng(seed))


def run_demo(parameters: dict, *, width: int, height: int, rate_hz: float, frames: int, scene_seed: int,
             timeout_sec: float) -> DemoRun:
    """A camera node publishes a rendered scene (driving forward through boxes) on ``CAMERA_NS/image_raw`` and
    ``.../camera_info`` at ``rate_hz``; depthfm_node (``parameters``) publishes depth and uncertainty; the first
    ``frames`` outputs with both are collected."""
    # The demo's traffic never needs to leave this machine.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    camera = default_camera(width, height)
    spec = random_scene_spec(np.random.default_rng(scene_seed))

    def render_frame(k: int):
        return demo_frame(spec, camera, k, scene_seed)

    with InProcessGraph() as graph:
        depth_node = graph.add(DepthFMNode(
            context=graph.context,
            parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()],
            cli_args=["--ros-args", "-r", f"image:={CAMERA_NS}/image_raw",
                      "-r", f"camera_info:={CAMERA_NS}/camera_info"]))
        demo = graph.add(rclpy.create_node("depthfm_demo", context=graph.context))
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        image_pub = demo.create_publisher(Image, f"{CAMERA_NS}/image_raw", qos)
        info_pub = demo.create_publisher(CameraInfo, f"{CAMERA_NS}/camera_info", qos)
        sent: dict[int, int] = {}  # stamp (ns) -> frame index
        outputs: dict[str, dict[int, np.ndarray]] = {"depth": {}, "uncertainty": {}}
        received_ns: dict[int, int] = {}  # stamp (ns) -> when its depth arrived, on the same clock
        done = threading.Event()
        lock = threading.Lock()
        frame_index = [0]

        def publish_frame():
            if depth_node.outputs.relative_depth.get_subscription_count() == 0:
                return  # wait until the graph is connected
            k = frame_index[0]
            frame_index[0] += 1
            scene = render_frame(k)
            stamp = demo.get_clock().now().to_msg()
            header = Image().header
            header.stamp, header.frame_id = stamp, "demo_camera_optical"
            with lock:
                sent[stamp_ns(stamp)] = k
            info_pub.publish(camera_to_camera_info(camera, header))
            image_pub.publish(numpy_to_image(scene.rgb_hwc_u8, "rgb8", header))

        def collector(key):
            def collect(msg):
                now = demo.get_clock().now().nanoseconds
                with lock:
                    if key == "depth":
                        received_ns[stamp_ns(msg.header.stamp)] = now
                    outputs[key][stamp_ns(msg.header.stamp)] = image_to_array(msg)
                    if len(set(outputs["depth"]) & set(outputs["uncertainty"])) >= frames:
                        done.set()
            return collect

        demo.create_subscription(Image, "/depthfm/relative_depth", collector("depth"), qos)
        demo.create_subscription(Image, "/depthfm/relative_uncertainty", collector("uncertainty"), qos)
        demo.create_timer(1.0 / rate_hz, publish_frame)
        graph.start()
        t0 = time.monotonic()
        print(f"depthfm-demo: {depth_node.backend.describe()}, {width}x{height} at {rate_hz:g} Hz, "
              f"collecting {frames} frame(s) ...", file=sys.stderr)
        finished = done.wait(timeout_sec)
        elapsed = time.monotonic() - t0
        snap = depth_node.stats.snapshot()
    stamps = sorted(set(outputs["depth"]) & set(outputs["uncertainty"]))[:frames]
    return DemoRun([render_frame(sent[stamp]).rgb_hwc_u8 for stamp in stamps],
                   [outputs["depth"][stamp] for stamp in stamps], [outputs["uncertainty"][stamp] for stamp in stamps],
                   frame_index[0], snap, elapsed, finished, [1e-6 * (received_ns[s] - s) for s in stamps])

