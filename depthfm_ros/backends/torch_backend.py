"""PyTorch backend: the reference engine (CPU or CUDA), fp32/fp16/bf16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..models.depthfm import DepthFM
from ..settings import DTYPES, resolve_dtype
from .base import Backend

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    """'fp32' | 'fp16' | 'bf16' (or 'auto': fp32 for torch) -> torch dtype."""
    name = resolve_dtype(name, "torch")
    if name not in TORCH_DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return TORCH_DTYPES[name]


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: DepthFM, num_steps: int = 2, dtype: str = "fp32", device: str | None = None,
                 rescale_attention: bool | None = None):
        if num_steps < 1:
            raise InputError(f"num_steps must be >= 1, got {num_steps}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device, torch_dtype(dtype)).eval()
        self.num_steps = num_steps
        self.noising_step = model.noising_step
        if rescale_attention is not None:
            model.set_rescale_attention(rescale_attention)
        self.rescale_attention = getattr(model, "rescale_attention", False)
        self.dtype = resolve_dtype(dtype, "torch")

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, vae: str | Path | None = None,
                        tiny_vae: str | Path | None = None, vae_kind: str | None = None, **kwargs) -> "TorchBackend":
        """``tiny_vae``/``vae_kind`` select the distilled tiny VAE (see :meth:`DepthFM.load`)."""
        return cls(DepthFM.load(checkpoint, vae, tiny_vae=tiny_vae, vae_kind=vae_kind), **kwargs)

    @property
    def tensor_device(self) -> torch.device:
        return self.device

    @torch.inference_mode()
    def run(self, rgb_bchw: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return self.run_tensors(torch.from_numpy(np.ascontiguousarray(rgb_bchw)),
                                torch.from_numpy(np.ascontiguousarray(noise))).float().cpu().numpy()

    @torch.inference_mode()
    def run_tensors(self, rgb_bchw: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """:meth:`run` on tensors, kept on this backend's device: z members (b, M, h, w) in the model's dtype."""
        self.check_inputs(rgb_bchw, noise)
        dt = self.model.dtype
        return self.model(rgb_bchw.to(self.device, dt), noise.to(self.device, dt), self.num_steps)

    def describe(self) -> str:
        vae = ", tiny VAE" if self.model.tiny_vae is not None else ""
        threads = f", {torch.get_num_threads()} thread(s)" if self.device.type == "cpu" else ""
        return f"torch[{self.device.type}, {self.dtype}{vae}{threads}] (steps={self.num_steps})"
