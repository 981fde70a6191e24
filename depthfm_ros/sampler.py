"""Flow-matching sampler: noise augmentation of the image latent, Euler steps from t=0 to 1, batched ensembles.

DepthFM flows from the image latent x0 to the depth latent x1 along x_t = t*x1 + (1-t)*x0. The source is noise
augmented, x0 = sqrt(a)*z_img + sqrt(1-a)*eps with the cosine schedule a(s), s = noising_step/1000, which is what
makes ensemble members differ. An ensemble of M runs as ONE batch of b*M through every step.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .errors import InputError
from .shapes import check_image_batch, ensemble_size_of

VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]


def cosine_alpha_bar(s: float, eps: float = 1e-5) -> float:
    """Cosine schedule: sigmoid(log SNR) with log SNR = -2 log(tan(pi s / 2) + eps), s in [0, 1]."""
    log_snr = -2.0 * math.log(math.tan(math.pi * s / 2.0) + eps)
    return 1.0 / (1.0 + math.exp(-log_snr))


def noise_augment(z_img: torch.Tensor, noising_step: int, noise: torch.Tensor) -> torch.Tensor:
    """x0 = sqrt(a) z_img + sqrt(1 - a) noise with a = cosine_alpha_bar(noising_step / 1000); identity at step 0."""
    if noising_step <= 0:
        return z_img
    a = cosine_alpha_bar(noising_step / 1000.0)
    return math.sqrt(a) * z_img + math.sqrt(1.0 - a) * noise


def euler_flow(velocity: VelocityFn, x0: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t) from t=0 to 1 with ``num_steps`` Euler steps of 1/num_steps."""
    if num_steps < 1:
        raise InputError(f"num_steps must be >= 1, got {num_steps}")
    x, dt = x0, 1.0 / num_steps
    for i in range(num_steps):
        x = x + dt * velocity(x, i * dt)
    return x


def flow_to_depth_latent(model, z_img: torch.Tensor, noise: torch.Tensor, num_steps: int,
                         condition: torch.Tensor | None = None) -> torch.Tensor:
    """Depth latent x1: noise-augment ``z_img`` into x0, then ``num_steps`` Euler steps of ``model.velocity``.

    The UNet is conditioned on ``condition`` (default ``z_img``; the completion model adds sparse depth to it).
    """
    x0 = noise_augment(z_img, model.noising_step, noise.to(z_img))
    condition = z_img if condition is None else condition
    return euler_flow(lambda x, t: model.velocity(x, t, condition), x0, num_steps)


def sample_members(model, rgb_bchw: torch.Tensor, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Encode once, run all b*M members as one batch per step, decode: z members (b, M, H, W)."""
    check_image_batch(rgb_bchw)
    b, _, h, w = rgb_bchw.shape
    m = ensemble_size_of(tuple(noise.shape), b, h, w)
    z_img = model.encode(rgb_bchw).to(model.dtype)
    z_img = z_img.repeat_interleave(m, dim=0)
    z = model.decode(flow_to_depth_latent(model, z_img, noise, num_steps)).float()
    return z.reshape(b, m, h, w)
