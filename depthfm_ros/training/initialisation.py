"""The model training starts from: a tiny random DepthFM, Stable Diffusion 2.1 with conv_in widened 4 -> 8, or a
trained DepthFM / depth-completion model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, InputError
from ..models.architectures import TINY_LDM_HPARAMS, build_tiny_depthfm
from ..models.completion import DepthCompletionFM
from ..models.depthfm import META_FILE, DepthFM, load_vae
from ..models.ldm import widen_conv_in
from ..shapes import LATENT_CHANNELS


def load_sd_unet(unet_or_folder):
    """A diffusers ``UNet2DConditionModel`` object, its folder, or an SD pipeline folder holding ``unet/``."""
    if not isinstance(unet_or_folder, (str, Path)):
        return unet_or_folder
    from diffusers import UNet2DConditionModel

    folder = Path(unet_or_folder)
    if (folder / "unet" / "config.json").is_file():
        folder = folder / "unet"
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"no diffusers UNet (config.json) in {unet_or_folder}")
    try:
        return UNet2DConditionModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load UNet from {folder}: {exc}") from exc


def depthfm_from_sd(unet_or_folder, vae_or_folder, empty_text_embedding, noising_step: int = 400) -> DepthFM:
    """DepthFM initialised from Stable Diffusion: conv_in widened 4 -> 8 (copied, halved), everything else kept.

    ``vae_or_folder``: AutoencoderKL or its folder (None: ``<sd folder>/vae``). ``empty_text_embedding``: the
    text encoder's output for "" as (1, 77, d) array or ``.npy`` path (SD 2.1: OpenCLIP-H, d = 1024).
    """
    unet = load_sd_unet(unet_or_folder)
    if unet.config.in_channels != LATENT_CHANNELS:
        raise CheckpointError(f"expected an SD UNet with {LATENT_CHANNELS} inputs, got {unet.config.in_channels}")
    widen_conv_in(unet, 2 * LATENT_CHANNELS, "repeat_halve")
    if vae_or_folder is None:
        if not isinstance(unet_or_folder, (str, Path)):
            raise CheckpointError("give the VAE (object or folder) when the UNet is an object")
        vae_or_folder = Path(unet_or_folder) / "vae"
    vae = load_vae(vae_or_folder) if isinstance(vae_or_folder, (str, Path)) else vae_or_folder
    if isinstance(empty_text_embedding, (str, Path)):
        empty_text_embedding = np.load(empty_text_embedding)
    return DepthFM(unet, vae, empty_text_embedding, noising_step)


def initial_model(init: str, *, seed: int = 0, noising_step: int = 400, sd=None, vae=None,
                  empty_text_embedding=None, checkpoint=None, tiny_channels: int | None = None) -> DepthFM:
    """The model training starts from: ``init`` 'tiny' (a tiny random model; ``tiny_channels`` widens its UNet
    from 32 base channels), 'sd' (Stable Diffusion 2.1 with conv_in widened, needs ``sd``, ``vae`` and
    ``empty_text_embedding``) or 'depthfm' (``checkpoint``: an official .ckpt with ``vae``, a model folder, or a
    depth-completion folder)."""
    if init == "tiny":
        hparams = None if tiny_channels is None else {**TINY_LDM_HPARAMS, "model_channels": int(tiny_channels)}
        return build_tiny_depthfm(seed=seed, noising_step=noising_step, ldm_hparams=hparams)
    if init == "sd":
        if not sd or not empty_text_embedding:
            raise InputError("--init sd needs --sd (SD 2.1 folder or its unet/) and --empty-text-embedding (.npy)")
        return depthfm_from_sd(sd, vae, empty_text_embedding, noising_step)
    if not checkpoint:
        raise InputError("--init depthfm needs --checkpoint (official .ckpt with --vae, or a model folder)")
    return _trained_model(Path(checkpoint), vae)


def _trained_model(path: Path, vae) -> DepthFM:
    """A trained model to continue from: a depth-completion folder as such; any other folder or official .ckpt as
    a DepthFM with its SD VAE (a model saved with a tiny VAE trains with the SD VAE, and says so)."""
    meta = path / META_FILE
    saved = json.loads(meta.read_text()) if path.is_dir() and meta.is_file() else {}
    if "completion" in saved:
        return DepthCompletionFM.from_pretrained(path)
    model = DepthFM.load(path, vae, vae_kind="full")  # targets are SD-VAE latents, never a tiny encoder's
    if saved.get("vae_kind") == "tiny":
        warnings.warn(f"{path} was saved with a tiny VAE: training encodes images and depth targets with its SD VAE "
                      "(the tiny encoder only approximates that latent space); the export has the SD VAE only, "
                      "attach the tiny VAE again with --tiny-vae at inference", stacklevel=3)
    return model
