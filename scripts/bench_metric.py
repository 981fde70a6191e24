"""The node's metric step at 640x480 with an OS1-64 cloud, on one core (issue 23: <= 3 ms; not a test).

What depthfm_node does per frame once the cloud is projected (ros/outputs.py ``publish_metric``, fusion/frame.py):

  fit          align_to_lidar: the robust fit on a 2048-point subset and its acceptance checks
  range        check_depth_range: 10th..90th percentile of the fitted depth within the LiDAR's range
  scale        MetricScale.update: the temporal filter, the hold, the frame's z range
  maps         metric_maps: depth exp(a·z + b) and its calibrated std in metres (the published images)

Stages run interleaved ``--repeats`` times (a busy machine slows all alike); median, p95 and the fastest run (what
an idle core does) per stage and of the sum. One core: the script pins itself to ``--core`` and sets numpy/OpenCV
to one thread.

    python3 scripts/bench_metric.py [--repeats 200] [--size 640x480] [--pattern os64]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from depthfm_ros.fusion.alignment import align_to_lidar, frame_z_range  # noqa: E402
from depthfm_ros.fusion.frame import check_depth_range, metric_maps, sparse_depth  # noqa: E402
from depthfm_ros.fusion.metric import MetricScale  # noqa: E402
from depthfm_ros.sim import synthetic  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--pattern", default="os64", choices=synthetic.LIDAR_PATTERNS)
    parser.add_argument("--core", type=int, default=0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    cv2.setNumThreads(1)
    width, height = (int(v) for v in args.size.split("x"))
    scene = synthetic.make_scene(np.random.default_rng(0), width, height)
    pred = synthetic.simulate_prediction(scene, np.random.default_rng(1))
    scan = synthetic.simulate_lidar(scene, args.pattern, np.random.default_rng(2), outlier_fraction=0.05)
    sparse = sparse_depth(scan.points_n3, scene.camera, scan.T_cam_lidar, width, height, 0.1, 100.0)
    z, std = pred.z_hw, pred.std_z_hw
    scale = MetricScale("lidar", use_lidar=True)
    state = {"t": 0.0}

    def step_fit():
        state["fit"] = align_to_lidar(z, sparse, std, z_range=state["z_range"])

    def step_range():
        check_depth_range(state["fit"], z, 0.1, 100.0)

    def step_scale():
        state["t"] += 0.1
        state["estimate"] = scale.update(state["t"], z, lidar_fit=state["fit"], z_range=state["z_range"])

    def step_maps():
        e = state["estimate"]
        metric_maps(e.fit, z, std, e.log_var, e.sigma_scale)

    def step_z_range():
        state["z_range"] = frame_z_range(z)

    stages = {"z range": step_z_range, "fit": step_fit, "range": step_range, "scale": step_scale, "maps": step_maps}
    times = {name: [] for name in stages}
    for k in range(args.repeats + 10):
        for name, fn in stages.items():
            t0 = time.thread_time()
            fn()
            if k >= 10:  # warm-up
                times[name].append(1e3 * (time.thread_time() - t0))
    total = np.sum([times[name] for name in stages], axis=0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"metric step, {args.size}, {args.pattern} ({int(np.isfinite(sparse).sum())} LiDAR pixels), one core of "
          f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores, load {load:.1f}), {args.repeats} "
          "runs, CPU time ms:")
    print("| stage | median | p95 | fastest |\n|---|---:|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {np.median(values):.2f} | {np.percentile(values, 95):.2f} | {np.min(values):.2f} |")
    print(f"| **total** (target 3) | **{np.median(total):.2f}** | {np.percentile(total, 95):.2f} | "
          f"{np.min(total):.2f} |")


if __name__ == "__main__":
    main()
