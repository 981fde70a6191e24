"""Validity masks of a metric depth map: pure functions returning a boolean ``keep`` of the depth's shape.

Invalid depth (NaN, inf, 0 and below, REP-118) never passes. Combine masks with ``&``; :func:`combined_mask` is what
the node's ``points_*`` parameters select.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError


def finite_depth_mask(depth_hw_m: np.ndarray) -> np.ndarray:
    """True where depth is a usable measurement: finite and > 0 (REP-118 NaN/inf/0 are not)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth_hw_m) & (depth_hw_m > 0)


def range_mask(depth_hw_m: np.ndarray, min_range_m: float = 0.0, max_range_m: float = np.inf) -> np.ndarray:
    """True where ``min_range_m <= depth <= max_range_m`` (range along the optical axis, as depth_image_proc)."""
    if not 0 <= min_range_m <= max_range_m:
        raise InputError(f"need 0 <= min_range_m <= max_range_m, got {min_range_m}, {max_range_m}")
    with np.errstate(invalid="ignore"):
        return (depth_hw_m >= min_range_m) & (depth_hw_m <= max_range_m)


def uncertainty_mask(depth_hw_m: np.ndarray, std_hw_m: np.ndarray, max_std_m: float | None = None,
                     max_relative_std: float | None = None) -> np.ndarray:
    """True where the depth standard deviation is small enough.

    ``max_std_m`` bounds the metric std (metres); ``max_relative_std`` bounds std / depth. None skips a test.
    A NaN std fails every test that is enabled.
    """
    if std_hw_m.shape != depth_hw_m.shape:
        raise InputError(f"std shape {std_hw_m.shape} differs from depth shape {depth_hw_m.shape}")
    keep = np.ones(depth_hw_m.shape, bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        if max_std_m is not None:
            keep &= std_hw_m <= max_std_m
        if max_relative_std is not None:
            keep &= std_hw_m <= max_relative_std * depth_hw_m
    return keep


def edge_mask(depth_hw_m: np.ndarray, max_neighbour_ratio: float = 1.1) -> np.ndarray:
    """Flying-pixel test: False where depth jumps to a 4-neighbour by more than ``max_neighbour_ratio``.

    The ratio ``max(d, d_n) / min(d, d_n)`` is the depth gradient relative to depth, so one threshold serves near
    and far; it is tested as |log d − log d_n| > log(ratio) with OpenCV. Both pixels either side of a jump are
    dropped; invalid neighbours (NaN, inf, <= 0) and the image border never drop a pixel.
    """
    if not max_neighbour_ratio >= 1:
        raise InputError(f"max_neighbour_ratio must be >= 1, got {max_neighbour_ratio}")
    with np.errstate(all="ignore"):
        log_d = np.log(np.asarray(depth_hw_m, np.float32))
    log_d[~np.isfinite(log_d)] = np.nan  # invalid: every comparison with it is False
    threshold = float(np.log(max_neighbour_ratio))
    dropped = np.zeros(log_d.shape, np.uint8)
    for a, b, dropped_a, dropped_b in ((log_d[:, :-1], log_d[:, 1:], dropped[:, :-1], dropped[:, 1:]),
                                       (log_d[:-1], log_d[1:], dropped[:-1], dropped[1:])):
        if a.size == 0:  # one row or one column: no neighbours that way
            continue
        if min(a.shape) > 1:
            jump = cv2.compare(cv2.absdiff(a, b), threshold, cv2.CMP_GT)
        else:  # OpenCV's binding would read a 1-wide array of up to 4 values as a scalar
            with np.errstate(invalid="ignore"):
                jump = (np.abs(a - b) > threshold).astype(np.uint8)
        cv2.bitwise_or(dropped_a, jump, dst=dropped_a)
        cv2.bitwise_or(dropped_b, jump, dst=dropped_b)
    return dropped == 0


def combined_mask(depth_hw_m: np.ndarray, std_hw_m: np.ndarray | None = None, *, min_range_m: float = 0.0,
                  max_range_m: float = 0.0, max_std_m: float = 0.0, max_relative_std: float = 0.0,
                  edge_ratio: float = 0.0) -> np.ndarray:
    """The filters above and-ed with finite_depth_mask, each off when its threshold is 0 (the node's parameters).

    ``std_hw_m`` (metres) is needed only when ``max_std_m`` or ``max_relative_std`` is set.
    """
    keep = finite_depth_mask(depth_hw_m)
    if min_range_m > 0 or max_range_m > 0:
        keep &= range_mask(depth_hw_m, min_range_m, max_range_m if max_range_m > 0 else np.inf)
    if max_std_m > 0 or max_relative_std > 0:
        if std_hw_m is None:
            raise InputError("an uncertainty filter is set but no std was given")
        keep &= uncertainty_mask(depth_hw_m, std_hw_m, max_std_m or None, max_relative_std or None)
    if edge_ratio > 0:
        keep &= edge_mask(depth_hw_m, edge_ratio)
    return keep


def nearest_fill(sparse_depth_hw_m: np.ndarray) -> np.ndarray:
    """Every pixel takes the depth of its nearest measured (finite) pixel (approximate L2, OpenCV labels): the
    LiDAR-only baseline, and how the completion model densifies its sparse input.

    Delaunay-based linear interpolation (scipy griddata) is pathologically slow on scan-line point sets.
    """
    empty_hw_u8 = (~np.isfinite(sparse_depth_hw_m)).astype(np.uint8)
    if empty_hw_u8.all():
        return np.full(sparse_depth_hw_m.shape, np.nan, dtype=np.float32)
    _, labels = cv2.distanceTransformWithLabels(empty_hw_u8, cv2.DIST_L2, cv2.DIST_MASK_5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    # labels count LiDAR pixels in raster order
    return sparse_depth_hw_m[empty_hw_u8 == 0][labels - 1].astype(np.float32)

