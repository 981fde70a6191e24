"""Depth completion: any sparse density (0, 2%, 100%), shapes, zero-init equivalence, training, save/load."""

import numpy as np
import pytest
import torch

from depthfm_ros.errors import CheckpointError, InputError
from depthfm_ros.models.architectures import build_tiny_depthfm
from depthfm_ros.models.completion import DepthCompletionFM, downsample_sparse_hw
from depthfm_ros.models.depthfm import DepthFM
from depthfm_ros.sampler import euler_flow, noise_augment


@pytest.fixture(scope="module")
def completion_model():
    return DepthCompletionFM.from_depthfm(build_tiny_depthfm(seed=0, noising_step=400))


def inputs(h=48, w=80, seed=0):
    rng = np.random.default_rng(seed)
    rgb = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    depth_m = np.exp(np.linspace(0.0, 2.0, h))[:, None] * np.ones((1, w))
    return rgb, depth_m


@pytest.mark.parametrize("density", [0.0, 0.02, 1.0])
def test_complete_accepts_any_density(completion_model, density):
    rgb, _ = inputs()
    # Freshly widened, the model ignores the sparse input: its z is the same for every density (same seed), so a
    # depth that is exactly exp(0.5 z + 1) must come back through the robust log-space fit.
    z_hw = completion_model.complete(rgb, np.zeros(rgb.shape[:2]), num_steps=2, ensemble_size=2,
                                     processing_resolution=64).z_hw
    depth_m = np.exp(0.5 * z_hw.astype(np.float64) + 1.0)
    keep = np.random.default_rng(1).random(depth_m.shape) < density
    sparse = np.where(keep, depth_m, 0.0)
    out = completion_model.complete(rgb, sparse, num_steps=2, ensemble_size=2, processing_resolution=64)
    assert out.z_hw.shape == out.std_z_hw.shape == depth_m.shape
    assert out.num_sparse_points == int(keep.sum())
    assert np.isfinite(out.z_hw).all() and (out.std_z_hw >= 0).all()
    if density == 0.0:
        assert out.depth_hw_m is None and out.a is None
    else:
        assert out.a == pytest.approx(0.5, abs=1e-3) and out.b == pytest.approx(1.0, abs=1e-3)
        np.testing.assert_allclose(out.depth_hw_m, depth_m, rtol=1e-3)


def test_completion_refuses_a_scale_that_contradicts_the_points(completion_model):
    """Depth that falls as z rises is not metric: no depth instead of a wrong one (the least-squares fit this
    replaced returned a negative scale here)."""
    rgb, _ = inputs()
    z_hw = completion_model.complete(rgb, np.zeros(rgb.shape[:2]), num_steps=1, processing_resolution=64).z_hw
    sparse = np.exp(-0.7 * z_hw.astype(np.float64))
    out = completion_model.complete(rgb, sparse, num_steps=1, processing_resolution=64)
    assert out.depth_hw_m is None and out.a is None and out.num_sparse_points == sparse.size


def test_nan_marks_missing_and_size_mismatch_is_refused(completion_model):
    rgb, depth_m = inputs()
    sparse = np.full(depth_m.shape, np.nan)
    sparse[::7, ::9] = depth_m[::7, ::9]
    assert completion_model.complete(rgb, sparse, num_steps=1, processing_resolution=64).num_sparse_points == \
        int(np.isfinite(sparse).sum())
    with pytest.raises(InputError):
        completion_model.complete(rgb, sparse[:10], processing_resolution=64)


def test_seed_fixes_the_noise_and_none_draws_fresh(completion_model):
    rgb, depth_m = inputs()
    sparse = np.where(np.random.default_rng(1).random(depth_m.shape) < 0.02, depth_m, 0.0)

    def z(seed):
        return completion_model.complete(rgb, sparse, num_steps=1, processing_resolution=64, seed=seed).z_hw

    assert np.array_equal(z(5), z(5))
    assert not np.array_equal(z(None), z(None))


def test_fresh_completion_model_predicts_like_its_depthfm():
    base = build_tiny_depthfm(seed=3, noising_step=400)
    rgb = torch.rand(1, 3, 64, 64) * 2 - 1
    noise = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        z_img = base.encode(rgb)
        x0 = noise_augment(z_img, 400, noise)
        ref = euler_flow(lambda x, t: base.velocity(x, t, z_img), x0, 2)
        model = DepthCompletionFM.from_depthfm(base)
        sparse = torch.rand(1, 64, 64) * 2 - 1
        cond = model.sparse_condition(z_img, sparse, torch.rand(1, 64, 64) < 0.5)
        assert cond.shape == (1, 9, 8, 8)
        out = euler_flow(lambda x, t: model.velocity(x, t, cond), x0, 2)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_training_condition_samples_the_density_and_normalises_as_inference():
    from depthfm_ros.models.completion import sparse_condition_image

    model = DepthCompletionFM.from_depthfm(build_tiny_depthfm(seed=0), sparse_density=0.02)
    assert model.sparse_encoding == "filled" and model.sparse_patterns == ("uniform", "rings")
    valid = torch.ones(2, 64, 64, dtype=torch.bool)
    valid[1, :32] = False
    depth = torch.from_numpy(np.exp(np.linspace(0.0, 2.0, 64))[:, None] * np.ones((2, 1, 64))).float()
    batch = {"valid_hw": valid, "depth_hw_m": torch.where(valid, depth, torch.nan)}
    z_img = torch.zeros(2, 4, 8, 8)
    seen = []
    model.sparse_condition = lambda z, image, mask: seen.append((image, mask)) or DepthCompletionFM.sparse_condition(
        model, z, image, mask)
    cond = model.training_condition(z_img, batch, torch.Generator().manual_seed(0))
    assert cond.shape == (2, 9, 8, 8)
    image, mask = seen[0]
    assert 0.01 < float(mask.float().mean()) < 0.03  # 2 % of the valid pixels, uniform or rings
    assert not mask[1, :32].any()  # never samples invalid pixels
    density = cond[:, -1]
    assert float(density[1, :4].sum()) == 0 and 0.5 * 0.16 < float(density[0].mean()) < 2 * 0.16  # 8 x fraction
    for b in range(2):  # exactly what inference feeds for the same points: own percentiles, nearest fill
        expected, expected_mask = sparse_condition_image(np.where(mask[b].numpy(), depth[b].numpy(), np.nan))
        np.testing.assert_array_equal(image[b].numpy(), expected)
        assert np.isfinite(expected).all() and np.array_equal(expected_mask, mask[b].numpy())


def test_sparse_condition_image_has_no_missing_value_and_rings_look_like_scan_lines():
    from depthfm_ros.models.completion import sparse_condition_image, sparse_pattern

    sparse = np.full((8, 8), np.nan)
    sparse[1, 1], sparse[6, 6] = 1.0, 10.0
    image, mask = sparse_condition_image(sparse)
    assert mask.sum() == 2 and image[1, 1] == -1.0 and image[6, 6] == 1.0
    assert image[0, 0] == -1.0 and image[7, 7] == 1.0  # nearest point, not a 0 that reads as mid-range depth
    empty_image, empty_mask = sparse_condition_image(np.zeros((8, 8)))
    assert not empty_mask.any() and not empty_image.any()
    rng = np.random.default_rng(0)
    rings = sparse_pattern(np.ones((240, 320), bool), "rings", 0.02, rng)
    assert 0.01 < rings.mean() < 0.03 and not rings[: int(0.25 * 240)].any()  # lower part of the image only
    uniform = sparse_pattern(np.ones((240, 320), bool), "uniform", 0.02, rng)
    assert 0.015 < uniform.mean() < 0.025

    def continued(points):  # share of points with a point 2 columns on within one row: a scan line goes on
        ys, xs = np.nonzero(points[1:-1, :-2])
        return np.mean([points[y:y + 3, x + 2].any() for y, x in zip(ys, xs)])  # rows y..y+2 around y+1

    assert continued(rings) > 0.9 and continued(uniform) < 0.1
    with pytest.raises(InputError, match="sparse pattern"):
        sparse_pattern(np.ones((4, 4), bool), "grid", 0.1, rng)


def test_folders_of_the_first_encoding_still_load_and_run_as_trained(tmp_path):
    import json

    folder = DepthCompletionFM.from_depthfm(build_tiny_depthfm(seed=0)).save_pretrained(tmp_path / "c")
    assert DepthCompletionFM.from_pretrained(folder).sparse_encoding == "filled"
    meta = json.loads((folder / "depthfm.json").read_text())
    meta["completion"] = {"sparse_density": 0.02, "condition_channels": 9}  # written before the encoding key
    (folder / "depthfm.json").write_text(json.dumps(meta))
    old = DepthCompletionFM.from_pretrained(folder)
    assert old.sparse_encoding == "masked" and old.sparse_patterns == ("uniform",)
    cond = old.sparse_condition(torch.zeros(1, 4, 8, 8), torch.zeros(1, 64, 64), torch.rand(1, 64, 64) < 0.02)
    assert set(cond[0, -1].unique().tolist()) <= {0.0, 1.0}  # the max-pooled mask it was trained with


def test_trainer_trains_completion_and_folder_round_trip(tmp_path):
    from depthfm_ros.training.data import ArrayDepthDataset
    from depthfm_ros.training.trainer import TrainConfig, Trainer

    model = DepthCompletionFM.from_depthfm(build_tiny_depthfm(seed=0))
    rgbs, depths = zip(*(inputs(64, 64, s) for s in range(2)))
    cfg = TrainConfig(max_steps=2, batch_size=2, lr=1e-3, progress=False, tensorboard=False, output_dir=str(tmp_path))
    trainer = Trainer(model, ArrayDepthDataset(rgbs, depths), cfg)
    losses = trainer.train()
    assert len(losses) == 2 and all(np.isfinite(losses))
    folder = trainer.ema_model().save_pretrained(tmp_path / "completion")
    loaded = DepthCompletionFM.from_pretrained(folder)
    assert loaded.sparse_density == pytest.approx(0.02) and loaded.unet.config.in_channels == 13
    with pytest.raises(CheckpointError):  # a completion folder is not a plain DepthFM
        DepthFM.from_pretrained(folder)


def test_downsample_sparse_keeps_every_point_cell():
    sparse = np.zeros((10, 10))
    sparse[0, 0], sparse[0, 1], sparse[9, 9] = 2.0, 8.0, 5.0
    small = downsample_sparse_hw(sparse, 5, 5)
    assert small[0, 0] == pytest.approx(4.0)  # geometric mean of 2 and 8
    assert small[4, 4] == pytest.approx(5.0) and (small > 0).sum() == 2
