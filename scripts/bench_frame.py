"""Per-frame work around the engine, stage by stage, as depthfm_node does it (a zero-cost engine; not a test).

Stages (the node's frame path, ros/node.py and ros/outputs.py, minus DDS):
  conversion   sensor_msgs/Image rgb8 -> RGB uint8 (conversions.image_to_rgb)
  preprocess   resize to the processing size, [-1, 1], noise (DepthFMPipeline.preprocess)
  postprocess  ensemble mean/std, resize back, relative depth (DepthFMPipeline.postprocess)
  messages     relative depth + uncertainty, metric depth + uncertainty as 32FC1 Images
  cloud        PointCloud2 of an OS1-64 sweep -> (N, 3) (conversions.pointcloud2_to_xyz)
  projection   LiDAR points -> sparse depth image (fusion.frame.sparse_depth)
  fit          robust log-depth fit (fusion.alignment.fit_log_depth)
  completion   the bilateral-grid completion (fusion.completion.complete_depth)
  points       filters + dense xyz+rgb + PointCloud2 packing (points_from_depth + xyz_to_pointcloud2)

Each stage's median and p95 over ``--repeats`` runs after a warm-up, beside its target (issue 14). One core:
the script pins itself to ``--core`` and sets numpy/OpenCV/torch to one thread.

    python3 scripts/bench_frame.py [--sizes 640x480 1280x720] [--ensemble-size 1] [--repeats 50] [--json out.json]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from depthfm_ros.backends.base import Backend  # noqa: E402
from depthfm_ros.fusion.alignment import fit_log_depth  # noqa: E402
from depthfm_ros.fusion.completion import complete_depth  # noqa: E402
from depthfm_ros.fusion.frame import metric_maps, sparse_depth  # noqa: E402
from depthfm_ros.geometry.projection import PointsOptions, points_from_depth  # noqa: E402
from depthfm_ros.pipeline import DepthFMPipeline  # noqa: E402
from depthfm_ros.ros import conversions  # noqa: E402
from depthfm_ros.sim import synthetic  # noqa: E402
from depthfm_ros.tensor_processing import postprocess_tensor  # noqa: E402

#: per-stage targets in ms at 640x480 on one core (issue 14); "base" = conversion + pre + post + messages
TARGETS_MS = {"base": 4.0, "fit": 3.0, "completion": 10.0, "points": 4.0}
BASE_STAGES = ("conversion", "preprocess", "postprocess", "messages")


class ReplayBackend(Backend):
    """A zero-cost engine: returns the scene's z at the processing size for every member (plus a small spread)."""

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
    """A synthetic scene at ``width`` x ``height``, its simulated prediction and an OS1-64 cloud message."""
    scene = synthetic.make_scene(np.random.default_rng(seed), width, height)
    prediction = synthetic.simulate_prediction(scene, np.random.default_rng([seed, 1]))
    scan = synthetic.simulate_lidar(scene, "os64", np.random.default_rng([seed, 2]), outlier_fraction=0.05)
    header = Header(frame_id="camera")
    image_msg = conversions.numpy_to_image(scene.rgb_hwc_u8, "rgb8", header)
    cloud_msg = conversions.xyz_to_pointcloud2(scan.points_n3, header)
    return scene, prediction, scan, image_msg, cloud_msg


def time_stage(fn, repeats: int) -> tuple[dict, object]:
    """Median and p95 ms of ``fn()`` over ``repeats`` calls after one warm-up, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}, result


def bench_size(width: int, height: int, ensemble_size: int, resolution: int, repeats: int,
               torch_device: str | None = None) -> dict:
    scene, sim, scan, image_msg, cloud_msg = frame_inputs(width, height)
    pipeline = DepthFMPipeline(ReplayBackend(sim.z_hw), resolution, ensemble_size, seed=0)
    h, w = pipeline.size_for(height, width)
    stages = {}
    stages["conversion"], rgb = time_stage(lambda: conversions.image_to_rgb(image_msg), repeats)
    stages["preprocess"], (rgb_bchw, noise) = time_stage(lambda: pipeline.preprocess([rgb], h, w), repeats)
    members = pipeline.backend.run(rgb_bchw, noise)
    stages["postprocess"], (z, std, rel) = time_stage(lambda: pipeline.postprocess(members, height, width), repeats)
    z_hw, std_hw, rel_hw = z[0], std[0], rel[0]
    header = image_msg.header

    stages["cloud"], xyz = time_stage(lambda: conversions.pointcloud2_to_xyz(cloud_msg), repeats)
    stages["projection"], sparse = time_stage(
        lambda: sparse_depth(xyz, scene.camera, scan.T_cam_lidar, width, height, 0.1, 100.0), repeats)
    stages["fit"], fit = time_stage(lambda: fit_log_depth(z_hw, sparse, std_hw), repeats)
    stages["completion"], _ = time_stage(lambda: complete_depth(z_hw, sparse, fit), repeats)
    depth_m, std_m = metric_maps(fit, z_hw, std_hw)

    def messages():
        return [conversions.numpy_to_image(m, "32FC1", header) for m in (rel_hw, std_hw, depth_m, std_m)]

    stages["messages"], _ = time_stage(messages, repeats)
    options = PointsOptions(rgb=True, max_range_m=20.0, max_relative_std=0.1, edge_ratio=1.1)

    def points():
        cloud = points_from_depth(depth_m, std_m, scene.camera, options, rgb)
        return conversions.xyz_to_pointcloud2(cloud.xyz, header, cloud.rgb)

    stages["points"], _ = time_stage(points, repeats)
    if torch_device is not None:  # the GPU pre/post path (tensor_processing), timed to the host copy of each output
        tensors = DepthFMPipeline(ReplayBackend(sim.z_hw, torch_device), resolution, ensemble_size, seed=0,
                                  tensor_processing=True)
        sync = torch.cuda.synchronize if tensors.tensor_device.type == "cuda" else (lambda: None)

        def pre():
            out = tensors.preprocess([rgb], h, w)
            sync()
            return out

        stages[f"preprocess[{torch_device}]"], (rgb_t, noise_t) = time_stage(pre, repeats)
        members_t = torch.from_numpy(members).to(tensors.tensor_device)
        stages[f"postprocess[{torch_device}]"], _ = time_stage(
            lambda: postprocess_tensor(members_t, height, width), repeats)
    base = [stages[s]["median_ms"] for s in BASE_STAGES]
    stages["base"] = {"median_ms": float(sum(base)),
                      "p95_ms": float(sum(stages[s]["p95_ms"] for s in BASE_STAGES))}
    return {"size": f"{width}x{height}", "processing_size": f"{w}x{h}", "ensemble_size": ensemble_size,
            "lidar_points": int(len(xyz)), "lidar_pixels": int(np.isfinite(sparse).sum()), "stages": stages}


def print_table(result: dict) -> None:
    print(f"\n{result['size']} (processing {result['processing_size']}, ensemble {result['ensemble_size']}, "
          f"{result['lidar_points']} LiDAR points, {result['lidar_pixels']} in the image)")
    print(f"  {'stage':18s} {'median ms':>10s} {'p95 ms':>8s} {'target ms':>10s}")
    at_target_size = result["size"] == "640x480"
    for name, row in result["stages"].items():
        target = TARGETS_MS.get(name)
        mark = "" if target is None or not at_target_size else ("  ok" if row["median_ms"] <= target else "  OVER")
        target_text = f"{target:10.1f}" if target is not None else f"{'':10s}"
        print(f"  {name:18s} {row['median_ms']:10.2f} {row['p95_ms']:8.2f} {target_text}{mark}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"])
    parser.add_argument("--ensemble-size", type=int, default=1)
    parser.add_argument("--processing-resolution", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin to (-1: do not pin)")
    parser.add_argument("--torch-device", help="also time the tensor pre/post path on this device (cuda, cpu)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.core >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, pinned to core {args.core}"
    print(f"machine: {machine}; numpy {np.__version__}, opencv {cv2.__version__}; {args.repeats} repeats")
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
