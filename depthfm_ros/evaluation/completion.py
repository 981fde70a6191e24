"""Depth completion, measured: the completion model beside the plain model and the classical baselines.

For every held-out image and LiDAR-like pattern (:func:`depthfm_ros.models.completion.sparse_pattern`: uniform
pixels or image-space rings, ``density`` of the valid ground truth) the same sparse points go to every method, and
each is scored on the valid pixels that were NOT given (RMSE and MAE in metres, AbsRel, delta1):

- ``completion_model``: :meth:`DepthCompletionFM.complete` (the points as input, then the robust log fit);
- ``plain+log_fit``: the plain DepthFM's z, metres from the robust log-space fit to the points (the node's
  ``depth``);
- ``plain+completion``: the same fit plus the non-learned, edge-aware completion of its residual
  (:func:`depthfm_ros.fusion.completion.complete_depth`, the node's ``completed_depth``);
- ``nearest_fill`` and ``ip_basic``: the points alone (no image).

A method that returns no metres (a refused fit) is counted in ``refused`` and left out of the means.
"""

from __future__ import annotations

import numpy as np

from ..errors import AlignmentError, InputError
from ..fusion.alignment import fit_log_depth
from ..fusion.completion import complete_depth
from ..geometry.masks import nearest_fill
from ..models.completion import SPARSE_PATTERNS, sparse_pattern
from . import metrics
from .fusion import ip_basic

COMPLETION_METHODS = ("completion_model", "plain+log_fit", "plain+completion", "nearest_fill", "ip_basic")
COMPLETION_METRICS = ("rmse_m", "mae_m", "abs_rel", "delta1")


def _plain(pipeline, rgb, sparse):
    pred = pipeline(rgb)
    try:
        fit = fit_log_depth(pred.z_hw, sparse.astype(np.float32), pred.std_z_hw)
    except AlignmentError:
        return None, None
    return fit.depth_m(pred.z_hw), complete_depth(pred.z_hw, sparse.astype(np.float32), fit).depth_hw_m


def evaluate_completion(dataset, pattern: str, density: float = 0.02, *, completion_model=None, pipeline=None,
                        num_steps: int = 2, ensemble_size: int = 1, processing_resolution: int = 512,
                        seed: int = 0, protocol: str = "none") -> dict[str, dict[str, float]]:
    """Mean metrics per method over ``dataset`` (``pair(i) -> (rgb, depth_m, mask)``) for one sparse ``pattern``.
    ``completion_model`` (a DepthCompletionFM) and ``pipeline`` (the plain DepthFMPipeline) are optional; the
    point-only baselines always run. ``protocol`` ('nyuv2', 'kitti') limits the given and the scored pixels to its
    crop and depth cap."""
    spec = metrics.get_protocol(protocol)
    if pattern not in SPARSE_PATTERNS:
        raise InputError(f"pattern must be one of {SPARSE_PATTERNS}, got {pattern!r}")
    rows: dict[str, list[dict]] = {m: [] for m in COMPLETION_METHODS}
    refused = dict.fromkeys(COMPLETION_METHODS, 0)
    for i in range(len(dataset)):
        rgb, depth_m, mask = dataset.pair(i)
        depth = np.asarray(depth_m, np.float64)
        valid = spec.mask(depth) & (True if mask is None else np.asarray(mask, bool))
        rng = np.random.default_rng([seed, i, SPARSE_PATTERNS.index(pattern)])
        keep = sparse_pattern(valid, pattern, density, rng)
        sparse = np.where(keep, depth, np.nan)
        scored = valid & ~keep
        preds = {"nearest_fill": nearest_fill(sparse), "ip_basic": ip_basic(np.where(keep, depth, 0.0))}
        if pipeline is not None:
            preds["plain+log_fit"], preds["plain+completion"] = _plain(pipeline, rgb, sparse)
        if completion_model is not None:
            preds["completion_model"] = completion_model.complete(
                rgb, np.where(keep, depth, 0.0), num_steps=num_steps, ensemble_size=ensemble_size,
                processing_resolution=processing_resolution, seed=seed).depth_hw_m
        gt = np.where(valid, depth, 0.0)
        for method, pred in preds.items():
            if pred is None or not np.isfinite(pred[scored]).any():
                refused[method] += 1
                continue
            region = scored & np.isfinite(pred)
            rows[method].append({"rmse_m": metrics.rmse(pred, gt, region), "mae_m": metrics.mae(pred, gt, region),
                                 "abs_rel": metrics.abs_rel(pred, gt, region),
                                 "delta1": metrics.delta1(pred, gt, region)})
    out = {}
    for method, per_image in rows.items():
        if per_image or refused[method]:
            out[method] = {k: float(np.mean([r[k] for r in per_image])) if per_image else float("nan")
                           for k in COMPLETION_METRICS} | {"images": len(per_image), "refused": refused[method]}
    return out


def completion_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown: one row per pattern and method, the best RMSE of each pattern in bold."""
    lines = ["| pattern | method | RMSE [m] | MAE [m] | AbsRel % | δ1 % | refused |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for pattern, methods in results.items():
        best = min((m for m in methods if np.isfinite(methods[m]["rmse_m"])), key=lambda m: methods[m]["rmse_m"],
                   default=None)
        for method, r in methods.items():
            rmse = f"**{r['rmse_m']:.3f}**" if method == best else f"{r['rmse_m']:.3f}"
            lines.append(f"| {pattern} | {method} | {rmse} | {r['mae_m']:.3f} | {100 * r['abs_rel']:.1f} | "
                         f"{100 * r['delta1']:.1f} | {r['refused']} |")
    return "\n".join(lines)


__all__ = ["COMPLETION_METHODS", "COMPLETION_METRICS", "completion_table", "evaluate_completion"]
