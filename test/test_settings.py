"""settings.ModelSettings: one description of the model for the CLI and the node, validated once."""

import argparse

import pytest

from depthfm_ros.cli.common import add_model_args, settings_from_args
from depthfm_ros.errors import InputError
from depthfm_ros.ros.params import parameters_from_settings, validate
from depthfm_ros.settings import BACKENDS, DTYPES, VAE_KINDS, ModelSettings


def test_cli_and_node_build_the_same_settings():
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    args = parser.parse_args(["--tiny-model", "--steps", "1", "--ensemble", "3", "--dtype", "bf16", "--seed", "-1",
                              "--processing-resolution", "128", "--torch-threads", "2"])
    from_cli = settings_from_args(args)
    assert (from_cli.num_steps, from_cli.ensemble_size, from_cli.seed, from_cli.torch_threads) == (1, 3, None, 2)
    from_node = validate(parameters_from_settings(from_cli)).model_settings()
    assert from_node == from_cli
    new_names = parser.parse_args(["--tiny-model", "--num-steps", "1", "--ensemble-size", "3", "--dtype", "bf16",
                                   "--seed", "-1", "--processing-resolution", "128", "--torch-threads", "2"])
    assert settings_from_args(new_names) == from_cli


def test_tiny_vae_folder_implies_the_tiny_kind_and_empty_paths_are_none():
    settings = ModelSettings(checkpoint="", vae="", tiny_vae="/models/tiny_vae")
    assert settings.vae_kind == "tiny" and settings.checkpoint is None and settings.vae is None


@pytest.mark.parametrize("field, value", [("backend", "cuda"), ("dtype", "fp8"), ("vae_kind", "small"),
                                          ("num_steps", 0), ("ensemble_size", 0), ("processing_resolution", 100),
                                          ("seed", -1), ("torch_threads", -1), ("num_steps", True)])
def test_bad_settings_are_refused_with_the_field_name(field, value):
    with pytest.raises(InputError, match=field):
        ModelSettings(**{field: value})


def test_the_choice_lists_are_the_ones_every_surface_uses():
    from depthfm_ros.backends.torch_backend import TORCH_DTYPES
    from depthfm_ros.ros.params import SPECS

    assert SPECS["backend"].choices == BACKENDS and SPECS["dtype"].choices == DTYPES
    assert SPECS["vae_kind"].choices == VAE_KINDS and ("auto", *TORCH_DTYPES) == DTYPES


def test_onnx_threads_reach_the_onnxruntime_session(tmp_path_factory, monkeypatch):
    """The node and the CLIs could not set onnxruntime's threads (its default, one per core, lost to torch at 1
    thread on a loaded CPU); 0 is auto (OMP_NUM_THREADS, else the cores minus one), not onnxruntime's default."""
    from onnx_graphs import exported_graphs, shared_tmp

    from depthfm_ros.backends import load_backend

    fused = exported_graphs(str(shared_tmp(tmp_path_factory) / "onnx_graphs"))[(1, 1)]  # shared with test_export
    for asked, threads in ((1, 1), (0, 3)):
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        backend = load_backend(ModelSettings(engine=str(fused), backend="onnxruntime", num_steps=1,
                                             onnx_threads=asked))
        assert backend.sessions["fused"].get_session_options().intra_op_num_threads == threads
        assert f"{threads} thread(s)" in backend.describe()
    assert validate({"model": "tiny", "onnx_threads": 2}).model_settings().onnx_threads == 2


def test_one_precision_setting_end_to_end():
    """Export built fp16 engines, the node asked fp32: every start rebuilt. 'auto' (the default everywhere) is
    fp16 on TensorRT and fp32 elsewhere; bf16 with backend auto does not pick TensorRT, which cannot build it."""
    import torch

    from depthfm_ros.backends import choose_backend
    from depthfm_ros.backends.torch_backend import torch_dtype
    from depthfm_ros.ros.params import SPECS
    from depthfm_ros.settings import resolve_dtype

    parser = argparse.ArgumentParser()
    add_model_args(parser)
    assert ModelSettings().dtype == SPECS["dtype"].default == parser.parse_args([]).dtype == "auto"
    assert [resolve_dtype("auto", b) for b in ("tensorrt", "onnxruntime", "torch")] == ["fp16", "fp32", "fp32"]
    assert resolve_dtype("bf16", "tensorrt") == "bf16" and torch_dtype("auto") == torch.float32
    assert choose_backend("m.onnx", True, True, False)[0] == "tensorrt"
    name, why = choose_backend("m.onnx", True, True, False, dtype="bf16")
    assert name == "onnxruntime" and "bf16" in why
    assert ModelSettings(max_batch=4).max_batch == 4
    with pytest.raises(InputError, match="max_batch"):
        ModelSettings(max_batch=0)
