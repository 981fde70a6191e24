"""Distil the tiny VAE (:mod:`depthfm_ros.models.tiny_vae`) from the SD VAE of a DepthFM model.

The teacher is the full DepthFM (SD VAE + UNet). For each batch of images it gives
  - the image latent ``encode(rgb)`` -> target of the tiny encoder (latent MSE),
  - the depth latent from running the flow (noise augmentation + ``num_steps`` Euler steps) on that image, so the
    tiny decoder learns on the latents it will really see, and its SD decoding z -> target of the tiny decoder
    (MSE on z + ``grad_weight`` x MSE of the finite-difference gradients of z, which keeps edges sharp).
Training is resumable (``distill_state.pt``: student, optimizer, step, history), runs through ``accelerate`` (CPU, one
GPU, or ``accelerate launch`` for several) and writes the result as a ``tiny_vae/`` folder.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import InputError
from ..evaluation.metrics import evaluate_log_aligned
from ..models.depthfm import DepthFM
from ..models.ldm import load_torch_file
from ..models.tiny_vae import tiny_decode, tiny_encode
from ..processing import read_rgb, resize_hw, to_model_input
from ..sampler import flow_to_depth_latent
from ..shapes import latent_noise_shape
from ..sim.synthetic import make_scene

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
STATE_FILE = "distill_state.pt"
OUTPUT_FOLDER = "tiny_vae"


@dataclass
class DistillConfig:
    """Hyper-parameters. ``resolution`` is the square training crop (multiple of 64: the teacher UNet runs on it)."""

    max_steps: int = 5000
    batch_size: int = 4
    resolution: int = 256
    learning_rate: float = 2e-4
    num_steps: int = 2
    grad_weight: float = 1.0
    checkpoint_every: int = 250
    seed: int = 0
    num_workers: int = 0
    mixed_precision: str = "no"


# ------------------------------------------------------------------------------------------------- data
def random_square_crop(rgb_hwc_u8: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Scale the short side to ``size``, take a random ``size`` x ``size`` crop, flip left-right half the time."""
    h, w = rgb_hwc_u8.shape[:2]
    s = size / min(h, w)
    rgb = resize_hw(rgb_hwc_u8, max(size, round(h * s)), max(size, round(w * s)))
    y = int(rng.integers(0, rgb.shape[0] - size + 1))
    x = int(rng.integers(0, rgb.shape[1] - size + 1))
    rgb = rgb[y:y + size, x:x + size]
    return rgb[:, ::-1] if rng.random() < 0.5 else rgb


class ImageFolderDataset(Dataset):
    """Every image under ``folder`` (recursive) as a random square crop in [-1, 1], (3, size, size) float32."""

    def __init__(self, folder: str | Path, size: int, seed: int = 0):
        self.files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
        self.size, self.seed, self.epoch = size, seed, 0

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        rgb = random_square_crop(read_rgb(self.files[i]), self.size, rng)
        return torch.from_numpy(to_model_input(np.ascontiguousarray(rgb), self.size, self.size))


class SyntheticImageDataset(Dataset):
    """Fallback without a photo folder: ``count`` ray-cast synthetic scenes (:mod:`depthfm_ros.sim.synthetic`)."""

    def __init__(self, count: int, size: int, seed: int = 0):
        self.images = [to_model_input(make_scene(np.random.default_rng((seed, i)), size, size).rgb_hwc_u8, size, size)
                       for i in range(count)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.images[i])


# ----------------------------------------------------------------------------------------------- losses
@dataclass
class TeacherTargets:
    image_latent: torch.Tensor  # (b, 4, h/8, w/8) SD-scaled
    depth_latent: torch.Tensor  # (b, 4, h/8, w/8) end of the flow
    z: torch.Tensor             # (b, 1, h, w) SD-decoded log-depth value


@torch.no_grad()
def teacher_targets(teacher: DepthFM, rgb_bchw: torch.Tensor, noise: torch.Tensor, num_steps: int) -> TeacherTargets:
    """The full model's image latent, flowed depth latent and decoded z for one batch (one member per image)."""
    if teacher.tiny_vae is not None:
        raise InputError("the teacher must use the full SD VAE (vae_kind 'full')")
    image_latent = teacher.encode(rgb_bchw).to(teacher.dtype)
    depth_latent = flow_to_depth_latent(teacher, image_latent, noise, num_steps)
    return TeacherTargets(image_latent.float(), depth_latent.float(), teacher.decode(depth_latent).float())


def gradient_loss(pred_b1hw: torch.Tensor, target_b1hw: torch.Tensor) -> torch.Tensor:
    """MSE between the horizontal and vertical finite differences of two maps."""
    dx = lambda a: a[..., :, 1:] - a[..., :, :-1]  # noqa: E731
    dy = lambda a: a[..., 1:, :] - a[..., :-1, :]  # noqa: E731
    return F.mse_loss(dx(pred_b1hw), dx(target_b1hw)) + F.mse_loss(dy(pred_b1hw), dy(target_b1hw))


class TinyVAEStudent(nn.Module):
    """Both halves of the tiny VAE in one ``forward`` (what DDP / accelerate wrap): (image latent, z)."""

    def __init__(self, tiny_vae):
        super().__init__()
        self.vae = tiny_vae

    def forward(self, rgb_bchw: torch.Tensor, depth_latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return tiny_encode(self.vae, rgb_bchw), tiny_decode(self.vae, depth_latent)


def distill_losses(image_latent: torch.Tensor, z_b1hw: torch.Tensor, targets: TeacherTargets, grad_weight: float
                   ) -> dict[str, torch.Tensor]:
    """Encoder latent MSE, decoder z MSE and z-gradient MSE; ``total`` = encoder + decoder + grad_weight x gradient."""
    encoder = F.mse_loss(image_latent.float(), targets.image_latent)
    z = z_b1hw.float()
    decoder = F.mse_loss(z, targets.z)
    gradient = gradient_loss(z, targets.z)
    return {"total": encoder + decoder + grad_weight * gradient, "encoder": encoder, "decoder": decoder,
            "gradient": gradient}


# --------------------------------------------------------------------------------------------- training
def save_state(path: Path, student, optimizer, step: int, config: DistillConfig, history: list[dict]) -> None:
    """Atomically write the resumable training state."""
    tmp = path.with_suffix(".tmp")
    torch.save({"student": student.state_dict(), "student_config": dict(student.config),
                "optimizer": optimizer.state_dict(), "step": step, "config": asdict(config), "history": history}, tmp)
    tmp.replace(path)


def distill(teacher: DepthFM, tiny_vae, dataset: Dataset, output_dir: str | Path, config: DistillConfig | None = None,
            resume: bool = True, device: str | None = None, progress: bool = True) -> list[dict[str, float]]:
    """Train ``tiny_vae`` (an AutoencoderTiny, in place) against ``teacher`` up to ``config.max_steps``; return the
    loss history (one dict of floats per step).

    Writes ``output_dir/distill_state.pt`` every ``checkpoint_every`` steps (and at the end) and the finished
    ``output_dir/tiny_vae/``. With ``resume`` an existing state continues where it stopped (same step, optimizer
    moments and history). ``device`` 'cpu' forces the CPU; otherwise accelerate picks (GPU when there is one).
    """
    from accelerate import Accelerator
    from tqdm import tqdm

    config = config or DistillConfig()
    if config.resolution % 64:
        raise InputError(f"resolution must be a multiple of 64 (the teacher UNet runs on it), got {config.resolution}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    state_path = output_dir / STATE_FILE
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=config.mixed_precision)

    step, history = 0, []
    student = TinyVAEStudent(tiny_vae).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.learning_rate, weight_decay=0.0)
    if resume and state_path.is_file():
        state = load_torch_file(state_path, "distillation state")
        tiny_vae.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = int(state["step"]), list(state["history"])
        log.info("resuming distillation from %s at step %d", state_path, step)
    teacher = teacher.to(accelerator.device).eval().requires_grad_(False)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True,
                        drop_last=len(dataset) >= config.batch_size, num_workers=config.num_workers,
                        generator=torch.Generator().manual_seed(config.seed + step))
    student, optimizer, loader = accelerator.prepare(student, optimizer, loader)
    unwrapped = accelerator.unwrap_model(student).vae
    noise_gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)

    bar = tqdm(total=config.max_steps, initial=step, desc="distil tiny VAE", unit="step",
               disable=not progress or not accelerator.is_main_process)
    epoch = 0
    while step < config.max_steps:
        if hasattr(dataset, "epoch"):
            dataset.epoch = epoch
        for rgb in loader:
            if step >= config.max_steps:
                break
            rgb = rgb.to(accelerator.device)
            noise = torch.randn(latent_noise_shape(rgb.shape[0], 1, *rgb.shape[2:]),
                                generator=noise_gen).to(accelerator.device)
            targets = teacher_targets(teacher, rgb.to(teacher.dtype), noise, config.num_steps)
            with accelerator.autocast():
                losses = distill_losses(*student(rgb, targets.depth_latent), targets, config.grad_weight)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(losses["total"])
            optimizer.step()
            step += 1
            history.append({k: float(v.detach()) for k, v in losses.items()})
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]['total']:.4f}", enc=f"{history[-1]['encoder']:.4f}",
                            dec=f"{history[-1]['decoder']:.4f}")
            if step % config.checkpoint_every == 0 and accelerator.is_main_process:
                save_state(state_path, unwrapped, optimizer, step, config, history)
        epoch += 1
    bar.close()
    if accelerator.is_main_process:
        save_state(state_path, unwrapped, optimizer, step, config, history)
        unwrapped.eval().save_pretrained(output_dir / OUTPUT_FOLDER)
    return history


# ------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_vae_kinds(model: DepthFM, tiny_vae, rgb_bchw: torch.Tensor, depth_bhw_m: np.ndarray,
                       num_steps: int = 2, seed: int = 0) -> dict[str, float]:
    """AbsRel/delta1 (log-space aligned, paper protocol) of the full and the tiny VAE path on the same images and
    noise, plus the RMSE between their z maps and the spread (std) of the full z maps, both in z units.
    The model's own VAE choice is restored afterwards."""
    noise = torch.randn(latent_noise_shape(rgb_bchw.shape[0], 1, *rgb_bchw.shape[2:]),
                        generator=torch.Generator().manual_seed(seed))
    previous = model.tiny_vae
    try:
        z_full = model.set_tiny_vae(None)(rgb_bchw, noise, num_steps)[:, 0].numpy()
        z_tiny = model.set_tiny_vae(tiny_vae)(rgb_bchw, noise, num_steps)[:, 0].numpy()
    finally:
        model.set_tiny_vae(previous)
    out = {"z_rmse_tiny_vs_full": float(np.sqrt(np.mean((z_tiny - z_full) ** 2))), "z_std_full": float(z_full.std())}
    for name, z in (("full", z_full), ("tiny", z_tiny)):
        scores = [evaluate_log_aligned(zi, gi) for zi, gi in zip(z, depth_bhw_m)]
        out[f"abs_rel_{name}"] = float(np.mean([s["abs_rel"] for s in scores]))
        out[f"delta1_{name}"] = float(np.mean([s["delta1"] for s in scores]))
    return out
