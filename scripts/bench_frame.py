"""Per-frame work around the engine, stage by stage, exactly as depthfm_node does it (a zero-cost engine; not a test).

The bench builds a real ``DepthFMNode`` (``use_lidar`` and ``publish_points`` on, every other parameter at its
default: the node's filters, metric sources and completion), gives it a ``camera_info`` and hands it image + OS1-64
cloud pairs with ``DepthFMNode._process``, the node's per-frame calls. It times the library functions that frame path
calls (``STAGES``: the very functions, wrapped where the node looks them up; a wrapped call inside another counts
for the outer one only), and ``test/test_bench_frame.py`` traces a frame of the node to check that ``STAGES`` names
every call it makes and nothing else, so the bench cannot drift from the node.

Stages: conversion (Image -> RGB), preprocess (resize, [-1, 1], noise), engine (the replayed prediction: ~0),
postprocess (ensemble mean/std, resize back, relative depth), messages (the 32FC1 images and camera_info), cloud
(the extrinsic, PointCloud2 -> xyz), projection (LiDAR -> sparse depth), fit (the metric step: the robust log-depth
fit, depth_m, the range check, the metric scale's update and the metric depth + std maps), completion, points
(filters, xyz+rgb, the PointCloud2), publish (rclpy serializing every message; no subscriber); other = the rest of
``_process`` (bookkeeping). Each
stage's median and p95 over ``--repeats`` frames after a warm-up, wall clock (``perf_counter``) and the thread's CPU
time (robust on a shared machine), beside its target (issue 23). One core: the script pins itself to ``--core`` and
sets OpenCV and torch to one thread.

    python3 scripts/bench_frame.py [--sizes 640x480 1280x720] [--ensemble-size 1] [--repeats 50] [--json out.json]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from depthfm_ros.backends.base import Backend  # noqa: E402

#: stage -> the functions of the node's frame path it times, "module:qualname" where the node looks them up
STAGES = {
    "conversion": ["depthfm_ros.ros.conversions:image_to_rgb"],
    "preprocess": ["depthfm_ros.pipeline:DepthFMPipeline.preprocess"],
    "engine": [f"{__name__}:ReplayBackend.run"],  # the zero-cost replay below (a real engine: 5-20 ms on a GPU)
    "postprocess": ["depthfm_ros.pipeline:DepthFMPipeline.postprocess", "depthfm_ros.pipeline:postprocess_tensor"],
    "messages": ["depthfm_ros.ros.conversions:numpy_to_image", "depthfm_ros.ros.conversions:output_camera",
                 "depthfm_ros.ros.conversions:output_camera_info"],
    # the cloud is checked and converted when it arrives (the executor), bound and its extrinsic looked up per frame
    "cloud": ["depthfm_ros.ros.lidar:check_stamp", "depthfm_ros.ros.conversions:pointcloud2_to_xyz",
              "depthfm_ros.ros.lidar:LidarExtrinsic.lookup", "depthfm_ros.ros.lidar:LidarInput.bind"],
    "projection": ["depthfm_ros.fusion.frame:sparse_depth"],
    "fit": ["depthfm_ros.ros.outputs:frame_z_range", "depthfm_ros.fusion.frame:align_to_lidar",
            "depthfm_ros.fusion.frame:check_depth_range", "depthfm_ros.ros.lidar:LidarInput.cloud_checks",
            "depthfm_ros.fusion.metric:MetricScale.update", "depthfm_ros.ros.outputs:metric_maps"],
    "completion": ["depthfm_ros.fusion.frame:complete_depth"],
    "points": ["depthfm_ros.ros.outputs:points_from_depth", "depthfm_ros.ros.conversions:xyz_to_pointcloud2"],
    "publish": ["rclpy.publisher:Publisher.publish"],  # rclpy serializing every message (no subscriber here)
}
BASE_STAGES = ("conversion", "preprocess", "postprocess", "messages")
#: per-stage targets in ms at 640x480 on one core (issue 23); "base" = conversion + pre + post + messages
TARGETS_MS = {"base": 4.0, "fit": 3.0, "completion": 10.0, "points": 4.0}


def resolve(target: str):
    """(owner, attribute name, the attribute as stored) of "module:qualname" (a function or a class attribute)."""
    module_name, qualname = target.split(":")
    owner = importlib.import_module(module_name)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name, inspect.getattr_static(owner, name)


class StageTimer:
    """Wraps every ``STAGES`` target to add its wall and CPU time to its stage; only the outermost wrapped call is
    counted. :meth:`restore` puts the originals back."""

    def __init__(self, stages: dict[str, list[str]] = STAGES):
        self.wall = dict.fromkeys([*stages, "other"], 0.0)
        self.cpu = dict.fromkeys([*stages, "other"], 0.0)
        self._depth = 0
        self._patched = []
        for stage, targets in stages.items():
            for target in targets:
                self._wrap(target, stage)

    def _wrap(self, target: str, stage: str):
        owner, name, stored = resolve(target)
        func = stored.__func__ if isinstance(stored, (staticmethod, classmethod)) else stored

        @functools.wraps(func)
        def timed(*args, **kwargs):
            if self._depth:
                return func(*args, **kwargs)
            self._depth += 1
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                self.wall[stage] += time.perf_counter() - wall
                self.cpu[stage] += time.thread_time() - cpu
                self._depth -= 1

        setattr(owner, name, staticmethod(timed) if isinstance(stored, staticmethod) else timed)
        self._patched.append((owner, name, stored))

    def reset(self) -> None:
        for table in (self.wall, self.cpu):
            for stage in table:
                table[stage] = 0.0

    def restore(self) -> None:
        for owner, name, stored in reversed(self._patched):
            setattr(owner, name, stored)
        self._patched.clear()


class ReplayBackend(Backend):
    """A zero-cost engine: the scene's z at the processing size for every member (plus a small spread)."""

    name = "replay"
    num_steps = 1
    noising_step = 400

    def __init__(self, z_hw: np.ndarray, device: str | None = None):
        self.z_hw, self.device = z_hw, None if device is None else torch.device(device)

    @property
    def tensor_device(self):
        return self.device

    def run_tensors(self, rgb_bchw, noise):
        return torch.from_numpy(self.run(rgb_bchw.cpu().numpy(), noise.cpu().numpy())).to(self.device)

    def run(self, rgb_bchw, noise):
        b, _, h, w = rgb_bchw.shape
        m = self.check_inputs(rgb_bchw, noise)
        z = cv2.resize(self.z_hw, (w, h), interpolation=cv2.INTER_AREA)
        spread = 0.01 * noise[:, 0].repeat(8, axis=1).repeat(8, axis=2)
        return (z[None] + spread).reshape(b, m, h, w).astype(np.float32)


def frame_inputs(width: int, height: int, seed: int = 0):
    """A synthetic scene at ``width`` x ``height``, its simulated prediction, an OS1-64 scan and the image, cloud and
    camera_info messages (camera optical frame; the cloud in the LiDAR frame)."""
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    from depthfm_ros.ros import conversions
    from depthfm_ros.sim import synthetic

    scene = synthetic.make_scene(np.random.default_rng(seed), width, height)
    # a perfect prediction (the scene's log depth up to DepthFM's affine ambiguity): the fit is accepted on every
    # frame, so every stage runs (the costly path); a model's shape error can make the acceptance checks refuse a
    # frame, which then skips the completion and the points
    prediction = synthetic.simulate_prediction(scene, np.random.default_rng([seed, 1]), distortion_log=0.0,
                                               object_offset_log=0.0, curvature_log=0.0, noise_z=0.0, a=2.0)
    scan = synthetic.simulate_lidar(scene, "os64", np.random.default_rng([seed, 2]), outlier_fraction=0.05)
    image_msg = conversions.numpy_to_image(scene.rgb_hwc_u8, "rgb8", Header(frame_id="camera"))
    cloud_msg = conversions.xyz_to_pointcloud2(scan.points_n3, Header(frame_id="lidar"))
    K = scene.camera.K
    info = CameraInfo(header=Header(frame_id="camera"), width=width, height=height, distortion_model="plumb_bob",
                      d=[0.0] * 5, k=[float(v) for v in K.ravel()], r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                      p=[K[0, 0], 0.0, K[0, 2], 0.0, 0.0, K[1, 1], K[1, 2], 0.0, 0.0, 0.0, 1.0, 0.0])
    return scene, prediction, scan, image_msg, cloud_msg, info


@contextmanager
def bench_node(backend, T_cam_lidar: np.ndarray, parameters: dict | None = None):
    """A DepthFMNode with ``use_lidar`` and ``publish_points`` in a private rclpy context (not spun: the caller drives
    ``_process``); the extrinsic from the parameters (and tf2's static buffer where tf2_ros is installed)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter
    from scipy.spatial.transform import Rotation

    from depthfm_ros.ros.node import DepthFMNode

    quat = Rotation.from_matrix(T_cam_lidar[:3, :3]).as_quat()
    params = {"model": "tiny", "use_lidar": True, "publish_points": True, "torch_threads": 1,
              "lidar_wait_sec": 1e-6,  # the cloud is there before the image: the metric step never waits
              "lidar_to_camera_xyz": [float(v) for v in T_cam_lidar[:3, 3]],
              "lidar_to_camera_quat_xyzw": [float(v) for v in quat], **(parameters or {})}
    context = Context()
    rclpy.init(context=context, args=[])
    node = None
    try:
        node = DepthFMNode(backend=backend, context=context,
                           parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        node.metric_worker.stop()
        node.metric_worker = InlineMetricWorker(node)
        buffer = node.lidar.extrinsic.buffer
        if buffer is not None:  # tf2 installed: the transform comes from tf, as on a robot
            from geometry_msgs.msg import TransformStamped

            tf = TransformStamped()
            tf.header.frame_id, tf.child_frame_id = "camera", "lidar"
            t = tf.transform
            t.translation.x, t.translation.y, t.translation.z = (float(v) for v in T_cam_lidar[:3, 3])
            t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w = (float(v) for v in quat)
            buffer.set_transform_static(tf, "bench_frame")
        yield node
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)


class InlineMetricWorker:
    """The node's metric worker run inline, on the bench's thread: the frame's metric step right after its relative
    outputs, so one frame's stages are timed on one thread (on the robot it runs beside the next inference)."""

    def __init__(self, node):
        self.node = node

    def submit(self, item) -> None:
        self.node.cameras[0].metric_step(item, False)

    def clear(self) -> None:
        pass

    def stop(self) -> None:
        pass


def node_frame(node, image_msg, cloud_msg) -> None:
    """One frame as the node gets it: the cloud arrives (executor: checked and converted), then the image is
    inferred and published (``_process``, the inference worker) and its metric step runs (the metric worker)."""
    node.cameras[0].lidar.on_cloud(cloud_msg)
    node._process(image_msg, time.perf_counter())


def run_frames(node, image_msg, cloud_msg, info, repeats: int, timer: StageTimer | None = None,
               period_ns: int = 100_000_000) -> list[dict]:
    """``repeats`` frames through :func:`node_frame` (stamps ``period_ns`` apart); per frame the stage times (ms,
    wall and CPU) when a timer is given, and the whole frame."""
    node._on_camera_info(info)
    frames = []
    for k in range(repeats):
        for msg in (image_msg, cloud_msg, info):
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(1_000_000_000 + k * period_ns, 10**9)
        if timer is not None:
            timer.reset()
        wall, cpu = time.perf_counter(), time.thread_time()
        node_frame(node, image_msg, cloud_msg)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        frame = {"total": (1e3 * wall, 1e3 * cpu)}
        if timer is not None:
            frame.update({s: (1e3 * timer.wall[s], 1e3 * timer.cpu[s]) for s in timer.wall if s != "other"})
            frame["other"] = (frame["total"][0] - sum(v[0] for s, v in frame.items() if s != "total"),
                              frame["total"][1] - sum(v[1] for s, v in frame.items() if s != "total"))
        frames.append(frame)
    return frames


def summarize(frames: list[dict]) -> dict:
    """Median and p95 (wall and CPU ms) of every stage, and "base" (the sum of BASE_STAGES per frame)."""
    stages = {}
    for stage in frames[0]:
        wall = np.array([f[stage][0] for f in frames])
        cpu = np.array([f[stage][1] for f in frames])
        stages[stage] = {"median_ms": float(np.median(wall)), "p95_ms": float(np.percentile(wall, 95)),
                         "cpu_median_ms": float(np.median(cpu)), "cpu_p95_ms": float(np.percentile(cpu, 95))}
    if all(s in frames[0] for s in BASE_STAGES):
        base = [[sum(f[s][i] for s in BASE_STAGES) for f in frames] for i in (0, 1)]
        stages["base"] = {"median_ms": float(np.median(base[0])), "p95_ms": float(np.percentile(base[0], 95)),
                          "cpu_median_ms": float(np.median(base[1])), "cpu_p95_ms": float(np.percentile(base[1], 95))}
    return stages


def bench_size(width: int, height: int, ensemble_size: int, resolution: int, repeats: int,
               torch_device: str | None = None) -> dict:
    scene, sim, scan, image_msg, cloud_msg, info = frame_inputs(width, height)
    timer = StageTimer()
    try:
        with bench_node(ReplayBackend(sim.z_hw, torch_device), scan.T_cam_lidar,
                        {"ensemble_size": ensemble_size, "processing_resolution": resolution}) as node:
            run_frames(node, image_msg, cloud_msg, info, 2, timer)  # warm-up (caches, first allocations)
            frames = run_frames(node, image_msg, cloud_msg, info, repeats, timer)
            h, w = node.pipeline.size_for(height, width)
            lidar_points = int(len(scan.points_n3))
    finally:
        timer.restore()
    return {"size": f"{width}x{height}", "processing_size": f"{w}x{h}", "ensemble_size": ensemble_size,
            "lidar_points": lidar_points, "stages": summarize(frames)}


def print_table(result: dict) -> None:
    print(f"\n{result['size']} (processing {result['processing_size']}, ensemble {result['ensemble_size']}, "
          f"OS1-64 cloud of {result['lidar_points']} points)")
    print(f"  {'stage':12s} {'median ms':>10s} {'p95 ms':>8s} {'cpu median':>11s} {'cpu p95':>8s} {'target ms':>10s}")
    at_target_size = result["size"] == "640x480"
    for name, row in result["stages"].items():
        target = TARGETS_MS.get(name)
        mark = "" if target is None or not at_target_size else ("  ok" if row["median_ms"] <= target else "  OVER")
        target_text = f"{target:10.1f}" if target is not None else f"{'':10s}"
        print(f"  {name:12s} {row['median_ms']:10.2f} {row['p95_ms']:8.2f} {row['cpu_median_ms']:11.2f} "
              f"{row['cpu_p95_ms']:8.2f} {target_text}{mark}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"])
    parser.add_argument("--ensemble-size", type=int, default=1)
    parser.add_argument("--processing-resolution", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin to (-1: do not pin)")
    parser.add_argument("--torch-device", help="run the pre/post path on this torch device (cuda), as the node does "
                                               "with a CUDA engine")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.core >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, pinned to core {args.core}, "
               f"load average {load:.2f} at start")
    print(f"machine: {machine}; numpy {np.__version__}, opencv {cv2.__version__}; {args.repeats} frames")
    results = []
    for size in args.sizes:
        width, height = (int(v) for v in size.lower().split("x"))
        results.append(bench_size(width, height, args.ensemble_size, args.processing_resolution, args.repeats,
                                  args.torch_device))
        print_table(results[-1])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "targets_ms_640x480": TARGETS_MS, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
