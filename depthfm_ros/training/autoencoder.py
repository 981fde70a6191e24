"""A stand-in VAE for the CPU recipe and tests: a tiny random VAE trained to reconstruct images and depth.

DepthFM itself uses the frozen, pretrained SD VAE. A random VAE cannot decode depth at all (its
decode(encode(depth)) is no better than a constant), so a tiny model needs this before flow training means anything.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..shapes import LATENT_SCALE
from .batches import StepBatchSampler
from .data import collate
from .progress import ProgressBar


def fit_autoencoder(vae, dataset: Dataset, num_steps: int, batch_size: int = 8, lr: float = 1e-3,
                    seed: int = 0, latent_scale: float = LATENT_SCALE, progress: bool = True) -> list[float]:
    """Train a (tiny, random) VAE to reconstruct images and replicated normalised depth; the step losses.

    A penalty pulls the scaled latents (mode · latent_scale) to unit mean square, the property SD's 0.18215 was
    chosen for, so noise augmentation has its intended strength.
    """
    vae.train().requires_grad_(True)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sampler = StepBatchSampler(len(dataset), batch_size, seed)
    losses = []
    bar = ProgressBar(progress, num_steps, desc="vae")
    device = next(vae.parameters()).device
    for step in range(num_steps):
        batch = collate([dataset[i] for i in sampler.indices(step)])
        images = torch.cat([batch["rgb_chw"], batch["depth_norm_hw"][:, None].expand(-1, 3, -1, -1)]).to(device)
        latents = vae.encode(images).latent_dist.mode()
        recon = vae.decode(latents).sample
        loss = F.mse_loss(recon, images) + 0.1 * ((latents * latent_scale).pow(2).mean() - 1.0) ** 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        bar.update(losses[-1])
    bar.close()
    vae.eval().requires_grad_(False)
    return losses
