"""Soak test: depthfm_node as its own process under a camera (+ LiDAR) stream for N minutes, on loopback.

    python scripts/soak.py --minutes 30 --json soak.json [--width 640 --height 480 --rate 30 --lidar-rate 10]
    python scripts/soak.py --minutes 1.5 --dropouts 0.5 3      # LiDAR dropouts of 0.5 s and 3 s

Reports images sent, outputs received, frames the node dropped, end-to-end latency (publish -> relative depth
received, by header stamp: p50 / p95 / max) beside the node's inference time (from /diagnostics), frames lost (taken
by the node's worker, never published: relative outputs must come for every one), metric frames during each LiDAR
dropout (within metric_hold_sec of its start: held; after it: relative only), and the node's RSS over time with its
slope after a warm-up (MiB/min, least squares). Prints markdown tables and optionally JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--rate", type=float, default=30.0, help="camera Hz")
    parser.add_argument("--lidar-rate", type=float, default=10.0, help="LiDAR Hz (0: no LiDAR)")
    parser.add_argument("--processing-resolution", type=int, default=256)
    parser.add_argument("--warmup-minutes", type=float, default=0.5)
    parser.add_argument("--dropouts", type=float, nargs="*", default=[],
                        help="LiDAR dropouts (s), spread evenly over the run after the warm-up")
    parser.add_argument("--hold", type=float, default=1.0, help="the node's metric_hold_sec")
    parser.add_argument("--engine", choices=("tiny", "scene"), default="tiny",
                        help="tiny: the random tiny model on torch (its output is no depth: no metres); scene: an "
                             "engine that predicts the scene exactly (sim.engine.SceneBackend), taking --engine-ms")
    parser.add_argument("--engine-ms", type=float, default=50.0, help="time per frame of the scene engine")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the node process of --engine scene
    args, ros_args = parser.parse_known_args()
    if args.serve:
        return serve_scene_node(args, ros_args)

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
    from scipy.spatial.transform import Rotation

    from depthfm_ros.sim.synthetic import T_CAM_LIDAR_DEFAULT, make_scene, simulate_lidar

    scene = make_scene(np.random.default_rng(0), args.width, args.height)
    scan = simulate_lidar(scene, "vlp16", np.random.default_rng(1))
    use_lidar = args.lidar_rate > 0
    quat = Rotation.from_matrix(T_CAM_LIDAR_DEFAULT[:3, :3]).as_quat().tolist()
    start = [sys.executable, "-m", "depthfm_ros.ros.node"] if args.engine == "tiny" else \
        [sys.executable, __file__, "--serve", "--width", str(args.width), "--height", str(args.height),
         "--engine-ms", str(args.engine_ms)]
    node_args = [*start, "--ros-args", "-r", "__ns:=/soak",
                 "-p", "model:=tiny", "-p", f"processing_resolution:={args.processing_resolution}",
                 "-p", "torch_threads:=1", "-p", f"use_lidar:={str(use_lidar).lower()}", "-p", "publish_points:=true",
                 "-p", f"metric_hold_sec:={args.hold}",
                 "-p", f"lidar_to_camera_xyz:={T_CAM_LIDAR_DEFAULT[:3, 3].tolist()}",
                 "-p", f"lidar_to_camera_quat_xyzw:={quat}"]
    node = subprocess.Popen(node_args, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        return _run(args, node, scene, scan, use_lidar)
    finally:
        if node.poll() is None:
            node.kill()


def serve_scene_node(args, ros_args: list[str]) -> int:
    """depthfm_node with the scene engine, until SIGINT (the node process of ``--engine scene``)."""
    import rclpy

    from depthfm_ros.ros.node import DepthFMNode
    from depthfm_ros.sim.engine import SceneBackend
    from depthfm_ros.sim.synthetic import make_scene

    scene = make_scene(np.random.default_rng(0), args.width, args.height)
    rclpy.init(args=ros_args)
    node = DepthFMNode(backend=SceneBackend(scene.depth_hw_m, delay_sec=args.engine_ms / 1e3),
                       cli_args=ros_args[ros_args.index("--ros-args"):])
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _run(args, node, scene, scan, use_lidar) -> int:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from std_msgs.msg import Header
    from tqdm import tqdm

    from depthfm_ros.ros.conversions import camera_to_camera_info, numpy_to_image, stamp_ns, xyz_to_pointcloud2
    from depthfm_ros.ros.graph import InProcessGraph

    graph = InProcessGraph()
    probe = graph.add(rclpy.create_node("soak_probe", context=graph.context))
    sent: dict[int, float] = {}
    relative_stamps: set[int] = set()
    metric_stamps: set[int] = set()
    latencies: list[float] = []
    inference_ms: list[float] = []
    node_split: list[tuple[float, float]] = []  # the node's mean receive->publish and queue wait per status
    node_counts: dict[str, int] = {}
    lock = threading.Lock()

    def on_depth(msg):
        now = time.perf_counter()
        with lock:
            relative_stamps.add(stamp_ns(msg.header.stamp))
            t = sent.pop(stamp_ns(msg.header.stamp), None)
            if t is not None:
                latencies.append(1e3 * (now - t))

    def on_metric(msg):
        with lock:
            metric_stamps.add(stamp_ns(msg.header.stamp))

    def on_diagnostics(msg):
        for status in msg.status:
            if status.name.endswith("depthfm: depth"):
                values = {kv.key: kv.value for kv in status.values}
                if values.get("inference_ms", "nan") != "nan":
                    inference_ms.append(float(values["inference_ms"]))
                    node_split.append((float(values["latency_ms"]), float(values.get("queue_ms", "nan"))))
                node_counts.update({k: int(values[k]) for k in ("frames_processed", "frames_dropped") if k in values})

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    image_pub = probe.create_publisher(Image, "/soak/image", qos_profile_sensor_data)
    info_pub = probe.create_publisher(CameraInfo, "/soak/camera_info", qos_profile_sensor_data)
    cloud_pub = probe.create_publisher(PointCloud2, "/soak/lidar", qos_profile_sensor_data)
    probe.create_subscription(Image, "/soak/depthfm/relative_depth", on_depth, reliable)
    probe.create_subscription(Image, "/soak/depthfm/depth", on_metric, reliable)
    probe.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, reliable)
    graph.start()
    deadline = time.monotonic() + 120
    while image_pub.get_subscription_count() == 0 and time.monotonic() < deadline and node.poll() is None:
        time.sleep(0.1)
    counts = {"images": 0, "clouds": 0}
    rss: list[tuple[float, float]] = []
    t0 = time.monotonic()
    duration = 60.0 * args.minutes
    warmup = 60.0 * args.warmup_minutes
    gap = (duration - warmup) / (len(args.dropouts) + 1)
    dropouts = [(warmup + gap * (k + 1), warmup + gap * (k + 1) + length) for k, length in enumerate(args.dropouts)]
    dropout_stamps: list[tuple[int, int]] = []  # (start, end) in stamp nanoseconds
    next_image = next_cloud = next_rss = t0
    with tqdm(total=int(duration), unit="s", desc="soak") as bar:
        while (now := time.monotonic()) - t0 < duration and node.poll() is None:
            if now >= next_image:
                stamp = time.time_ns()
                header = Header(frame_id="camera_optical")
                header.stamp.sec, header.stamp.nanosec = divmod(stamp, 10**9)
                info_pub.publish(camera_to_camera_info(scene.camera, header))
                with lock:
                    sent[stamp] = time.perf_counter()
                image_pub.publish(numpy_to_image(scene.rgb_hwc_u8, "rgb8", header))
                counts["images"] += 1
                next_image += 1.0 / args.rate
            if use_lidar and now >= next_cloud:
                dropped = any(start <= now - t0 < end for start, end in dropouts)
                if not dropped:
                    header = Header(frame_id="lidar")
                    header.stamp.sec, header.stamp.nanosec = divmod(time.time_ns(), 10**9)
                    cloud_pub.publish(xyz_to_pointcloud2(scan.points_n3, header))
                    counts["clouds"] += 1
                next_cloud += 1.0 / args.lidar_rate
            for start, end in dropouts[len(dropout_stamps):len(dropout_stamps) + 1]:
                if now - t0 >= start:  # the wall time of this dropout in stamps
                    dropout_stamps.append((time.time_ns(), time.time_ns() + int((end - start) * 1e9)))
            if now >= next_rss:
                rss.append((now - t0, rss_mib(node.pid)))
                next_rss += 1.0
                bar.n = int(now - t0)
                bar.refresh()
            time.sleep(max(0.0, min(next_image, next_cloud if use_lidar else next_image) - time.monotonic()))
    time.sleep(2.0)  # outputs in flight
    node.send_signal(2)
    node.wait(timeout=30)
    graph.close()

    steady = np.array([(t, m) for t, m in rss if t >= 60.0 * args.warmup_minutes])
    hold_ns = int(args.hold * 1e9)
    windows = []
    for (start, end), length in zip(dropout_stamps, args.dropouts):
        frames = sorted(st for st in relative_stamps if start <= st < end)
        held = [st for st in frames if st < start + hold_ns]  # the hold covers these
        windows.append({"dropout_sec": length, "frames": len(frames), "metric_within_hold": sum(
            st in metric_stamps for st in held), "frames_within_hold": len(held),
            "metric_after_hold": sum(st in metric_stamps for st in frames if st >= start + hold_ns)})
    processed = node_counts.get("frames_processed", 0)
    slope = float(np.polyfit(steady[:, 0] / 60.0, steady[:, 1], 1)[0]) if len(steady) > 2 else float("nan")
    lat = np.asarray(latencies)
    result = {"minutes": args.minutes, "size": f"{args.width}x{args.height}", "camera_hz": args.rate,
              "lidar_hz": args.lidar_rate, "images_sent": counts["images"], "clouds_sent": counts["clouds"],
              "outputs": int(lat.size), "relative_outputs": len(relative_stamps),
              "metric_outputs": len(metric_stamps), "node_processed": processed,
              "frames_lost": processed - len(relative_stamps), "dropouts": windows,
              "latency_ms": {k: float(np.percentile(lat, q)) if lat.size else float("nan")
                             for k, q in (("p50", 50), ("p95", 95), ("max", 100))},
              "inference_ms_p50": float(np.median(inference_ms)) if inference_ms else float("nan"),
              "node_latency_ms_p50": float(np.median([a for a, _ in node_split])) if node_split else float("nan"),
              "node_queue_ms_p50": float(np.nanmedian([q for _, q in node_split])) if node_split else float("nan"),
              "rss_mib": {"start": rss[0][1] if rss else float("nan"), "end": rss[-1][1] if rss else float("nan"),
                          "slope_mib_per_min_after_warmup": slope}}
    print(f"engine {args.engine}" + (f" ({args.engine_ms:g} ms a frame)" if args.engine == "scene" else "")
          + f", {args.width}x{args.height} at {args.rate:g} Hz, LiDAR {args.lidar_rate:g} Hz\n")
    print(f"| minutes | images sent | outputs | latency p50 / p95 / max ms | inference ms | RSS start -> end MiB "
          f"| RSS slope MiB/min |\n|---:|---:|---:|---|---:|---|---:|\n| {args.minutes:g} | {counts['images']} "
          f"| {lat.size} | {result['latency_ms']['p50']:.0f} / {result['latency_ms']['p95']:.0f} / "
          f"{result['latency_ms']['max']:.0f} | {result['inference_ms_p50']:.0f} | {result['rss_mib']['start']:.0f} -> "
          f"{result['rss_mib']['end']:.0f} | {slope:.2f} |")
    inference = result["inference_ms_p50"]
    print(f"\np95 latency / median inference: {result['latency_ms']['p95'] / inference:.2f}; frames the node took: "
          f"{processed}, relative outputs: {len(relative_stamps)} (lost {processed - len(relative_stamps)}), metric "
          f"outputs: {len(metric_stamps)}")
    if windows:
        print("\n| LiDAR dropout s | frames | metric frames within metric_hold_sec | metric frames after it |\n"
              "|---:|---:|---:|---:|")
        for w in windows:
            print(f"| {w['dropout_sec']:g} | {w['frames']} | {w['metric_within_hold']} of {w['frames_within_hold']} "
                  f"| {w['metric_after_hold']} of {w['frames'] - w['frames_within_hold']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
