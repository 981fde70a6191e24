"""Time depth -> filters -> points -> PointCloud2 bytes for one 640x480 frame on one core (target < 15 ms).

Prints median / p90 milliseconds per stage; not a test. Pin one core:
    taskset -c 0 python3 scripts/bench_pointcloud.py [--repeats 50]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # numpy element-wise work is single-threaded; keep BLAS so too

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from depthfm_ros.geometry.camera import PinholeCamera
from depthfm_ros.geometry.masks import edge_mask, range_mask, uncertainty_mask
from depthfm_ros.geometry.projection import depth_to_points
from depthfm_ros.ros.wire import pack_points


def synthetic_frame(height: int, width: int, seed: int = 0):
    """A tilted floor with a box in front (one depth step), 2 % NaN holes, std 3 % of depth, random colours."""
    rng = np.random.default_rng(seed)
    rows = np.arange(height, dtype=np.float32)[:, None]
    depth_hw_m = np.broadcast_to(1.0 + 8.0 * (1 - rows / height), (height, width)).copy()
    depth_hw_m[height // 3: 2 * height // 3, width // 3: 2 * width // 3] = 1.5
    depth_hw_m[rng.random((height, width)) < 0.02] = np.nan
    std_hw_m = (0.03 * depth_hw_m * rng.uniform(0.5, 1.5, (height, width))).astype(np.float32)
    rgb_hwc_u8 = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return depth_hw_m, std_hw_m, rgb_hwc_u8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    depth_hw_m, std_hw_m, rgb_hwc_u8 = synthetic_frame(args.height, args.width)
    camera = PinholeCamera(args.width, args.height, [[525.0, 0, args.width / 2 - 0.5],
                                                     [0, 525.0, args.height / 2 - 0.5], [0, 0, 1]])

    def filters():
        return (range_mask(depth_hw_m, 0.3, 8.0) & uncertainty_mask(depth_hw_m, std_hw_m, max_relative_std=0.04)
                & edge_mask(depth_hw_m, 1.1))

    cases = {
        "filters (range+uncertainty+edge)": filters,
        "depth_to_points dense xyz": lambda: depth_to_points(depth_hw_m, camera),
        "depth_to_points dense xyz+rgb": lambda: depth_to_points(depth_hw_m, camera, rgb_hwc_u8=rgb_hwc_u8),
        "depth_to_points organized xyz": lambda: depth_to_points(depth_hw_m, camera, organized=True),
        "full dense xyz+rgb: filters+points+pack":
            lambda: pack_points(*depth_to_points(depth_hw_m, camera, rgb_hwc_u8=rgb_hwc_u8, valid_hw=filters())),
        "full dense xyz: filters+points+pack":
            lambda: pack_points(depth_to_points(depth_hw_m, camera, valid_hw=filters()).xyz),
        "full organized xyz+rgb: filters+points+pack":
            lambda: pack_points(*depth_to_points(depth_hw_m, camera, rgb_hwc_u8=rgb_hwc_u8, organized=True,
                                                 valid_hw=filters())),
        "full dense xyz+rgb stride 2":
            lambda: pack_points(*depth_to_points(depth_hw_m, camera, stride=2, rgb_hwc_u8=rgb_hwc_u8,
                                                 valid_hw=filters())),
    }
    print(f"{args.width}x{args.height}, {args.repeats} repeats, numpy {np.__version__}")
    for name, run in cases.items():
        run()  # warm-up
        times_ms = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run()
            times_ms.append(1e3 * (time.perf_counter() - start))
        print(f"  {name:45s} median {np.median(times_ms):6.2f} ms   p90 {np.percentile(times_ms, 90):6.2f} ms")


if __name__ == "__main__":
    main()
