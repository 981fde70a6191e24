"""depthfm-eval-fusion: LiDAR fusion on synthetic scenes with known depth (no model, no ROS).

For every seed and LiDAR pattern it renders a scene, simulates a scan and a DepthFM-like prediction, and scores
(a) LiDAR-only nearest-neighbour fill, (b) the global log-depth alignment, (c) the full completion. Prints a markdown
table of the means over seeds; ``--csv`` also writes one row per scene and method.
"""

from __future__ import annotations

import argparse
import csv
import time

import cv2
import numpy as np
from tqdm import tqdm

from ..fusion.alignment import fit_log_depth
from ..fusion.completion import complete_depth
from ..geometry.projection import project_points
from ..sim import synthetic
from ..training import metrics

METHODS = ("lidar_nearest", "global", "completion")


def lidar_only_depth(sparse_depth_hw_m: np.ndarray) -> np.ndarray:
    """Baseline (a): every pixel takes the depth of its nearest LiDAR pixel (approximate L2, OpenCV labels).

    Delaunay-based linear interpolation (scipy griddata) is pathologically slow on scan-line point sets.
    """
    empty_hw_u8 = (~np.isfinite(sparse_depth_hw_m)).astype(np.uint8)
    if empty_hw_u8.all():
        return np.full(sparse_depth_hw_m.shape, np.nan, dtype=np.float32)
    _, labels = cv2.distanceTransformWithLabels(empty_hw_u8, cv2.DIST_L2, cv2.DIST_MASK_5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    # labels count LiDAR pixels in raster order
    return sparse_depth_hw_m[empty_hw_u8 == 0][labels - 1].astype(np.float32)


def evaluate_scene(seed: int, pattern: str, args: argparse.Namespace) -> list[dict]:
    """Rows (one per method) of RMSE [m], AbsRel, delta1 and CPU time for one scene and LiDAR pattern.

    The completion's time includes its fit.
    """
    scene = synthetic.make_scene(np.random.default_rng(seed), args.width, args.height)
    rng = np.random.default_rng([seed, synthetic.LIDAR_PATTERNS.index(pattern)])
    scan = synthetic.simulate_lidar(
        scene, pattern, rng, range_noise_m=args.range_noise, outlier_fraction=args.outlier_fraction
    )
    pred = synthetic.simulate_prediction(scene, np.random.default_rng([seed, 99]))
    sparse = project_points(scan.points_n3, scene.camera, scan.T_cam_lidar)

    t0 = time.process_time()
    lidar_only = lidar_only_depth(sparse)
    t1 = time.process_time()
    fit = fit_log_depth(pred.z_hw, sparse, pred.std_z_hw)
    global_depth = fit.depth_m(pred.z_hw)
    t2 = time.process_time()
    completed = complete_depth(pred.z_hw, sparse, fit)
    t3 = time.process_time()

    gt = scene.depth_hw_m
    rows = []
    for method, depth, ms in zip(METHODS, (lidar_only, global_depth, completed.depth_hw_m),
                                 (t1 - t0, t2 - t1, t3 - t1)):
        rows.append(dict(seed=seed, pattern=pattern, method=method, lidar_pixels=int(np.isfinite(sparse).sum()),
                         rmse_m=metrics.rmse(depth, gt), abs_rel=metrics.abs_rel(depth, gt),
                         delta1=metrics.delta1(depth, gt), ms=1000.0 * ms))
    return rows


def markdown_table(rows: list[dict], patterns: list[str]) -> str:
    """Means over seeds per pattern and method."""
    lines = ["| LiDAR | method | RMSE [m] | AbsRel | δ1 | CPU ms |", "|---|---|---:|---:|---:|---:|"]
    for pattern in patterns:
        for method in METHODS:
            sel = [r for r in rows if r["pattern"] == pattern and r["method"] == method]
            mean = {k: float(np.mean([r[k] for r in sel])) for k in ("rmse_m", "abs_rel", "delta1", "ms")}
            lines.append(f"| {pattern} | {method} | {mean['rmse_m']:.3f} | {mean['abs_rel']:.4f} "
                         f"| {mean['delta1']:.4f} | {mean['ms']:.0f} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="depthfm-eval-fusion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="number of scenes (seeds 0..N-1)")
    parser.add_argument("--patterns", nargs="+", default=list(synthetic.LIDAR_PATTERNS),
                        choices=synthetic.LIDAR_PATTERNS, help="LiDAR patterns")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--outlier-fraction", type=float, default=0.05, help="gross LiDAR outliers")
    parser.add_argument("--range-noise", type=float, default=0.02, help="LiDAR range noise std [m]")
    parser.add_argument("--csv", help="also write per-scene rows to this CSV file")
    return parser.parse_args(argv)


def _main(argv=None) -> int:
    args = parse_args(argv)
    cv2.setNumThreads(1)  # CPU ms are for one core (process time, robust to a busy machine)
    jobs = [(seed, pattern) for seed in range(args.seeds) for pattern in args.patterns]
    rows: list[dict] = []
    for seed, pattern in tqdm(jobs, desc="scenes", unit="scene"):
        rows.extend(evaluate_scene(seed, pattern, args))
    print(markdown_table(rows, args.patterns))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


def main(argv=None) -> int:
    from .common import run_cli  # imported late: it pulls in the model backends

    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
