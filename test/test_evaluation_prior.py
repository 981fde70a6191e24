"""The mean-depth prior on hand-made datasets: the mean of the valid log depths per pixel, scored like a model."""

import numpy as np
import pytest

from depthfm_ros.errors import DepthFMError
from depthfm_ros.evaluation.prior import evaluate_prior, images_beating_prior, mean_log_depth_prior
from depthfm_ros.training.data import ArrayDepthDataset


def _dataset(depths, masks=None):
    rgbs = [np.zeros(d.shape + (3,), np.uint8) for d in depths]
    return ArrayDepthDataset(rgbs, depths, masks)


def test_the_prior_is_the_mean_valid_log_depth_of_each_pixel():
    a = np.full((4, 6), 2.0, np.float32)
    b = np.full((4, 6), 8.0, np.float32)
    b[0, 0] = np.nan  # unknown: pixel (0, 0) keeps a's value alone
    mask_b = np.ones((4, 6), bool)
    mask_b[1, 1] = False  # masked out likewise
    prior = mean_log_depth_prior(_dataset([a, b], [np.ones((4, 6), bool), mask_b]))
    assert prior.shape == (4, 6) and prior.dtype == np.float32
    assert prior[2, 3] == pytest.approx(np.log(4.0))  # (log 2 + log 8) / 2
    assert prior[0, 0] == pytest.approx(np.log(2.0)) and prior[1, 1] == pytest.approx(np.log(2.0))


def test_the_prior_of_the_scenes_themselves_is_exact_and_beats_nothing():
    rng = np.random.default_rng(0)
    depth = np.exp(rng.uniform(0.0, 2.0, (8, 8))).astype(np.float32)
    data = _dataset([depth])
    result = evaluate_prior(mean_log_depth_prior(data), data, alignments=("log", "depth"))
    assert result["log"]["abs_rel"] < 1e-5 and result["log"]["delta1"] == 1.0
    assert result["log"]["num_images"] == 1
    assert images_beating_prior({"abs_rel_per_image": [0.01]}, result["log"]) == 0
    assert images_beating_prior({"abs_rel_per_image": [0.1, 0.3]}, {"abs_rel_per_image": [0.2, 0.2]}) == 1


def test_an_empty_dataset_has_no_prior():
    with pytest.raises(DepthFMError, match="empty"):
        mean_log_depth_prior(_dataset([]))
