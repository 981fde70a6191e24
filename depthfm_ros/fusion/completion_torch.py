"""The steps of :func:`depthfm_ros.fusion.completion.complete_depth` on torch tensors, for a CUDA engine's device
(tested on CPU tensors against the numpy/OpenCV path): the splat is an ``index_add_``, the blur three 1-D
convolutions, the pyramid reshapes and ``interpolate``, and the slice one trilinear ``grid_sample``."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .completion import _KERNEL, _PAD, self_weight


class TorchGrid:
    """:class:`depthfm_ros.fusion.completion._NumpyGrid` on tensors: a grid is ``(gy, gx, R, C)``, the points'
    trilinear corners and weights ``(P, 8)`` index the finest level."""

    def __init__(self, coords_p3: torch.Tensor, shapes: list[tuple[int, int, int]]):
        self.shapes = shapes
        gy, gx, num_range = shapes[0]
        base = torch.floor(coords_p3)
        frac = coords_p3 - base
        base = base.long()
        flat0 = (base[:, 0] * gx + base[:, 1]) * num_range + base[:, 2]
        offsets = torch.tensor([(dy * gx + dx) * num_range + dr for dy in (0, 1) for dx in (0, 1) for dr in (0, 1)],
                               device=coords_p3.device)
        self.indices = flat0[:, None] + offsets
        w_y, w_x, w_r = (torch.stack([1 - frac[:, k], frac[:, k]], dim=1) for k in range(3))
        self.weights = (w_y[:, :, None, None] * w_x[:, None, :, None] * w_r[:, None, None, :]).reshape(-1, 8)
        self.self_weight = self_weight(frac)
        self.kernel = torch.from_numpy(_KERNEL[:, 0]).to(coords_p3.device)

    def splat(self, values_pc: torch.Tensor) -> torch.Tensor:
        c = values_pc.shape[1]
        out = values_pc.new_zeros(int(np.prod(self.shapes[0])), c)
        out.index_add_(0, self.indices.reshape(-1), (self.weights[:, :, None] * values_pc[:, None, :]).reshape(-1, c))
        return out.reshape(*self.shapes[0], c)

    def sample(self, grid: torch.Tensor) -> torch.Tensor:
        flat = grid.reshape(-1, grid.shape[-1])
        return (flat[self.indices] * self.weights[:, :, None]).sum(dim=1)

    def blur(self, grid: torch.Tensor) -> torch.Tensor:
        gy, gx, num_range, c = grid.shape
        x = grid.permute(3, 0, 1, 2).reshape(c, 1, gy, gx, num_range)
        taps = len(self.kernel) // 2
        for axis in range(3):
            shape, padding = [1, 1, 1], [0, 0, 0]
            shape[axis], padding[axis] = len(self.kernel), taps
            x = F.conv3d(x, self.kernel.reshape(1, 1, *shape), padding=tuple(padding))
        return x.reshape(c, gy, gx, num_range).permute(1, 2, 3, 0).contiguous()

    @staticmethod
    def down(grid: torch.Tensor, f: int, shape_yx: tuple[int, int]) -> torch.Tensor:
        gy, gx = grid.shape[:2]
        sums = grid.reshape(gy // f, f, gx // f, f, *grid.shape[2:]).sum(dim=(1, 3))
        out = grid.new_zeros((*shape_yx, *grid.shape[2:]))
        out[: gy // f, : gx // f] = sums
        return out

    @staticmethod
    def up(est_yxr: torch.Tensor, f: int, shape_yx: tuple[int, int]) -> torch.Tensor:
        ny, nx, _ = est_yxr.shape
        out = F.interpolate(est_yxr.permute(2, 0, 1)[None], size=(ny * f, nx * f), mode="bilinear",
                            align_corners=False)
        return out[0].permute(1, 2, 0)[: shape_yx[0], : shape_yx[1]]


class TorchOps:
    """:class:`depthfm_ros.fusion.completion._NumpyOps` on tensors, on ``z_hw``'s device."""

    grid = TorchGrid

    def __init__(self, z_hw: torch.Tensor, sparse_hw):
        if z_hw.ndim != 2 or not z_hw.is_floating_point():
            raise InputError(f"z_hw must be a float (H, W) tensor, got {z_hw.dtype} {tuple(z_hw.shape)}")
        self.z = z_hw.float()
        self.sparse = torch.as_tensor(sparse_hw, device=z_hw.device).float()
        if self.sparse.shape != self.z.shape:
            raise InputError(f"sparse_depth_hw_m has shape {tuple(self.sparse.shape)}, expected "
                             f"{tuple(self.z.shape)} (same as z)")
        self.shape = tuple(self.z.shape)

    @staticmethod
    def affine(x_hw: torch.Tensor, scale: float, offset: float) -> torch.Tensor:
        return x_hw * float(scale) + float(offset)

    def lidar_pixels(self, log_fit_hw: torch.Tensor) -> torch.Tensor:
        lidar = (self.sparse > 0) & torch.isfinite(self.sparse) & torch.isfinite(log_fit_hw)
        return torch.nonzero(lidar.reshape(-1)).reshape(-1)

    def log_sparse(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.log(self.sparse.reshape(-1)[idx])

    def zeros_hw(self) -> torch.Tensor:
        return self.z.new_zeros(self.shape)

    def mask_hw(self, idx: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(self.shape, dtype=torch.bool, device=self.z.device)
        mask.reshape(-1)[idx] = True
        return mask

    @staticmethod
    def exp_depth(log_fit_hw: torch.Tensor, correction_hw: torch.Tensor | None) -> torch.Tensor:
        depth = torch.exp(log_fit_hw if correction_hw is None else log_fit_hw + correction_hw)
        return torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.full_like(depth, float("nan")))

    @staticmethod
    def stack_cols(columns) -> torch.Tensor:
        return torch.stack([torch.as_tensor(c) for c in columns], dim=1).float()

    @staticmethod
    def ones_like(x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)

    @staticmethod
    def nonzero(mask: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(mask).reshape(-1)

    @staticmethod
    def clamp_min(x: torch.Tensor, lo: float) -> torch.Tensor:
        return x.clamp_min(lo)

    @staticmethod
    def median(x: torch.Tensor) -> float:
        return float(torch.quantile(x, 0.5))  # numpy's median (the mean of the middle two), unlike torch.median

    def slice(self, est_yxr: torch.Tensor, log_fit_hw: torch.Tensor, scale: float, offset: float,
              sigma_px: float) -> torch.Tensor:
        """Trilinear lookup at every pixel with ``grid_sample`` (zero outside the grid)."""
        gy, gx, num_range = est_yxr.shape
        h, w = self.shape
        dev = est_yxr.device

        def normalized(cells, size):  # align_corners=True: -1 and 1 are the centres of the first and last cell
            return cells * (2.0 / (size - 1)) - 1.0

        x = normalized(torch.arange(w, device=dev, dtype=torch.float32) / sigma_px + _PAD, gx)
        y = normalized(torch.arange(h, device=dev, dtype=torch.float32) / sigma_px + _PAD, gy)
        u = normalized(self.affine(log_fit_hw, scale, offset), num_range)
        where = torch.stack([x.expand(h, w), y[:, None].expand(h, w), u], dim=-1)
        out = F.grid_sample(est_yxr.permute(2, 0, 1)[None, None], where[None, None], mode="bilinear",
                            padding_mode="zeros", align_corners=True)
        return out.reshape(h, w)
