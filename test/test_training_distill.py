"""Tiny VAE distillation: teacher targets agree with the sampler, the loss really falls, training resumes."""

import cv2
import numpy as np
import pytest
import torch

from depthfm_ros.models.architectures import build_tiny_depthfm
from depthfm_ros.models.tiny_vae import TINY_TEST_CONFIG, build_tiny_vae, load_tiny_vae
from depthfm_ros.training.distill import (
    DistillConfig,
    ImageFolderDataset,
    SyntheticImageDataset,
    distill,
    evaluate_vae_kinds,
    gradient_loss,
    teacher_targets,
)


@pytest.fixture(scope="module")
def teacher():
    return build_tiny_depthfm(seed=0, noising_step=400)


@pytest.fixture(scope="module")
def scenes():
    return SyntheticImageDataset(12, 64, seed=0)


def test_teacher_targets_are_the_sampler_output(teacher):
    g = torch.Generator().manual_seed(0)
    rgb, noise = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1, torch.randn(2, 4, 8, 8, generator=g)
    targets = teacher_targets(teacher, rgb, noise, 2)
    with torch.no_grad():
        z = teacher(rgb, noise, 2)
        assert torch.allclose(targets.image_latent, teacher.encode(rgb))
    assert targets.depth_latent.shape == (2, 4, 8, 8)
    assert torch.allclose(targets.z[:, 0], z[:, 0], atol=1e-5)


def test_gradient_loss():
    a = torch.randn(2, 1, 16, 16)
    assert gradient_loss(a, a) == 0
    assert gradient_loss(a, a + 3.0) < 1e-10  # a constant offset has no gradient
    assert gradient_loss(a, torch.zeros_like(a)) > 0


def test_distillation_loss_falls_and_tiny_z_approaches_full_z(teacher, scenes, tmp_path):
    student = build_tiny_vae(TINY_TEST_CONFIG, seed=0)
    rgb = torch.stack([scenes[i] for i in range(4)])
    depth = np.ones((4, 64, 64), np.float32)
    before = evaluate_vae_kinds(teacher, student, rgb, depth, num_steps=2)
    config = DistillConfig(max_steps=40, batch_size=4, resolution=64, learning_rate=3e-3, checkpoint_every=20)
    history = distill(teacher, student, scenes, tmp_path, config, device="cpu", progress=False)
    assert len(history) == 40
    first = {k: np.mean([h[k] for h in history[:5]]) for k in history[0]}
    last = {k: np.mean([h[k] for h in history[-5:]]) for k in history[0]}
    assert last["total"] < 0.3 * first["total"], (first, last)
    assert last["encoder"] < 0.5 * first["encoder"], (first, last)
    assert last["decoder"] < 0.3 * first["decoder"], (first, last)
    after = evaluate_vae_kinds(teacher, student.eval(), rgb, depth, num_steps=2)
    assert after["z_rmse_tiny_vs_full"] < 0.5 * before["z_rmse_tiny_vs_full"], (before, after)
    saved = load_tiny_vae(tmp_path / "tiny_vae")
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), student.state_dict().values()))
    assert teacher.tiny_vae is None


def test_distillation_resumes_from_its_state(teacher, scenes, tmp_path):
    config = DistillConfig(max_steps=4, batch_size=4, resolution=64, checkpoint_every=2)
    first = distill(teacher, build_tiny_vae(TINY_TEST_CONFIG, seed=0), scenes, tmp_path, config, device="cpu",
                    progress=False)
    state = torch.load(tmp_path / "distill_state.pt", weights_only=False)
    assert state["step"] == 4 and {"student", "optimizer", "history"} <= set(state)
    config.max_steps = 7
    fresh = build_tiny_vae(TINY_TEST_CONFIG, seed=5)  # weights come from the state, not from here
    resumed = distill(teacher, fresh, scenes, tmp_path, config, device="cpu", progress=False)
    assert len(resumed) == 7 and resumed[:4] == first
    assert torch.load(tmp_path / "distill_state.pt", weights_only=False)["step"] == 7


def test_image_folder_dataset(tmp_path):
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(100, 150), (200, 90)]):
        cv2.imwrite(str(tmp_path / f"im{i}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    data = ImageFolderDataset(tmp_path, 64)
    assert len(data) == 2
    for i in range(2):
        x = data[i]
        assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
