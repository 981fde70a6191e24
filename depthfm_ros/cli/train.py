"""depthfm-train: fine-tune DepthFM (or its depth-completion variant) with flow matching.

Runs as is on a CPU, a GPU, or under ``torchrun`` / ``accelerate launch`` (DDP). Writes
``OUTPUT/last/`` (resumable trainer state; rerunning the same command resumes), ``OUTPUT/init/`` (the starting
model, for before/after evaluation), ``OUTPUT/export/depthfm.ckpt`` (official format) and
``OUTPUT/export/diffusers/`` (``DepthFM.from_pretrained`` folder, usable with ``--checkpoint``), and TensorBoard
logs in ``OUTPUT/logs``. See docs/training.md for a CPU recipe.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from ..files import writable_folder
from ..training.data import DEFAULT_DISPARITY_RANGE, TEACHER_OUTPUTS
from ..training.run import DataSpec, ModelStart, train_run
from ..training.trainer import TrainConfig
from .common import run_cli


def _picked(cls, args: argparse.Namespace):
    """``cls`` (a dataclass) from the arguments of the same names."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def _main(argv=None) -> int:
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
    config = TrainConfig(max_steps=args.max_steps, batch_size=args.batch_size, grad_accum_steps=args.grad_accum,
                         lr=args.lr, weight_decay=args.weight_decay, lr_warmup_steps=args.lr_warmup_steps,
                         ema_decay=args.ema_decay, sigma_min=args.sigma_min, mixed_precision=args.mixed_precision,
                         seed=args.seed, num_workers=args.num_workers, output_dir=str(args.output),
                         checkpoint_every=args.checkpoint_every, tensorboard=not args.no_tensorboard,
                         progress=not args.quiet, cache_latents=args.cache_latents,
                         mask_invalid=not args.no_mask_invalid, hflip=args.hflip,
                         gradient_checkpointing=args.gradient_checkpointing, optimizer=args.optimizer,
                         latent_cache_dir=str(args.latent_cache or ""))
    paths = train_run(_picked(ModelStart, args), _picked(DataSpec, args), config, allow_resume=not args.no_resume)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
