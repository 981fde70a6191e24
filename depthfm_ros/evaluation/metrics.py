"""Depth metrics (AbsRel, delta1, RMSE) and two evaluation alignments, with the standard crops and depth caps.

* ``log``: least squares log gt ~ a·z + b on the decoded value z (affine in log depth: the alignment this package
  uses for metric depth, and the one the method facts call the paper's protocol).
* ``depth``: Marigold's protocol: least squares gt ~ s·d + t in depth space on the official relative output
  d = min-max of exp(z), predictions clipped to the dataset's depth cap: what Marigold's tables (the baselines of
  DepthFM's Table 2) report. The official repository ships no evaluation code; its README calls that table a
  comparison "against other affine-invariant depth estimators", which points to this protocol. Confirming that it
  reproduces the numbers needs the real weights and NYUv2/KITTI, which this project does not have: both are offered
  and every report names the one it used.

:data:`PROTOCOLS` holds the crops and caps: NYUv2 (Eigen crop of 480x640, 1e-3..10 m) and KITTI (Garg crop, 1e-3..80 m).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..processing import relative_depth

ALIGNMENTS = ("log", "depth")


@dataclass(frozen=True)
class Protocol:
    """Evaluation region and depth range of one benchmark: ``crop`` (top, bottom, left, right) as fractions of
    the image, ground truth kept in (``min_depth``, ``max_depth``] metres."""

    crop: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 1.0)
    min_depth: float = 1e-3
    max_depth: float = float("inf")

    def mask(self, gt_m: np.ndarray) -> np.ndarray:
        """Pixels of ``gt_m`` (H, W) this protocol evaluates: inside the crop and the depth range."""
        h, w = gt_m.shape
        top, bottom, left, right = self.crop
        region = np.zeros((h, w), bool)
        region[int(top * h):int(bottom * h), int(left * w):int(right * w)] = True
        with np.errstate(invalid="ignore"):
            return region & np.isfinite(gt_m) & (gt_m > self.min_depth) & (gt_m <= self.max_depth)


PROTOCOLS = {
    "none": Protocol(),
    # Eigen crop: rows 45:471, columns 41:601 of the 480x640 NYUv2 test images
    "nyuv2": Protocol((45 / 480, 471 / 480, 41 / 640, 601 / 640), 1e-3, 10.0),
    # Garg crop (as Marigold and Monodepth evaluate KITTI Eigen test)
    "kitti": Protocol((0.40810811, 0.99189189, 0.03594771, 0.96405229), 1e-3, 80.0),
}


def get_protocol(name: str) -> Protocol:
    """The :data:`PROTOCOLS` entry ``name``; InputError naming the choices otherwise."""
    if name not in PROTOCOLS:
        raise InputError(f"protocol must be one of {sorted(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name]


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
    return _fit_line(z[v], np.log(gt_m[v].astype(np.float64)))


def _fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares (a, b) with y ~ a*x + b."""
    A = np.stack([x.astype(np.float64), np.ones(x.size)], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, y.astype(np.float64), rcond=None)
    return float(a), float(b)


def evaluate_log_aligned(z: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """The paper's protocol: align z to log gt by least squares, then AbsRel and delta1 of exp(a*z + b)."""
    a, b = align_log_depth(z, gt_m, mask)
    pred_m = np.exp(a * z.astype(np.float64) + b)
    return {"abs_rel": abs_rel(pred_m, gt_m, mask), "delta1": delta1(pred_m, gt_m, mask), "a": a, "b": b}


def align_depth_affine(pred: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Least-squares (s, t) with gt ~ s*pred + t over valid pixels (scale and shift in depth space)."""
    v = _valid(pred, gt_m, mask)
    return _fit_line(pred[v], gt_m[v])


def evaluate_depth_aligned(z: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None,
                           protocol: Protocol = PROTOCOLS["none"]) -> dict[str, float]:
    """Marigold's protocol: the official relative depth (min-max of exp z) aligned to gt by least squares in depth
    space, clipped to the protocol's depth range, then AbsRel and delta1."""
    rel = relative_depth(np.asarray(z, np.float32)[None])[0].astype(np.float64)
    s, t = align_depth_affine(rel, gt_m, mask)
    pred_m = np.clip(s * rel + t, protocol.min_depth, protocol.max_depth)
    return {"abs_rel": abs_rel(pred_m, gt_m, mask), "delta1": delta1(pred_m, gt_m, mask), "a": s, "b": t}


def evaluate(z: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None, alignment: str = "log",
             protocol: str = "none") -> dict[str, float]:
    """AbsRel and delta1 of ``z`` against ``gt_m`` under ``alignment`` ('log' | 'depth') inside ``protocol``'s crop
    and depth cap ('none' | 'nyuv2' | 'kitti'), ``mask`` (valid ground truth) on top."""
    if alignment not in ALIGNMENTS:
        raise InputError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    spec = get_protocol(protocol)
    region = spec.mask(np.asarray(gt_m, np.float64))
    if mask is not None:
        region &= np.asarray(mask, bool)
    if alignment == "log":
        return evaluate_log_aligned(z, gt_m, region)
    return evaluate_depth_aligned(z, gt_m, region, spec)


def mae(pred_m: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error over valid pixels."""
    v = _valid(pred_m, gt_m, mask)
    return float(np.mean(np.abs(pred_m[v] - gt_m[v])))
