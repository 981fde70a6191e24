"""Training data: samples, folder dataset (.npy / 16-bit .png / mask), teacher labels, part(D^u, k)."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depthfm_ros.errors import InputError
from depthfm_ros.training.data import (
    ArrayDepthDataset,
    FolderDepthDataset,
    TeacherDepthDataset,
    collate,
    encode_batch,
    make_sample,
    mixture_dataset,
    write_folder_dataset,
)


def scene(seed: int, h: int = 64, w: int = 64):
    """Inline fixture: a floor-and-wall-like depth ramp (1-10 m) and a random RGB image."""
    rng = np.random.default_rng(seed)
    depth = np.exp(np.linspace(0.0, np.log(10.0), h))[:, None] * np.ones((1, w)) * rng.uniform(0.8, 1.2)
    rgb = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    return rgb, depth.astype(np.float32)


def test_make_sample_layout_and_resize():
    rgb, depth = scene(0, 96, 128)
    s = make_sample(rgb, depth, size_hw=(64, 64))
    assert s["rgb_chw"].shape == (3, 64, 64) and s["rgb_chw"].dtype == torch.float32
    assert s["depth_norm_hw"].shape == (64, 64) and s["valid_hw"].dtype == torch.bool
    assert -1 <= float(s["rgb_chw"].min()) and float(s["rgb_chw"].max()) <= 1
    assert float(s["depth_norm_hw"].min()) == -1 and float(s["depth_norm_hw"].max()) == 1
    with pytest.raises(InputError):
        make_sample(rgb, depth[:10])


def test_folder_dataset_reads_npy_png_and_mask(tmp_path):
    rgbs, depths = zip(*(scene(i) for i in range(3)))
    masks = [np.ones((64, 64), bool) for _ in range(3)]
    masks[1][:, :20] = False
    write_folder_dataset(tmp_path / "npy", ArrayDepthDataset(rgbs, depths, masks))
    write_folder_dataset(tmp_path / "png", ArrayDepthDataset(rgbs, depths), png_depth=True)
    ds_npy = FolderDepthDataset(tmp_path / "npy")
    ds_png = FolderDepthDataset(tmp_path / "png", png_depth_scale_m=1e-3)
    assert len(ds_npy) == len(ds_png) == 3
    rgb, depth, mask = ds_npy.pair(1)
    np.testing.assert_array_equal(rgb, rgbs[1])
    np.testing.assert_array_equal(depth, depths[1])
    np.testing.assert_array_equal(mask, masks[1])
    assert not ds_npy[1]["valid_hw"][:, :20].any() and ds_npy[1]["valid_hw"][:, 20:].all()
    _, depth_png, mask_png = ds_png.pair(1)
    assert mask_png is None
    np.testing.assert_allclose(depth_png, depths[1], atol=6e-4)  # mm quantisation
    batch = collate([ds_png[i] for i in range(3)])
    assert batch["rgb_chw"].shape == (3, 3, 64, 64) and batch["depth_norm_hw"].shape == (3, 64, 64)


def test_folder_dataset_errors(tmp_path):
    with pytest.raises(InputError):
        FolderDepthDataset(tmp_path)
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    cv2.imwrite(str(tmp_path / "rgb" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="no depth"):
        FolderDepthDataset(tmp_path)
    cv2.imwrite(str(tmp_path / "depth" / "a.png"), np.zeros((8, 8), np.uint8))  # 8-bit: refused
    with pytest.raises(InputError, match="16-bit"):
        FolderDepthDataset(tmp_path).pair(0)


def test_teacher_dataset_labels_once_and_converts_disparity():
    rgbs = [scene(i)[0] for i in range(4)]
    calls = []

    def teacher(rgb):
        calls.append(1)
        return np.linspace(1.0, 4.0, 64)[:, None] * np.ones((1, 64))  # disparity 1..4 -> depth 1..0.25

    ds = TeacherDepthDataset(rgbs, teacher, teacher_output="disparity")
    _, depth, _ = ds.pair(0)
    ds.pair(0)
    assert len(calls) == 1
    np.testing.assert_allclose(depth[:, 0], 1.0 / np.linspace(1.0, 4.0, 64), rtol=1e-6)
    assert float(ds[0]["depth_norm_hw"][0, 0]) == 1.0  # disparity 1 is the farthest point


@pytest.mark.parametrize("k", [0.0, 0.5, 1.0, 2.0])
def test_mixture_has_k_times_labelled_teacher_samples(k):
    labelled = ArrayDepthDataset(*zip(*(scene(i) for i in range(10))))
    pool = TeacherDepthDataset([scene(100 + i)[0] for i in range(25)], lambda rgb: np.ones(rgb.shape[:2]) + 1)
    mixed = mixture_dataset(labelled, pool, k, seed=0)
    assert len(mixed) == 10 + int(round(k * 10))
    if k:
        picked = mixed.datasets[1].indices
        assert len(set(picked)) == len(picked)  # without replacement
        assert picked == mixture_dataset(labelled, pool, k, seed=0).datasets[1].indices  # seeded


def test_mixture_refuses_too_small_pool():
    labelled = ArrayDepthDataset(*zip(*(scene(i) for i in range(10))))
    pool = TeacherDepthDataset([scene(0)[0]] * 3, lambda rgb: np.ones(rgb.shape[:2]))
    with pytest.raises(InputError, match="pool"):
        mixture_dataset(labelled, pool, 0.5)


def test_encode_batch_shapes(tiny_model):
    ds = ArrayDepthDataset(*zip(*(scene(i) for i in range(2))))
    z_img, x1 = encode_batch(tiny_model, collate([ds[0], ds[1]]))
    assert z_img.shape == x1.shape == (2, 4, 8, 8)
    # the depth latent is the encoding of the normalised depth replicated to 3 channels
    depth3 = ds[1]["depth_norm_hw"][None, None].expand(1, 3, -1, -1)
    with torch.no_grad():
        torch.testing.assert_close(x1[1:], tiny_model.encode(depth3))


def test_synthetic_dataset_when_available():
    pytest.importorskip("depthfm_ros.sim.synthetic")
    from depthfm_ros.training.data import SyntheticDepthDataset

    ds = SyntheticDepthDataset(2, 64, 64, seed=3)
    a, b = ds[0], SyntheticDepthDataset(2, 64, 64, seed=3)[0]
    assert a["rgb_chw"].shape == (3, 64, 64) and a["valid_hw"].any()
    torch.testing.assert_close(a["depth_norm_hw"], b["depth_norm_hw"])


def test_affine_disparity_is_aligned_in_disparity_space_not_inverted():
    """A teacher giving disparity up to scale and shift (d' = s/depth + t): 1/d' bends the depth; aligning in
    disparity space recovers it (exactly, given the scene's far/near ratio at the percentiles)."""
    from depthfm_ros.processing import normalize_log_depth
    from depthfm_ros.training.data import affine_disparity_to_depth

    depth = np.exp(np.random.default_rng(0).uniform(0.0, np.log(30.0), (48, 64)))
    teacher = 3.0 / depth + 0.4  # Depth-Anything-like: scale and shift unknown
    lo_d, hi_d = np.percentile(1.0 / depth, [2.0, 98.0])
    ratio = hi_d / lo_d  # far/near ratio at the disparity percentiles
    truth = normalize_log_depth(depth)[0]
    aligned = normalize_log_depth(affine_disparity_to_depth(teacher, ratio))[0]
    inverted = normalize_log_depth(1.0 / teacher)[0]
    assert np.abs(aligned - truth).max() < 5e-4  # percentile interpolation differs between the two spaces
    assert np.abs(inverted - truth).mean() > 0.1  # what --teacher-output disparity did to such a teacher
    with pytest.raises(InputError, match="depth_range"):
        affine_disparity_to_depth(teacher, 1.0)
    pool = TeacherDepthDataset([np.zeros((48, 64, 3), np.uint8)], lambda rgb: teacher, "affine_disparity",
                               disparity_range=ratio)
    np.testing.assert_allclose(pool[0]["depth_norm_hw"].numpy(), truth, atol=5e-4)


def test_grouped_dataset_and_data_specs():
    from depthfm_ros.training.data import GroupedDataset, parse_data_spec

    a = ArrayDepthDataset(*zip(*[scene(i) for i in range(3)]))
    b = ArrayDepthDataset(*zip(*[scene(i, 64, 128) for i in range(2)]))
    grouped = GroupedDataset([a, b], [None, 5.0])
    assert len(grouped) == 5 and grouped.weights == [3.0, 5.0]
    assert grouped[3]["rgb_chw"].shape == (3, 64, 128) and grouped[2]["rgb_chw"].shape == (3, 64, 64)
    with pytest.raises(IndexError):
        grouped[5]
    with pytest.raises(InputError, match="positive weight"):
        GroupedDataset([a, b], [1.0, 0.0])
    assert parse_data_spec("hypersim:480x640:0.9") == (Path("hypersim"), (480, 640), 0.9, False)
    assert parse_data_spec("vkitti") == (Path("vkitti"), None, None, False)
    assert parse_data_spec("vkitti:2:crop") == (Path("vkitti"), None, 2.0, True)
    with pytest.raises(InputError, match="FOLDER"):
        parse_data_spec("x:4y0x9")


def test_crop_keeps_the_aspect_ratio_instead_of_squashing():
    """A 64x256 (1:4) image trained at 64x64: resized it is squashed 4x horizontally; cropped it keeps the centre."""
    rgb = np.zeros((64, 256, 3), np.uint8)
    rgb[:, 96:160] = 255  # a bright centre band a quarter of the width
    depth = np.tile(np.linspace(1.0, 4.0, 256, dtype=np.float32), (64, 1))
    squashed = make_sample(rgb, depth, size_hw=(64, 64))
    cropped = make_sample(rgb, depth, size_hw=(64, 64), crop=True)
    assert cropped["rgb_chw"].shape == squashed["rgb_chw"].shape == (3, 64, 64)
    assert float(cropped["rgb_chw"].mean()) == pytest.approx(1.0)  # only the centre band is left
    assert -0.6 < float(squashed["rgb_chw"].mean()) < -0.4  # a quarter bright, squashed
    metres = cropped["depth_hw_m"].numpy()
    assert metres.min() >= depth[0, 96] - 1e-6 and metres.max() <= depth[0, 159] + 1e-6
    tall = make_sample(np.zeros((256, 64, 3), np.uint8), depth.T.copy(), size_hw=(64, 64), crop=True)
    assert tall["depth_hw_m"].shape == (64, 64)
