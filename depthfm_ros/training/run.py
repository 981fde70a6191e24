"""One training run, as ``depthfm-train`` runs it: the process group, the starting model (and the tiny VAE's
warm-up), the training set, the loop, the export. On one CPU, one GPU or under ``torchrun`` / ``accelerate launch``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from accelerate import PartialState

from ..errors import DepthFMError
from ..models.completion import DepthCompletionFM
from ..models.depthfm import DepthFM, load_vae
from . import data
from .autoencoder import fit_autoencoder
from .checkpoints import TRAINER_STATE_FILE
from .data import DEFAULT_DISPARITY_RANGE
from .initialisation import initial_model
from .trainer import TrainConfig, Trainer


@dataclass(frozen=True)
class ModelStart:
    """The model training starts from (:func:`depthfm_ros.training.initialisation.initial_model`), the tiny VAE's
    warm-up, and whether it becomes the depth-completion model."""

    init: str = "depthfm"  # "sd" | "depthfm" | "tiny"
    seed: int = 0
    noising_step: int = 400
    sd: str | None = None
    vae: str | None = None
    empty_text_embedding: str | None = None
    checkpoint: str | None = None
    tiny_channels: int | None = None
    vae_warmup_steps: int = 0  # tiny only: fit the random tiny VAE as an autoencoder first
    vae_warmup_batch_size: int = 4
    completion: bool = False
    sparse_density: float = 0.02


@dataclass(frozen=True)
class DataSpec:
    """The training set: ``synthetic`` scenes and every ``data`` folder spec ``FOLDER[:HxW][:WEIGHT][:crop]``
    (:func:`depthfm_ros.training.data.parse_data_spec`), plus the teacher mixture on the first of them."""

    synthetic: int = 0
    synthetic_seed: int = 0
    synthetic_weight: float | None = None
    data: tuple[str, ...] | list[str] | None = None
    png_depth_scale: float = 1e-3
    size: tuple[int, int] | list[int] | None = None
    teacher: str | None = None  # module:callable
    teacher_images: Path | None = None
    teacher_output: str = "depth"
    teacher_disparity_range: float = DEFAULT_DISPARITY_RANGE
    k: float = 0.1
    seed: int = 0


def build_model(start: ModelStart) -> DepthFM:
    """The model training starts from (:func:`depthfm_ros.training.initialisation.initial_model`)."""
    return initial_model(start.init, seed=start.seed, noising_step=start.noising_step, sd=start.sd, vae=start.vae,
                         empty_text_embedding=start.empty_text_embedding, checkpoint=start.checkpoint,
                         tiny_channels=start.tiny_channels)


def build_dataset(spec: DataSpec):
    """The training set ``spec`` describes: each source its own size and weight (one dataset per micro batch)."""
    size = tuple(spec.size) if spec.size else None
    groups: list = []  # (dataset, weight)
    if spec.synthetic:
        h, w = size or (64, 64)
        groups.append((data.SyntheticDepthDataset(spec.synthetic, h, w, seed=spec.synthetic_seed),
                       spec.synthetic_weight))
    for text in spec.data or []:
        folder, folder_size, weight, crop = data.parse_data_spec(text)
        groups.append((data.FolderDepthDataset(folder, folder_size or size, spec.png_depth_scale, crop=crop), weight))
    if not groups:
        raise DepthFMError("give training data: --synthetic N and/or --data FOLDER (repeatable)")
    if spec.teacher:
        groups[0] = _with_teacher(groups[0][0], spec), groups[0][1]
    if len(groups) == 1:
        return groups[0][0]
    return data.GroupedDataset([d for d, _ in groups], [w for _, w in groups])


def _with_teacher(first, spec: DataSpec):
    """``first`` mixed with k·|first| teacher-labelled images, at ``first``'s size."""
    if not spec.teacher_images:
        raise DepthFMError("--teacher needs --teacher-images (a folder of unlabelled images)")
    teacher_size = first.size_hw or ((first.height, first.width) if isinstance(first, data.SyntheticDepthDataset)
                                     else None)
    teacher = data.TeacherDepthDataset(spec.teacher_images, data.load_callable(spec.teacher), spec.teacher_output,
                                       teacher_size, disparity_range=spec.teacher_disparity_range)
    return data.mixture_dataset(first, teacher, spec.k, spec.seed)


def launcher_processes(parent_cmdline: list[str]) -> int | None:
    """Processes an ``accelerate launch`` parent command line asked for (``--num_processes N``), else None."""
    if not any(Path(part).name == "accelerate" for part in parent_cmdline[:2]) or "launch" not in parent_cmdline:
        return None
    for i, part in enumerate(parent_cmdline):
        for flag in ("--num_processes", "--num-processes"):
            if part == flag and i + 1 < len(parent_cmdline):
                return int(parent_cmdline[i + 1])
            if part.startswith(flag + "="):
                return int(part.split("=", 1)[1])
    return None


def check_world_size(world_size: int, parent_cmdline: list[str] | None = None) -> None:
    """Refuse the silent single-process run ``accelerate launch --cpu --num_processes N`` gives (its CPU path is the
    simple launcher: one process, no DDP)."""
    if parent_cmdline is None:
        try:
            raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
        except OSError:
            return
        parent_cmdline = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    asked = launcher_processes(parent_cmdline)
    if asked is not None and asked > world_size:
        raise DepthFMError(f"accelerate launch asked for {asked} processes but this run has {world_size}: on a CPU "
                           "accelerate starts a single process. Use torchrun --standalone --nproc_per_node "
                           f"{asked} -m depthfm_ros.cli.train ... (gloo) instead")


def run_description(num_processes: int, distributed_type: str) -> str:
    """How the run is spread, in words: accelerate's DistributedType 'NO' is one process without DDP."""
    how = "not distributed (no DDP)" if distributed_type == "NO" else f"distributed ({distributed_type})"
    return f"{num_processes} process(es), {how}"


def warm_up_tiny_vae(model: DepthFM, dataset, start: ModelStart, output: Path, resume: bool, state: PartialState,
                     progress: bool, log: Callable[[str], None]) -> None:
    """Fit the random tiny VAE as an autoencoder of images and depth, once, on rank 0 (saved to ``output/init/vae``);
    every other rank, and a resumed run, loads that result."""
    if start.init != "tiny":
        raise DepthFMError("--vae-warmup-steps is for --init tiny only (real models keep the SD VAE frozen)")
    vae_dir = output / "init" / "vae"
    if state.is_main_process and not (resume and (vae_dir / "config.json").is_file()):
        losses = fit_autoencoder(model.vae, dataset, start.vae_warmup_steps, start.vae_warmup_batch_size,
                                 seed=start.seed, progress=progress)
        log(f"tiny VAE warm-up: reconstruction loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        model.vae.save_pretrained(vae_dir)
    state.wait_for_everyone()
    if not state.is_main_process or resume:
        model.vae = load_vae(vae_dir)


def as_completion_model(model: DepthFM, sparse_density: float) -> DepthCompletionFM:
    """The depth-completion model of ``model`` (kept when it already is one), trained at ``sparse_density``."""
    if not isinstance(model, DepthCompletionFM):
        model = DepthCompletionFM.from_depthfm(model, sparse_density)
    model.sparse_density = sparse_density
    return model


def train_run(start: ModelStart, spec: DataSpec, config: TrainConfig, allow_resume: bool = True,
              log: Callable[[str], None] = print) -> dict[str, Path]:
    """Train as ``depthfm-train`` does: ``config.output_dir``/last (resumable state; a run with that state resumes
    it unless ``allow_resume`` is False), /init (the starting model), /export (official .ckpt and diffusers
    folder). Returns the exported paths by kind."""
    output = Path(config.output_dir)
    state = PartialState(cpu=not torch.cuda.is_available())  # the process group, before any rank writes
    check_world_size(state.num_processes)
    if state.is_main_process:
        log(f"depthfm-train: {run_description(state.num_processes, state.distributed_type.value)}, "
            f"device {state.device}")
    torch.manual_seed(start.seed)
    model = build_model(start)
    dataset = build_dataset(spec)
    resume = (output / "last" / TRAINER_STATE_FILE).is_file() and allow_resume
    if start.vae_warmup_steps:
        warm_up_tiny_vae(model, dataset, start, output, resume, state, config.progress, log)
    if start.completion:
        model = as_completion_model(model, start.sparse_density)
    if not resume and state.is_main_process:  # one writer: under DDP every rank used to write init/ at once
        model.save_pretrained(output / "init")
    state.wait_for_everyone()
    trainer = Trainer(model, dataset, config)
    if resume:
        log(f"resuming from step {trainer.load_checkpoint(output / 'last')}")
    losses = trainer.train()
    if losses and trainer.is_main:
        k = max(1, min(20, len(losses) // 5))
        log(f"loss (mean of {k} steps): {sum(losses[:k]) / k:.4f} -> {sum(losses[-k:]) / k:.4f} "
            f"over steps {trainer.step - len(losses) + 1}..{trainer.step}")
    trainer.save_checkpoint()
    return trainer.export(output / "export")
