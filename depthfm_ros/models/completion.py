"""Depth completion: DepthFM conditioned on sparse metric depth (the paper fine-tunes with 2% of pixels).

The UNet input grows from cat[x_t, z_img] (8 channels) to cat[x_t, z_img, z_sparse, m] (13 channels). The new
conv_in inputs start at zero, so a freshly widened model predicts exactly what the DepthFM it came from predicts;
fine-tuning teaches it to use the points.

Sparse encoding ``filled`` (models made now): :func:`sparse_condition_image` normalises the points with their OWN
2/98 % log percentiles -- the same function in training and inference -- and gives every pixel its nearest
point's value, so there is no "missing" value (the old encoding used 0, which is also mid-range depth);
``z_sparse`` is the VAE latent of that image and ``m`` the fraction of measured pixels per latent cell x 8 (a max-pooled
mask was 1 in 73 % of cells at 2 % density: no information). Training samples uniform random pixels and
image-space LiDAR rings (:func:`sparse_pattern`), as the node feeds rings. Encoding ``masked`` is the earlier one
(sparse normalised with the ground truth's percentiles, 0 where unknown, max-pooled mask), kept so folders
trained with it still load and run as trained.

The prediction is brought to metres by the LiDAR alignment's robust log-space fit
(:func:`depthfm_ros.fusion.alignment.fit_log_depth`) on the sparse points. Any density works: 0% gives relative
depth only (``depth_hw_m`` None), 100% is dense.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AlignmentError, InputError
from ..fusion.alignment import fit_log_depth
from ..geometry.masks import nearest_fill
from ..processing import check_rgb, members_to_input_size, normalize_log_depth, processing_size, to_model_input
from ..sampler import flow_to_depth_latent
from ..settings import ModelSettings
from ..shapes import LATENT_CHANNELS, VAE_DOWNSCALE, latent_noise_shape
from .depthfm import META_FILE, DepthFM
from .ldm import widen_conv_in

MASK_CHANNELS = 1
DEFAULT_SPARSE_DENSITY = 0.02
MIN_POINTS_FOR_METRIC = 2
SPARSE_ENCODINGS = ("filled", "masked")  # filled: current; masked: the first one (folders without the key)
SPARSE_PATTERNS = ("uniform", "rings")


def sparse_condition_image(sparse_hw_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image_hw in [-1, 1], mask_hw) the sparse input is encoded from, identical in training and inference: the
    points' own 2/98 % log-depth percentiles map to -1/+1, every other pixel takes its nearest point's value, the
    mask marks the points. No points: zeros and an empty mask."""
    sparse = np.asarray(sparse_hw_m, dtype=np.float64)
    mask = np.isfinite(sparse) & (sparse > 0)
    if not mask.any():
        return np.zeros(sparse.shape, np.float32), mask
    norm, _, _ = normalize_log_depth(sparse, mask, fill_invalid=np.nan)
    return nearest_fill(norm).astype(np.float32), mask


def sparse_pattern(valid_hw: np.ndarray, pattern: str, density: float, rng: np.random.Generator) -> np.ndarray:
    """Which valid pixels become sparse input: ``uniform`` (each with probability ``density``) or ``rings``
    (image-space LiDAR scan lines: gently curved rows over the lower 70 % of the image, every 2nd pixel, as many
    rows as give ``density`` over the image)."""
    valid = np.asarray(valid_hw, bool)
    h, w = valid.shape
    if pattern == "uniform":
        return valid & (rng.random((h, w)) < density)
    if pattern != "rings":
        raise InputError(f"sparse pattern must be one of {SPARSE_PATTERNS}, got {pattern!r}")
    step = 2
    n_rings = max(1, int(round(density * h * step)))
    keep = np.zeros((h, w), bool)
    cols = np.arange(int(rng.integers(step)), w, step)
    x = (cols - w / 2) / w
    for y0 in np.linspace(0.3 * h, 0.95 * h, n_rings) + rng.uniform(-1, 1, n_rings):
        rows = np.round(y0 + rng.uniform(-0.15, 0.15) * h * x ** 2).astype(int)
        inside = (rows >= 0) & (rows < h)
        keep[rows[inside], cols[inside]] = True
    return keep & valid


@dataclass
class CompletionResult:
    """``z_hw``/``std_z_hw``: decoded log-depth value and its ensemble std (z units) at the input size;
    ``depth_hw_m``: metric depth (None when the robust fit to the sparse points is refused, e.g. fewer than 2);
    ``a``, ``b``: log depth = a·z + b; ``num_sparse_points``."""

    z_hw: np.ndarray
    std_z_hw: np.ndarray
    depth_hw_m: np.ndarray | None
    a: float | None
    b: float | None
    num_sparse_points: int


def downsample_sparse_hw(sparse_hw_m: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sparse depth to (height, width) without losing points: each valid pixel lands in its target cell, cells
    with several points take the geometric mean, empty cells are 0."""
    h_in, w_in = sparse_hw_m.shape
    if (h_in, w_in) == (height, width):
        return np.where(np.isfinite(sparse_hw_m) & (sparse_hw_m > 0), sparse_hw_m, 0.0).astype(np.float32)
    rows, cols = np.nonzero(np.isfinite(sparse_hw_m) & (sparse_hw_m > 0))
    cell = (rows * height // h_in) * width + cols * width // w_in
    log_sum = np.bincount(cell, np.log(sparse_hw_m[rows, cols]), minlength=height * width)
    count = np.bincount(cell, minlength=height * width)
    out = np.where(count > 0, np.exp(log_sum / np.maximum(count, 1)), 0.0)
    return out.reshape(height, width).astype(np.float32)


class DepthCompletionFM(DepthFM):
    """DepthFM whose UNet also sees an encoded sparse depth map and its mask (13 input channels)."""

    condition_channels = 2 * LATENT_CHANNELS + MASK_CHANNELS

    sparse_density: float = DEFAULT_SPARSE_DENSITY  # fraction of valid pixels sampled per training image
    sparse_encoding: str = "filled"
    sparse_patterns: tuple[str, ...] = SPARSE_PATTERNS  # drawn per training sample

    @classmethod
    def from_depthfm(cls, model: DepthFM, sparse_density: float = DEFAULT_SPARSE_DENSITY) -> "DepthCompletionFM":
        """Widen a trained DepthFM's conv_in 8 -> 13 with zero weights on the new inputs (same output at init)."""
        unet = widen_conv_in(model.unet, LATENT_CHANNELS + cls.condition_channels, "zero")
        out = cls(unet, model.vae, model.empty_text_embedding.cpu(), model.noising_step, model.latent_scale)
        out.set_tiny_vae(getattr(model, "tiny_vae", None))
        out.sparse_density = float(sparse_density)
        out.sparse_encoding, out.sparse_patterns = "filled", SPARSE_PATTERNS
        return out.to(model.empty_text_embedding.device)

    @classmethod
    def from_pretrained(cls, folder, torch_dtype=torch.float32) -> "DepthCompletionFM":
        model = super().from_pretrained(folder, torch_dtype)
        meta = json.loads((Path(folder) / META_FILE).read_text())
        completion = meta.get("completion", {})
        model.sparse_density = float(completion.get("sparse_density", DEFAULT_SPARSE_DENSITY))
        model.sparse_encoding = completion.get("sparse_encoding", "masked")  # folders from before the key
        model.sparse_patterns = tuple(completion.get("sparse_patterns", ("uniform",)))
        if model.sparse_encoding not in SPARSE_ENCODINGS:
            raise InputError(f"{folder}: unknown sparse encoding {model.sparse_encoding!r}")
        return model

    def save_pretrained(self, folder) -> Path:
        folder = super().save_pretrained(folder)
        meta = json.loads((folder / META_FILE).read_text())
        meta["completion"] = {"sparse_density": self.sparse_density, "condition_channels": self.condition_channels,
                              "sparse_encoding": self.sparse_encoding, "sparse_patterns": list(self.sparse_patterns)}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    # ---------------------------------------------------------------------------------------- conditioning
    def sparse_condition(self, z_img: torch.Tensor, sparse_image_bhw: torch.Tensor,
                         mask_bhw: torch.Tensor) -> torch.Tensor:
        """cat[z_img, z_sparse, mask at latent resolution]: (b, 9, h/8, w/8). ``sparse_image_bhw`` is
        :func:`sparse_condition_image`'s image (encoding ``filled``) or the normalised depth (``masked``)."""
        mask = mask_bhw.to(z_img)[:, None]
        image = sparse_image_bhw.to(z_img)[:, None]
        if self.sparse_encoding == "masked":
            z_sparse, mask_lat = self.encode((image * mask).expand(-1, 3, -1, -1)), F.max_pool2d(mask, VAE_DOWNSCALE)
        else:
            z_sparse, mask_lat = self.encode(image.expand(-1, 3, -1, -1)), F.avg_pool2d(mask, VAE_DOWNSCALE) * 8
        return torch.cat([z_img, z_sparse.to(z_img), mask_lat], dim=1)

    @torch.no_grad()
    def training_condition(self, z_img: torch.Tensor, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """Sparse input from ``sparse_density`` of the valid ground truth, per sample a pattern of
        ``sparse_patterns`` (``filled``: normalised exactly as at inference, :func:`sparse_condition_image`)."""
        valid = batch["valid_hw"]
        if self.sparse_encoding == "masked":
            keep = (torch.rand(tuple(valid.shape), generator=generator) < self.sparse_density) & valid.cpu()
            return self.sparse_condition(z_img, batch["depth_norm_hw"].to(z_img.device), keep.to(z_img.device))
        images, masks = [], []
        for valid_hw, depth_hw_m in zip(valid.cpu().numpy(), batch["depth_hw_m"].cpu().numpy()):
            rng = np.random.default_rng(int(torch.randint(2 ** 62, (1,), generator=generator)))
            keep = sparse_pattern(valid_hw, self.sparse_patterns[rng.integers(len(self.sparse_patterns))],
                                  self.sparse_density, rng)
            image, mask = sparse_condition_image(np.where(keep, depth_hw_m, np.nan))
            images.append(image)
            masks.append(mask)
        device = z_img.device
        return self.sparse_condition(z_img, torch.from_numpy(np.stack(images)).to(device),
                                     torch.from_numpy(np.stack(masks)).to(device))

    # ------------------------------------------------------------------------------------------- inference
    @torch.inference_mode()
    def complete(self, rgb_hwc_u8: np.ndarray, sparse_depth_hw_m: np.ndarray, num_steps: int = 2,
                 ensemble_size: int = 1, processing_resolution: int = 512, seed: int | None = 0) -> CompletionResult:
        """Dense depth for an RGB image and a sparse depth image of the same size (0 / NaN = no measurement).

        ``seed`` fixes the ensemble noise of this call; None draws fresh noise every call."""
        check_rgb(rgb_hwc_u8)
        sparse = np.asarray(sparse_depth_hw_m, dtype=np.float64)
        if sparse.shape != rgb_hwc_u8.shape[:2]:
            raise InputError(f"sparse depth {sparse.shape} and image {rgb_hwc_u8.shape[:2]} differ in size")
        if ensemble_size < 1:
            raise InputError(f"ensemble_size must be >= 1, got {ensemble_size}")
        h_in, w_in = sparse.shape
        valid_in = np.isfinite(sparse) & (sparse > 0)
        h, w = processing_size(h_in, w_in, processing_resolution)
        device, dtype = self.empty_text_embedding.device, self.dtype
        rgb = torch.from_numpy(to_model_input(rgb_hwc_u8, h, w))[None].to(device, dtype)
        sparse_small = downsample_sparse_hw(np.where(valid_in, sparse, 0.0), h, w)
        mask_small = sparse_small > 0
        if self.sparse_encoding == "filled":
            norm, mask_small = sparse_condition_image(np.where(mask_small, sparse_small, np.nan))
        elif mask_small.any():
            norm, _, _ = normalize_log_depth(sparse_small, mask_small, fill_invalid=0.0)
        else:
            norm = np.zeros((h, w), np.float32)
        z_img = self.encode(rgb).to(dtype)
        cond = self.sparse_condition(z_img, torch.from_numpy(norm)[None].to(device),
                                     torch.from_numpy(mask_small)[None].to(device))
        cond = cond.repeat_interleave(ensemble_size, dim=0)
        gen = torch.Generator()
        if seed is None:  # fresh entropy every call, as DepthFMPipeline(seed=None)
            gen.seed()
        else:
            gen.manual_seed(seed)
        noise = torch.randn(latent_noise_shape(1, ensemble_size, h, w), generator=gen).to(device, dtype)
        x1 = flow_to_depth_latent(self, cond[:, :LATENT_CHANNELS], noise, num_steps, condition=cond)
        members = self.decode(x1).float().cpu().numpy().reshape(1, ensemble_size, h, w)
        z_bhw, std_bhw = members_to_input_size(members, h_in, w_in)
        z_hw, std_z_hw = z_bhw[0], std_bhw[0]
        n_points = int(valid_in.sum())
        try:  # the same robust log-space fit as the LiDAR alignment
            fit = fit_log_depth(z_hw, np.where(valid_in, sparse, np.nan).astype(np.float32),
                                min_points=MIN_POINTS_FOR_METRIC)
        except AlignmentError:
            return CompletionResult(z_hw, std_z_hw, None, None, None, n_points)
        return CompletionResult(z_hw, std_z_hw, fit.depth_m(z_hw), fit.a, fit.b, n_points)


def completion_fn(folder: str, settings: ModelSettings):
    """(rgb_hwc_u8, sparse_hw_m) -> completed depth (H, W) metres or None, from the DepthCompletionFM in
    ``folder`` (on the GPU when there is one) run with ``settings``' k, M, resolution and seed; None without a
    folder."""
    if not folder:
        return None
    model = DepthCompletionFM.from_pretrained(folder)
    model = model.to("cuda" if torch.cuda.is_available() else "cpu").eval()

    def complete(rgb_hwc_u8: np.ndarray, sparse_hw_m: np.ndarray) -> np.ndarray | None:
        result = model.complete(rgb_hwc_u8, sparse_hw_m, num_steps=settings.num_steps,
                                ensemble_size=settings.ensemble_size, seed=settings.seed,
                                processing_resolution=settings.processing_resolution)
        return result.depth_hw_m

    return complete
