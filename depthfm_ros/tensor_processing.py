"""Pre- and post-processing on torch tensors, for engines that run on a GPU: the image goes up once (uint8, through
pinned memory), is resized and scaled there, the ensemble statistics, the resize back and the relative depth are
computed there, and each output comes down once.

The same functions run on CPU tensors (that is how they are tested) and give what :mod:`depthfm_ros.processing`
gives: resizing is a product with separable weight matrices that restate OpenCV's ``INTER_AREA`` (shrinking, exact
pixel overlaps) and ``INTER_LINEAR`` (growing, half-pixel centres, edge clamp), chosen as ``resize_hw`` chooses.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .processing import check_rgb, input_halvings


@lru_cache(maxsize=32)
def resize_weights(size_in: int, size_out: int, area: bool) -> np.ndarray:
    """(size_out, size_in) float64 weights of a 1-D resize as OpenCV computes it (area: overlap / scale)."""
    scale = size_in / size_out
    weights = np.zeros((size_out, size_in))
    if area and scale >= 1:
        for i in range(size_out):
            start, stop = i * scale, (i + 1) * scale
            for j in range(int(np.floor(start)), min(int(np.ceil(stop)), size_in)):
                weights[i, j] = (min(stop, j + 1) - max(start, j)) / scale
        return weights
    for i in range(size_out):
        src = (i + 0.5) * scale - 0.5
        j = int(np.floor(src))
        frac = src - j
        if j < 0:
            j, frac = 0, 0.0
        if j >= size_in - 1:
            j, frac = size_in - 1, 0.0
        weights[i, j] += 1.0 - frac
        if frac > 0:
            weights[i, j + 1] += frac
    return weights


def resize_tensor(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize the last two axes of a float tensor like :func:`depthfm_ros.processing.resize_hw` (area when the
    pixel count shrinks, bilinear when it grows; the input itself when the size matches)."""
    h_in, w_in = x.shape[-2:]
    if (h_in, w_in) == (height, width):
        return x
    area = height * width < h_in * w_in
    wy = torch.as_tensor(resize_weights(h_in, height, area), dtype=x.dtype, device=x.device)
    wx = torch.as_tensor(resize_weights(w_in, width, area), dtype=x.dtype, device=x.device)
    return wy @ x @ wx.T


@lru_cache(maxsize=32)
def input_resize_weights(size_in: int, size_out: int, halvings: int) -> np.ndarray:
    """(size_out, size_in) weights of :func:`depthfm_ros.processing.resize_input` along one axis: ``halvings`` 2x2
    box steps, then bilinear, composed into one matrix."""
    weights = np.eye(size_in)
    for _ in range(halvings):
        weights = resize_weights(len(weights), len(weights) // 2, True) @ weights
    return resize_weights(len(weights), size_out, False) @ weights if len(weights) != size_out else weights


def upload_image(rgb_hwc_u8: np.ndarray, device: torch.device) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> uint8 tensor (3, H, W) on ``device``; through pinned memory to a CUDA device."""
    host = torch.from_numpy(np.ascontiguousarray(check_rgb(rgb_hwc_u8)))
    if device.type == "cuda":
        host = host.pin_memory()
    return host.to(device, non_blocking=True).permute(2, 0, 1)


def to_model_input_tensor(rgb_hwc_u8: np.ndarray, height: int, width: int, device: torch.device) -> torch.Tensor:
    """:func:`depthfm_ros.processing.to_model_input` on ``device``: float32 (3, height, width) in [-1, 1]. The resized
    image is rounded to whole levels first, as OpenCV's uint8 resize does (OpenCV rounds after each step and computes
    bilinear weights in fixed point: at most one level apart, on a few pixels)."""
    image = upload_image(rgb_hwc_u8, device).float()
    h_in, w_in = image.shape[-2:]
    if (h_in, w_in) != (height, width):
        halvings = input_halvings(h_in, w_in, height, width)
        wy = torch.as_tensor(input_resize_weights(h_in, height, halvings), dtype=image.dtype, device=device)
        wx = torch.as_tensor(input_resize_weights(w_in, width, halvings), dtype=image.dtype, device=device)
        image = (wy @ image @ wx.T).round_().clamp_(0, 255)
    return image / 127.5 - 1.0


def postprocess_tensor(members_bmhw: torch.Tensor, height: int, width: int) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """:meth:`depthfm_ros.pipeline.DepthFMPipeline.postprocess` on the members' device: z, its ensemble std and the
    relative depth, each float32 (b, height, width), one download each."""
    members = members_bmhw.float()
    z = resize_tensor(members.mean(dim=1), height, width)
    if members.shape[1] == 1:
        std = torch.zeros_like(z)
    else:
        std = resize_tensor(members.std(dim=1, unbiased=False), height, width)
    d = torch.exp(z)
    flat = d.reshape(len(d), -1)
    lo, hi = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    rel = ((flat - lo) / (hi - lo).clamp_min(1e-12)).reshape(d.shape)
    return tuple(t.cpu().numpy() for t in (z, std, rel))
