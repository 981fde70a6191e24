"""Both official attention paths, on the realistic-scale fixture (fixtures/depthfm-official-realistic): the
xformers path (plain 1/sqrt(d)) and the non-xformers one (self-attention scaled by sqrt(log n / log 4n / d)), each to
< 1e-5 of the official code's output with its explicit noise, through torch and an exported ONNX graph."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from depthfm_ros.backends import create_backend
from depthfm_ros.backends.export import export_onnx, read_sidecar
from depthfm_ros.backends.onnx_backend import OnnxBackend
from depthfm_ros.backends.torch_backend import TorchBackend
from depthfm_ros.errors import BackendError
from depthfm_ros.models.depthfm import DepthFM
from depthfm_ros.processing import relative_depth

ROOT = Path(__file__).parent / "fixtures" / "depthfm-official-realistic"
PATHS = {False: "standard", True: "rescaled"}


@pytest.fixture(scope="module")
def inputs():
    rgb = cv2.cvtColor(cv2.imread(str(ROOT / "image.png")), cv2.COLOR_BGR2RGB)
    image = (rgb.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
    return image, np.load(ROOT / "noise.npy")


def official(rescale: bool, steps: int) -> np.ndarray:
    return np.load(ROOT / f"ref_depth_{PATHS[rescale]}_s{steps}.npy")


@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("steps", [1, 2])
def test_torch_reproduces_each_official_attention_path(inputs, rescale, steps):
    image, noise = inputs
    backend = TorchBackend(DepthFM.load(ROOT / "model.ckpt", ROOT / "vae"), num_steps=steps, rescale_attention=rescale)
    depth = relative_depth(backend.run(image, noise).mean(axis=1))[0]
    assert np.abs(depth - official(rescale, steps)).max() < 1e-5
    assert np.abs(depth - official(not rescale, steps)).max() > 5e-4  # the fixture tells the paths apart


@pytest.mark.parametrize("rescale", [False, True])
def test_onnx_graphs_keep_the_attention_path_and_record_it(inputs, tmp_path, rescale):
    image, noise = inputs
    model = DepthFM.load(ROOT / "model.ckpt", ROOT / "vae").set_rescale_attention(rescale)
    paths = export_onnx(model, tmp_path, 128, 192, 1, 2, progress=False)
    assert read_sidecar(paths["fused"]).rescale_attention is rescale
    for engine in (paths["fused"], tmp_path):
        depth = relative_depth(OnnxBackend(engine, num_steps=1).run(image, noise).mean(axis=1))[0]
        assert np.abs(depth - official(rescale, 1)).max() < 1e-5, engine
    with pytest.raises(BackendError, match=f"exported with rescale_attention={rescale}"):
        create_backend("onnxruntime", engine=paths["fused"], num_steps=1, rescale_attention=not rescale)


def test_the_setting_reaches_the_model_from_cli_and_node():
    import argparse

    from depthfm_ros.cli.common import add_model_args, settings_from_args
    from depthfm_ros.ros.params import parameters_from_settings, validate

    parser = argparse.ArgumentParser()
    add_model_args(parser)
    settings = settings_from_args(parser.parse_args(["--tiny-model", "--rescale-attention"]))
    assert settings.rescale_attention and validate(parameters_from_settings(settings)).model_settings() == settings
    from depthfm_ros.backends import load_backend

    backend = load_backend(settings)
    assert backend.rescale_attention and backend.model.rescale_attention
