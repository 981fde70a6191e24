"""Ground-plane metric source on the synthetic scenes: metric AbsRel and δ1 against ground truth.

    python scripts/ground_source.py [--scenes 16]

Two mountings: the orientation known (tf from the camera to a ground frame: the true floor normal) and assumed
level (camera_pitch_deg = camera_roll_deg = 0, while the synthetic floors slope by up to ~7 degrees); each with a
perfect prediction (affine in log depth) and with the default simulated shape error.
"""

import argparse
import time

import numpy as np

from depthfm_ros.errors import AlignmentError
from depthfm_ros.evaluation.metrics import abs_rel, delta1
from depthfm_ros.fusion.metric import ground_plane_fit
from depthfm_ros.sim import synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=16)
    args = parser.parse_args()
    print("| orientation | prediction | AbsRel | δ1 | refused | ms (median) |\n|---|---|---:|---:|---:|---:|")
    for mode in ("known (tf)", "assumed level"):
        for label, error in (("affine in log depth", 0.0), ("simulated shape error", 1.0)):
            rows = []
            for seed in range(args.scenes):
                rng = np.random.default_rng(seed)
                spec = synthetic.random_scene_spec(rng)
                scene = synthetic.render_scene(spec, synthetic.default_camera(320, 240), rng)
                n = np.asarray(spec.planes[0].normal)
                height, down = spec.planes[0].offset / np.linalg.norm(n), n / np.linalg.norm(n)
                pred = synthetic.simulate_prediction(scene, np.random.default_rng([seed, 7]),
                                                     distortion_log=0.08 * error, object_offset_log=0.06 * error,
                                                     curvature_log=0.05 * error)
                t0 = time.perf_counter()
                try:
                    fit = ground_plane_fit(pred.z_hw, scene.camera, height, down if mode.startswith("known") else None)
                except AlignmentError:
                    rows.append((np.nan, np.nan, np.nan))
                    continue
                depth = fit.depth_m(pred.z_hw)
                rows.append((abs_rel(depth, scene.depth_hw_m), delta1(depth, scene.depth_hw_m),
                             1e3 * (time.perf_counter() - t0)))
            r = np.asarray(rows)
            print(f"| {mode} | {label} | {np.nanmean(r[:, 0]):.4f} | {np.nanmean(r[:, 1]):.4f} "
                  f"| {int(np.isnan(r[:, 0]).sum())}/{len(r)} | {np.nanmedian(r[:, 2]):.1f} |")


if __name__ == "__main__":
    main()
