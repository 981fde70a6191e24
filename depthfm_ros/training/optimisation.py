"""What one optimizer step uses besides the loss: the optimizer, the learning-rate warm-up, the mixed precision
accelerate can run here, and the EMA of the UNet's weights."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ..errors import InputError

OPTIMIZERS = ("adamw", "adamw8bit")


def make_optimizer(params, config, device: torch.device):
    """AdamW (torch's fused kernel on CUDA), or bitsandbytes' 8-bit AdamW (a quarter of the optimizer state), with
    ``config``'s (a TrainConfig) ``optimizer``, ``lr`` and ``weight_decay``."""
    if config.optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}")
    if config.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise InputError("optimizer adamw8bit needs bitsandbytes (pip install bitsandbytes, CUDA only)") from exc
        return bnb.optim.AdamW8bit(params, lr=config.lr, weight_decay=config.weight_decay)
    fused = torch.device(device).type == "cuda"
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def warmup_schedule(optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear learning-rate warm-up over ``warmup_steps`` optimizer steps (none when 0), then constant.

    Step it once per optimizer step on every rank; do not hand it to ``accelerator.prepare``: accelerate's wrapper
    steps it once per process per optimizer step, so on N processes the warm-up ended N times early."""
    warm = max(warmup_steps, 0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)


def resolve_mixed_precision(requested: str) -> str:
    """The precision accelerate can use here: fp16 autocast needs CUDA, bf16 needs CUDA bf16 support or a CPU."""
    if requested not in ("no", "bf16", "fp16"):
        raise InputError(f"mixed_precision must be 'no', 'bf16' or 'fp16', got {requested!r}")
    cuda = torch.cuda.is_available()
    if requested == "fp16" and not cuda:
        warnings.warn("fp16 autocast needs CUDA; using bf16 on CPU instead", stacklevel=2)
        return "bf16"
    if requested == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        warnings.warn("this GPU has no bf16; using fp16 instead", stacklevel=2)
        return "fp16"
    return requested


class EMA:
    """Exponential moving average of a module's trainable parameters (kept in fp32).

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so short runs are not stuck at the
    initial weights.
    """

    def __init__(self, module: nn.Module, decay: float):
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow = {n: p.detach().float().clone() for n, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        decay = min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))
        self.num_updates += 1
        for n, p in module.named_parameters():
            if n in self.shadow:
                self.shadow[n].lerp_(p.detach().float(), 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        for n, p in module.named_parameters():
            if n in self.shadow:
                p.copy_(self.shadow[n].to(p.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay, self.num_updates = state["decay"], state["num_updates"]
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}
