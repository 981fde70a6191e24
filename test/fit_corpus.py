"""The corpus of LiDAR clouds a fit must refuse or get right (issue 22), and its report.

Every case is a frame of a synthetic scene with known depth: a prediction (perfect, or one of the realistic error
models of ``depthfm-eval-fusion``, :data:`depthfm_ros.sim.synthetic.ERROR_MODELS`) and a LiDAR cloud with what went
wrong with it: the true extrinsic (a clean frame), gross extrinsic errors (rotations of 5..180 deg about each
camera axis, shifts of 0.2..2 m along each, the LiDAR frame taken for the camera, the inverse transform), clutter
only the LiDAR sees, an unrelated cloud (another scene's). A 2x range glitch is consistent on its own (every range
doubled is a perfect fit of another scale): it is judged over a sequence, against the held scale
(test_fusion_metric.py).

A scale is *wrong* when the median |log(depth / true depth)| over the frame exceeds log 1.15.

    python test/fit_corpus.py [--seeds 8]     # the report in docs/ros.md: every prediction error model
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy.spatial.transform import Rotation

from depthfm_ros.fusion.frame import fuse_frame
from depthfm_ros.pipeline import DepthPrediction
from depthfm_ros.sim import synthetic

WRONG_LOG = float(np.log(1.15))
ROTATIONS_DEG = (5, 10, 20, 45, 90, 135, 180, -5, -10, -20, -45, -90, -135)
SHIFTS_M = (0.2, 0.5, 1.0, 2.0, -0.2, -0.5, -1.0, -2.0)
PATTERNS = ("vlp16", "os64", "random2pct")
AZIMUTH_STEP_DEG = 0.4  # ring LiDARs at half the usual azimuth resolution: the same geometry, half the points
PERFECT = {"distortion_log": 0.0, "object_offset_log": 0.0, "curvature_log": 0.0}
PREDICTIONS = {"perfect": PERFECT, **synthetic.ERROR_MODELS}


@dataclass(frozen=True)
class Case:
    """One cloud: its ``name``, kind ('clean', 'extrinsic', 'clutter', 'unrelated'), the points (LiDAR frame) and
    the extrinsic the node is told."""

    name: str
    kind: str
    points_n3: np.ndarray
    T_cam_lidar: np.ndarray


def _error(axis: int, rotation_deg: float = 0.0, shift_m: float = 0.0) -> np.ndarray:
    E = np.eye(4)
    E[:3, :3] = Rotation.from_euler("xyz"[axis], rotation_deg, degrees=True).as_matrix()
    E[axis, 3] = shift_m
    return E


def cases(scene: synthetic.SyntheticScene, pattern: str, seed: int) -> Iterator[Case]:
    """Every cloud of the corpus for one scene and LiDAR pattern."""
    rng = np.random.default_rng([seed, 2])
    scan = synthetic.simulate_lidar(scene, pattern, rng, outlier_fraction=0.02, azimuth_step_deg=AZIMUTH_STEP_DEG)
    T = scan.T_cam_lidar
    yield Case("true extrinsic", "clean", scan.points_n3, T)
    for axis in range(3):
        for deg in ROTATIONS_DEG:
            yield Case(f"rotated {deg} deg about {'xyz'[axis]}", "extrinsic", scan.points_n3, _error(axis, deg) @ T)
        for shift in SHIFTS_M:
            yield Case(f"shifted {shift} m along {'xyz'[axis]}", "extrinsic", scan.points_n3,
                       _error(axis, shift_m=shift) @ T)
    yield Case("LiDAR frame taken for the camera", "extrinsic", scan.points_n3, np.eye(4))
    yield Case("inverse extrinsic", "extrinsic", scan.points_n3, np.linalg.inv(T))
    # clutter only the LiDAR sees (vegetation, the robot's own parts, dust): 30 % extra points 0.5-4 m away
    # inside the camera's view
    n = len(scan.points_n3) * 3 // 10
    cam = scene.camera
    uv = rng.uniform([0, 0], [cam.width, cam.height], (n, 2))
    depth = rng.uniform(0.5, 4.0, n)
    clutter_cam = np.stack([(uv[:, 0] - cam.cx) / cam.fx * depth, (uv[:, 1] - cam.cy) / cam.fy * depth, depth], 1)
    clutter = (clutter_cam - T[:3, 3]) @ T[:3, :3]
    yield Case("30 % clutter", "clutter", np.concatenate([scan.points_n3, clutter.astype(np.float32)]), T)
    other = synthetic.make_scene(np.random.default_rng(seed + 1000), cam.width, cam.height)
    yield Case("unrelated cloud", "unrelated",
               synthetic.simulate_lidar(other, pattern, np.random.default_rng([seed, 3]),
                                        azimuth_step_deg=AZIMUTH_STEP_DEG).points_n3, T)


def scale_error_log(depth_hw_m: np.ndarray, truth_hw_m: np.ndarray) -> float:
    """Median |log(depth / truth)| over the pixels both have."""
    ok = np.isfinite(depth_hw_m) & np.isfinite(truth_hw_m)
    return float(np.median(np.abs(np.log(depth_hw_m[ok] / truth_hw_m[ok]))))


@dataclass(frozen=True)
class Outcome:
    seed: int
    pattern: str
    prediction: str
    case: str
    kind: str
    accepted: bool
    error_log: float  # NaN when refused
    reason: str

    @property
    def wrong(self) -> bool:
        return self.accepted and self.error_log > WRONG_LOG


def scene(seed: int, width: int = 320, height: int = 240) -> synthetic.SyntheticScene:
    return synthetic.make_scene(np.random.default_rng(seed), width, height)


def prediction(scene: synthetic.SyntheticScene, seed: int, model: str) -> DepthPrediction:
    sim = synthetic.simulate_prediction(scene, np.random.default_rng([seed, 1]), **PREDICTIONS[model])
    relative = np.zeros_like(sim.z_hw)  # not used by the fusion
    return DepthPrediction(sim.z_hw, relative, sim.std_z_hw, sim.z_hw.shape, 2, 1)


def run(seed: int, pattern: str, models=("perfect",), width: int = 320, height: int = 240) -> list[Outcome]:
    """Every case of one scene and pattern through :func:`fuse_frame` (what the node calls), per prediction."""
    sc = scene(seed, width, height)
    predictions = {model: prediction(sc, seed, model) for model in models}
    out = []
    for case in cases(sc, pattern, seed):
        for model, pred in predictions.items():
            fused = fuse_frame(pred, case.points_n3, sc.camera, case.T_cam_lidar, max_range_m=100.0, complete=False)
            error = scale_error_log(fused.depth_hw_m, sc.depth_hw_m) if fused.aligned else float("nan")
            out.append(Outcome(seed, pattern, model, case.name, case.kind, fused.aligned, error, fused.refused))
    return out


def summary(outcomes: list[Outcome]) -> dict[str, dict[str, float]]:
    """Per prediction model: clean frames accepted (share), wrong scales accepted (count) of how many cases."""
    table = {}
    for model in dict.fromkeys(o.prediction for o in outcomes):
        mine = [o for o in outcomes if o.prediction == model]
        clean = [o for o in mine if o.kind == "clean"]
        table[model] = {"clean_accepted": float(np.mean([o.accepted and not o.wrong for o in clean])),
                        "clean": len(clean), "wrong_accepted": sum(o.wrong for o in mine), "cases": len(mine),
                        "faulty_refused": float(np.mean([not o.accepted for o in mine if o.kind != "clean"]))}
    return table


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--pickle", help="also write every outcome here")
    args = parser.parse_args()
    outcomes = [o for seed in range(args.seeds) for pattern in PATTERNS
                for o in run(seed, pattern, tuple(PREDICTIONS), args.width, args.height)]
    print("| prediction | clean frames accepted | wrong scales accepted | faulty clouds refused |")
    print("|---|---:|---:|---:|")
    for model, row in summary(outcomes).items():
        print(f"| {model} | {100 * row['clean_accepted']:.0f} % of {row['clean']} | {row['wrong_accepted']} of "
              f"{row['cases']} | {100 * row['faulty_refused']:.0f} % |")
    for o in outcomes:
        if o.wrong or (o.kind == "clean" and not o.accepted):
            print(dataclasses.asdict(o))
    if args.pickle:
        import pickle

        with open(args.pickle, "wb") as f:
            pickle.dump(outcomes, f)


if __name__ == "__main__":
    main()
