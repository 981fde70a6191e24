"""shapes.py: the latent and noise shape rules (a leaf module)."""


import numpy as np
import pytest

from depthfm_ros import shapes
from depthfm_ros.errors import InputError


def test_noise_shape_and_its_inverse():
    assert shapes.latent_noise_shape(2, 3, 128, 192) == (6, 4, 16, 24)
    assert shapes.ensemble_size_of((6, 4, 16, 24), 2, 128, 192) == 3
    with pytest.raises(InputError, match="noise must be"):
        shapes.ensemble_size_of((5, 4, 16, 24), 2, 128, 192)
    with pytest.raises(InputError, match="noise must be"):
        shapes.ensemble_size_of((2, 4, 16, 16), 2, 128, 192)


def test_image_batch_check():
    shapes.check_image_batch(np.zeros((1, 3, 64, 128)))
    for bad in (np.zeros((3, 64, 64)), np.zeros((1, 4, 64, 64)), np.zeros((1, 3, 64, 96))):
        with pytest.raises(InputError):
            shapes.check_image_batch(bad)
