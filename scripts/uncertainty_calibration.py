"""Is depthfm/uncertainty a 1-sigma error? Held-out LiDAR residuals on synthetic sequences (not a test).

    python scripts/uncertainty_calibration.py [--seeds 3] [--frames 20]

For each prediction error model and LiDAR pattern: the share of held-out LiDAR depths within one published sigma
(target about 68 %, 60-76 %), the frames with metres, and the median published sigma relative to depth
(depthfm_ros.evaluation.calibration.held_out_coverage).
"""

import argparse

import numpy as np

from depthfm_ros.evaluation.calibration import held_out_coverage
from depthfm_ros.sim import synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--patterns", nargs="+", default=["vlp16", "os64", "random2pct"])
    args = parser.parse_args()
    print("| prediction | LiDAR | held-out within 1 sigma | frames in metres | sigma / depth (median) |")
    print("|---|---|---:|---:|---:|")
    for model in ("perfect", *synthetic.ERROR_MODELS):
        for pattern in args.patterns:
            runs = [held_out_coverage(seed, pattern, model, num_frames=args.frames) for seed in range(args.seeds)]
            points = sum(r["held_out_points"] for r in runs)
            coverage = sum(r["coverage"] * r["held_out_points"] for r in runs) / points
            print(f"| {model} | {pattern} | {100 * coverage:.1f} % | "
                  f"{100 * np.mean([r['metric_frames'] for r in runs]):.0f} % | "
                  f"{100 * np.median([r['relative_sigma'] for r in runs]):.1f} % |")


if __name__ == "__main__":
    main()
