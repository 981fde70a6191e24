"""tensor_processing: the GPU pre/post path, run here on CPU tensors, against processing's OpenCV results."""

import numpy as np
import pytest
import torch

from depthfm_ros.processing import members_to_input_size, relative_depth, resize_hw, to_model_input
from depthfm_ros.tensor_processing import postprocess_tensor, resize_tensor, resize_weights, to_model_input_tensor

SIZES = [((480, 640), (384, 512)), ((720, 1280), (256, 512)), ((384, 512), (480, 640)), ((96, 128), (40, 60)),
         ((100, 100), (50, 50)), ((240, 320), (512, 704)), ((7, 5), (64, 64))]


@pytest.mark.parametrize("size_in,size_out", SIZES)
def test_float_resize_equals_opencv(size_in, size_out):
    a = np.random.default_rng(0).normal(size=size_in).astype(np.float32)
    out = resize_tensor(torch.from_numpy(a), *size_out).numpy()
    np.testing.assert_allclose(out, resize_hw(a, *size_out), atol=1e-6)


def test_resize_weights_rows_sum_to_one_and_identity_is_free():
    for n_in, n_out, area in ((640, 512, True), (480, 384, True), (100, 37, True), (384, 480, False), (5, 64, False)):
        np.testing.assert_allclose(resize_weights(n_in, n_out, area).sum(axis=1), 1.0, atol=1e-12)
    x = torch.zeros(2, 3, 8, 8)
    assert resize_tensor(x, 8, 8) is x


@pytest.mark.parametrize("size_in,size_out", SIZES + [((1080, 1920), (320, 512)), ((1081, 1923), (256, 448))])
def test_model_input_tensor_matches_opencv_uint8_resize(size_in, size_out):
    """The same 2x2-box halvings and bilinear step as processing.resize_input, composed into one weight matrix per
    axis: OpenCV's fixed-point uint8 arithmetic (and its rounding after each step) rounds some pixels the other way,
    by one level at most (11-21 % of the pixels of this uniform noise, the worst case)."""
    rgb = np.random.default_rng(1).integers(0, 256, (*size_in, 3), dtype=np.uint8)
    ref = to_model_input(rgb, *size_out)
    out = to_model_input_tensor(rgb, *size_out, torch.device("cpu")).numpy()
    assert out.shape == ref.shape and out.dtype == np.float32
    levels = np.abs(out - ref) * 127.5
    assert levels.max() <= 1.0 + 1e-4
    assert (levels > 0.5).mean() < 0.25


@pytest.mark.parametrize("members", [1, 4])
def test_postprocess_tensor_equals_numpy(members):
    z_bmhw = np.random.default_rng(2).normal(0, 0.4, (2, members, 48, 64)).astype(np.float32)
    z, std = members_to_input_size(z_bmhw, 60, 80)
    z_t, std_t, rel_t = postprocess_tensor(torch.from_numpy(z_bmhw), 60, 80)
    np.testing.assert_allclose(z_t, z, atol=1e-6)
    np.testing.assert_allclose(std_t, std, atol=1e-6)
    np.testing.assert_allclose(rel_t, relative_depth(z), atol=1e-6)
    assert (std_t == 0).all() == (members == 1)
