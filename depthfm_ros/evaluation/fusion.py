"""Evaluation of LiDAR fusion and metric sources on synthetic scenes with exact depth (no model, no ROS).

``nearest_fill`` lives in :mod:`depthfm_ros.geometry.masks` (the completion model densifies with it too).

- :func:`evaluate_scene`: one scene, one LiDAR pattern (ring LiDARs by elevation, or 2 % random pixels), one
  prediction error model (:data:`depthfm_ros.sim.synthetic.ERROR_MODELS`); every method scored on the pixels that
  every method filled, with each one's coverage: LiDAR-only nearest fill, LiDAR-only IP-Basic (Ku et al. 2018:
  OpenCV morphology) in its fast and its original multiscale form, the global log-depth fit, and the completion.
- :func:`temporal_sequence`: a moving-camera sequence with LiDAR gaps and corrupted clouds, per metric source with
  and without the temporal scale filter: frame-to-frame std of the log scale, AbsRel, frames with metres.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from ..errors import AlignmentError
from ..fusion.alignment import LogDepthFit, fit_log_depth
from ..fusion.completion import complete_depth
from ..fusion.metric import ScaleFilter, ground_plane_fit
from ..geometry.masks import nearest_fill
from ..geometry.projection import project_points
from ..sim import synthetic
from . import metrics

METHODS = ("lidar_nearest", "lidar_ip_basic_fast", "lidar_ip_basic_multiscale", "global", "completion")
_DIAMOND_5 = np.array([[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]], np.uint8)


def _cross(size: int) -> np.ndarray:
    """A ``size`` x ``size`` cross: the middle row and column."""
    kernel = np.zeros((size, size), np.uint8)
    kernel[size // 2, :] = kernel[:, size // 2] = 1
    return kernel


def ip_basic(sparse_depth_hw_m: np.ndarray, max_depth_m: float = 100.0) -> np.ndarray:
    """LiDAR-only classical completion, IP-Basic's default ("fast") pipeline (Ku, Harakeh, Waslander, CRV 2018).

    Depth is inverted (near = large) so that dilation prefers near surfaces; then a 5x5 diamond dilation, a 5x5
    closing, a 7x7 dilation into holes, the highest value of each column extended to the top, a 31x31 dilation
    into the remaining holes (larger holes, e.g. below a ring LiDAR's view, take their nearest value), 5x5 median and
    Gaussian blurs, and the inversion undone.
    """
    depth = np.nan_to_num(np.asarray(sparse_depth_hw_m, np.float32), nan=0.0)
    valid = depth > 0.1
    depth[valid] = max_depth_m - np.minimum(depth[valid], max_depth_m - 0.1)
    depth = cv2.dilate(depth, _DIAMOND_5)
    depth = cv2.morphologyEx(depth, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    empty = depth < 0.1
    depth[empty] = cv2.dilate(depth, np.ones((7, 7), np.uint8))[empty]
    has = depth > 0.1  # extend the highest value of each column to the top of the image
    top = has.argmax(axis=0)
    above = (np.arange(depth.shape[0])[:, None] < top[None, :]) & has.any(axis=0)[None, :]
    depth = np.where(above, depth[top, np.arange(depth.shape[1])][None, :], depth)
    empty = depth < 0.1
    depth[empty] = cv2.dilate(depth, np.ones((31, 31), np.uint8))[empty]
    if (depth < 0.1).any():  # holes larger than 31 px (below a ring LiDAR's view): nearest value, so that the
        depth = nearest_fill(np.where(depth < 0.1, np.nan, depth))  # blurs never mix in empty (zero) pixels
    valid = depth > 0.1
    depth[valid] = cv2.medianBlur(depth, 5)[valid]
    depth[valid] = cv2.GaussianBlur(depth, (5, 5), 0)[valid]
    out = np.full(depth.shape, np.nan, np.float32)
    out[valid] = max_depth_m - depth[valid]
    return out


def ip_basic_multiscale(sparse_depth_hw_m: np.ndarray, max_depth_m: float = 100.0) -> np.ndarray:
    """LiDAR-only classical completion, IP-Basic's original "multiscale" pipeline as its demo runs it (no
    extrapolation, bilateral blur): inverted depth dilated with a 7x7 cross below 15 m, a 5x5 cross to 30 m and a 3x3
    cross beyond (nearer wins), a 5x5 closing, a 5x5 median where filled, a 9x9 dilation into the holes below each
    column's highest return, six masked 5x5 dilations, a 5x5 median and a bilateral blur. Above each column's highest
    return nothing is filled: NaN there (a ring LiDAR's unseen top rows)."""
    depth = np.nan_to_num(np.asarray(sparse_depth_hw_m, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    valid = depth > 0.1
    inverted = np.where(valid, max_depth_m - depth, 0.0).astype(np.float32)
    dilated = inverted.copy()
    for lo, hi, kernel in ((30.0, np.inf, _cross(3)), (15.0, 30.0, _cross(5)), (0.1, 15.0, _cross(7))):  # far first
        grown = cv2.dilate(np.where(valid & (depth > lo) & (depth <= hi), inverted, 0.0).astype(np.float32), kernel)
        dilated = np.where(grown > 0.1, grown, dilated)
    filled = cv2.morphologyEx(dilated, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    filled = np.where(filled > 0.1, cv2.medianBlur(filled, 5), filled)

    def below_top(image: np.ndarray) -> np.ndarray:  # at or below each column's highest filled pixel (all of an
        return np.arange(image.shape[0])[:, None] >= (image > 0.1).argmax(axis=0)  # empty column, as the original)

    filled = np.where((filled <= 0.1) & below_top(filled), cv2.dilate(filled, np.ones((9, 9), np.uint8)), filled)
    top_mask = below_top(filled)
    for _ in range(6):
        filled = np.where((filled < 0.1) & top_mask, cv2.dilate(filled, np.ones((5, 5), np.uint8)), filled)
    valid = (filled > 0.1) & top_mask
    filled = np.where(valid, cv2.medianBlur(filled, 5), filled)
    filled = np.where(valid, cv2.bilateralFilter(filled, 5, 0.5, 2.0), filled)
    return np.where(filled > 0.1, max_depth_m - filled, np.nan).astype(np.float32)


def evaluate_scene(seed: int, pattern: str, error_model: str = "smooth", *, width: int = 640, height: int = 480,
                   range_noise_m: float = 0.02, outlier_fraction: float = 0.05) -> list[dict]:
    """Rows (one per method) of RMSE [m], AbsRel and delta1 on the pixels every method filled (``common``: IP-Basic
    multiscale leaves the rows above a ring LiDAR's view empty), each method's ``coverage`` (its share of the valid
    ground truth) and CPU ms, for one scene, LiDAR pattern and error model.

    The completion's time includes its fit. A refused fit scores NaN for the global fit and the completion (and the
    other methods are scored on their own common pixels).
    """
    scene = synthetic.make_scene(np.random.default_rng(seed), width, height)
    rng = np.random.default_rng([seed, synthetic.LIDAR_PATTERNS.index(pattern)])
    scan = synthetic.simulate_lidar(scene, pattern, rng, range_noise_m=range_noise_m,
                                    outlier_fraction=outlier_fraction)
    pred = synthetic.simulate_prediction(scene, np.random.default_rng([seed, 99]),
                                         **synthetic.ERROR_MODELS[error_model])
    sparse = project_points(scan.points_n3, scene.camera, scan.T_cam_lidar)

    t0 = time.process_time()
    nearest = nearest_fill(sparse)
    t1 = time.process_time()
    classical = ip_basic(sparse)
    t2 = time.process_time()
    multiscale = ip_basic_multiscale(sparse)
    t3 = time.process_time()
    try:
        fit = fit_log_depth(pred.z_hw, sparse, pred.std_z_hw)
    except AlignmentError:
        fit = None
    global_depth = fit.depth_m(pred.z_hw) if fit else np.full(sparse.shape, np.nan, np.float32)
    t4 = time.process_time()
    completed = complete_depth(pred.z_hw, sparse, fit).depth_hw_m if fit else global_depth
    t5 = time.process_time()

    gt = scene.depth_hw_m
    depths = (nearest, classical, multiscale, global_depth, completed)
    truth = np.isfinite(gt) & (gt > 0)
    filled = [np.isfinite(d) & (d > 0) & truth for d in depths]
    common = np.logical_and.reduce([f for f in filled if f.any()])  # a refused fit fills nothing: not held against
    rows = []
    for method, depth, own, sec in zip(METHODS, depths, filled, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t3)):
        scored = own.any() and common.any()
        rows.append(dict(seed=seed, pattern=pattern, error_model=error_model, method=method,
                         lidar_pixels=int(np.isfinite(sparse).sum()), coverage=float(own.sum() / truth.sum()),
                         rmse_m=metrics.rmse(depth, gt, common) if scored else float("nan"),
                         abs_rel=metrics.abs_rel(depth, gt, common) if scored else float("nan"),
                         delta1=metrics.delta1(depth, gt, common) if scored else float("nan"), ms=1000.0 * sec))
    return rows


def markdown_table(rows: list[dict]) -> str:
    """Means over seeds per LiDAR pattern, error model and method; the best RMSE of each group in bold."""
    lines = ["| LiDAR | error model | method | RMSE [m] | AbsRel | δ1 | coverage | CPU ms |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    groups = dict.fromkeys((r["pattern"], r["error_model"]) for r in rows)
    for pattern, model in groups:
        means = {}
        for method in METHODS:
            sel = [r for r in rows if (r["pattern"], r["error_model"], r["method"]) == (pattern, model, method)]
            means[method] = {k: float(np.nanmean([r[k] for r in sel]))
                             for k in ("rmse_m", "abs_rel", "delta1", "coverage", "ms")}
        best = min(means, key=lambda m: means[m]["rmse_m"])
        for method, m in means.items():
            rmse = f"**{m['rmse_m']:.3f}**" if method == best else f"{m['rmse_m']:.3f}"
            lines.append(f"| {pattern} | {model} | {method} | {rmse} | {m['abs_rel']:.4f} | {m['delta1']:.4f} "
                         f"| {100 * m['coverage']:.0f} % | {m['ms']:.0f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- sequence

SEQUENCE_SOURCES = ("lidar", "lidar+filter", "ground", "ground+filter", "fixed")


def temporal_sequence(num_frames: int = 100, seed: int = 0, *, width: int = 320, height: int = 240,
                      pattern: str = "vlp16", gap_fraction: float = 0.15, corrupt_fraction: float = 0.1,
                      hold_sec: float = 1.0, rate_hz: float = 10.0) -> dict[str, dict[str, float]]:
    """A camera moving slowly through one scene (8 % of ``camera_path``: 1.2 m in 100 frames) at ``rate_hz``; the
    simulated prediction's scale drifts slowly (a, b change with the view, as DepthFM's per-frame normalisation
    does). ``gap_fraction`` of the frames have no cloud and ``corrupt_fraction`` a cloud of 80 % outliers.

    Per source: the frame-to-frame std of the log scale error (median log(d / d_true) of consecutive frames), mean
    AbsRel over frames with metres, and the fraction of frames with metres. Sources: the LiDAR fit per frame
    (refused -> no metres), the same through :class:`ScaleFilter` with a ``hold_sec`` hold, the ground plane per
    frame and filtered, and the fixed scale of the first good LiDAR frame.
    """
    rng = np.random.default_rng(seed)
    spec = synthetic.random_scene_spec(rng)
    camera = synthetic.default_camera(width, height)
    normal = np.asarray(spec.planes[0].normal)
    down, cam_height = normal / np.linalg.norm(normal), spec.planes[0].offset / np.linalg.norm(normal)
    filters = {"lidar+filter": ScaleFilter(), "ground+filter": ScaleFilter()}
    fixed: LogDepthFit | None = None
    errors = {s: [] for s in SEQUENCE_SOURCES}  # per frame: log scale error, or NaN without metres
    abs_rels = {s: [] for s in SEQUENCE_SOURCES}
    for k in range(num_frames):
        t_sec = k / rate_hz
        scene = synthetic.render_scene(synthetic.moved_scene(spec, synthetic.camera_path(k) * 0.08), camera,
                                       np.random.default_rng([seed, k]))
        pred = synthetic.simulate_prediction(scene, np.random.default_rng([seed, 1000 + k]),
                                             a=2.2 + 0.3 * np.sin(k / 17.0))
        kind = rng.random()
        sparse = None
        if kind >= gap_fraction:
            scan = synthetic.simulate_lidar(scene, pattern, np.random.default_rng([seed, 2000 + k]),
                                            outlier_fraction=0.8 if kind < gap_fraction + corrupt_fraction else 0.05)
            sparse = project_points(scan.points_n3, camera, scan.T_cam_lidar)
        fits = {"lidar": _try(lambda: fit_log_depth(pred.z_hw, sparse, pred.std_z_hw)) if sparse is not None else None,
                "ground": _try(lambda: ground_plane_fit(pred.z_hw, camera, cam_height, down))}
        if fixed is None and fits["lidar"] is not None:
            fixed = fits["lidar"]  # a calibration on the first good frame, then never updated
        for source in SEQUENCE_SOURCES:
            base = source.split("+")[0]
            fit = fixed if source == "fixed" else fits[base]
            if source.endswith("+filter"):
                f = filters[source]
                if fit is not None:
                    f.update(fit, t_sec, tuple(np.nanpercentile(pred.z_hw, [2, 98])))
                fit = f.fit if f.fit is not None and t_sec - f.t_sec <= hold_sec else None
            if fit is None:
                errors[source].append(np.nan)
                continue
            depth = fit.depth_m(pred.z_hw)
            ok = np.isfinite(depth) & np.isfinite(scene.depth_hw_m)
            errors[source].append(float(np.median(np.log(depth[ok] / scene.depth_hw_m[ok]))))
            abs_rels[source].append(metrics.abs_rel(depth, scene.depth_hw_m))
    out = {}
    for source in SEQUENCE_SOURCES:
        e = np.asarray(errors[source])
        steps = np.diff(e)
        out[source] = {"frame_to_frame_log_std": float(np.nanstd(steps)) if np.isfinite(steps).any() else np.nan,
                       "abs_rel": float(np.mean(abs_rels[source])) if abs_rels[source] else np.nan,
                       "metric_frames": float(np.isfinite(e).mean())}
    return out


def _try(make_fit) -> LogDepthFit | None:
    try:
        return make_fit()
    except AlignmentError:
        return None
