import numpy as np
import pytest
import torch

from depthfm_ros.errors import CheckpointError
from depthfm_ros.models.architectures import build_tiny_depthfm
from depthfm_ros.models.depthfm import DepthFM
from depthfm_ros.models.ldm import (
    ldm_hparams_from_unet,
    load_official_checkpoint,
    unet_from_ldm,
    unet_to_ldm_state_dict,
)
from depthfm_ros.shapes import latent_noise_shape


def _velocity_probe(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 16, generator=g)
    z = torch.randn(2, 4, 8, 16, generator=g)
    with torch.no_grad():
        return model.velocity(x, torch.tensor([0.0, 0.5]), z)


def _save_official(model, path, **overrides):
    ckpt = model.to_official_checkpoint()
    ckpt.update(overrides)
    torch.save(ckpt, path)
    return path


def test_official_fixture_loads_with_its_hparams(official_tiny):
    model = DepthFM.from_official_checkpoint(official_tiny / "tiny.ckpt", official_tiny / "vae")
    assert model.noising_step == 0
    assert model.unet.config.in_channels == 8 and model.unet.config.out_channels == 4
    assert tuple(model.empty_text_embedding.shape) == (1, 77, 32)


def test_ldm_export_reproduces_the_official_state_dict_exactly(official_tiny):
    ckpt = load_official_checkpoint(official_tiny / "tiny.ckpt")
    unet = unet_from_ldm(ckpt["ldm_hparams"], ckpt["state_dict"])
    back = unet_to_ldm_state_dict(unet)
    assert set(back) == set(ckpt["state_dict"])
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(back[k], v), k


def test_ldm_round_trip_gives_the_same_outputs_as_the_diffusers_unet(tmp_path):
    model = build_tiny_depthfm(seed=3, noising_step=400)
    reloaded = DepthFM.from_official_checkpoint(_save_official(model, tmp_path / "m.ckpt"), _save_vae(model, tmp_path))
    torch.testing.assert_close(_velocity_probe(reloaded), _velocity_probe(model), rtol=0, atol=0)
    assert reloaded.noising_step == 400
    hp = ldm_hparams_from_unet(model.unet)
    assert hp["in_channels"] == 8 and hp["channel_mult"] == (1, 2) and hp["num_head_channels"] == 16


def _save_vae(model, tmp_path):
    model.vae.save_pretrained(tmp_path / "vae")
    return tmp_path / "vae"


def test_round_trip_with_three_levels_and_conv_attention(tmp_path):
    hp = {"image_size": 32, "in_channels": 8, "model_channels": 32, "out_channels": 4, "num_res_blocks": 1,
          "attention_resolutions": (1, 4), "channel_mult": (1, 2, 2), "num_heads": 2, "use_spatial_transformer": True,
          "use_linear_in_transformer": False, "context_dim": 24, "transformer_depth": 1, "legacy": False}
    model = build_tiny_depthfm(seed=1, ldm_hparams=hp)
    ldm = unet_to_ldm_state_dict(model.unet)
    assert any(k.startswith("output_blocks.") and ".2.conv." in k for k in ldm)  # upsampler after attention
    rebuilt = unet_from_ldm(hp, ldm)
    for k, v in model.unet.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[k], v)


def test_save_and_load_pretrained_folder(tmp_path, tiny_model):
    folder = tiny_model.save_pretrained(tmp_path / "converted")
    again = DepthFM.load(folder)
    assert again.noising_step == tiny_model.noising_step
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    noise = torch.randn(latent_noise_shape(1, 2, 64, 64))
    with torch.no_grad():
        torch.testing.assert_close(again(images, noise, 2), tiny_model(images, noise, 2), rtol=0, atol=1e-6)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        DepthFM.from_official_checkpoint(tmp_path / "nope.ckpt", tmp_path)


def test_corrupt_checkpoint_file(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_official_checkpoint(bad)


def test_truncated_checkpoint_file(tmp_path, official_tiny):
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes((official_tiny / "tiny.ckpt").read_bytes()[:100_000])
    with pytest.raises(CheckpointError):
        load_official_checkpoint(cut)


def test_checkpoint_without_the_official_keys(tmp_path, tiny_model):
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="missing .*ldm_hparams"):
        load_official_checkpoint(path)


def test_state_dict_with_wrong_keys(tmp_path, tiny_model):
    ckpt = tiny_model.to_official_checkpoint()
    sd = dict(ckpt["state_dict"])
    sd.pop("out.2.weight")
    sd["some.unknown.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="missing"):
        unet_from_ldm(ckpt["ldm_hparams"], sd)


def test_wrong_channel_count_is_refused(tmp_path, tiny_model):
    ckpt = tiny_model.to_official_checkpoint()
    ckpt["ldm_hparams"]["in_channels"] = 4
    path = tmp_path / "sd.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="in_channels is 4"):
        load_official_checkpoint(path)


def test_state_dict_shapes_must_match_hparams(tiny_model):
    ckpt = tiny_model.to_official_checkpoint()
    hp = dict(ckpt["ldm_hparams"], model_channels=64, num_head_channels=32)
    with pytest.raises(CheckpointError, match="shapes"):
        unet_from_ldm(hp, ckpt["state_dict"])


def test_missing_vae_folder(tmp_path, tiny_model):
    path = _save_official(tiny_model, tmp_path / "m.ckpt")
    with pytest.raises(CheckpointError, match="VAE folder"):
        DepthFM.from_official_checkpoint(path, tmp_path / "no_vae")
    with pytest.raises(CheckpointError, match="--vae"):
        DepthFM.load(path)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(CheckpointError, match="depthfm.json"):
        DepthFM.from_pretrained(tmp_path)


def test_load_model_from_settings(tmp_path, official_tiny):
    from depthfm_ros.models.loading import load_model
    from depthfm_ros.settings import ModelSettings

    tiny = load_model(ModelSettings(tiny_model=True, vae_kind="tiny", seed=3))
    assert tiny.vae_kind == "tiny" and tiny.noising_step == 400
    official = load_model(ModelSettings(official_tiny / "tiny.ckpt", official_tiny / "vae"))
    assert official.vae_kind == "full" and official.noising_step == 0
    with pytest.raises(CheckpointError, match="no model given"):
        load_model(ModelSettings())
