"""depthfm-distill-vae: distil the tiny VAE (TAESD architecture, 1-channel depth decoder) from a DepthFM's SD VAE.

    depthfm-distill-vae --checkpoint depthfm.ckpt --vae sd-vae/ --images ~/robot_frames --output tiny_out
    depthfm-distill-vae --tiny-model --synthetic 64 --max-steps 200 --output /tmp/tiny   # mechanics, no weights

Writes ``OUTPUT/tiny_vae/`` (use it with ``--tiny-vae OUTPUT/tiny_vae`` / ROS parameter ``tiny_vae``) and the
resumable ``OUTPUT/distill_state.pt``; rerunning the same command continues from there.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, fields

from ..errors import DepthFMError
from ..files import writable_folder
from ..models.tiny_vae import TINY_TEST_CONFIG, build_tiny_vae, from_taesd
from ..training.distill import DistillConfig, ImageFolderDataset, SyntheticImageDataset, distill
from .common import add_checkpoint_args, model_from_args, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="depthfm-distill-vae", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    m = p.add_argument_group("teacher")
    add_checkpoint_args(m, tiny_help="a small RANDOM teacher: shows the mechanics only", vae_kinds=False)
    d = p.add_argument_group("data")
    d.add_argument("--images", help="folder of training images (recursive; any size, random square crops)")
    d.add_argument("--synthetic", type=int, default=0, help="use N synthetic ray-cast scenes instead of --images")
    s = p.add_argument_group("student")
    s.add_argument("--arch", choices=["taesd", "tiny"], default="taesd",
                   help="taesd: TAESD's own size (default); tiny: the narrow test size")
    s.add_argument("--init-taesd", help="start from a local pretrained RGB TAESD folder (e.g. madebyollin/taesd)")
    t = p.add_argument_group("training")
    defaults = DistillConfig()
    for f in fields(DistillConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "mixed_precision":
            t.add_argument(flag, default=f.default, choices=["no", "fp16", "bf16"])
        else:
            t.add_argument(flag, type=type(getattr(defaults, f.name)), default=f.default)
    t.add_argument("--output", required=True, help="output folder (tiny_vae/ + distill_state.pt)")
    t.add_argument("--device", choices=["auto", "cpu"], default="auto", help="auto: GPU when there is one")
    t.add_argument("--no-resume", action="store_true", help="start over even if OUTPUT has a training state")
    t.add_argument("--no-progress", action="store_true")
    return p


def _body(argv=None) -> int:
    args = build_parser().parse_args(argv)
    writable_folder(args.output, "--output")
    config = DistillConfig(**{f.name: getattr(args, f.name) for f in fields(DistillConfig)})
    teacher = model_from_args(args, seed=config.seed)  # the SD VAE: the teacher of the tiny one
    if args.synthetic > 0:
        dataset = SyntheticImageDataset(args.synthetic, config.resolution, seed=config.seed)
    elif args.images:
        dataset = ImageFolderDataset(args.images, config.resolution, seed=config.seed)
    else:
        raise DepthFMError("give --images FOLDER or --synthetic N")
    if args.init_taesd:
        from diffusers import AutoencoderTiny

        student = from_taesd(AutoencoderTiny.from_pretrained(args.init_taesd, local_files_only=True))
    else:
        student = build_tiny_vae(TINY_TEST_CONFIG if args.arch == "tiny" else None, seed=config.seed)
    print(f"distilling {sum(p.numel() for p in student.parameters()) / 1e6:.2f} M-parameter tiny VAE from "
          f"{sum(p.numel() for p in teacher.vae.parameters()) / 1e6:.1f} M SD VAE on {len(dataset)} images; "
          f"{asdict(config)}", file=sys.stderr)
    history = distill(teacher, student, dataset, args.output, config, resume=not args.no_resume,
                      device="cpu" if args.device == "cpu" else None, progress=not args.no_progress)
    if history:
        n = max(1, min(20, len(history) // 5))
        first = sum(h["total"] for h in history[:n]) / n
        last = sum(h["total"] for h in history[-n:]) / n
        print(f"loss {first:.4f} -> {last:.4f} over {len(history)} steps; tiny VAE in {args.output}/tiny_vae")
    return 0


def main(argv=None) -> int:
    return run_cli(_body, argv)


if __name__ == "__main__":
    sys.exit(main())
