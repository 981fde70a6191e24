"""Architectures with random weights: the tiny DepthFM for tests and demos, the full SD-2.1-size one for FLOPs.

Both are the real DepthFM layout (SD-style UNet with 8 input channels, AutoencoderKL); only the widths differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..shapes import LATENT_CHANNELS, LATENT_SCALE
from .depthfm import DepthFM
from .ldm import unet_config_from_ldm

TINY_LDM_HPARAMS = {
    "image_size": 32, "in_channels": 8, "model_channels": 32, "out_channels": 4, "num_res_blocks": 2,
    "attention_resolutions": (2,), "channel_mult": (1, 2), "num_head_channels": 16, "use_spatial_transformer": True,
    "use_linear_in_transformer": True, "context_dim": 32, "transformer_depth": 1, "legacy": False,
    "use_checkpoint": False,
}


TINY_VAE_CONFIG = {
    "block_out_channels": [16, 32, 32, 32], "layers_per_block": 1, "norm_num_groups": 8, "latent_channels": 4,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "sample_size": 32, "scaling_factor": LATENT_SCALE,
}

# DepthFM = SD 2.1 UNet (8 input channels: depth latent + image latent) and the SD AutoencoderKL.
FULL_LDM_HPARAMS = {
    "image_size": 64, "in_channels": 8, "model_channels": 320, "out_channels": 4, "num_res_blocks": 2,
    "attention_resolutions": (4, 2, 1), "channel_mult": (1, 2, 4, 4), "num_head_channels": 64,
    "use_spatial_transformer": True, "use_linear_in_transformer": True, "context_dim": 1024, "transformer_depth": 1,
    "legacy": False, "use_checkpoint": False,
}


FULL_VAE_CONFIG = {
    "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "latent_channels": LATENT_CHANNELS,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
}


def build_tiny_depthfm(seed: int = 0, noising_step: int = 400, ldm_hparams: dict[str, Any] | None = None,
                       vae_config: dict[str, Any] | None = None) -> DepthFM:
    """A small random DepthFM with the real architecture (SD-style UNet and VAE, scaled down) for tests and demos.

    Weights are random (seeded): outputs are not depth, but every code path, shape and number is the real one.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    hp = dict(TINY_LDM_HPARAMS if ldm_hparams is None else ldm_hparams)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config_from_ldm(hp))
    vae = AutoencoderKL(**(TINY_VAE_CONFIG if vae_config is None else vae_config))
    embedding = torch.randn(1, 77, hp["context_dim"], generator=torch.Generator().manual_seed(seed))
    return DepthFM(unet.eval(), vae.eval(), embedding, noising_step).eval()


def build_full_depthfm(device: str = "meta", noising_step: int = 400) -> DepthFM:
    """The full-size DepthFM architecture with random weights (``meta``: shapes only, no memory)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device(device):
        unet = UNet2DConditionModel(**unet_config_from_ldm(FULL_LDM_HPARAMS))
        vae = AutoencoderKL(**FULL_VAE_CONFIG)
    context = np.zeros((1, 77, FULL_LDM_HPARAMS["context_dim"]), np.float32)
    return DepthFM(unet.eval(), vae.eval(), context, noising_step).eval()
