"""Run the split graphs (encoder, step, decoder) through the one sampler: :func:`sampler.sample_members`.

:class:`StagedModel` looks like a :class:`DepthFM` to the sampler (``encode``/``velocity``/``decode``, ``dtype``,
``noising_step``) but each stage is an engine call, so ONNX Runtime and TensorRT reuse the same Euler loop, noise
augmentation and member batching as the PyTorch reference instead of a copy of it.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..sampler import sample_members

StageFn = Callable[..., torch.Tensor]


class StagedModel:
    """Duck-typed DepthFM over three stage callables on torch tensors (CPU for ONNX Runtime, CUDA for TensorRT).

    ``encode(image (b,3,H,W)) -> z_img (b,4,h,w)``, ``velocity(x_t (N,4,h,w), t (N,), z_img) -> (N,4,h,w)``,
    ``decode(x_1 (N,4,h,w)) -> z (N,1,H,W)``.
    """

    dtype = torch.float32

    def __init__(self, encode: StageFn, velocity: StageFn, decode: StageFn, noising_step: int):
        self._encode, self._velocity, self._decode = encode, velocity, decode
        self.noising_step = int(noising_step)

    def encode(self, rgb_bchw: torch.Tensor) -> torch.Tensor:
        return self._encode(rgb_bchw)

    def velocity(self, x_t: torch.Tensor, t: float, z_img: torch.Tensor) -> torch.Tensor:
        t_n = torch.full((x_t.shape[0],), float(t), dtype=torch.float32, device=x_t.device)
        return self._velocity(x_t, t_n, z_img)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._decode(z)

    def __call__(self, rgb_bchw: torch.Tensor, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        """z members (b, M, H, W), exactly as :meth:`DepthFM.forward`."""
        return sample_members(self, rgb_bchw, noise, num_steps)
