"""Shape rules shared by the model, the sampler, the pipeline and the exported graphs (a leaf: imports nothing).

Stable Diffusion's latent space has 4 channels at 1/8 of the image size; the UNet halves the latent at every level,
so engine inputs are multiples of 64. An ensemble of M members for b images is one batch of b*M latents,
member-major per image.
"""

from __future__ import annotations

from .errors import InputError

LATENT_CHANNELS = 4  # SD AutoencoderKL latent channels
VAE_DOWNSCALE = 8  # image side / latent side
LATENT_SCALE = 0.18215  # SD latent scaling factor
SIZE_MULTIPLE = 64  # processing sizes are multiples of this


def check_image_batch(rgb_bchw) -> None:
    """Engine inputs are (b, 3, h, w) with h, w positive multiples of :data:`SIZE_MULTIPLE` (any array or tensor)."""
    if rgb_bchw.ndim != 4 or rgb_bchw.shape[1] != 3:
        raise InputError(f"expected images (b, 3, h, w), got {tuple(rgb_bchw.shape)}")
    h, w = rgb_bchw.shape[-2:]
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE or h == 0 or w == 0:
        raise InputError(f"processing size must be a positive multiple of {SIZE_MULTIPLE}, got {h}x{w}")


def size_in_range(height: int, width: int, size_range: tuple[int, int, int, int]) -> bool:
    """Whether ``height`` x ``width`` is a multiple of :data:`SIZE_MULTIPLE` inside (min_h, min_w, max_h, max_w)."""
    lo_h, lo_w, hi_h, hi_w = size_range
    return (lo_h <= height <= hi_h and lo_w <= width <= hi_w and not height % SIZE_MULTIPLE
            and not width % SIZE_MULTIPLE)


def size_range_text(size_range: tuple[int, int, int, int], sep: str = " to ") -> str:
    """(64, 64, 192, 256) -> "64x64 to 192x256" (``sep`` between the two sizes)."""
    lo_h, lo_w, hi_h, hi_w = size_range
    return f"{lo_h}x{lo_w}{sep}{hi_h}x{hi_w}"


def latent_noise_shape(batch: int, ensemble_size: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Noise shape for ``batch`` images of ``height`` x ``width`` with ``ensemble_size`` members each."""
    return (batch * ensemble_size, LATENT_CHANNELS, height // VAE_DOWNSCALE, width // VAE_DOWNSCALE)


def ensemble_size_of(noise_shape: tuple[int, ...], batch: int, height: int, width: int) -> int:
    """Members per image M of noise shaped (b*M, 4, h/8, w/8) for ``batch`` images; InputError for any other shape."""
    if len(noise_shape) != 4 or noise_shape[0] % batch or tuple(noise_shape[1:]) != \
            latent_noise_shape(1, 1, height, width)[1:]:
        raise InputError(f"noise must be (b*M, {LATENT_CHANNELS}, {height // VAE_DOWNSCALE}, "
                         f"{width // VAE_DOWNSCALE}) for {batch} image(s), got {tuple(noise_shape)}")
    return noise_shape[0] // batch
