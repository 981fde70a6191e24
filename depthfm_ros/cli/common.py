"""Arguments and set-up shared by the command-line tools."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields, replace

from ..backends import Backend, load_backend
from ..errors import DepthFMError
from ..models.loading import load_model
from ..pipeline import DepthFMPipeline
from ..settings import BACKENDS, DTYPES, VAE_KINDS, ModelSettings, auto_threads


def add_checkpoint_args(group, *, tiny_help: str = "use a small RANDOM model (no weights needed): shows the "
                        "mechanics, not real depth", vae_kinds: bool = True) -> None:
    """--checkpoint/--vae/--tiny-model (+ --vae-kind/--tiny-vae): which DepthFM to load."""
    group.add_argument("--checkpoint", help="official DepthFM .ckpt, or a folder written by save_pretrained")
    group.add_argument("--vae", help="SD VAE folder in diffusers format (config.json + weights), with an "
                       "official .ckpt")
    group.add_argument("--tiny-model", action="store_true", help=tiny_help)
    group.add_argument("--rescale-attention", action="store_true",
                       help="the official code's attention without xformers (self-attention scaled by "
                       "sqrt(log n / log 4n / d)); default: its xformers path, plain 1/sqrt(d)")
    if vae_kinds:
        group.add_argument("--vae-kind", choices=VAE_KINDS, default="full",
                           help="full: the SD VAE; tiny: the distilled tiny VAE (docs/tiny_vae.md), ~3x fewer FLOPs")
        group.add_argument("--tiny-vae", help="tiny VAE folder from depthfm-distill-vae (implies --vae-kind tiny)")


def add_sampling_args(group, *, ensemble: int = 1, what: str = "") -> None:
    """--num-steps (alias --steps) and --ensemble-size (alias --ensemble): k and M, one name on every surface."""
    group.add_argument("--num-steps", "--steps", dest="num_steps", type=int, default=2,
                       help=f"Euler steps k{what} (1-2 are enough, paper Table 3); --steps is an alias")
    group.add_argument("--ensemble-size", "--ensemble", dest="ensemble_size", type=int, default=ensemble,
                       help=f"ensemble members M{what}; their std is the uncertainty; --ensemble is an alias")


def add_thread_args(group) -> None:
    """--torch-threads and --onnx-threads: 0 (default) = auto, OMP_NUM_THREADS or the cores minus one."""
    group.add_argument("--torch-threads", type=int, default=0,
                       help=f"torch intra-op threads (0: auto, OMP_NUM_THREADS or the cores minus one: "
                       f"{auto_threads()} here)")
    group.add_argument("--onnx-threads", type=int, default=0,
                       help=f"onnxruntime intra-op threads (0: auto, as --torch-threads: {auto_threads()} here)")


def add_model_args(parser: argparse.ArgumentParser, *, ensemble: int = 1) -> None:
    """Checkpoint arguments, --backend/--engine, --num-steps/--ensemble-size/--processing-resolution/--dtype/--seed."""
    g = parser.add_argument_group("model")
    add_checkpoint_args(g)
    g.add_argument("--backend", default="torch", choices=BACKENDS, help="inference engine (default: torch)")
    g.add_argument("--engine", help="exported .onnx / TensorRT .engine for the onnxruntime/tensorrt backends")
    add_sampling_args(g, ensemble=ensemble)
    g.add_argument("--processing-resolution", type=int, default=512,
                   help="longest side the model sees, multiple of 64 (0: input size)")
    g.add_argument("--dtype", default="auto", choices=DTYPES,
                   help="auto: fp16 on tensorrt (as depthfm-export builds engines), fp32 elsewhere")
    add_thread_args(g)
    g.add_argument("--seed", type=int, default=0, help="noise seed (reproducible ensembles); -1: fresh entropy")


def _seed(seed: int | None) -> int | None:
    return None if seed is None or seed < 0 else seed


def settings_from_args(args: argparse.Namespace) -> ModelSettings:
    """The :class:`ModelSettings` the model arguments describe (what the node builds from its parameters); a tool
    without some of the arguments gets ModelSettings' own defaults for them."""
    given = {f.name: getattr(args, f.name) for f in fields(ModelSettings) if hasattr(args, f.name)}
    if "seed" in given:
        given["seed"] = _seed(given["seed"])
    return ModelSettings(**given)


def model_from_args(args: argparse.Namespace, seed: int = 0):
    """The DepthFM the checkpoint arguments describe (:func:`depthfm_ros.models.loading.load_model`)."""
    return load_model(replace(settings_from_args(args), seed=seed))


def backend_from_args(args: argparse.Namespace) -> Backend:
    """The backend the model arguments describe (:func:`depthfm_ros.backends.load_backend`)."""
    settings = settings_from_args(args)
    settings.apply_torch_threads()
    return load_backend(settings)


def pipeline_from_args(args: argparse.Namespace) -> DepthFMPipeline:
    """Backend + pipeline of the model arguments (warns on stderr when the ensemble cannot spread)."""
    pipe = DepthFMPipeline.from_settings(settings_from_args(args), backend_from_args(args))
    print(f"depthfm: {pipe.backend.describe()}", file=sys.stderr)  # the threads too
    if pipe.identical_members_warning():
        print(f"warning: {pipe.identical_members_warning()}", file=sys.stderr)
    return pipe


def run_cli(main_body, argv=None) -> int:
    """Run a command body; a DepthFMError becomes one clear line on stderr and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(main_body(argv) or 0)
    except DepthFMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
