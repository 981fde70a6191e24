"""DepthFM training: SD UNet initialisation (conv_in 4 -> 8), the flow-matching loss, and a resumable trainer.

Loss (the paper's): t ~ U[0, 1], x0 = noise-augmented image latent, x_t = t·x1 + (1 - t)·x0 + sigma_min·eps'
(a small Gaussian smoothing of the straight path), target velocity x1 - x0, MSE. The VAE is frozen; only the
UNet trains. The trainer runs unchanged on one CPU, one GPU or under ``torchrun`` / ``accelerate launch`` (DDP)
through ``accelerate.Accelerator``. Data order, t and noise are pure functions of ``(seed, micro step, rank)``,
so a resumed run replays exactly the run it continues.
"""

from __future__ import annotations

import copy
import json
import random
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import CheckpointError, InputError
from ..models.architectures import TINY_LDM_HPARAMS, build_tiny_depthfm
from ..models.completion import DepthCompletionFM
from ..models.depthfm import META_FILE, DepthFM, load_vae
from ..models.ldm import load_torch_file, widen_conv_in
from ..sampler import noise_augment
from ..shapes import LATENT_CHANNELS, LATENT_SCALE, VAE_DOWNSCALE
from .data import GroupedDataset, collate, dataset_identity, encode_batch
from .latent_cache import LatentCache, MemoryLatentCache, vae_fingerprint

TRAINER_STATE_FILE = "trainer_state.pt"
OFFICIAL_CKPT_NAME = "depthfm.ckpt"
DIFFUSERS_DIR_NAME = "diffusers"


# ------------------------------------------------------------------------------------------ initialisation
def load_sd_unet(unet_or_folder):
    """A diffusers ``UNet2DConditionModel`` object, its folder, or an SD pipeline folder holding ``unet/``."""
    if not isinstance(unet_or_folder, (str, Path)):
        return unet_or_folder
    from diffusers import UNet2DConditionModel

    folder = Path(unet_or_folder)
    if (folder / "unet" / "config.json").is_file():
        folder = folder / "unet"
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"no diffusers UNet (config.json) in {unet_or_folder}")
    try:
        return UNet2DConditionModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot load UNet from {folder}: {exc}") from exc


def depthfm_from_sd(unet_or_folder, vae_or_folder, empty_text_embedding, noising_step: int = 400) -> DepthFM:
    """DepthFM initialised from Stable Diffusion: conv_in widened 4 -> 8 (copied, halved), everything else kept.

    ``vae_or_folder``: AutoencoderKL or its folder (None: ``<sd folder>/vae``). ``empty_text_embedding``: the
    text encoder's output for "" as (1, 77, d) array or ``.npy`` path (SD 2.1: OpenCLIP-H, d = 1024).
    """
    unet = load_sd_unet(unet_or_folder)
    if unet.config.in_channels != LATENT_CHANNELS:
        raise CheckpointError(f"expected an SD UNet with {LATENT_CHANNELS} inputs, got {unet.config.in_channels}")
    widen_conv_in(unet, 2 * LATENT_CHANNELS, "repeat_halve")
    if vae_or_folder is None:
        if not isinstance(unet_or_folder, (str, Path)):
            raise CheckpointError("give the VAE (object or folder) when the UNet is an object")
        vae_or_folder = Path(unet_or_folder) / "vae"
    vae = load_vae(vae_or_folder) if isinstance(vae_or_folder, (str, Path)) else vae_or_folder
    if isinstance(empty_text_embedding, (str, Path)):
        empty_text_embedding = np.load(empty_text_embedding)
    return DepthFM(unet, vae, empty_text_embedding, noising_step)


def initial_model(init: str, *, seed: int = 0, noising_step: int = 400, sd=None, vae=None,
                  empty_text_embedding=None, checkpoint=None, tiny_channels: int | None = None) -> DepthFM:
    """The model training starts from: ``init`` 'tiny' (a tiny random model; ``tiny_channels`` widens its UNet
    from 32 base channels), 'sd' (Stable Diffusion 2.1 with conv_in widened, needs ``sd``, ``vae`` and
    ``empty_text_embedding``) or 'depthfm' (``checkpoint``: an official .ckpt with ``vae``, a model folder, or a
    depth-completion folder)."""
    if init == "tiny":
        hparams = None if tiny_channels is None else {**TINY_LDM_HPARAMS, "model_channels": int(tiny_channels)}
        return build_tiny_depthfm(seed=seed, noising_step=noising_step, ldm_hparams=hparams)
    if init == "sd":
        if not sd or not empty_text_embedding:
            raise InputError("--init sd needs --sd (SD 2.1 folder or its unet/) and --empty-text-embedding (.npy)")
        return depthfm_from_sd(sd, vae, empty_text_embedding, noising_step)
    if not checkpoint:
        raise InputError("--init depthfm needs --checkpoint (official .ckpt with --vae, or a model folder)")
    path = Path(checkpoint)
    meta = path / META_FILE
    if path.is_dir() and meta.is_file() and "completion" in json.loads(meta.read_text()):
        return DepthCompletionFM.from_pretrained(path)
    model = DepthFM.load(path, vae, vae_kind="full")  # targets are SD-VAE latents, never a tiny encoder's
    if (path.is_dir() and meta.is_file() and json.loads(meta.read_text()).get("vae_kind") == "tiny"):
        warnings.warn(f"{path} was saved with a tiny VAE: training encodes images and depth targets with its SD VAE "
                      "(the tiny encoder only approximates that latent space); the export has the SD VAE only, "
                      "attach the tiny VAE again with --tiny-vae at inference", stacklevel=2)
    return model


# ------------------------------------------------------------------------------------------------- loss
def draw_flow_noise(x1: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t (b,), eps for the noise augmentation, eps for the path smoothing), drawn on CPU from ``generator``."""
    b = x1.shape[0]
    t = torch.rand(b, generator=generator)
    eps_aug = torch.randn(tuple(x1.shape), generator=generator)
    eps_path = torch.randn(tuple(x1.shape), generator=generator)
    dev = x1.device
    return t.to(dev), eps_aug.to(dev), eps_path.to(dev)


def latent_valid_mask(valid_bhw: torch.Tensor) -> torch.Tensor:
    """(b, 1, h/8, w/8) float mask of latent cells whose 8x8 pixels all have ground truth (Marigold's rule): the
    loss ignores cells touching sky / missing depth instead of training them as "farthest"."""
    invalid = (~valid_bhw.bool())[:, None].float()
    return 1.0 - F.max_pool2d(invalid, VAE_DOWNSCALE)


class FlowMatchingLoss(nn.Module):
    """MSE between the UNet velocity at x_t and the target x1 - x0 (a module, so DDP can wrap it), averaged over
    the latent cells ``mask`` (b, 1, h, w) keeps (all of them when None)."""

    def __init__(self, model: DepthFM, sigma_min: float = 1e-4):
        super().__init__()
        self.model = model
        self.sigma_min = float(sigma_min)

    def forward(self, z_img, x1, cond, t, eps_aug, eps_path, mask=None):
        x0 = noise_augment(z_img, self.model.noising_step, eps_aug)
        t_b = t.view(-1, 1, 1, 1)
        x_t = t_b * x1 + (1.0 - t_b) * x0 + self.sigma_min * eps_path
        v = self.model.velocity(x_t, t, cond)
        err = (v.float() - (x1 - x0).float()).pow(2)
        if mask is None:
            return err.mean()
        mask = mask.to(err.dtype)
        return (err * mask).sum() / (mask.sum() * err.shape[1]).clamp(min=1.0)


def training_condition(model, z_img: torch.Tensor, batch: dict, generator: torch.Generator) -> torch.Tensor:
    """What the UNet is conditioned on besides x_t: the image latent, plus whatever the model adds (completion)."""
    extra = getattr(model, "training_condition", None)
    return z_img if extra is None else extra(z_img, batch, generator)


# ------------------------------------------------------------------------------------------------- EMA
class EMA:
    """Exponential moving average of a module's trainable parameters (kept in fp32).

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so short runs are not stuck at the
    initial weights.
    """

    def __init__(self, module: nn.Module, decay: float):
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow = {n: p.detach().float().clone() for n, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        decay = min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))
        self.num_updates += 1
        for n, p in module.named_parameters():
            if n in self.shadow:
                self.shadow[n].lerp_(p.detach().float(), 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        for n, p in module.named_parameters():
            if n in self.shadow:
                p.copy_(self.shadow[n].to(p.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay, self.num_updates = state["decay"], state["num_updates"]
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}


# --------------------------------------------------------------------------------------------- trainer
@dataclass
class TrainConfig:
    """Hyper-parameters. ``batch_size`` is per process and micro step; one optimizer step sees
    ``batch_size · grad_accum_steps · num_processes`` samples."""

    max_steps: int = 1000
    batch_size: int = 4
    grad_accum_steps: int = 1
    lr: float = 3e-5
    weight_decay: float = 1e-2
    lr_warmup_steps: int = 0
    max_grad_norm: float = 1.0
    ema_decay: float = 0.999  # 0 disables the EMA
    sigma_min: float = 1e-4
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" (fp16 needs CUDA; falls back to bf16 elsewhere)
    seed: int = 0
    num_workers: int = 0
    output_dir: str = "depthfm-train"
    checkpoint_every: int = 0  # 0: only at the end
    log_every: int = 10
    tensorboard: bool = True
    progress: bool = True
    cache_latents: bool = False  # encode each sample once (with hflip: once per orientation)
    latent_cache_dir: str = ""  # on-disk, memory-mapped, sharded latent cache (training.latent_cache); "" = off
    mask_invalid: bool = True  # leave latent cells without full ground truth out of the loss
    hflip: bool = False  # random horizontal flips (image, depth and mask together)
    gradient_checkpointing: bool = False  # recompute UNet activations in backward: less memory, ~30 % more time
    optimizer: str = "adamw"  # "adamw" (fused on CUDA) | "adamw8bit" (bitsandbytes, CUDA)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


OPTIMIZERS = ("adamw", "adamw8bit")


def make_optimizer(params, config: "TrainConfig", device: torch.device):
    """AdamW (torch's fused kernel on CUDA), or bitsandbytes' 8-bit AdamW (a quarter of the optimizer state)."""
    if config.optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {OPTIMIZERS}, got {config.optimizer!r}")
    if config.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise InputError("optimizer adamw8bit needs bitsandbytes (pip install bitsandbytes, CUDA only)") from exc
        return bnb.optim.AdamW8bit(params, lr=config.lr, weight_decay=config.weight_decay)
    fused = torch.device(device).type == "cuda"
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def resolve_mixed_precision(requested: str) -> str:
    """The precision accelerate can use here: fp16 autocast needs CUDA, bf16 needs CUDA bf16 support or a CPU."""
    if requested not in ("no", "bf16", "fp16"):
        raise InputError(f"mixed_precision must be 'no', 'bf16' or 'fp16', got {requested!r}")
    cuda = torch.cuda.is_available()
    if requested == "fp16" and not cuda:
        warnings.warn("fp16 autocast needs CUDA; using bf16 on CPU instead", stacklevel=2)
        return "bf16"
    if requested == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        warnings.warn("this GPU has no bf16; using fp16 instead", stacklevel=2)
        return "fp16"
    return requested


def _seed_of(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


class _MicroStepSampler(Sampler):
    """Infinite batches ``indices(m)`` for micro steps m = start, start + 1, ... (subclasses define ``indices``)."""

    start: int = 0

    def indices(self, micro_step: int) -> list[int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        m = self.start
        while True:
            yield self.indices(m)
            m += 1

    def __len__(self) -> int:  # DataLoader asks; the sampler is infinite
        return 2 ** 31


class StepBatchSampler(_MicroStepSampler):
    """Infinite per-rank batches; micro step m of rank r takes the samples ``(m·P + r)·B ...`` of a seeded
    per-epoch permutation, so any micro step's batch is known without replaying the ones before it."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, start_micro_step: int = 0,
                 rank: int = 0, world_size: int = 1):
        if num_samples < 1:
            raise InputError("the training dataset is empty")
        self.n, self.b, self.seed = num_samples, batch_size, seed
        self.start, self.rank, self.world = start_micro_step, rank, world_size
        self._perms: dict[int, np.ndarray] = {}

    def indices(self, micro_step: int) -> list[int]:
        first = (micro_step * self.world + self.rank) * self.b
        out = []
        for g in range(first, first + self.b):
            epoch, pos = divmod(g, self.n)
            if epoch not in self._perms:
                self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
            out.append(int(self._perms[epoch][pos]))
        return out



class GroupedStepBatchSampler(_MicroStepSampler):
    """Infinite per-rank batches from a :class:`~depthfm_ros.training.data.GroupedDataset`: micro step m of rank r
    draws a dataset by weight from ``(seed, m, r)``, then its next batch from a seeded per-epoch permutation of that
    dataset. A pure function of the micro step (the choices before it are replayed as integers), so a resumed run
    replays the uninterrupted one."""

    def __init__(self, sizes: list[int], weights: list[float], batch_size: int, seed: int,
                 start_micro_step: int = 0, rank: int = 0):
        self.sizes, self.b, self.seed, self.start, self.rank = list(sizes), batch_size, seed, start_micro_step, rank
        p = np.asarray(weights, dtype=np.float64)
        self.p = p / p.sum()
        self.offsets = np.cumsum([0] + self.sizes)
        self._counts, self._next = [0] * len(self.sizes), 0  # batches each dataset gave before micro step _next
        self._perms: dict[int, tuple[int, np.ndarray]] = {}

    def _group(self, micro_step: int) -> int:
        return int(np.random.default_rng([self.seed, micro_step, self.rank, 7]).choice(len(self.p), p=self.p))

    def indices(self, micro_step: int) -> list[int]:
        if micro_step < self._next:
            self._counts, self._next = [0] * len(self.sizes), 0
        while self._next < micro_step:
            self._counts[self._group(self._next)] += 1
            self._next += 1
        g = self._group(micro_step)
        n = self.sizes[g]
        out = []
        for k in range(self._counts[g] * self.b, (self._counts[g] + 1) * self.b):
            epoch, pos = divmod(k, n)
            if self._perms.get(g, (None,))[0] != epoch:  # one permutation per dataset and epoch, kept
                self._perms[g] = epoch, np.random.default_rng([self.seed, g, self.rank, epoch]).permutation(n)
            out.append(int(self.offsets[g] + self._perms[g][1][pos]))
        return out



class Trainer:
    """Fine-tune a :class:`DepthFM` (or :class:`DepthCompletionFM`) UNet on a dataset of sample dicts.

    >>> trainer = Trainer(model, dataset, TrainConfig(max_steps=500, output_dir="runs/tiny"))
    >>> losses = trainer.train()                  # resumes if output_dir/last has a checkpoint and resume=True
    >>> trainer.export("runs/tiny/export")        # official .ckpt + diffusers folder, EMA weights
    """

    def __init__(self, model: DepthFM, dataset: Dataset, config: TrainConfig, accelerator=None):
        from accelerate import Accelerator

        if getattr(model, "tiny_vae", None) is not None:
            raise InputError("this model encodes with a tiny VAE: training targets must be SD-VAE latents (the tiny "
                             "encoder only approximates them); load it with vae_kind='full' or set_tiny_vae(None)")
        self.config = config
        self.accelerator = accelerator or Accelerator(mixed_precision=resolve_mixed_precision(config.mixed_precision),
                                                      cpu=not torch.cuda.is_available())
        self.model = model.train()
        model.vae.requires_grad_(False).eval()
        if getattr(model, "tiny_vae", None) is not None:
            model.tiny_vae.requires_grad_(False).eval()
        model.unet.requires_grad_(True)
        model.vae.to(self.accelerator.device)
        self.dataset = dataset
        if config.gradient_checkpointing:
            model.unet.enable_gradient_checkpointing()
        params = [p for p in model.unet.parameters() if p.requires_grad]
        optimizer = make_optimizer(params, config, self.accelerator.device)
        warm = max(config.lr_warmup_steps, 0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        # The scheduler is NOT prepared: accelerate's wrapper steps it once per process per optimizer step, so on N
        # processes the warm-up ended N times early. It steps once per optimizer step here, on every rank alike.
        self.loss_module, self.optimizer = self.accelerator.prepare(FlowMatchingLoss(model, config.sigma_min),
                                                                    optimizer)
        self.scheduler = scheduler
        self.ema = EMA(model.unet, config.ema_decay) if config.ema_decay > 0 else None
        self.step = 0
        self._writer = None
        self.disk_cache = None
        if config.latent_cache_dir:
            meta = {"vae": vae_fingerprint(model), "num_samples": len(dataset), "dataset": dataset_identity(dataset)}
            self.disk_cache = LatentCache(config.latent_cache_dir, meta, rank=self.accelerator.process_index)
        self.latent_cache = self.disk_cache or (MemoryLatentCache() if config.cache_latents else None)

    # ------------------------------------------------------------------------------------------- loop
    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def _micro_generator(self, micro_step: int) -> torch.Generator:
        return torch.Generator().manual_seed(_seed_of(self.config.seed, micro_step, self.accelerator.process_index))

    def _latents(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_img, x1) of a batch: from the latent cache (in memory or on disk) where it has them, the samples it
        lacks encoded together and stored. A flipped sample has its own latents (the VAE is not flip-equivariant)."""
        if self.latent_cache is None or "index" not in batch:
            return encode_batch(self.model, batch)
        index = batch["index"].tolist()
        flipped = batch["flipped"].tolist() if "flipped" in batch else [False] * len(index)
        image_hw = tuple(batch["rgb_chw"].shape[-2:])
        rows = [self.latent_cache.get(i, image_hw, f) for i, f in zip(index, flipped)]
        missing = [j for j, row in enumerate(rows) if row is None]
        if missing:
            z_img, x1 = encode_batch(self.model, {k: v[missing] for k, v in batch.items()})
            for r, j in enumerate(missing):
                self.latent_cache.put(index[j], z_img[r], x1[r], flipped[j])
                rows[j] = (z_img[r], x1[r])
        device = next(self.model.vae.parameters()).device
        return tuple(torch.stack([row[k].to(device) for row in rows]) for k in (0, 1))

    def loss_on(self, batch: dict, generator: torch.Generator, grad: bool = True) -> torch.Tensor:
        """Loss of one batch with t and noise from ``generator`` (also useful for a fixed evaluation draw)."""
        if self.config.hflip:
            batch = hflip_batch(batch, torch.rand(len(batch["rgb_chw"]), generator=generator) < 0.5)
        z_img, x1 = self._latents(batch)
        cond = training_condition(self.model, z_img, batch, generator)
        t, eps_aug, eps_path = draw_flow_noise(x1, generator)
        mask = latent_valid_mask(batch["valid_hw"]).to(x1.device) if self.config.mask_invalid else None
        with torch.set_grad_enabled(grad):
            return self.loss_module(z_img, x1, cond, t, eps_aug, eps_path, mask)

    def _loader(self) -> DataLoader:
        cfg = self.config
        start = self.step * cfg.grad_accum_steps
        if isinstance(self.dataset, GroupedDataset):
            sampler: Sampler = GroupedStepBatchSampler([len(d) for d in self.dataset.datasets], self.dataset.weights,
                                                       cfg.batch_size, cfg.seed, start, self.accelerator.process_index)
        else:
            sampler = StepBatchSampler(len(self.dataset), cfg.batch_size, cfg.seed, start,
                                       self.accelerator.process_index, self.accelerator.num_processes)
        return DataLoader(_Indexed(self.dataset), batch_sampler=sampler, num_workers=cfg.num_workers,
                          collate_fn=collate)

    def train(self, max_steps: int | None = None) -> list[float]:
        """Run optimizer steps until ``max_steps`` (default ``config.max_steps``); returns this call's step losses."""
        cfg, acc = self.config, self.accelerator
        max_steps = cfg.max_steps if max_steps is None else max_steps
        losses: list[float] = []
        if self.step >= max_steps:
            return losses
        self._open_writer()
        batches = iter(self._loader())
        bar = None
        if cfg.progress and self.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=max_steps, initial=self.step, desc="train", dynamic_ncols=True)
        self.loss_module.train()
        while self.step < max_steps:
            total = 0.0
            for micro in range(cfg.grad_accum_steps):
                batch = next(batches)
                gen = self._micro_generator(self.step * cfg.grad_accum_steps + micro)
                sync = micro == cfg.grad_accum_steps - 1
                ctx = acc.no_sync(self.loss_module) if not sync and acc.num_processes > 1 else _null()
                with ctx:
                    loss = self.loss_on(batch, gen) / cfg.grad_accum_steps
                    acc.backward(loss)
                total += float(loss.detach())
            if cfg.max_grad_norm > 0:
                acc.clip_grad_norm_(self.model.unet.parameters(), cfg.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(self.model.unet)
            self.step += 1
            losses.append(total)
            self._log(total)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total:.4f}")
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < max_steps:
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        if self._writer is not None:
            self._writer.flush()
        return losses

    def _open_writer(self) -> None:
        if self._writer is not None or not self.config.tensorboard or not self.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: progress bar only
            return
        self._writer = SummaryWriter(str(Path(self.config.output_dir) / "logs"))

    def _log(self, loss: float) -> None:
        if self._writer is not None and self.config.log_every and self.step % self.config.log_every == 0:
            self._writer.add_scalar("train/loss", loss, self.step)
            self._writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)

    # -------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, folder: str | Path | None = None) -> Path:
        """Trainer state (UNet, optimizer, LR schedule, EMA, step, RNG states) to ``folder`` (default output/last)."""
        folder = Path(folder) if folder is not None else Path(self.config.output_dir) / "last"
        self.accelerator.wait_for_everyone()
        if self.is_main:
            folder.mkdir(parents=True, exist_ok=True)
            state = {
                "unet": self.accelerator.unwrap_model(self.loss_module).model.unet.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict(),
                "step": self.step,
                "config": asdict(self.config),
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            }
            tmp = folder / (TRAINER_STATE_FILE + ".tmp")
            torch.save(state, tmp)
            tmp.replace(folder / TRAINER_STATE_FILE)
        self.accelerator.wait_for_everyone()
        return folder

    def load_checkpoint(self, folder: str | Path) -> int:
        """Restore a :meth:`save_checkpoint` folder; returns the step it resumes from."""
        path = Path(folder) / TRAINER_STATE_FILE
        if not path.is_file():
            raise CheckpointError(f"no trainer checkpoint at {path}")
        try:
            state = load_torch_file(path, "trainer state")
        except Exception as exc:  # torch raises many types for a corrupt file
            raise CheckpointError(f"cannot read trainer checkpoint {path}: {exc}") from exc
        try:
            self.model.unet.load_state_dict(state["unet"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path} holds a UNet of another shape: {exc}") from exc
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        return self.step

    def ema_model(self) -> DepthFM:
        """A copy of the model carrying the EMA weights (the model itself if the EMA is off)."""
        if self.ema is None:
            return self.model
        model = copy.deepcopy(self.model)
        self.ema.copy_to(model.unet)
        return model.eval()

    def export(self, folder: str | Path, use_ema: bool = True) -> dict[str, Path]:
        """Official checkpoint (``depthfm.ckpt``) and diffusers folder (``diffusers/``) of the trained model."""
        paths = {}
        if self.is_main:
            paths = export_model(self.ema_model() if use_ema else self.model, folder)
        self.accelerator.wait_for_everyone()
        return paths


def hflip_batch(batch: dict, flip_b: torch.Tensor) -> dict:
    """``batch`` with the samples where ``flip_b`` is True mirrored left-right (every (…, h, w) map alike)."""
    out = {}
    for key, value in batch.items():
        if value.ndim >= 3:  # (b, h, w) or (b, c, h, w)
            view = flip_b.view(-1, *([1] * (value.ndim - 1)))
            value = torch.where(view, value.flip(-1), value)
        out[key] = value
    out["flipped"] = flip_b
    return out


class _Indexed(Dataset):
    """Adds each sample's dataset index (the latent cache key)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "index": torch.tensor(index)}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def export_model(model: DepthFM, folder: str | Path) -> dict[str, Path]:
    """Write ``folder/depthfm.ckpt`` (official format, LDM names) and ``folder/diffusers`` (save_pretrained). A
    depth-completion model gets the diffusers folder only: its 13-channel UNet is no official DepthFM, and neither
    the official code nor ``DepthFM.load`` could read such a .ckpt."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    if not isinstance(model, DepthCompletionFM):
        paths["official"] = folder / OFFICIAL_CKPT_NAME
        torch.save(model.to_official_checkpoint(), paths["official"])
    paths["diffusers"] = model.save_pretrained(folder / DIFFUSERS_DIR_NAME)
    return paths


# ------------------------------------------------------------------------------------- CPU recipe helper
def fit_autoencoder(vae, dataset: Dataset, num_steps: int, batch_size: int = 8, lr: float = 1e-3,
                    seed: int = 0, latent_scale: float = LATENT_SCALE, progress: bool = True) -> list[float]:
    """Train a (tiny, random) VAE to reconstruct images and replicated normalised depth.

    Only for the CPU recipe and tests: DepthFM itself uses the frozen, pretrained SD VAE. A random VAE cannot
    decode depth at all (its decode(encode(depth)) is no better than a constant), so a tiny model needs this
    stand-in before flow training means anything. A penalty pulls the scaled latents (mode · latent_scale) to unit
    mean square, the property SD's 0.18215 was chosen for, so noise augmentation has its intended strength.
    """
    vae.train().requires_grad_(True)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sampler = StepBatchSampler(len(dataset), batch_size, seed)
    losses = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, desc="vae", dynamic_ncols=True)
    device = next(vae.parameters()).device
    for step in range(num_steps):
        batch = collate([dataset[i] for i in sampler.indices(step)])
        images = torch.cat([batch["rgb_chw"], batch["depth_norm_hw"][:, None].expand(-1, 3, -1, -1)]).to(device)
        latents = vae.encode(images).latent_dist.mode()
        recon = vae.decode(latents).sample
        loss = F.mse_loss(recon, images) + 0.1 * ((latents * latent_scale).pow(2).mean() - 1.0) ** 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    if bar is not None:
        bar.close()
    vae.eval().requires_grad_(False)
    return losses

