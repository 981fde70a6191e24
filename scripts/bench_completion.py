"""Completion candidates side by side on depthfm-eval-fusion's scenes: accuracy (RMSE on all pixels with ground truth)
and CPU ms on one core (not a test).

Every candidate corrects the global log-depth fit by an edge-aware interpolation of the LiDAR's log residual
r = log d_lidar - (a z + b), guided by the fitted log depth, and keeps the LiDAR pixels it trusts:

- ``pyramid``: :func:`depthfm_ros.fusion.completion.complete_depth` (bilateral grids, leave-one-out outlier passes);
- ``fgs``, ``guided``, ``joint_bilateral``, ``domain_transform``: OpenCV ximgproc's fast global smoother, guided
  filter, joint bilateral filter and domain transform as normalized convolutions (the filtered r·c over the filtered
  confidence c, c = 1 at the LiDAR pixels), after a global outlier screen (|r - median r| <= 0.5): only where
  ``cv2.ximgproc`` exists (opencv-contrib-python-headless, not a dependency of the package);
- ``scipy_wls``: a weighted least-squares surface at a quarter of the resolution (data term at the LiDAR cells,
  smoothness weighted by exp(-(difference of fitted log depth)^2 / 2 0.15^2)), solved with scipy.sparse.linalg.spsolve
  and resized back bilinearly, after the same screen.

Each candidate's own parameters were swept once on seed 0 (FGS lambda 100, guided radius 24, domain transform sigma 60,
joint bilateral sigma 10 in a 31 px window, WLS lambda 1).

    python3 scripts/bench_completion.py [--seeds 2] [--size 640x480] [--core 1]
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from scipy.sparse import coo_matrix, diags  # noqa: E402
from scipy.sparse.linalg import spsolve  # noqa: E402

from depthfm_ros.errors import AlignmentError  # noqa: E402
from depthfm_ros.evaluation.metrics import rmse  # noqa: E402
from depthfm_ros.fusion.alignment import fit_log_depth  # noqa: E402
from depthfm_ros.fusion.completion import complete_depth  # noqa: E402
from depthfm_ros.geometry.projection import project_points  # noqa: E402
from depthfm_ros.sim import synthetic  # noqa: E402

RANGE_SIGMA_LOG = 0.15


def screened_residual(z_hw, sparse_hw, fit):
    """Fitted log depth, the LiDAR residual image r·c and the confidence c (1 at the LiDAR pixels that pass a global
    screen |r - median r| <= 0.5, else 0)."""
    log_fit = (fit.a * z_hw + fit.b).astype(np.float32)
    lidar = np.isfinite(sparse_hw) & (sparse_hw > 0)
    r = np.zeros_like(log_fit)
    r[lidar] = np.log(sparse_hw[lidar]) - log_fit[lidar]
    lidar &= np.abs(r - np.median(r[lidar])) <= 0.5
    c = lidar.astype(np.float32)
    return log_fit, r * c, c


def finish(log_fit, num, den, sparse_hw, c, floor=1e-3):
    """exp(log_fit + num / den) with the screened LiDAR pixels kept."""
    depth = np.exp(log_fit + num / np.maximum(den, floor)).astype(np.float32)
    keep = c > 0
    depth[keep] = sparse_hw[keep]
    return depth


def pyramid(z_hw, sparse_hw, fit):
    return complete_depth(z_hw, sparse_hw, fit).depth_hw_m


def _guide_u8(log_fit):
    lo, hi = float(log_fit.min()), float(log_fit.max())
    return np.clip((log_fit - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8), (hi - lo) / 255.0


def fgs(z_hw, sparse_hw, fit, lam=100.0):
    log_fit, rc, c = screened_residual(z_hw, sparse_hw, fit)
    guide, log_per_level = _guide_u8(log_fit)
    out = cv2.ximgproc.fastGlobalSmootherFilter(guide, cv2.merge([rc, c]), lam, RANGE_SIGMA_LOG / log_per_level)
    return finish(log_fit, out[..., 0], out[..., 1], sparse_hw, c)


def guided(z_hw, sparse_hw, fit, radius=24):
    log_fit, rc, c = screened_residual(z_hw, sparse_hw, fit)
    out = cv2.ximgproc.guidedFilter(log_fit, cv2.merge([rc, c]), radius, RANGE_SIGMA_LOG**2)
    return finish(log_fit, out[..., 0], out[..., 1], sparse_hw, c)


def joint_bilateral(z_hw, sparse_hw, fit, diameter=31, sigma_space=10.0):
    log_fit, rc, c = screened_residual(z_hw, sparse_hw, fit)
    out = cv2.ximgproc.jointBilateralFilter(cv2.merge([log_fit] * 3), cv2.merge([rc, c, c]), diameter,
                                            RANGE_SIGMA_LOG, sigma_space)
    return finish(log_fit, out[..., 0], out[..., 1], sparse_hw, c)


def domain_transform(z_hw, sparse_hw, fit, sigma_space=60.0):
    log_fit, rc, c = screened_residual(z_hw, sparse_hw, fit)
    out = cv2.ximgproc.dtFilter(log_fit, cv2.merge([rc, c]), sigma_space, RANGE_SIGMA_LOG, mode=cv2.ximgproc.DTF_NC,
                                numIters=3)
    return finish(log_fit, out[..., 0], out[..., 1], sparse_hw, c)


def scipy_wls(z_hw, sparse_hw, fit, factor=4, lam=1.0):
    log_fit, rc, c = screened_residual(z_hw, sparse_hw, fit)
    h, w = log_fit.shape
    hs, ws = h // factor, w // factor
    small = cv2.resize(log_fit, (ws, hs), interpolation=cv2.INTER_AREA)
    data_w = cv2.resize(c, (ws, hs), interpolation=cv2.INTER_AREA) * factor**2
    data = cv2.resize(rc, (ws, hs), interpolation=cv2.INTER_AREA) * factor**2
    idx = np.arange(hs * ws).reshape(hs, ws)
    rows, cols, vals = [], [], []
    for a, b, la, lb in ((idx[:, :-1], idx[:, 1:], small[:, :-1], small[:, 1:]),
                         (idx[:-1], idx[1:], small[:-1], small[1:])):
        wgt = lam * np.exp(-0.5 * ((la - lb) / RANGE_SIGMA_LOG) ** 2).ravel()
        a, b = a.ravel(), b.ravel()
        rows += [a, b, a, b]
        cols += [a, b, b, a]
        vals += [wgt, wgt, -wgt, -wgt]
    laplacian = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(hs * ws, hs * ws)).tocsr()
    system = laplacian + diags(data_w.ravel() + 1e-4)
    correction = spsolve(system.tocsc(), data.ravel()).reshape(hs, ws).astype(np.float32)
    correction = cv2.resize(correction, (w, h), interpolation=cv2.INTER_LINEAR)
    return finish(log_fit, correction, np.ones_like(correction), sparse_hw, c)


CANDIDATES = {"pyramid": pyramid, "fgs": fgs, "guided": guided, "joint_bilateral": joint_bilateral,
              "domain_transform": domain_transform, "scipy_wls": scipy_wls}
NEEDS_XIMGPROC = {"fgs", "guided", "joint_bilateral", "domain_transform"}


def scenes(seeds: int, width: int, height: int):
    for seed in range(seeds):
        for pattern in synthetic.LIDAR_PATTERNS:
            for model in synthetic.ERROR_MODELS:
                scene = synthetic.make_scene(np.random.default_rng(seed), width, height)
                rng = np.random.default_rng([seed, synthetic.LIDAR_PATTERNS.index(pattern)])
                scan = synthetic.simulate_lidar(scene, pattern, rng, outlier_fraction=0.05)
                pred = synthetic.simulate_prediction(scene, np.random.default_rng([seed, 99]),
                                                     **synthetic.ERROR_MODELS[model])
                sparse = project_points(scan.points_n3, scene.camera, scan.T_cam_lidar)
                try:
                    fit = fit_log_depth(pred.z_hw, sparse, pred.std_z_hw)
                except AlignmentError:
                    continue
                yield pattern, model, pred.z_hw, sparse, fit, scene.depth_hw_m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per scene (the minimum is kept)")
    parser.add_argument("--core", type=int, default=1, help="CPU core to pin to (-1: do not pin)")
    args = parser.parse_args()
    if args.core >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    cv2.setNumThreads(1)
    width, height = (int(v) for v in args.size.split("x"))
    names = [n for n in CANDIDATES if n not in NEEDS_XIMGPROC or hasattr(cv2, "ximgproc")]
    results = {(n, p): ([], []) for n in names for p in synthetic.LIDAR_PATTERNS}
    for pattern, _model, z, sparse, fit, gt in scenes(args.seeds, width, height):
        for name in names:  # interleaved: every candidate on the same scene, one after the other
            times = []
            for _ in range(args.repeats):
                t0 = time.thread_time()
                depth = CANDIDATES[name](z, sparse, fit)
                times.append(time.thread_time() - t0)
            results[name, pattern][0].append(rmse(depth, gt))
            results[name, pattern][1].append(1e3 * min(times))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.size}, {args.seeds} seeds x 4 error models, OpenCV {cv2.__version__}, load average {load:.2f}; "
          "RMSE [m] / CPU ms (median over scenes)\n")
    print("| candidate | " + " | ".join(synthetic.LIDAR_PATTERNS) + " |")
    print("|---|" + "---:|" * len(synthetic.LIDAR_PATTERNS))
    for name in names:
        cells = [f"{np.mean(results[name, p][0]):.3f} / {np.median(results[name, p][1]):.0f}"
                 for p in synthetic.LIDAR_PATTERNS]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
