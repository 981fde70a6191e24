"""DepthFM model: diffusers UNet (8 -> 4 channels) + SD AutoencoderKL, official-checkpoint loading, diffusers save/load.

Optionally a distilled tiny VAE (:mod:`depthfm_ros.tiny_vae`, TAESD architecture) replaces the SD VAE in
``encode``/``decode``; it is saved under ``tiny_vae/`` and chosen with ``DepthFM.load(..., vae_kind="tiny")``.

The official checkpoint (github.com/CompVis/depth-fm) is a torch dict with ``ldm_hparams`` (kwargs of the LDM
``openaimodel.UNetModel``), ``state_dict`` (LDM key names), ``noising_step`` and ``empty_text_embedding``.
The UNet is converted with diffusers' own LDM conversion; the VAE is a diffusers ``AutoencoderKL`` folder.
Conversion happens once: :meth:`DepthFM.save_pretrained` writes a folder that :meth:`DepthFM.from_pretrained` reads.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import CheckpointError, InputError
from .processing import SIZE_MULTIPLE

LATENT_SCALE = 0.18215
LATENT_CHANNELS = 4
VAE_DOWNSCALE = 8
OFFICIAL_KEYS = ("ldm_hparams", "state_dict", "noising_step", "empty_text_embedding")
META_FILE = "depthfm.json"
EMBEDDING_FILE = "empty_text_embedding.npy"
TINY_VAE_FOLDER = "tiny_vae"
VAE_KINDS = ("full", "tiny")


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

    def set_tiny_vae(self, tiny_vae) -> "DepthFM":
        """Use a distilled tiny VAE (``depthfm_ros.tiny_vae``) in ``encode``/``decode``; None restores the SD VAE."""
        if tiny_vae is not None:
            from .tiny_vae import check_tiny_vae

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
            from .tiny_vae import tiny_encode

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
            from .tiny_vae import tiny_decode

            return tiny_decode(self.tiny_vae, z)
        out = self.vae.decode(z.to(self.vae.dtype) / self.latent_scale, return_dict=False)[0]
        return out.mean(dim=1, keepdim=True)

    def forward(self, rgb_bchw: torch.Tensor, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        """Run the engine. ``noise`` is (b*M, 4, h/8, w/8), member-major per image; returns z members (b, M, H, W)."""
        from .sampler import sample_members  # local: sampler imports nothing from here at module level

        return sample_members(self, rgb_bchw, noise, num_steps)

    # ---------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_official_checkpoint(cls, checkpoint_path: str | Path, vae_path: str | Path,
                                 torch_dtype: torch.dtype = torch.float32) -> "DepthFM":
        """Build from an official DepthFM ``.ckpt`` and a diffusers ``AutoencoderKL`` folder (the SD VAE)."""
        ckpt = load_official_checkpoint(checkpoint_path)
        unet = unet_from_ldm(ckpt["ldm_hparams"], ckpt["state_dict"])
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
            unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True)
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot load DepthFM folder {folder}: {exc}") from exc
        vae = load_vae(folder / "vae")
        model = cls(unet, vae, embedding, meta["noising_step"], meta.get("latent_scale", LATENT_SCALE))
        if meta.get("vae_kind") == "tiny":
            if not (folder / TINY_VAE_FOLDER).is_dir():
                raise CheckpointError(f"{folder} was saved with a tiny VAE but has no {TINY_VAE_FOLDER}/ folder")
            from .tiny_vae import load_tiny_vae

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
            raise ValueError(f"vae_kind must be one of {VAE_KINDS}, got {vae_kind!r}")
        path = Path(checkpoint)
        if path.is_dir():
            model = cls.from_pretrained(path, torch_dtype)
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
        from .tiny_vae import load_tiny_vae

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
        }


def load_model(checkpoint: str | Path | None = None, vae: str | Path | None = None, *, tiny_model: bool = False,
               vae_kind: str = "full", tiny_vae: str | Path | None = None, seed: int = 0) -> DepthFM:
    """The DepthFM a user's settings describe (CLI arguments, node parameters): the small random model
    (``tiny_model``, for demos and tests) or a checkpoint; ``tiny_vae`` (a folder) implies ``vae_kind`` 'tiny'."""
    vae_kind = "tiny" if tiny_vae else vae_kind
    if tiny_model:
        model = build_tiny_depthfm(seed=seed)
        if vae_kind == "tiny":  # a random test-size tiny VAE unless a folder is given
            from .tiny_vae import TINY_TEST_CONFIG, build_tiny_vae, load_tiny_vae

            model.set_tiny_vae(load_tiny_vae(tiny_vae) if tiny_vae else build_tiny_vae(TINY_TEST_CONFIG))
        return model
    if not checkpoint:
        raise CheckpointError("no model given: a checkpoint (and its SD VAE folder for an official .ckpt), "
                              "or the tiny random model")
    return DepthFM.load(checkpoint, vae, tiny_vae=tiny_vae, vae_kind=vae_kind)


# ------------------------------------------------------------------------------------ official checkpoint
def load_official_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate an official DepthFM checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt/truncated file
        raise CheckpointError(f"cannot read checkpoint {path} (corrupt or not a torch file): {exc}") from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a DepthFM checkpoint dict")
    missing = [k for k in OFFICIAL_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not an official DepthFM checkpoint: missing {missing}; "
                              f"has {sorted(map(str, ckpt))}")
    in_channels = ckpt["ldm_hparams"].get("in_channels")
    if in_channels != 2 * LATENT_CHANNELS:
        raise CheckpointError(f"{path}: UNet in_channels is {in_channels}, DepthFM needs {2 * LATENT_CHANNELS} "
                              "(noisy depth latent + image latent)")
    return ckpt


def _ldm_original_config(ldm_hparams: dict[str, Any]) -> dict[str, Any]:
    """The LDM yaml structure diffusers' config conversion reads (UNet params + VAE downscale)."""
    hp = {"transformer_depth": 1, "use_linear_in_transformer": False, "context_dim": None, **ldm_hparams}
    if hp.get("num_heads", -1) == -1:
        hp.pop("num_heads", None)
    n_vae_levels = int(math.log2(VAE_DOWNSCALE)) + 1
    return {"model": {"params": {
        "unet_config": {"params": hp},
        "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1] * n_vae_levels}}},
    }}}


def unet_config_from_ldm(ldm_hparams: dict[str, Any]) -> dict[str, Any]:
    """diffusers ``UNet2DConditionModel`` config for LDM UNet kwargs (diffusers' own conversion)."""
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

    original = _ldm_original_config(ldm_hparams)
    hp = original["model"]["params"]["unet_config"]["params"]
    image_size = int(hp.get("image_size", 32)) * VAE_DOWNSCALE
    with warnings.catch_warnings():  # image_size is only sample_size metadata here; silence its deprecation note
        warnings.simplefilter("ignore", FutureWarning)
        config = create_unet_diffusers_config_from_ldm(original, {}, image_size=image_size)
    if config["attention_head_dim"] is None:  # LDM num_head_channels without linear projection: heads per level
        config["attention_head_dim"] = [hp["model_channels"] * m // hp["num_head_channels"]
                                        for m in hp["channel_mult"]]
    return config


def unet_from_ldm(ldm_hparams: dict[str, Any], ldm_state_dict: dict[str, torch.Tensor]):
    """diffusers UNet from LDM kwargs and an LDM-named state dict; every tensor must be used and every slot filled."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import LDM_UNET_KEY, convert_ldm_unet_checkpoint

    config = unet_config_from_ldm(ldm_hparams)
    unet = UNet2DConditionModel(**config)
    prefixed = {LDM_UNET_KEY + k: v for k, v in ldm_state_dict.items()}
    try:
        converted = convert_ldm_unet_checkpoint(prefixed, config)
    except (KeyError, IndexError) as exc:
        raise CheckpointError(f"state_dict does not fit the LDM UNet layout: missing {exc}") from exc
    expected = unet.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if missing or unexpected or any(v is None for v in converted.values()):
        raise CheckpointError(f"state_dict does not match ldm_hparams: {len(missing)} missing (e.g. {missing[:3]}), "
                              f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    bad = [k for k, v in converted.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"state_dict shapes do not match ldm_hparams: {k} is {tuple(converted[k].shape)}, "
                              f"expected {tuple(expected[k].shape)} ({len(bad)} tensors differ)")
    unet.load_state_dict(converted, strict=True)
    return unet.eval()


def _diffusers_to_ldm_prefixes(config) -> list[tuple[str, str]]:
    """(diffusers prefix, LDM prefix) pairs for a UNet2DConditionModel config, the inverse of diffusers' renaming."""
    n_levels = len(config["block_out_channels"])
    r = config["layers_per_block"]
    pairs = []
    for i in range(n_levels):
        down_attn = config["down_block_types"][i].startswith("CrossAttn")
        for j in range(r):
            pairs.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{(r + 1) * i + j + 1}.0."))
            if down_attn:
                pairs.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{(r + 1) * i + j + 1}.1."))
        if i < n_levels - 1:
            pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(r + 1) * (i + 1)}.0.op."))
        up_attn = config["up_block_types"][i].startswith("CrossAttn")
        for j in range(r + 1):
            pairs.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{(r + 1) * i + j}.0."))
            if up_attn:
                pairs.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{(r + 1) * i + j}.1."))
        if i < n_levels - 1:
            pairs.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{(r + 1) * i + r}.{2 if up_attn else 1}."))
    pairs += [("mid_block.resnets.0.", "middle_block.0."), ("mid_block.attentions.0.", "middle_block.1."),
              ("mid_block.resnets.1.", "middle_block.2.")]
    return pairs


_TOP_LEVEL = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
              "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2."}
_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
           "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}


def unet_to_ldm_state_dict(unet) -> dict[str, torch.Tensor]:
    """LDM-named state dict of a diffusers UNet, checked by converting it back with diffusers' converter."""
    from diffusers.loaders.single_file_utils import LDM_UNET_KEY, convert_ldm_unet_checkpoint

    config = dict(unet.config)
    prefixes = list(_TOP_LEVEL.items()) + _diffusers_to_ldm_prefixes(config)
    state = unet.state_dict()
    ldm = {}
    for key, value in state.items():
        for d_prefix, l_prefix in prefixes:
            if key.startswith(d_prefix):
                rest = key[len(d_prefix):]
                if ".resnets." in d_prefix:
                    head, _, tail = rest.partition(".")
                    rest = f"{_RESNET.get(head, head)}.{tail}"
                ldm[l_prefix + rest] = value
                break
        else:
            raise CheckpointError(f"no LDM name for UNet tensor {key}")
    back = convert_ldm_unet_checkpoint({LDM_UNET_KEY + k: v for k, v in ldm.items()}, config)
    if set(back) != set(state) or any(back[k] is not v for k, v in state.items()):
        raise CheckpointError("LDM export does not round-trip through diffusers' converter for this UNet config")
    return ldm


def ldm_hparams_from_unet(unet) -> dict[str, Any]:
    """LDM ``UNetModel`` kwargs that describe a diffusers UNet (for writing the official format)."""
    c = unet.config
    mc = c.block_out_channels[0]
    attention_resolutions = tuple(2 ** i for i, t in enumerate(c.down_block_types) if t.startswith("CrossAttn"))
    heads = c.attention_head_dim if isinstance(c.attention_head_dim, (list, tuple)) else \
        [c.attention_head_dim] * len(c.block_out_channels)
    return {
        "image_size": c.sample_size, "in_channels": c.in_channels, "model_channels": mc,
        "out_channels": c.out_channels, "num_res_blocks": c.layers_per_block,
        "attention_resolutions": attention_resolutions,
        "channel_mult": tuple(ch // mc for ch in c.block_out_channels),
        "num_head_channels": c.block_out_channels[0] // heads[0],
        "use_spatial_transformer": True, "use_linear_in_transformer": bool(c.use_linear_projection),
        "context_dim": c.cross_attention_dim, "transformer_depth": c.transformer_layers_per_block
        if isinstance(c.transformer_layers_per_block, int) else list(c.transformer_layers_per_block),
        "legacy": False, "use_checkpoint": False,
    }


def load_vae(path: str | Path):
    """The SD VAE from a diffusers ``AutoencoderKL`` folder (``config.json`` + weights); never the hub."""
    from diffusers import AutoencoderKL

    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"VAE folder not found or has no config.json: {path}")
    try:
        vae = AutoencoderKL.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load VAE from {path}: {exc}") from exc
    return vae.eval()


def check_image_batch(rgb_bchw: torch.Tensor) -> None:
    """Engine inputs are (b, 3, h, w) with h, w multiples of SIZE_MULTIPLE, 64 (the UNet halves the latent at every
    level); :func:`processing.processing_size` snaps to the same constant."""
    if rgb_bchw.ndim != 4 or rgb_bchw.shape[1] != 3:
        raise InputError(f"expected images (b, 3, h, w), got {tuple(rgb_bchw.shape)}")
    h, w = rgb_bchw.shape[-2:]
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE or h == 0 or w == 0:
        raise InputError(f"processing size must be a positive multiple of {SIZE_MULTIPLE}, got {h}x{w}")


# ------------------------------------------------------------------------------------------- tiny models
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
