"""depthfm-demo: depthfm_node in a real ROS 2 graph (in this process) fed by a synthetic moving camera.

A camera node publishes a rendered scene (camera driving forward through boxes) on
``/depthfm_demo/camera/image_raw`` and ``.../camera_info`` at ``--rate`` Hz; the node publishes
``/depthfm/depth`` and ``/depthfm/uncertainty``; a subscriber collects ``--frames`` outputs and writes
colour-mapped PNGs (input, depth, uncertainty) to ``--output``. Without --checkpoint the model is the tiny
random one: the plumbing is real, the depth is not.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from ..processing import colorize
from ..ros.params import parameters_from_settings
from ..sim.synthetic import camera_path, default_camera, moved_scene, random_scene_spec, render_scene
from .common import add_model_args, run_cli, settings_from_args

CAMERA_NS = "/depthfm_demo/camera"


def _parse(argv):
    parser = argparse.ArgumentParser(prog="depthfm-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, ensemble=2)
    parser.set_defaults(processing_resolution=256)
    g = parser.add_argument_group("demo")
    g.add_argument("--output", "-o", type=Path, default=Path("depthfm_demo"), help="folder for the PNGs")
    g.add_argument("--frames", type=int, default=8, help="depth outputs to collect")
    g.add_argument("--rate", type=float, default=5.0, help="camera rate in Hz (frames beyond the node's rate drop)")
    g.add_argument("--width", type=int, default=320)
    g.add_argument("--height", type=int, default=240)
    g.add_argument("--scene-seed", type=int, default=3, help="seed of the synthetic scene")
    g.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.rate <= 0 or args.width < 8 or args.height < 8:
        parser.error("--frames >= 1, --rate > 0 and an image of at least 8x8 are needed")
    return args


def node_parameters(args: argparse.Namespace) -> dict:
    """depthfm_node parameters for the command-line model arguments (tiny unless a checkpoint/engine is given)."""
    settings = settings_from_args(args)
    if not (settings.checkpoint or settings.engine):
        settings = replace(settings, tiny_model=True)
    return {**parameters_from_settings(settings), "output_qos": "reliable", "input_qos": "reliable"}


def _main(argv=None) -> int:
    args = _parse(argv)
    # The demo's traffic never needs to leave this machine.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from ..ros.conversions import camera_to_camera_info, image_to_array, numpy_to_image, stamp_ns
    from ..ros.graph import InProcessGraph
    from ..ros.node import DepthFMNode

    camera = default_camera(args.width, args.height)
    spec = random_scene_spec(np.random.default_rng(args.scene_seed))

    def render_frame(k: int):
        return render_scene(moved_scene(spec, camera_path(k)), camera, np.random.default_rng(args.scene_seed))

    with InProcessGraph() as graph:
        depth_node = graph.add(DepthFMNode(
            context=graph.context,
            parameter_overrides=[Parameter(k, value=v) for k, v in node_parameters(args).items()],
            cli_args=["--ros-args", "-r", f"image:={CAMERA_NS}/image_raw",
                      "-r", f"camera_info:={CAMERA_NS}/camera_info"]))
        demo = graph.add(rclpy.create_node("depthfm_demo", context=graph.context))
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        image_pub = demo.create_publisher(Image, f"{CAMERA_NS}/image_raw", qos)
        info_pub = demo.create_publisher(CameraInfo, f"{CAMERA_NS}/camera_info", qos)
        sent: dict[int, int] = {}  # stamp (ns) -> frame index
        outputs: dict[str, dict[int, np.ndarray]] = {"depth": {}, "uncertainty": {}}
        done = threading.Event()
        lock = threading.Lock()
        frame_index = [0]

        def publish_frame():
            if depth_node.depth_pub.get_subscription_count() == 0:
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
                with lock:
                    outputs[key][stamp_ns(msg.header.stamp)] = image_to_array(msg)
                    if len(set(outputs["depth"]) & set(outputs["uncertainty"])) >= args.frames:
                        done.set()
            return collect

        demo.create_subscription(Image, "/depthfm/depth", collector("depth"), qos)
        demo.create_subscription(Image, "/depthfm/uncertainty", collector("uncertainty"), qos)
        demo.create_timer(1.0 / args.rate, publish_frame)
        graph.start()
        t0 = time.monotonic()
        print(f"depthfm-demo: {depth_node.backend.describe()}, {args.width}x{args.height} at {args.rate:g} Hz, "
              f"collecting {args.frames} frame(s) ...", file=sys.stderr)
        finished = done.wait(args.timeout)
        elapsed = time.monotonic() - t0
        snap = depth_node.stats.snapshot()

    args.output.mkdir(parents=True, exist_ok=True)
    stamps = sorted(set(outputs["depth"]) & set(outputs["uncertainty"]))[: args.frames]
    written = []
    for i, stamp in enumerate(stamps):
        maps = {"rgb": render_frame(sent[stamp]).rgb_hwc_u8, "depth": colorize(outputs["depth"][stamp], 0.0, 1.0),
                "uncertainty": colorize(outputs["uncertainty"][stamp], 0.0)}
        for name, rgb in maps.items():
            path = args.output / f"frame_{i:03d}_{name}.png"
            cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            written.append(path)
    print(f"depthfm-demo: {len(stamps)} frame(s) in {elapsed:.1f} s; sent {frame_index[0]}, processed "
          f"{snap.processed}, dropped {snap.dropped}; mean latency {snap.latency_ms:.0f} ms, inference "
          f"{snap.inference_ms:.0f} ms", file=sys.stderr)
    print(f"depthfm-demo: wrote {len(written)} PNG(s) to {args.output.resolve()}")
    if not finished:
        print(f"depthfm-demo: timed out after {args.timeout:g} s with {len(stamps)} of {args.frames} frame(s)",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
