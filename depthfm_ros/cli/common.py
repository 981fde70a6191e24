"""Arguments and set-up shared by the command-line tools."""

from __future__ import annotations

import argparse
import logging
import sys

from ..backends import BACKENDS, Backend, load_backend
from ..errors import DepthFMError


def add_checkpoint_args(group, *, tiny_help: str = "use a small RANDOM model (no weights needed): shows the "
                        "mechanics, not real depth", vae_kinds: bool = True) -> None:
    """--checkpoint/--vae/--tiny-model (+ --vae-kind/--tiny-vae): which DepthFM to load."""
    group.add_argument("--checkpoint", help="official DepthFM .ckpt, or a folder written by save_pretrained")
    group.add_argument("--vae", help="SD VAE folder in diffusers format (config.json + weights), with an official .ckpt")
    group.add_argument("--tiny-model", action="store_true", help=tiny_help)
    if vae_kinds:
        group.add_argument("--vae-kind", choices=["full", "tiny"], default="full",
                           help="full: the SD VAE; tiny: the distilled tiny VAE (docs/tiny_vae.md), ~3x fewer FLOPs")
        group.add_argument("--tiny-vae", help="tiny VAE folder from depthfm-distill-vae (implies --vae-kind tiny)")


def add_model_args(parser: argparse.ArgumentParser, *, ensemble: int = 1) -> None:
    """Checkpoint arguments, --backend/--engine, --steps/--ensemble/--processing-resolution/--dtype/--seed."""
    g = parser.add_argument_group("model")
    add_checkpoint_args(g)
    g.add_argument("--backend", default="torch", choices=BACKENDS, help="inference engine (default: torch)")
    g.add_argument("--engine", help="exported .onnx / TensorRT .engine for the onnxruntime/tensorrt backends")
    g.add_argument("--steps", type=int, default=2, help="Euler steps (1-2 are enough, paper Table 3)")
    g.add_argument("--ensemble", type=int, default=ensemble, help="ensemble members; their std is the uncertainty")
    g.add_argument("--processing-resolution", type=int, default=512,
                   help="longest side the model sees, multiple of 64 (0: input size)")
    g.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    g.add_argument("--seed", type=int, default=0, help="noise seed (reproducible ensembles)")


def _model_settings(args: argparse.Namespace) -> dict:
    return {"tiny_model": args.tiny_model, "vae_kind": getattr(args, "vae_kind", "full"),
            "tiny_vae": getattr(args, "tiny_vae", None) or None}


def model_from_args(args: argparse.Namespace, seed: int = 0):
    """The DepthFM the checkpoint arguments describe (:func:`depthfm_ros.model.load_model`)."""
    from ..model import load_model

    return load_model(args.checkpoint, args.vae, seed=seed, **_model_settings(args))


def backend_from_args(args: argparse.Namespace) -> Backend:
    """The backend the model arguments describe (:func:`depthfm_ros.backends.load_backend`)."""
    return load_backend(args.backend, checkpoint=args.checkpoint, vae=args.vae, engine=args.engine,
                        num_steps=args.steps, dtype=args.dtype, ensemble_size=getattr(args, "ensemble", None),
                        seed=args.seed, **_model_settings(args))


def run_cli(main_body, argv=None) -> int:
    """Run a command body; a DepthFMError becomes one clear line on stderr and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(main_body(argv) or 0)
    except DepthFMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
