"""Engines behind one interface (:class:`Backend`): torch, onnxruntime, tensorrt; ``create_backend`` picks one."""

from __future__ import annotations

from .base import Backend

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")


def create_backend(name: str = "auto", checkpoint: str | None = None, vae: str | None = None,
                   num_steps: int = 2, dtype: str = "fp32", **kwargs) -> Backend:
    """Build a backend by name. ``checkpoint`` is an official .ckpt (with ``vae``) or a converted model folder."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name in ("torch", "auto"):
        from .torch_backend import TorchBackend

        return TorchBackend.from_checkpoint(checkpoint, vae, num_steps=num_steps, dtype=dtype, **kwargs)
    raise NotImplementedError(f"backend {name!r} is not available yet")


__all__ = ["BACKENDS", "Backend", "create_backend"]
