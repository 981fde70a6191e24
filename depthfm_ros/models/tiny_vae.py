"""Distilled tiny VAE: diffusers ``AutoencoderTiny`` (TAESD architecture) as a drop-in for the SD VAE in DepthFM.

The tiny encoder maps an image in [-1, 1] to the SD *scaled* latent (posterior mode x 0.18215), the space the UNet
works in; the tiny decoder maps a depth latent straight to the single log-depth channel z (``out_channels=1``,
where the SD decoder gives 3 channels that DepthFM averages). :mod:`depthfm_ros.training.distill` trains both
against the SD VAE.

Latent conventions, explicitly:

- ``AutoencoderTiny.encode(x).latents * config.scaling_factor`` is the UNet-space latent and ``decode(z /
  scaling_factor)`` inverts it -- the diffusers convention for every VAE. TAESD is trained to emit UNet-space
  latents directly, so its ``scaling_factor`` is 1.0 and ours is too; :func:`tiny_encode`/:func:`tiny_decode` still
  apply it, so a tiny VAE saved with another factor stays correct.
- ``latent_magnitude``/``latent_shift`` only map latents to [0, 1] for uint8 storage (``AutoencoderTiny.forward``
  quantises through them). DepthFM never calls ``forward``: latents stay float and unquantised.
- ``DecoderTiny`` soft-clamps its input with ``3 tanh(z / 3)``; SD-scaled latents are ~unit variance, so that only
  touches outliers. ``EncoderTiny`` maps [-1, 1] input to [0, 1] itself; ``DecoderTiny`` maps its output with
  ``2x - 1``, which the distilled last layer absorbs for z.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..shapes import LATENT_CHANNELS, VAE_DOWNSCALE
from .pretrained import load_pretrained

# TAESD's own architecture (AutoencoderTiny defaults) with a 1-channel log-depth decoder.
TAESD_DEPTH_CONFIG: dict[str, Any] = {
    "in_channels": 3, "out_channels": 1, "latent_channels": LATENT_CHANNELS,
    "encoder_block_out_channels": (64, 64, 64, 64), "decoder_block_out_channels": (64, 64, 64, 64),
    "num_encoder_blocks": (1, 3, 3, 3), "num_decoder_blocks": (3, 3, 3, 1), "act_fn": "relu",
    "upsampling_scaling_factor": 2, "latent_magnitude": 3, "latent_shift": 0.5, "scaling_factor": 1.0,
}
# Same layout, narrower and shallower: for tests and the tiny random DepthFM.
TINY_TEST_CONFIG: dict[str, Any] = {
    **TAESD_DEPTH_CONFIG, "encoder_block_out_channels": (16, 16, 16, 16),
    "decoder_block_out_channels": (16, 16, 16, 16), "num_encoder_blocks": (1, 1, 1, 1),
    "num_decoder_blocks": (1, 1, 1, 1),
}


def build_tiny_vae(config: dict[str, Any] | None = None, seed: int | None = 0):
    """A fresh ``AutoencoderTiny`` for DepthFM (3 -> 4 latent channels -> 1 log-depth channel), seeded init."""
    from diffusers import AutoencoderTiny

    if seed is not None:
        torch.manual_seed(seed)
    vae = AutoencoderTiny(**{**TAESD_DEPTH_CONFIG, **(config or {})})
    check_tiny_vae(vae)
    return vae.eval()


def check_tiny_vae(vae) -> None:
    """Refuse a tiny VAE that cannot stand in for the SD VAE (channels, 8x downscale)."""
    c = vae.config
    problems = []
    if c.in_channels != 3:
        problems.append(f"in_channels {c.in_channels} (needs 3, RGB)")
    if c.latent_channels != LATENT_CHANNELS:
        problems.append(f"latent_channels {c.latent_channels} (needs {LATENT_CHANNELS})")
    if c.out_channels != 1:
        problems.append(f"out_channels {c.out_channels} (needs 1, the log-depth channel)")
    down = 2 ** (len(c.num_encoder_blocks) - 1)
    up = c.upsampling_scaling_factor ** (len(c.num_decoder_blocks) - 1)
    if down != VAE_DOWNSCALE or up != VAE_DOWNSCALE:
        problems.append(f"scale {down}x down / {up}x up (needs {VAE_DOWNSCALE}x)")
    if problems:
        raise CheckpointError("not a DepthFM tiny VAE: " + "; ".join(problems))


def tiny_encode(vae, rgb_bchw: torch.Tensor) -> torch.Tensor:
    """Image in [-1, 1] -> SD-scaled latent (b, 4, h/8, w/8), the space of ``DepthFM.encode``."""
    latents = vae.encode(rgb_bchw.to(vae.dtype), return_dict=False)[0]
    return latents * vae.config.scaling_factor


def tiny_decode(vae, z_latent: torch.Tensor) -> torch.Tensor:
    """Depth latent (SD-scaled) -> log-depth value z (b, 1, H, W), the units of ``DepthFM.decode``."""
    return vae.decode(z_latent.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]


def load_tiny_vae(path: str | Path):
    """A tiny VAE folder (``config.json`` + weights, written by ``save_pretrained`` or ``depthfm-distill-vae``)."""
    from diffusers import AutoencoderTiny
    from diffusers.utils import logging as diffusers_logging

    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"tiny VAE folder not found or has no config.json: {path}")
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # AutoencoderTiny saves a `block_out_channels` alias it then warns about
    try:
        vae = load_pretrained(AutoencoderTiny, path, "tiny VAE")
    finally:
        diffusers_logging.set_verbosity(verbosity)
    check_tiny_vae(vae)
    return vae.eval()


def from_taesd(taesd):
    """Start from a pretrained RGB TAESD (``AutoencoderTiny``, e.g. a local copy of madebyollin/taesd).

    The encoder is copied as is. The decoder's last conv is averaged over its 3 output channels, so the 1-channel
    decoder starts out as exactly the channel mean of TAESD's RGB output -- what DepthFM takes from the SD decoder.
    """
    if taesd.config.out_channels != 3 or taesd.config.latent_channels != LATENT_CHANNELS:
        raise CheckpointError("from_taesd needs an RGB TAESD with 4 latent channels")
    config = {k: v for k, v in taesd.config.items() if k in TAESD_DEPTH_CONFIG}
    vae = build_tiny_vae({**config, "out_channels": 1}, seed=None)
    state = dict(taesd.state_dict())
    last = max((k for k in state if k.startswith("decoder.layers.") and k.endswith(".weight")),
               key=lambda k: int(k.split(".")[2]))
    bias = last[: -len("weight")] + "bias"
    state[last] = state[last].mean(dim=0, keepdim=True)
    state[bias] = state[bias].mean(dim=0, keepdim=True)
    vae.load_state_dict(state, strict=True)
    return vae.eval()
