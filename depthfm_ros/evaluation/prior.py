"""The mean-depth prior: the mean training log-depth map, a "model" that ignores the image. A trained model that
does not beat it has not learnt to read images."""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import DepthFMError
from ..geometry.masks import finite_depth_mask
from .scoring import score


def mean_log_depth_prior(dataset) -> np.ndarray:
    """The mean log-depth map (H, W) of ``dataset``'s pairs (valid pixels only), at the first pair's size."""
    total, count, shape = None, None, None
    for i in range(len(dataset)):
        _, depth_m, mask = dataset.pair(i)
        depth_m = np.asarray(depth_m, np.float64)
        shape = shape or depth_m.shape
        valid = finite_depth_mask(depth_m) & (True if mask is None else np.asarray(mask, bool))
        log_d = cv2.resize(np.where(valid, np.log(np.where(valid, depth_m, 1.0)), 0.0), shape[::-1])
        weight = cv2.resize(valid.astype(np.float64), shape[::-1])
        total = log_d if total is None else total + log_d
        count = weight if count is None else count + weight
    if total is None:
        raise DepthFMError("the prior's dataset is empty")
    return (total / np.maximum(count, 1e-9)).astype(np.float32)


def evaluate_prior(prior_hw: np.ndarray, dataset, alignments=("log",), protocol: str = "none") -> dict:
    """The prior map scored like a prediction (as z: it is log depth, so the log alignment is exact for it)."""
    return score(lambda rgb, gt: cv2.resize(prior_hw, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR),
                 dataset, alignments, protocol)


def images_beating_prior(model: dict, prior: dict) -> int:
    """How many images the model's AbsRel beats the prior's on (``score`` results of one alignment, paired)."""
    return int((np.array(model["abs_rel_per_image"]) < np.array(prior["abs_rel_per_image"])).sum())
