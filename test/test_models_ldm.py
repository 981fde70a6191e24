"""models.ldm: checkpoint files are read without running code from them, in numpy 1 and numpy 2 layouts."""

import io
import zipfile

import numpy as np
import pytest
import torch

from depthfm_ros.errors import CheckpointError
from depthfm_ros.models.ldm import load_official_checkpoint, load_torch_file


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.ckpt"
    torch.save({"ldm_hparams": {}, "state_dict": {}, "noising_step": 0, "empty_text_embedding": _Payload(marker)},
               path)
    with pytest.raises(CheckpointError, match=f"refusing checkpoint {path}"):
        load_official_checkpoint(path)
    assert not marker.exists()
    for what in ("trainer state", "distillation state"):
        with pytest.raises(CheckpointError, match=what):
            load_torch_file(path, what)
    assert not marker.exists()


def _numpy1_layout(path, out):
    """The same file as numpy 1.x writes it: the array rebuild function under numpy.core, not numpy._core."""
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(item, data)


def test_official_layout_loads_from_numpy_1_and_numpy_2_pickles(tmp_path, official_tiny):
    ckpt = load_official_checkpoint(official_tiny / "tiny.ckpt")  # numpy 2 layout
    assert isinstance(ckpt["empty_text_embedding"], np.ndarray)
    old = tmp_path / "numpy1.ckpt"
    _numpy1_layout(official_tiny / "tiny.ckpt", old)
    again = load_official_checkpoint(old)
    np.testing.assert_array_equal(again["empty_text_embedding"], ckpt["empty_text_embedding"])


def test_malformed_checkpoint_dicts_name_the_file_and_key(tmp_path, official_tiny):
    ckpt = torch.load(official_tiny / "tiny.ckpt", weights_only=False)
    for key in ("ldm_hparams", "state_dict"):
        bad = dict(ckpt, **{key: "not a dict"})
        path = tmp_path / f"bad_{key}.ckpt"
        torch.save(bad, path)
        with pytest.raises(CheckpointError, match=f"{path}: '{key}' must be a dict"):
            load_official_checkpoint(path)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(io.BytesIO(b"\x00" * 64).getvalue())
    with pytest.raises(CheckpointError, match="corrupt"):
        load_official_checkpoint(junk)
    with pytest.raises(CheckpointError, match="not found"):
        load_official_checkpoint(tmp_path / "missing.ckpt")


def test_converted_folders_load_safetensors_only(tmp_path):
    """A pickled diffusers weight file (.bin) next to config.json is not loaded: folders are safetensors only."""
    from diffusers import AutoencoderKL

    from depthfm_ros.models.architectures import TINY_VAE_CONFIG
    from depthfm_ros.models.depthfm import load_vae

    folder = tmp_path / "vae"
    AutoencoderKL(**TINY_VAE_CONFIG).save_pretrained(folder, safe_serialization=False)
    assert (folder / "diffusion_pytorch_model.bin").exists()
    with pytest.raises(CheckpointError, match="cannot load VAE"):
        load_vae(folder)
