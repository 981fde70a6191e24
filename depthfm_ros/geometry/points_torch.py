""":func:`depthfm_ros.geometry.projection.points_from_depth` on torch tensors, for metric depth on a CUDA engine's
device: the stride, the filters (:func:`depthfm_ros.geometry.masks.combined_mask`'s) and the back-projection run
there, and the points come down once, as the numpy path returns them (tested on CPU tensors against it)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from .camera import PinholeCamera
from .projection import CameraPoints, _undistorted_rays


def combined_mask_tensor(depth: torch.Tensor, std: torch.Tensor | None, *, min_range_m: float = 0.0,
                         max_range_m: float = 0.0, max_std_m: float = 0.0, max_relative_std: float = 0.0,
                         edge_ratio: float = 0.0) -> torch.Tensor:
    """:func:`depthfm_ros.geometry.masks.combined_mask` of a depth tensor (each filter off at 0)."""
    keep = torch.isfinite(depth) & (depth > 0)
    if min_range_m > 0 or max_range_m > 0:
        if not 0 <= min_range_m <= (max_range_m if max_range_m > 0 else math.inf):
            raise InputError(f"need 0 <= min_range_m <= max_range_m, got {min_range_m}, {max_range_m}")
        keep &= depth >= min_range_m
        if max_range_m > 0:
            keep &= depth <= max_range_m
    if max_std_m > 0 or max_relative_std > 0:
        if std is None:
            raise InputError("an uncertainty filter is set but no std was given")
        if max_std_m > 0:
            keep &= std <= max_std_m
        if max_relative_std > 0:
            keep &= std <= max_relative_std * depth
    if edge_ratio > 0:
        if not edge_ratio >= 1:
            raise InputError(f"max_neighbour_ratio must be >= 1, got {edge_ratio}")
        log_d = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.full_like(depth, math.nan)).log()
        threshold = math.log(edge_ratio)
        dropped = torch.zeros_like(keep)
        across = (log_d[:, 1:] - log_d[:, :-1]).abs() > threshold  # NaN compares False: invalid never drops
        down = (log_d[1:] - log_d[:-1]).abs() > threshold
        dropped[:, 1:] |= across
        dropped[:, :-1] |= across
        dropped[1:] |= down
        dropped[:-1] |= down
        keep &= ~dropped
    return keep


def points_from_depth_tensor(depth_hw_m: torch.Tensor, std_hw_m, camera: PinholeCamera, options,
                             rgb_hwc_u8=None):
    """Points (``CameraPoints`` of numpy arrays, as the numpy path gives them) from a depth tensor on its device;
    ``std_hw_m`` and ``rgb_hwc_u8`` may be tensors or numpy arrays (moved to the depth's device)."""
    if depth_hw_m.ndim != 2 or tuple(depth_hw_m.shape) != (camera.height, camera.width):
        raise InputError(f"depth shape {tuple(depth_hw_m.shape)} does not match the camera's "
                         f"{camera.height}x{camera.width}; use camera.scaled(width, height)")
    s = options.stride
    if not (isinstance(s, (int, np.integer)) and s >= 1):
        raise InputError(f"stride must be a positive integer, got {s!r}")
    device = depth_hw_m.device
    z = depth_hw_m[::s, ::s].float()
    std = None if std_hw_m is None else torch.as_tensor(std_hw_m, device=device)[::s, ::s].float()
    keep = combined_mask_tensor(z, std, min_range_m=options.min_range_m, max_range_m=options.max_range_m,
                                max_std_m=options.max_std_m, max_relative_std=options.max_relative_std,
                                edge_ratio=options.edge_ratio)
    if camera.is_distorted:
        ray_x, ray_y = (torch.from_numpy(np.ascontiguousarray(r[::s, ::s])).to(device)
                        for r in _undistorted_rays(camera))
    else:
        ray_x = ((torch.arange(0, camera.width, s, device=device, dtype=torch.float64) - camera.cx)
                 / camera.fx).float()[None, :]
        ray_y = ((torch.arange(0, camera.height, s, device=device, dtype=torch.float64) - camera.cy)
                 / camera.fy).float()[:, None]
    xyz = torch.stack([ray_x * z, (ray_y * z).expand_as(z), z], dim=-1)
    rgb = None
    if options.rgb and rgb_hwc_u8 is not None:
        rgb = torch.as_tensor(np.asarray(rgb_hwc_u8) if not isinstance(rgb_hwc_u8, torch.Tensor) else rgb_hwc_u8,
                              device=device)[::s, ::s]
        if tuple(rgb.shape[:2]) != tuple(z.shape) or rgb.dtype != torch.uint8:
            raise InputError(f"rgb must be uint8 of the depth's shape, got {rgb.dtype} {tuple(rgb.shape)}")
    if options.organized:
        xyz = torch.where(keep[..., None], xyz, torch.full_like(xyz, math.nan))
        return CameraPoints(xyz.cpu().numpy(), None if rgb is None else rgb.cpu().numpy())
    xyz = xyz[keep]
    return CameraPoints(xyz.cpu().numpy(), None if rgb is None else rgb[keep].cpu().numpy())
