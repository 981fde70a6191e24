"""Time depth -> points -> PointCloud2 for one 640x480 frame on one core, as depthfm_node builds depthfm/points
(geometry.projection.points_from_depth, then conversions.xyz_to_pointcloud2), for a few points_* settings (not a test;
scripts/bench_frame.py times the node's whole frame).

Prints the median / p90 thread CPU ms of each part. Pin one core:
    taskset -c 1 python3 scripts/bench_pointcloud.py [--repeats 50]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # numpy element-wise work is single-threaded; keep BLAS so too

import argparse  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from depthfm_ros.geometry.camera import PinholeCamera  # noqa: E402
from depthfm_ros.geometry.projection import PointsOptions, points_from_depth  # noqa: E402
from depthfm_ros.ros.conversions import xyz_to_pointcloud2  # noqa: E402

CASES = {
    "node defaults (no filter, dense, rgb)": PointsOptions(),
    "range + relative std + flying pixels": PointsOptions(max_range_m=8.0, max_relative_std=0.04, edge_ratio=1.1),
    "the same, stride 2": PointsOptions(stride=2, max_range_m=8.0, max_relative_std=0.04, edge_ratio=1.1),
    "organized, all filters": PointsOptions(organized=True, min_range_m=0.3, max_range_m=8.0, max_relative_std=0.04,
                                            edge_ratio=1.1),
}


def synthetic_frame(height: int, width: int, seed: int = 0):
    """A tilted floor with a box in front (one depth step), std 3 % of depth, random colours (a metric depth map:
    finite everywhere, as exp(a z + b) is)."""
    rng = np.random.default_rng(seed)
    rows = np.arange(height, dtype=np.float32)[:, None]
    depth_hw_m = np.broadcast_to(1.0 + 8.0 * (1 - rows / height), (height, width)).copy()
    depth_hw_m[height // 3: 2 * height // 3, width // 3: 2 * width // 3] = 1.5
    std_hw_m = (0.03 * depth_hw_m * rng.uniform(0.5, 1.5, (height, width))).astype(np.float32)
    rgb_hwc_u8 = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return depth_hw_m, std_hw_m, rgb_hwc_u8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    depth_hw_m, std_hw_m, rgb_hwc_u8 = synthetic_frame(args.height, args.width)
    camera = PinholeCamera(args.width, args.height, [[525.0, 0, args.width / 2 - 0.5],
                                                     [0, 525.0, args.height / 2 - 0.5], [0, 0, 1]])
    header = Header(frame_id="camera")
    print(f"{args.width}x{args.height}, {args.repeats} repeats, numpy {np.__version__}, OpenCV {cv2.__version__}")
    for name, options in CASES.items():
        parts = []
        for k in range(args.repeats + 1):
            t0 = time.thread_time()
            points = points_from_depth(depth_hw_m, std_hw_m, camera, options, rgb_hwc_u8)
            t1 = time.thread_time()
            xyz_to_pointcloud2(points.xyz, header, points.rgb)
            t2 = time.thread_time()
            if k:  # the first is a warm-up
                parts.append((1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (t2 - t0)))
        parts = np.array(parts)
        med, p90 = np.median(parts, axis=0), np.percentile(parts, 90, axis=0)
        print(f"  {name:40s} points {med[0]:5.2f} / {p90[0]:5.2f}   PointCloud2 {med[1]:5.2f} / {p90[1]:5.2f}   "
              f"total {med[2]:5.2f} / {p90[2]:5.2f} ms   ({len(points.xyz.reshape(-1, 3))} points)")


if __name__ == "__main__":
    main()
