"""depthfm-train: fine-tune DepthFM (or its depth-completion variant) with flow matching.

Runs as is on a CPU, a GPU, or under ``torchrun`` / ``accelerate launch`` (DDP). Writes
``OUTPUT/last/`` (resumable trainer state; rerunning the same command resumes), ``OUTPUT/init/`` (the starting
model, for before/after evaluation), ``OUTPUT/export/depthfm.ckpt`` (official format) and
``OUTPUT/export/diffusers/`` (``DepthFM.from_pretrained`` folder, usable with ``--checkpoint``), and TensorBoard
logs in ``OUTPUT/logs``. See docs/training.md for a CPU recipe.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import DepthFMError
from ..files import writable_folder
from ..training.data import DEFAULT_DISPARITY_RANGE, TEACHER_OUTPUTS
from .common import run_cli


def build_model(args: argparse.Namespace):
    """The model training starts from (:func:`depthfm_ros.training.trainer.initial_model`)."""
    from ..training.initialisation import initial_model

    return initial_model(args.init, seed=args.seed, noising_step=args.noising_step, sd=args.sd, vae=args.vae,
                         empty_text_embedding=args.empty_text_embedding, checkpoint=args.checkpoint,
                         tiny_channels=args.tiny_channels)


def build_dataset(args: argparse.Namespace):
    """The training set: ``--synthetic`` and every ``--data FOLDER[:HxW][:WEIGHT]`` (each its own size and weight;
    one dataset per micro batch), plus the teacher mixture on the first of them."""
    from ..training import data

    size = tuple(args.size) if args.size else None
    groups: list = []  # (dataset, weight)
    if args.synthetic:
        h, w = size or (64, 64)
        groups.append((data.SyntheticDepthDataset(args.synthetic, h, w, seed=args.synthetic_seed),
                       args.synthetic_weight))
    for spec in args.data or []:
        folder, folder_size, weight, crop = data.parse_data_spec(spec)
        groups.append((data.FolderDepthDataset(folder, folder_size or size, args.png_depth_scale, crop=crop), weight))
    if not groups:
        raise DepthFMError("give training data: --synthetic N and/or --data FOLDER (repeatable)")
    if args.teacher:
        if not args.teacher_images:
            raise DepthFMError("--teacher needs --teacher-images (a folder of unlabelled images)")
        first = groups[0][0]
        teacher_size = first.size_hw or ((first.height, first.width) if isinstance(first, data.SyntheticDepthDataset)
                                         else None)
        teacher = data.TeacherDepthDataset(args.teacher_images, data.load_callable(args.teacher), args.teacher_output,
                                           teacher_size, disparity_range=args.teacher_disparity_range)
        groups[0] = data.mixture_dataset(first, teacher, args.k, args.seed), groups[0][1]
    if len(groups) == 1:
        return groups[0][0]
    return data.GroupedDataset([d for d, _ in groups], [w for _, w in groups])


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


def _main(argv=None) -> int:
    from ..training.trainer import TrainConfig

    defaults = TrainConfig()
    p = argparse.ArgumentParser(prog="depthfm-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("initialisation")
    g.add_argument("--init", choices=["sd", "depthfm", "tiny"], default="depthfm",
                   help="sd: Stable Diffusion UNet (conv_in 4->8); depthfm: a DepthFM checkpoint; tiny: small random")
    g.add_argument("--sd", help="SD 2.1 folder (with unet/ and vae/) or a diffusers UNet folder")
    g.add_argument("--empty-text-embedding", help=".npy (1, 77, d): the text encoder's output for the empty prompt")
    g.add_argument("--checkpoint", help="DepthFM official .ckpt (with --vae) or model folder, for --init depthfm")
    g.add_argument("--vae", help="SD VAE folder (diffusers AutoencoderKL)")
    g.add_argument("--tiny-channels", type=int, default=None,
                   help="--init tiny: UNet base channels (default 32; multiples of 16)")
    g.add_argument("--noising-step", type=int, default=400, help="noise augmentation of the image latent")
    g.add_argument("--vae-warmup-steps", type=int, default=0,
                   help="tiny only: first fit the random tiny VAE as an autoencoder of images and depth")
    g.add_argument("--vae-warmup-batch-size", type=int, default=4)
    g = p.add_argument_group("data")
    g.add_argument("--synthetic", type=int, default=0, help="N synthetic scenes with exact depth")
    g.add_argument("--synthetic-seed", type=int, default=0)
    g.add_argument("--synthetic-weight", type=float, default=None,
                   help="sampling weight of the synthetic set beside --data sets (default: its size)")
    g.add_argument("--data", action="append", metavar="FOLDER[:HxW][:WEIGHT][:crop]",
                   help="folder dataset: rgb/, depth/ (.npy m or 16-bit .png), optional mask/; repeat for several, "
                        "each with its own size (default --size), sampling weight (default: its size) and ':crop' "
                        "(centre crop to the size's aspect instead of squashing)")
    g.add_argument("--png-depth-scale", type=float, default=1e-3, help="metres per unit of 16-bit depth PNGs")
    g.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="training size (multiples of 64)")
    g.add_argument("--teacher", help="module:callable, rgb_hwc_u8 -> (H, W) depth/disparity, labels --teacher-images")
    g.add_argument("--teacher-images", type=Path, help="folder of unlabelled images D^u")
    g.add_argument("--teacher-output", choices=list(TEACHER_OUTPUTS), default="depth",
                   help="what the teacher returns; affine_disparity: disparity up to scale AND shift (Depth "
                        "Anything, MiDaS), normalised in disparity space before it becomes depth")
    g.add_argument("--teacher-disparity-range", type=float, default=DEFAULT_DISPARITY_RANGE,
                   help="affine_disparity: the far/near depth ratio assumed at the 2nd/98th disparity percentiles")
    g.add_argument("--k", type=float, default=0.1, help="part(D^u, k): add k·|D| teacher-labelled samples "
                   "(the paper's best, 0.1)")
    g = p.add_argument_group("completion")
    g.add_argument("--completion", action="store_true", help="train the depth-completion model (sparse depth input)")
    g.add_argument("--sparse-density", type=float, default=0.02, help="fraction of valid pixels given as sparse input")
    g = p.add_argument_group("optimisation")
    g.add_argument("--max-steps", "--steps", dest="max_steps", type=int, default=defaults.max_steps,
                   help="optimizer steps (--steps is an alias)")
    g.add_argument("--batch-size", type=int, default=defaults.batch_size, help="per process and micro step")
    g.add_argument("--grad-accum", type=int, default=defaults.grad_accum_steps)
    g.add_argument("--lr", type=float, default=defaults.lr)
    g.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    g.add_argument("--lr-warmup-steps", type=int, default=defaults.lr_warmup_steps)
    g.add_argument("--ema-decay", type=float, default=defaults.ema_decay, help="0 disables the EMA")
    g.add_argument("--sigma-min", type=float, default=defaults.sigma_min)
    g.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default=defaults.mixed_precision)
    g.add_argument("--num-workers", type=int, default=0)
    g.add_argument("--cache-latents", action="store_true",
                   help="encode every sample once (in memory; with --hflip once per orientation)")
    g.add_argument("--latent-cache", type=Path, metavar="DIR",
                   help="on-disk latent cache (memory-mapped shards, bounded by disk not memory; reused on resume)")
    g.add_argument("--hflip", action="store_true", help="random horizontal flips (image, depth, mask together)")
    g.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute UNet activations in backward (less memory at 512x512, ~30 %% slower)")
    g.add_argument("--optimizer", choices=["adamw", "adamw8bit"], default="adamw",
                   help="adamw (fused kernel on CUDA) or adamw8bit (bitsandbytes, CUDA: a quarter of the state)")
    g.add_argument("--no-mask-invalid", action="store_true",
                   help="train invalid ground truth (sky, holes) as the far value instead of leaving it out")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("output")
    g.add_argument("--output", "-o", type=Path, default=Path(defaults.output_dir))
    g.add_argument("--checkpoint-every", type=int, default=0, help="save trainer state every N steps (0: at end)")
    g.add_argument("--no-resume", action="store_true", help="start over even if OUTPUT/last exists")
    g.add_argument("--no-tensorboard", action="store_true")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    writable_folder(args.output, "--output")
    if args.latent_cache:
        writable_folder(args.latent_cache, "--latent-cache")

    import torch
    from accelerate import PartialState

    from ..models.depthfm import load_vae
    from ..training.autoencoder import fit_autoencoder
    from ..training.checkpoints import TRAINER_STATE_FILE
    from ..training.trainer import Trainer

    state = PartialState(cpu=not torch.cuda.is_available())  # the process group, before any rank writes
    check_world_size(state.num_processes)
    main_process = state.is_main_process
    if main_process:
        print(f"depthfm-train: {run_description(state.num_processes, state.distributed_type.value)}, "
              f"device {state.device}")
    torch.manual_seed(args.seed)
    model = build_model(args)
    dataset = build_dataset(args)
    resume = (args.output / "last" / TRAINER_STATE_FILE).is_file() and not args.no_resume
    if args.vae_warmup_steps:
        if args.init != "tiny":
            raise DepthFMError("--vae-warmup-steps is for --init tiny only (real models keep the SD VAE frozen)")
        vae_dir = args.output / "init" / "vae"
        if main_process and not (resume and (vae_dir / "config.json").is_file()):
            losses = fit_autoencoder(model.vae, dataset, args.vae_warmup_steps, args.vae_warmup_batch_size,
                                     seed=args.seed, progress=not args.quiet)
            print(f"tiny VAE warm-up: reconstruction loss {losses[0]:.4f} -> {losses[-1]:.4f}")
            model.vae.save_pretrained(vae_dir)
        state.wait_for_everyone()  # one warm-up, on rank 0; every other rank loads its result
        if not main_process or resume:
            model.vae = load_vae(vae_dir)
    if args.completion:
        from ..models.completion import DepthCompletionFM

        if not isinstance(model, DepthCompletionFM):
            model = DepthCompletionFM.from_depthfm(model, args.sparse_density)
        model.sparse_density = args.sparse_density
    if not resume and main_process:  # one writer: under DDP every rank used to write init/ at once
        model.save_pretrained(args.output / "init")
    state.wait_for_everyone()
    config = TrainConfig(max_steps=args.max_steps, batch_size=args.batch_size, grad_accum_steps=args.grad_accum,
                         lr=args.lr, weight_decay=args.weight_decay, lr_warmup_steps=args.lr_warmup_steps,
                         ema_decay=args.ema_decay, sigma_min=args.sigma_min, mixed_precision=args.mixed_precision,
                         seed=args.seed, num_workers=args.num_workers, output_dir=str(args.output),
                         checkpoint_every=args.checkpoint_every, tensorboard=not args.no_tensorboard,
                         progress=not args.quiet, cache_latents=args.cache_latents,
                         mask_invalid=not args.no_mask_invalid, hflip=args.hflip,
                         gradient_checkpointing=args.gradient_checkpointing, optimizer=args.optimizer,
                         latent_cache_dir=str(args.latent_cache or ""))
    trainer = Trainer(model, dataset, config)
    if resume:
        print(f"resuming from step {trainer.load_checkpoint(args.output / 'last')}")
    losses = trainer.train()
    if losses and trainer.is_main:
        k = max(1, min(20, len(losses) // 5))
        print(f"loss (mean of {k} steps): {sum(losses[:k]) / k:.4f} -> {sum(losses[-k:]) / k:.4f} "
              f"over steps {trainer.step - len(losses) + 1}..{trainer.step}")
    trainer.save_checkpoint()
    paths = trainer.export(args.output / "export")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
