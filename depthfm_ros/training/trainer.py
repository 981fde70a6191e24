"""The resumable training loop: a :class:`Trainer` fine-tunes a DepthFM (or depth-completion) UNet with the paper's
flow-matching loss (:mod:`.loss`) while the VAE stays frozen.

The trainer runs unchanged on one CPU, one GPU or under ``torchrun`` / ``accelerate launch`` (DDP) through
``accelerate.Accelerator``. Data order, t and noise are pure functions of ``(seed, micro step, rank)``
(:mod:`.batches`), so a resumed run replays exactly the run it continues. Around the loop: :mod:`.initialisation`
(the model training starts from), :mod:`.optimisation` (optimizer, warm-up, precision, EMA), :mod:`.checkpoints`
(trainer state, export), :mod:`.progress` (progress bar, TensorBoard), :mod:`.data` and :mod:`.latent_cache`.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import CheckpointError, InputError
from ..models.depthfm import DepthFM
from .batches import IndexedDataset, hflip_batch, seed_of, step_batch_sampler
from .checkpoints import (
    TRAINER_STATE_FILE,
    export_model,
    read_trainer_state,
    restore_rng_states,
    rng_states,
    write_trainer_state,
)
from .data import collate, dataset_identity, encode_batch
from .latent_cache import LatentCache, MemoryLatentCache, vae_fingerprint
from .loss import FlowMatchingLoss, draw_flow_noise, latent_valid_mask, training_condition
from .optimisation import EMA, make_optimizer, resolve_mixed_precision, warmup_schedule
from .progress import ProgressBar, ScalarLog


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


def only_unet_trains(model: DepthFM, device, gradient_checkpointing: bool = False) -> DepthFM:
    """``model`` in training mode with its UNet trainable and its VAE frozen (eval mode, on ``device``)."""
    model.train()
    model.vae.requires_grad_(False).eval()
    model.unet.requires_grad_(True)
    model.vae.to(device)
    if gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    return model


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
        self.model = only_unet_trains(model, self.accelerator.device, config.gradient_checkpointing)
        self.dataset = dataset
        optimizer = make_optimizer([p for p in model.unet.parameters() if p.requires_grad], config,
                                   self.accelerator.device)
        self.scheduler = warmup_schedule(optimizer, config.lr_warmup_steps)  # not prepared: see warmup_schedule
        self.loss_module, self.optimizer = self.accelerator.prepare(FlowMatchingLoss(model, config.sigma_min),
                                                                    optimizer)
        self.ema = EMA(model.unet, config.ema_decay) if config.ema_decay > 0 else None
        self.step = 0
        self._scalars: ScalarLog | None = None  # opened by the first train() on the main process
        self.disk_cache = self._disk_latent_cache() if config.latent_cache_dir else None
        self.latent_cache = self.disk_cache or (MemoryLatentCache() if config.cache_latents else None)

    def _disk_latent_cache(self) -> LatentCache:
        """The on-disk latent cache of ``config.latent_cache_dir``, keyed by this VAE and dataset."""
        meta = {"vae": vae_fingerprint(self.model), "num_samples": len(self.dataset),
                "dataset": dataset_identity(self.dataset)}
        return LatentCache(self.config.latent_cache_dir, meta, rank=self.accelerator.process_index)

    # ------------------------------------------------------------------------------------------- loop
    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def _micro_generator(self, micro_step: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed_of(self.config.seed, micro_step, self.accelerator.process_index))

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
        cfg, acc = self.config, self.accelerator
        sampler = step_batch_sampler(self.dataset, cfg.batch_size, cfg.seed, self.step * cfg.grad_accum_steps,
                                     acc.process_index, acc.num_processes)
        return DataLoader(IndexedDataset(self.dataset), batch_sampler=sampler, num_workers=cfg.num_workers,
                          collate_fn=collate)

    def train(self, max_steps: int | None = None) -> list[float]:
        """Run optimizer steps until ``max_steps`` (default ``config.max_steps``); returns this call's step losses."""
        cfg = self.config
        max_steps = cfg.max_steps if max_steps is None else max_steps
        losses: list[float] = []
        if self.step >= max_steps:
            return losses
        scalars = self._scalar_log()
        batches = iter(self._loader())
        bar = ProgressBar(cfg.progress and self.is_main, max_steps, initial=self.step)
        self.loss_module.train()
        while self.step < max_steps:
            loss = self._optimizer_step(batches)
            losses.append(loss)
            if scalars is not None:
                scalars.log(self.step, {"train/loss": loss, "train/lr": self.scheduler.get_last_lr()[0]})
            bar.update(loss)
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < max_steps:
                self.save_checkpoint()
        bar.close()
        if scalars is not None:
            scalars.flush()
        return losses

    def _optimizer_step(self, batches: Iterator[dict]) -> float:
        """One optimizer step: ``grad_accum_steps`` micro batches (gradients synchronised across processes on the
        last one only), the clipped update, the LR schedule and the EMA. Returns the step's loss."""
        cfg, acc = self.config, self.accelerator
        total = 0.0
        for micro in range(cfg.grad_accum_steps):
            batch = next(batches)
            gen = self._micro_generator(self.step * cfg.grad_accum_steps + micro)
            sync = micro == cfg.grad_accum_steps - 1
            ctx = acc.no_sync(self.loss_module) if not sync and acc.num_processes > 1 else contextlib.nullcontext()
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
        return total

    def _scalar_log(self) -> ScalarLog | None:
        """TensorBoard scalars in ``output_dir/logs``, on the main process only and when ``config.tensorboard``."""
        if self._scalars is None and self.config.tensorboard and self.is_main:
            self._scalars = ScalarLog(Path(self.config.output_dir) / "logs", self.config.log_every)
        return self._scalars

    # -------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, folder: str | Path | None = None) -> Path:
        """Trainer state (UNet, optimizer, LR schedule, EMA, step, RNG states) to ``folder`` (default output/last)."""
        folder = Path(folder) if folder is not None else Path(self.config.output_dir) / "last"
        self.accelerator.wait_for_everyone()
        if self.is_main:
            write_trainer_state(folder, self._state())
        self.accelerator.wait_for_everyone()
        return folder

    def _state(self) -> dict[str, Any]:
        return {
            "unet": self.accelerator.unwrap_model(self.loss_module).model.unet.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "step": self.step,
            "config": asdict(self.config),
            "rng": rng_states(),
        }

    def load_checkpoint(self, folder: str | Path) -> int:
        """Restore a :meth:`save_checkpoint` folder; returns the step it resumes from."""
        state = read_trainer_state(folder)
        try:
            self.model.unet.load_state_dict(state["unet"])
        except RuntimeError as exc:
            raise CheckpointError(f"{Path(folder) / TRAINER_STATE_FILE} holds a UNet of another shape: {exc}") from exc
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        restore_rng_states(state["rng"])
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
