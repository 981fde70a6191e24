"""Pre/post-processing: input checks, processing resolution, [-1, 1] scaling, resizing back, ensembles, log-depth
normalisation, colour maps."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .shapes import SIZE_MULTIPLE


def check_rgb(rgb_hwc_u8: np.ndarray) -> np.ndarray:
    """Return the image if it is a non-empty HxWx3 uint8 array, else raise InputError saying what is wrong."""
    if not isinstance(rgb_hwc_u8, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(rgb_hwc_u8).__name__}")
    if rgb_hwc_u8.dtype != np.uint8:
        raise InputError(f"image must be uint8 RGB, got dtype {rgb_hwc_u8.dtype}")
    if rgb_hwc_u8.ndim != 3 or rgb_hwc_u8.shape[2] != 3:
        raise InputError(f"image must be HxWx3 RGB, got shape {rgb_hwc_u8.shape}")
    if rgb_hwc_u8.shape[0] == 0 or rgb_hwc_u8.shape[1] == 0:
        raise InputError(f"image is empty: {rgb_hwc_u8.shape}")
    return rgb_hwc_u8


def read_rgb(path) -> np.ndarray:
    """RGB uint8 HxWx3 from an image file; InputError saying whether the file is missing, a folder, unreadable
    or not an image OpenCV can decode."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"cannot read image {path}: no such file")
    if path.is_dir():
        raise InputError(f"cannot read image {path}: it is a folder")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        if not os.access(path, os.R_OK):
            raise InputError(f"cannot read image {path}: permission denied")
        raise InputError(f"cannot read image {path}: not an image OpenCV can decode (corrupt, truncated or another "
                         f"format; {path.stat().st_size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def processing_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """(h, w) the model runs at: the longest side ``resolution`` (a multiple of 64; 0: the input's longest side
    rounded to the nearest multiple of 64, halves up), the other side the multiple of 64 (at least 64) that keeps
    the input's aspect ratio most closely (in log ratio: 1280x720 runs at 512x320, aspect 1.6, not 512x256, 2.0).
    """
    if resolution < 0 or resolution % SIZE_MULTIPLE:
        raise InputError(f"processing resolution must be 0 or a positive multiple of {SIZE_MULTIPLE}, got {resolution}")
    long_in, short_in = max(height, width), min(height, width)
    long_out = resolution or max(1, int(np.floor(long_in / SIZE_MULTIPLE + 0.5))) * SIZE_MULTIPLE
    short_cells = short_in * long_out / long_in / SIZE_MULTIPLE
    candidates = {max(1, int(np.ceil(short_cells))), max(1, int(np.floor(short_cells)))}
    def aspect_error(cells: int) -> float:
        return abs(np.log(cells * SIZE_MULTIPLE * long_in / (long_out * short_in)))

    # the larger side first: on an exact tie of the aspect errors the model sees more of the image
    short_out = SIZE_MULTIPLE * min(sorted(candidates, reverse=True), key=aspect_error)
    return (long_out, short_out) if height > width else (short_out, long_out)


def resize_hw(array_hw: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a 2-D map (or HxWxC image): area when shrinking, bilinear when growing; identity if the size matches."""
    if array_hw.shape[:2] == (height, width):
        return array_hw
    shrink = height * width < array_hw.shape[0] * array_hw.shape[1]
    return cv2.resize(array_hw, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


_INPUT_LUT = np.arange(256, dtype=np.float32) / 127.5 - 1.0  # uint8 -> [-1, 1], float32 as numpy computes it


def input_halvings(height_in: int, width_in: int, height: int, width: int) -> int:
    """How often :func:`resize_input` halves an image with a 2x2 box before its bilinear step: while both sides
    stay at least twice the target's."""
    count = 0
    while height_in >= 2 * height and width_in >= 2 * width:
        height_in, width_in, count = height_in // 2, width_in // 2, count + 1
    return count


def resize_input(rgb_hwc_u8: np.ndarray, height: int, width: int) -> np.ndarray:
    """The model input's resize: bilinear (OpenCV ``INTER_LINEAR``), after :func:`input_halvings` exact 2x2 box
    halvings (``INTER_AREA``'s integer path) when the image is more than twice the target. Measured at 640x480 ->
    512x384 on one core: 0.34 ms against 1.8 ms for a direct ``INTER_AREA`` (1280x720 -> 512x320: 0.75 against
    3.4 ms), about as close to the official PIL bilinear resize (docs/ros.md, "Per-frame cost")."""
    image = rgb_hwc_u8
    for _ in range(input_halvings(*image.shape[:2], height, width)):
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def to_model_input(rgb_hwc_u8: np.ndarray, height: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 -> float32 (3, h, w) in [-1, 1] at the processing size (official scaling x/127.5 - 1), written into
    ``out`` when given. After the (uint8) :func:`resize_input` one table lookup per channel: the values are exactly
    those of ``x.astype(float32) / 127.5 - 1``."""
    rgb = resize_input(check_rgb(rgb_hwc_u8), height, width)
    out = np.empty((3, height, width), np.float32) if out is None else out
    for c, plane in enumerate(cv2.split(rgb)):
        cv2.LUT(plane, _INPUT_LUT, dst=out[c])
    return out


def ensemble_stats(z_members_bmhw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over ensemble members (axis 1): log-depth z and its uncertainty, both (b, h, w);
    one member: itself and zeros (nothing computed)."""
    if z_members_bmhw.shape[1] == 1:
        return z_members_bmhw[:, 0], np.zeros(z_members_bmhw[:, 0].shape, z_members_bmhw.dtype)
    return z_members_bmhw.mean(axis=1), z_members_bmhw.std(axis=1)


def members_to_input_size(z_members_bmhw: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean z and std of engine output (b, M, h, w), each resized back to ``height`` x ``width``: float32
    (b, height, width). One member's all-zero std is made at the output size, not resized."""
    z_bhw, std_bhw = ensemble_stats(np.asarray(z_members_bmhw, np.float32))
    z_out = np.stack([resize_hw(z, height, width) for z in z_bhw])
    if z_members_bmhw.shape[1] == 1:
        return z_out, np.zeros_like(z_out)
    return z_out, np.stack([resize_hw(s, height, width) for s in std_bhw])


def relative_depth(z_bhw: np.ndarray) -> np.ndarray:
    """Official output: per-sample min-max of exp(z), in [0, 1] (0 near, 1 far up to the model's affine ambiguity).

    float32 throughout (exp, then (d - lo) * 1/(hi - lo) in place): within float32 rounding of a float64 evaluation.
    """
    d = np.exp(np.asarray(z_bhw, np.float32))
    for sample in d.reshape(len(d), -1):
        lo, hi = sample.min(), sample.max()
        sample -= lo
        sample *= np.float32(1.0 / max(float(hi - lo), 1e-12))
    return d


def normalize_log_depth(depth_hw_m: np.ndarray, valid_hw: np.ndarray | None = None, low_pct: float = 2.0,
                        high_pct: float = 98.0, fill_invalid: float = 1.0) -> tuple[np.ndarray, float, float]:
    """Log depth -> [-1, 1]: the ``low_pct``/``high_pct`` percentiles of valid log depth map to -1/+1 (clipped).

    Returns ``(depth_norm_hw, log_lo, log_hi)``; ``log depth = log_lo + (d + 1) / 2 · (log_hi - log_lo)`` inverts it.
    """
    depth = np.asarray(depth_hw_m, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    if valid_hw is not None:
        valid &= np.asarray(valid_hw, dtype=bool)
    if not valid.any():
        raise InputError("depth map has no valid (finite, positive) pixels to normalise")
    if not 0.0 <= low_pct < high_pct <= 100.0:
        raise InputError(f"need 0 <= low_pct < high_pct <= 100, got {low_pct}, {high_pct}")
    log_d = np.log(np.where(valid, depth, 1.0))
    log_lo, log_hi = np.percentile(log_d[valid], [low_pct, high_pct])
    span = max(log_hi - log_lo, 1e-6)  # a flat wall: every pixel maps to -1..+1 around one value
    norm = np.clip(2.0 * (log_d - log_lo) / span - 1.0, -1.0, 1.0)
    norm[~valid] = fill_invalid
    return norm.astype(np.float32), float(log_lo), float(log_hi)


def colorize(values_hw: np.ndarray, vmin: float | None = None, vmax: float | None = None,
             colormap: int = cv2.COLORMAP_MAGMA) -> np.ndarray:
    """Colour-map a 2-D float map to RGB uint8 (NaN -> black). Limits default to the finite 2nd/98th percentiles."""
    finite = np.isfinite(values_hw)
    if not finite.any():
        return np.zeros((*values_hw.shape, 3), np.uint8)
    lo = np.percentile(values_hw[finite], 2) if vmin is None else vmin
    hi = np.percentile(values_hw[finite], 98) if vmax is None else vmax
    scaled = np.clip((np.where(finite, values_hw, lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    bgr = cv2.applyColorMap((scaled * 255).astype(np.uint8), colormap)
    bgr[~finite] = 0
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
