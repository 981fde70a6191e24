"""DepthFM model: diffusers UNet (8 -> 4 channels) + SD AutoencoderKL, official-checkpoint loading, diffusers save/load.

Optionally a distilled tiny VAE (:mod:`depthfm_ros.models.tiny_vae`, TAESD architecture) replaces the SD VAE in
``encode``/``decode``; it is saved under ``tiny_vae/`` and chosen with ``DepthFM.load(..., vae_kind="tiny")``.

The official checkpoint is converted with diffusers' LDM conversion (:mod:`depthfm_ros.models.ldm`); the VAE is a
diffusers ``AutoencoderKL`` folder. Conversion happens once: :meth:`DepthFM.save_pretrained` writes a folder that
:meth:`DepthFM.from_pretrained` reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, InputError
from ..sampler import sample_members
from ..settings import VAE_KINDS
from ..shapes import LATENT_CHANNELS, LATENT_SCALE
from .attention import set_rescale_attention
from .ldm import ldm_hparams_from_unet, load_official_checkpoint, unet_from_ldm, unet_to_ldm_state_dict
from .pretrained import load_pretrained
from .tiny_vae import check_tiny_vae, load_tiny_vae, tiny_decode, tiny_encode

META_FILE = "depthfm.json"
EMBEDDING_FILE = "empty_text_embedding.npy"
TINY_VAE_FOLDER = "tiny_vae"


class DepthFM(nn.Module):
    """The DepthFM network: ``velocity`` is the flow field, ``encode``/``decode`` map to and from SD latent space.

    ``forward`` runs the whole engine (encode -> noise augmentation -> ``num_steps`` Euler steps -> decode -> channel
    mean) for a batch of images and an explicit noise tensor, which is also what the ONNX export traces.
    """

    #: channels concatenated after x_t at the UNet input (the image latent; subclasses may add conditioning)
    condition_channels = LATENT_CHANNELS

    def __init__(self, unet, vae, empty_text_embedding: torch.Tensor | np.ndarray, noising_step: int,
                 latent_scale: float = LATENT_SCALE):
        super().__init__()
        in_channels = LATENT_CHANNELS + self.condition_channels
        if unet.config.in_channels != in_channels or unet.config.out_channels != LATENT_CHANNELS:
            raise CheckpointError(
                f"{type(self).__name__} needs a UNet with {in_channels} input and {LATENT_CHANNELS} output channels "
                f"(depth latent + conditioning), got {unet.config.in_channels} -> {unet.config.out_channels}")
        if vae.config.latent_channels != LATENT_CHANNELS:
            raise CheckpointError(f"VAE must have {LATENT_CHANNELS} latent channels, got {vae.config.latent_channels}")
        embedding = torch.as_tensor(np.asarray(empty_text_embedding), dtype=torch.float32)
        if embedding.ndim == 2:
            embedding = embedding[None]
        if embedding.ndim != 3 or embedding.shape[0] != 1 or embedding.shape[-1] != unet.config.cross_attention_dim:
            raise CheckpointError(
                f"empty_text_embedding must be (1, tokens, {unet.config.cross_attention_dim}), "
                f"got {tuple(embedding.shape)}")
        if not 0 <= int(noising_step) < 1000:
            raise CheckpointError(f"noising_step must be in [0, 1000), got {noising_step}")
        self.unet = unet
        self.vae = vae
        self.register_buffer("empty_text_embedding", embedding, persistent=False)
        self.noising_step = int(noising_step)
        self.latent_scale = float(latent_scale)
        self.tiny_vae = None  # set_tiny_vae: a distilled AutoencoderTiny used by encode/decode instead of ``vae``
        self.rescale_attention = False  # the official non-xformers attention path (set_rescale_attention)

    def set_rescale_attention(self, rescale: bool) -> "DepthFM":
        """Use the official code's attention without xformers (self-attention scaled by sqrt(log n / log 4n / d))
        or, False (default), its xformers path (plain 1/sqrt(d)); :mod:`depthfm_ros.models.attention`."""
        set_rescale_attention(self.unet, bool(rescale))
        self.rescale_attention = bool(rescale)
        return self

    def set_tiny_vae(self, tiny_vae) -> "DepthFM":
        """Use a distilled tiny VAE (``depthfm_ros.models.tiny_vae``) in ``encode``/``decode``; None restores the
        SD VAE."""
        if tiny_vae is not None:
            check_tiny_vae(tiny_vae)
            # nn.Module.to: diffusers' ModelMixin.to warns about dtype casts even for this all-fp32-safe model
            device = next(self.unet.parameters()).device
            tiny_vae = nn.Module.to(tiny_vae, device=device, dtype=self.dtype).eval()
        self.tiny_vae = tiny_vae
        return self

    @property
    def vae_kind(self) -> str:
        """'tiny' when the distilled tiny VAE is in use, else 'full'."""
        return "full" if self.tiny_vae is None else "tiny"

    # ----------------------------------------------------------------------------------------------- stages
    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def encode(self, rgb_bchw: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] -> scaled latent (posterior mode), shape (b, 4, h/8, w/8)."""
        if self.tiny_vae is not None:
            return tiny_encode(self.tiny_vae, rgb_bchw)
        return self.vae.encode(rgb_bchw.to(self.vae.dtype)).latent_dist.mode() * self.latent_scale

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor | float, z_img: torch.Tensor) -> torch.Tensor:
        """Flow velocity v(t, x_t; z_img). ``t`` is the raw time in [0, 1] (scalar or per-sample)."""
        b = x_t.shape[0]
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).reshape(-1).expand(b)
        context = self.empty_text_embedding.to(device=x_t.device, dtype=x_t.dtype).expand(b, -1, -1)
        sample = torch.cat([x_t, z_img], dim=1)
        return self.unet(sample, t, encoder_hidden_states=context, return_dict=False)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Depth latent -> decoded log-depth value z (mean of the 3 VAE output channels), shape (b, 1, H, W)."""
        if self.tiny_vae is not None:
            return tiny_decode(self.tiny_vae, z)
        out = self.vae.decode(z.to(self.vae.dtype) / self.latent_scale, return_dict=False)[0]
        return out.mean(dim=1, keepdim=True)

    def forward(self, rgb_bchw: torch.Tensor, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        """Run the engine. ``noise`` is (b*M, 4, h/8, w/8), member-major per image; returns z members (b, M, H, W)."""
        return sample_members(self, rgb_bchw, noise, num_steps)

    # ---------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_official_checkpoint(cls, checkpoint_path: str | Path, vae_path: str | Path,
                                 torch_dtype: torch.dtype = torch.float32) -> "DepthFM":
        """Build from an official DepthFM ``.ckpt`` and a diffusers ``AutoencoderKL`` folder (the SD VAE)."""
        ckpt = load_official_checkpoint(checkpoint_path)
        try:
            unet = unet_from_ldm(ckpt["ldm_hparams"], ckpt["state_dict"], ckpt.get("upcast_attention"))
        except CheckpointError as exc:
            raise CheckpointError(f"{checkpoint_path}: {exc}") from exc
        vae = load_vae(vae_path)
        model = cls(unet, vae, ckpt["empty_text_embedding"], ckpt["noising_step"])
        return model.to(torch_dtype).eval()

    @classmethod
    def from_pretrained(cls, folder: str | Path, torch_dtype: torch.dtype = torch.float32) -> "DepthFM":
        """Load a folder written by :meth:`save_pretrained` (diffusers ``unet/`` and ``vae/`` + DepthFM metadata)."""
        from diffusers import UNet2DConditionModel

        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise CheckpointError(f"{folder} is not a DepthFM model folder: {META_FILE} is missing")
        try:
            meta = json.loads(meta_path.read_text())
            embedding = np.load(folder / EMBEDDING_FILE)
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot load DepthFM folder {folder}: {exc}") from exc
        unet = load_pretrained(UNet2DConditionModel, folder / "unet", "UNet")
        vae = load_vae(folder / "vae")
        model = cls(unet, vae, embedding, meta["noising_step"], meta.get("latent_scale", LATENT_SCALE))
        if meta.get("vae_kind") == "tiny":
            if not (folder / TINY_VAE_FOLDER).is_dir():
                raise CheckpointError(f"{folder} was saved with a tiny VAE but has no {TINY_VAE_FOLDER}/ folder")
            model.set_tiny_vae(load_tiny_vae(folder / TINY_VAE_FOLDER))
        return model.to(torch_dtype).eval()

    @classmethod
    def load(cls, checkpoint: str | Path, vae: str | Path | None = None,
             torch_dtype: torch.dtype = torch.float32, tiny_vae: str | Path | None = None,
             vae_kind: str | None = None) -> "DepthFM":
        """A converted folder (``vae`` ignored) or an official ``.ckpt`` file (``vae`` folder required).

        ``vae_kind`` 'full' uses the SD VAE; 'tiny' the distilled tiny VAE from the ``tiny_vae`` folder, or else the
        model folder's ``tiny_vae/``. None means 'tiny' if ``tiny_vae`` is given, else what the folder was saved with.
        """
        if vae_kind not in (None, *VAE_KINDS):
            raise InputError(f"vae_kind must be one of {VAE_KINDS}, got {vae_kind!r}")
        path = Path(checkpoint)
        if path.is_dir():
            model = cls.from_pretrained(path, torch_dtype)
        elif not path.exists():
            raise CheckpointError(f"checkpoint not found: {path} (an official .ckpt file or a converted folder)")
        elif vae is None:
            raise CheckpointError(f"{path} is an official checkpoint file: give the SD VAE folder as well (--vae)")
        else:
            model = cls.from_official_checkpoint(path, vae, torch_dtype)
        kind = vae_kind or ("tiny" if tiny_vae else model.vae_kind)
        if kind == "full":
            return model.set_tiny_vae(None)
        if tiny_vae is None and model.vae_kind == "tiny":  # from_pretrained loaded the folder's own tiny_vae/
            return model
        tiny_path = Path(tiny_vae) if tiny_vae else path / TINY_VAE_FOLDER
        if not tiny_path.is_dir():
            raise CheckpointError(f"vae_kind 'tiny' needs a tiny VAE folder (tiny_vae / --tiny-vae); "
                                  f"none at {tiny_path}")
        return model.set_tiny_vae(load_tiny_vae(tiny_path)).to(torch_dtype).eval()

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``unet/``, ``vae/`` (and ``tiny_vae/`` if set; diffusers format), ``empty_text_embedding.npy`` and
        ``depthfm.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(folder / "unet")
        self.vae.save_pretrained(folder / "vae")
        if self.tiny_vae is not None:
            self.tiny_vae.save_pretrained(folder / TINY_VAE_FOLDER)
        np.save(folder / EMBEDDING_FILE, self.empty_text_embedding.float().cpu().numpy())
        meta = {"noising_step": self.noising_step, "latent_scale": self.latent_scale, "format": "depthfm_ros/1",
                "vae_kind": self.vae_kind}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    def to_official_checkpoint(self, ldm_hparams: dict[str, Any] | None = None) -> dict[str, Any]:
        """The official checkpoint dict (LDM key names) for this model, e.g. to save a fine-tuned model."""
        return {
            "ldm_hparams": dict(ldm_hparams) if ldm_hparams is not None else ldm_hparams_from_unet(self.unet),
            "state_dict": unet_to_ldm_state_dict(self.unet),
            "noising_step": self.noising_step,
            "empty_text_embedding": self.empty_text_embedding.float().cpu().numpy(),
            # not an LDM UNetModel kwarg (the official code ignores extra keys): diffusers' fp32 attention upcast
            "upcast_attention": bool(self.unet.config.upcast_attention),
        }


def load_vae(path: str | Path):
    """The SD VAE from a diffusers ``AutoencoderKL`` folder (``config.json`` + weights); never the hub."""
    from diffusers import AutoencoderKL

    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"VAE folder not found or has no config.json: {path}")
    return load_pretrained(AutoencoderKL, path, "VAE").eval()
