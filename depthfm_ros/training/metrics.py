"""Depth metrics (AbsRel, delta1, RMSE) and the paper's evaluation alignment: least squares in log space."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def _valid(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if pred.shape != gt.shape:
        raise InputError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    valid = np.isfinite(pred) & np.isfinite(gt) & (gt > 0)
    if mask is not None:
        if np.shape(mask) != gt.shape:
            raise InputError(f"mask {np.shape(mask)} and ground truth {gt.shape} differ in shape")
        valid &= np.asarray(mask, dtype=bool)
    if not valid.any():
        raise InputError("no valid ground-truth pixels to evaluate")
    return valid


def abs_rel(pred_m: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean |pred - gt| / gt over valid pixels."""
    v = _valid(pred_m, gt_m, mask)
    return float(np.mean(np.abs(pred_m[v] - gt_m[v]) / gt_m[v]))


def delta1(pred_m: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None, threshold: float = 1.25) -> float:
    """Fraction of valid pixels with max(pred/gt, gt/pred) < threshold (pred <= 0 counts as a miss)."""
    v = _valid(pred_m, gt_m, mask)
    p, g = pred_m[v], gt_m[v]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(p > 0, np.maximum(p / g, g / p), np.inf)
    return float(np.mean(ratio < threshold))


def rmse(pred_m: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root mean squared error over valid pixels."""
    v = _valid(pred_m, gt_m, mask)
    return float(np.sqrt(np.mean((pred_m[v] - gt_m[v]) ** 2)))


def align_log_depth(z: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Least-squares (a, b) with log gt ~ a*z + b over valid pixels (scale and shift in log space)."""
    v = _valid(z, gt_m, mask)
    A = np.stack([z[v].astype(np.float64), np.ones(int(v.sum()))], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, np.log(gt_m[v].astype(np.float64)), rcond=None)
    return float(a), float(b)


def evaluate_log_aligned(z: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """The paper's protocol: align z to log gt by least squares, then AbsRel and delta1 of exp(a*z + b)."""
    a, b = align_log_depth(z, gt_m, mask)
    pred_m = np.exp(a * z.astype(np.float64) + b)
    return {"abs_rel": abs_rel(pred_m, gt_m, mask), "delta1": delta1(pred_m, gt_m, mask), "a": a, "b": b}
