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
    assert SPECS["vae_kind"].choices == VAE_KINDS and tuple(TORCH_DTYPES) == DTYPES
