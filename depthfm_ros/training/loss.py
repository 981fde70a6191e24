"""The paper's flow-matching objective, as the trainer computes it.

t ~ U[0, 1], x0 = noise-augmented image latent, x_t = t·x1 + (1 - t)·x0 + sigma_min·eps' (a small Gaussian
smoothing of the straight path), target velocity x1 - x0, MSE over the latent cells with full ground truth. The
VAE is frozen; only the UNet trains.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.depthfm import DepthFM
from ..sampler import noise_augment
from ..shapes import VAE_DOWNSCALE


def draw_flow_noise(x1: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t (b,), eps for the noise augmentation, eps for the path smoothing), drawn on CPU from ``generator``."""
    b = x1.shape[0]
    t = torch.rand(b, generator=generator)
    eps_aug = torch.randn(tuple(x1.shape), generator=generator)
    eps_path = torch.randn(tuple(x1.shape), generator=generator)
    dev = x1.device
    return t.to(dev), eps_aug.to(dev), eps_path.to(dev)


def latent_valid_mask(valid_bhw: torch.Tensor) -> torch.Tensor:
    """(b, 1, h/8, w/8) float mask of latent cells whose 8x8 pixels all have ground truth (Marigold's rule): the
    loss ignores cells touching sky / missing depth instead of training them as "farthest"."""
    invalid = (~valid_bhw.bool())[:, None].float()
    return 1.0 - F.max_pool2d(invalid, VAE_DOWNSCALE)


class FlowMatchingLoss(nn.Module):
    """MSE between the UNet velocity at x_t and the target x1 - x0 (a module, so DDP can wrap it), averaged over
    the latent cells ``mask`` (b, 1, h, w) keeps (all of them when None)."""

    def __init__(self, model: DepthFM, sigma_min: float = 1e-4):
        super().__init__()
        self.model = model
        self.sigma_min = float(sigma_min)

    def forward(self, z_img, x1, cond, t, eps_aug, eps_path, mask=None):
        x0 = noise_augment(z_img, self.model.noising_step, eps_aug)
        t_b = t.view(-1, 1, 1, 1)
        x_t = t_b * x1 + (1.0 - t_b) * x0 + self.sigma_min * eps_path
        v = self.model.velocity(x_t, t, cond)
        err = (v.float() - (x1 - x0).float()).pow(2)
        if mask is None:
            return err.mean()
        mask = mask.to(err.dtype)
        return (err * mask).sum() / (mask.sum() * err.shape[1]).clamp(min=1.0)


def training_condition(model, z_img: torch.Tensor, batch: dict, generator: torch.Generator) -> torch.Tensor:
    """What the UNet is conditioned on besides x_t: the image latent, plus whatever the model adds (completion)."""
    extra = getattr(model, "training_condition", None)
    return z_img if extra is None else extra(z_img, batch, generator)
