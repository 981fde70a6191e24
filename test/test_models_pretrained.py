"""A model whose weights lack a tensor is refused with the file's name, never run half random: the official .ckpt
(one tensor dropped from its state_dict) and converted folders (one tensor dropped from a safetensors file; diffusers
alone fills it with random values and only logs a warning)."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from depthfm_ros.errors import CheckpointError
from depthfm_ros.models.architectures import build_tiny_depthfm
from depthfm_ros.models.depthfm import DepthFM


def test_official_checkpoint_missing_a_tensor_names_the_file(tmp_path, official_tiny):
    ckpt = torch.load(official_tiny / "tiny.ckpt", weights_only=False)
    dropped = sorted(ckpt["state_dict"])[5]
    del ckpt["state_dict"][dropped]
    path = tmp_path / "one_tensor_short.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=f"^{path}: .*1 missing"):
        DepthFM.load(path, official_tiny / "vae")


@pytest.mark.parametrize("part", ["unet", "vae"])
def test_converted_folder_missing_a_tensor_names_the_weights_file(tmp_path, part):
    build_tiny_depthfm(seed=0).save_pretrained(tmp_path)
    weights = tmp_path / part / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    dropped = sorted(state)[3]
    del state[dropped]
    save_file(state, weights)
    with pytest.raises(CheckpointError, match=f"{weights} do not fit its config.json: 1 tensor missing .*{dropped}"):
        DepthFM.load(tmp_path)


def test_a_complete_folder_still_loads(tmp_path):
    model = build_tiny_depthfm(seed=0)
    model.save_pretrained(tmp_path)
    loaded = DepthFM.load(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(model.unet.state_dict().values(), loaded.unet.state_dict().values()))
