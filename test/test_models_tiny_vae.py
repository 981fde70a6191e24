"""Tiny VAE drop-in: shapes and units of the tiny path, latent scaling convention, save/load, TAESD init, ONNX."""

import shutil

import numpy as np
import pytest
import torch

from depthfm_ros.errors import CheckpointError
from depthfm_ros.models.architectures import build_tiny_depthfm
from depthfm_ros.models.depthfm import DepthFM
from depthfm_ros.models.tiny_vae import (
    TINY_TEST_CONFIG,
    build_tiny_vae,
    check_tiny_vae,
    from_taesd,
    tiny_decode,
    tiny_encode,
)


@pytest.fixture(scope="module")
def tiny_pair():
    """A tiny random DepthFM and a tiny VAE for it (not attached)."""
    return build_tiny_depthfm(seed=0, noising_step=400), build_tiny_vae(TINY_TEST_CONFIG, seed=1)


def _inputs(b=2, m=3, h=64, w=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g) * 2 - 1, torch.randn(b * m, 4, h // 8, w // 8, generator=g)


@torch.no_grad()
def test_tiny_path_matches_full_path_shapes_and_dtypes(tiny_pair):
    model, tiny = tiny_pair
    rgb, noise = _inputs()
    full = model(rgb, noise, 2)
    model.set_tiny_vae(tiny)
    try:
        assert model.vae_kind == "tiny"
        assert model.encode(rgb).shape == (2, 4, 8, 16)
        assert model.decode(torch.randn(5, 4, 8, 16)).shape == (5, 1, 64, 128)
        fast = model(rgb, noise, 2)
    finally:
        model.set_tiny_vae(None)
    assert fast.shape == full.shape == (2, 3, 64, 128)
    assert fast.dtype == full.dtype == torch.float32
    assert torch.isfinite(fast).all()
    assert model.vae_kind == "full" and torch.equal(model(rgb, noise, 2), full)  # full path untouched


@torch.no_grad()
def test_latent_scaling_convention_is_explicit(tiny_pair):
    """UNet-space latent = encoder output x scaling_factor; decode divides; latent_magnitude/shift are not used."""
    _, tiny = tiny_pair
    rgb, _ = _inputs(1, 1, 64, 64)
    raw = tiny.encoder(rgb)
    assert tiny.config.scaling_factor == 1.0
    assert torch.equal(tiny_encode(tiny, rgb), raw)
    scaled = build_tiny_vae({**TINY_TEST_CONFIG, "scaling_factor": 0.5}, seed=1)
    scaled.load_state_dict(tiny.state_dict())
    assert torch.allclose(tiny_encode(scaled, rgb), 0.5 * raw)
    assert torch.allclose(tiny_decode(scaled, 0.5 * raw), tiny_decode(tiny, raw), atol=1e-6)
    quantised = build_tiny_vae({**TINY_TEST_CONFIG, "latent_magnitude": 1, "latent_shift": 0.1}, seed=1)
    quantised.load_state_dict(tiny.state_dict())
    assert torch.equal(tiny_encode(quantised, rgb), raw)


def test_check_rejects_rgb_decoder_and_wrong_scale():
    with pytest.raises(CheckpointError, match="out_channels"):
        check_tiny_vae(_rgb_taesd())
    with pytest.raises(CheckpointError, match="scale"):
        build_tiny_vae({**TINY_TEST_CONFIG, "num_encoder_blocks": (1, 1, 1), "encoder_block_out_channels": (16,) * 3})


def _rgb_taesd():
    from diffusers import AutoencoderTiny

    torch.manual_seed(2)
    return AutoencoderTiny(**{**TINY_TEST_CONFIG, "out_channels": 3})


@torch.no_grad()
def test_from_taesd_decoder_is_channel_mean_of_rgb_taesd():
    taesd = _rgb_taesd().eval()
    tiny = from_taesd(taesd)
    latent = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    rgb = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.allclose(tiny_decode(tiny, latent), taesd.decode(latent).sample.mean(1, keepdim=True), atol=1e-5)
    assert torch.equal(tiny_encode(tiny, rgb), taesd.encode(rgb).latents)


@torch.no_grad()
def test_save_load_round_trip_and_vae_kind_selection(tiny_pair, tmp_path):
    model, tiny = tiny_pair
    rgb, noise = _inputs(1, 2, 64, 64)
    full = model(rgb, noise, 1)
    model.set_tiny_vae(tiny)
    try:
        fast = model(rgb, noise, 1)
        model.save_pretrained(tmp_path / "m")
    finally:
        model.set_tiny_vae(None)
    assert (tmp_path / "m" / "tiny_vae" / "config.json").is_file()
    loaded = DepthFM.load(tmp_path / "m")  # restores what was saved
    assert loaded.vae_kind == "tiny" and torch.equal(loaded(rgb, noise, 1), fast)
    as_full = DepthFM.load(tmp_path / "m", vae_kind="full")
    assert as_full.tiny_vae is None and torch.equal(as_full(rgb, noise, 1), full)
    tiny.save_pretrained(tmp_path / "tv")
    model.save_pretrained(tmp_path / "plain")
    chosen = DepthFM.load(tmp_path / "plain", tiny_vae=tmp_path / "tv")  # a path alone selects the tiny VAE
    assert chosen.vae_kind == "tiny" and torch.equal(chosen(rgb, noise, 1), fast)
    with pytest.raises(CheckpointError, match="tiny VAE folder"):
        DepthFM.load(tmp_path / "plain", vae_kind="tiny")
    with pytest.raises(ValueError, match="vae_kind"):
        DepthFM.load(tmp_path / "plain", vae_kind="small")
    shutil.rmtree(tmp_path / "m" / "tiny_vae")  # saved as tiny, folder lost: refused, not silently the SD VAE
    with pytest.raises(CheckpointError, match="no tiny_vae/"):
        DepthFM.load(tmp_path / "m")


def test_torch_backend_takes_tiny_vae(tiny_pair, tmp_path):
    from depthfm_ros.backends import create_backend

    model, tiny = tiny_pair
    model.save_pretrained(tmp_path / "m")
    tiny.save_pretrained(tmp_path / "tv")
    backend = create_backend("torch", str(tmp_path / "m"), num_steps=1, tiny_vae=str(tmp_path / "tv"),
                             vae_kind="tiny", device="cpu")
    assert backend.model.vae_kind == "tiny" and "tiny VAE" in backend.describe()
    rgb, noise = _inputs(1, 2, 64, 64)
    out = backend.run(rgb.numpy(), noise.numpy())
    assert out.shape == (1, 2, 64, 64) and out.dtype == np.float32


def test_onnx_export_parity_with_tiny_vae(tiny_pair, tmp_path):
    """The exported fused graph (encode -> k steps -> decode) runs the tiny VAE and matches torch in onnxruntime."""
    export = pytest.importorskip("depthfm_ros.backends.export")
    ort = pytest.importorskip("onnxruntime")
    model, tiny = tiny_pair
    model.set_tiny_vae(tiny)
    try:
        path = export.export_graph(model, "fused", tmp_path / "fused.onnx", 64, 64, num_steps=2, ensemble_size=2)
        rgb, noise = _inputs(1, 2, 64, 64, seed=4)
        with torch.no_grad():
            ref = model(rgb, noise, 2).numpy()
    finally:
        model.set_tiny_vae(None)
    import onnx

    graph = onnx.load(str(path))
    names = [i.name for i in graph.graph.initializer]
    assert any(n.startswith("model.tiny_vae.") for n in names)
    assert not any(n.startswith("model.vae.") for n in names)  # the SD VAE is not in the graph at all
    assert export.read_sidecar(path).vae_kind == "tiny"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"image": rgb.numpy(), "noise": noise.numpy()})[0]
    assert out.shape == ref.shape == (1, 2, 64, 64)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
