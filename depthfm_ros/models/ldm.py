"""The official (LDM) checkpoint format and its conversion to and from diffusers.

The official checkpoint (github.com/CompVis/depth-fm) is a torch dict with ``ldm_hparams`` (kwargs of the LDM
``openaimodel.UNetModel``), ``state_dict`` (LDM key names), ``noising_step`` and ``empty_text_embedding``. The UNet
is converted with diffusers' own LDM conversion (``create_unet_diffusers_config_from_ldm`` +
``convert_ldm_unet_checkpoint``); the reverse mapping is checked by a round trip through the same converter.
:func:`widen_conv_in` widens an SD UNet's input (4 -> 8 channels for DepthFM, more for completion).
"""

from __future__ import annotations

import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, InputError
from ..shapes import LATENT_CHANNELS, VAE_DOWNSCALE

OFFICIAL_KEYS = ("ldm_hparams", "state_dict", "noising_step", "empty_text_embedding")


def _numpy_globals() -> list:
    """The numpy globals an official checkpoint (its empty_text_embedding) or a resume file (numpy RNG state)
    pickles: the array rebuild function under its numpy 2 and numpy 1 names, ndarray, dtype and dtype classes."""
    import numpy as np

    reconstruct = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
    allowed = [np.ndarray, np.dtype, (reconstruct, "numpy.core.multiarray._reconstruct"),
               (reconstruct, "numpy._core.multiarray._reconstruct")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 may pickle dtype classes such as numpy.dtypes.Float32DType
    if dtypes is not None:
        allowed += [cls for name, cls in vars(dtypes).items() if name.endswith("DType") and isinstance(cls, type)]
    return allowed


def load_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load`` that runs no code from the file: ``weights_only=True`` with only the numpy globals above
    allowed. A missing file, a corrupt one, or one that needs anything else (a pickle that would import or call
    something) raises CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        reason = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0] if "WeightsUnpickler" in text \
            else text.splitlines()[0]
        reason = reason.split(". Please use", 1)[0]  # not torch's advice to allow-list the global
        if "Unsupported global" in text or "GLOBAL" in text:
            raise CheckpointError(f"refusing {what} {path}: loading it would import or call code, not just read "
                                  f"tensors and numpy arrays ({reason})") from exc
        raise CheckpointError(f"cannot read {what} {path} (corrupt or not a torch file): {reason}") from exc
    except Exception as exc:  # torch raises many types for a corrupt/truncated file
        raise CheckpointError(f"cannot read {what} {path} (corrupt or not a torch file): {exc}") from exc


def load_official_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate an official DepthFM checkpoint dict."""
    path = Path(path)
    ckpt = load_torch_file(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a DepthFM checkpoint dict")
    missing = [k for k in OFFICIAL_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not an official DepthFM checkpoint: missing {missing}; "
                              f"has {sorted(map(str, ckpt))}")
    for key, kind in (("ldm_hparams", dict), ("state_dict", dict)):
        if not isinstance(ckpt[key], kind):
            raise CheckpointError(f"{path}: '{key}' must be a {kind.__name__}, got {type(ckpt[key]).__name__}")
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


def unet_from_ldm(ldm_hparams: dict[str, Any], ldm_state_dict: dict[str, torch.Tensor],
                  upcast_attention: bool | None = None):
    """diffusers UNet from LDM kwargs and an LDM-named state dict; every tensor must be used and every slot filled.
    ``upcast_attention`` (not an LDM kwarg: depthfm_ros stores it beside ``ldm_hparams``) sets the diffusers flag."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import LDM_UNET_KEY, convert_ldm_unet_checkpoint

    config = unet_config_from_ldm(ldm_hparams)
    if upcast_attention is not None:
        config["upcast_attention"] = bool(upcast_attention)
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


def widen_conv_in(unet, in_channels: int, mode: str = "repeat_halve"):
    """Widen ``unet.conv_in`` to ``in_channels`` inputs in place and record it in ``unet.config``.

    ``repeat_halve`` (SD -> DepthFM, 4 -> 8): the old kernel is tiled over the new inputs and divided by the number
    of copies, so feeding the same latent to every copy reproduces the old output exactly.
    ``zero``: old kernel kept, new input channels start at zero (adding conditioning keeps the old output).
    """
    old = unet.conv_in
    c_old = old.in_channels
    if in_channels <= c_old:
        raise InputError(f"conv_in already has {c_old} inputs, cannot widen to {in_channels}")
    w_old = old.weight.data
    if mode == "repeat_halve":
        if in_channels % c_old:
            raise InputError(f"repeat_halve needs a multiple of {c_old} inputs, got {in_channels}")
        copies = in_channels // c_old
        w_new = w_old.repeat(1, copies, 1, 1) / copies
    elif mode == "zero":
        w_new = torch.cat([w_old, w_old.new_zeros(w_old.shape[0], in_channels - c_old, *w_old.shape[2:])], dim=1)
    else:
        raise InputError(f"mode must be 'repeat_halve' or 'zero', got {mode!r}")
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                    bias=old.bias is not None).to(device=w_old.device, dtype=w_old.dtype)
    with torch.no_grad():
        new.weight.copy_(w_new)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)
    return unet
