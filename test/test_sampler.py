import math

import pytest
import torch

from depthfm_ros.errors import InputError
from depthfm_ros.sampler import cosine_alpha_bar, euler_flow, noise_augment, sample_members
from depthfm_ros.shapes import latent_noise_shape


def test_euler_is_exact_for_a_constant_field():
    x0 = torch.randn(2, 4, 3, 5)
    c = torch.randn(2, 4, 3, 5)
    for n in (1, 2, 4, 7):
        x1 = euler_flow(lambda x, t: c, x0, n)
        torch.testing.assert_close(x1, x0 + c, rtol=0, atol=1e-6)


def test_euler_matches_the_closed_form_of_a_linear_field():
    # dx/dt = a x: Euler gives x0 (1 + a/N)^N, not exp(a) -- the exact discrete value.
    x0 = torch.tensor([1.0, -2.0])
    for n in (1, 2, 4):
        x1 = euler_flow(lambda x, t: 0.5 * x, x0, n)
        torch.testing.assert_close(x1, x0 * (1 + 0.5 / n) ** n)


def test_euler_passes_raw_times_in_unit_interval():
    seen = []
    euler_flow(lambda x, t: seen.append(t) or torch.zeros_like(x), torch.zeros(1), 4)
    assert seen == [0.0, 0.25, 0.5, 0.75]


def test_straight_flow_reaches_the_target_in_one_step():
    # Flow matching's ideal field along straight paths, v = (x1 - x)/(1 - t), lands on x1 for any N.
    x0, x1 = torch.randn(3, 4), torch.randn(3, 4)
    for n in (1, 2, 3):
        out = euler_flow(lambda x, t: (x1 - x) / (1 - t), x0, n)
        torch.testing.assert_close(out, x1, rtol=0, atol=1e-5)


def test_euler_rejects_zero_steps():
    with pytest.raises(InputError, match="num_steps"):
        euler_flow(lambda x, t: x, torch.zeros(1), 0)


@pytest.mark.parametrize("s", [0.0, 0.1, 0.4, 0.7, 0.95])
def test_cosine_schedule_is_cos_squared(s):
    # sigmoid(-2 log tan(pi s/2)) = 1/(1 + tan^2) = cos^2(pi s/2); eps=1e-5 only matters near s=0.
    assert cosine_alpha_bar(s) == pytest.approx(math.cos(math.pi * s / 2) ** 2, abs=2e-5)


def test_cosine_schedule_paper_value_and_monotone():
    assert cosine_alpha_bar(0.4) == pytest.approx(0.654508, abs=1e-5)
    values = [cosine_alpha_bar(s / 100) for s in range(100)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_noise_augmentation_is_identity_at_step_zero_and_variance_preserving():
    z = torch.randn(64, 4, 16, 16)
    eps = torch.randn_like(z)
    assert noise_augment(z, 0, eps) is z
    out = noise_augment(z, 400, eps)
    a = cosine_alpha_bar(0.4)
    torch.testing.assert_close(out, math.sqrt(a) * z + math.sqrt(1 - a) * eps)
    assert out.var().item() == pytest.approx(1.0, abs=0.02)
    assert torch.corrcoef(torch.stack([out.ravel(), z.ravel()]))[0, 1].item() == pytest.approx(math.sqrt(a), abs=0.01)


def test_noise_shape():
    assert latent_noise_shape(2, 4, 128, 192) == (8, 4, 16, 24)


@torch.no_grad()
def test_batched_ensemble_equals_looped_members(tiny_model):
    images = torch.rand(2, 3, 64, 128) * 2 - 1
    m = 4
    noise = torch.randn(latent_noise_shape(2, m, 64, 128))
    batched = sample_members(tiny_model, images, noise, num_steps=2)
    assert batched.shape == (2, m, 64, 128)
    for i in range(2):
        for j in range(m):
            looped = sample_members(tiny_model, images[i:i + 1], noise[i * m + j:i * m + j + 1], num_steps=2)
            torch.testing.assert_close(batched[i, j], looped[0, 0], rtol=0, atol=1e-4)
    # noise augmentation makes members differ
    assert batched[0].std(dim=0).mean().item() > 1e-3


@torch.no_grad()
def test_sample_members_rejects_mismatched_noise(tiny_model):
    with pytest.raises(InputError, match="noise must be"):
        sample_members(tiny_model, torch.zeros(1, 3, 64, 64), torch.zeros(1, 4, 16, 16), 1)
