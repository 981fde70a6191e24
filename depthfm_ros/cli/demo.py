"""depthfm-demo: depthfm_node in a real ROS 2 graph (in this process) fed by a synthetic moving camera.

A camera node publishes a rendered scene (camera driving forward through boxes) on
``/depthfm_demo/camera/image_raw`` and ``.../camera_info`` at ``--rate`` Hz; the node publishes
``/depthfm/relative_depth`` and ``/depthfm/relative_uncertainty``; a subscriber collects ``--frames`` outputs and writes
colour-mapped PNGs (input, depth, uncertainty, and a labelled preview of the three) to ``--output``. Without
--checkpoint the model is the tiny random one: the plumbing is real, the depth is not.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..files import writable_folder
from ..previews import relative_preview, write_png
from ..processing import colorize
from ..ros.demo import run_demo
from ..ros.params import parameters_from_settings
from .common import add_model_args, run_cli, settings_from_args


def _parse(argv):
    parser = argparse.ArgumentParser(prog="depthfm-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, ensemble=2)
    parser.set_defaults(processing_resolution=256)  # seconds, not minutes, on 2 CPU cores
    g = parser.add_argument_group("demo")
    g.add_argument("--output", "-o", type=Path, default=Path("depthfm_demo"), help="folder for the PNGs")
    g.add_argument("--frames", type=int, default=8, help="depth outputs to collect")
    g.add_argument("--rate", type=float, default=5.0, help="camera rate in Hz (frames beyond the node's rate drop)")
    g.add_argument("--width", type=int, default=320)
    g.add_argument("--height", type=int, default=240)
    g.add_argument("--scene-seed", type=int, default=3, help="seed of the synthetic scene")
    g.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.rate <= 0 or args.width < 8 or args.height < 8:
        parser.error("--frames >= 1, --rate > 0 and an image of at least 8x8 are needed")
    return args


def node_parameters(args: argparse.Namespace) -> dict:
    """depthfm_node parameters for the command-line model arguments (tiny unless a checkpoint/engine is given)."""
    settings = settings_from_args(args)
    if not (settings.checkpoint or settings.engine):
        settings = replace(settings, tiny_model=True)
    return {**parameters_from_settings(settings), "output_qos": "reliable", "input_qos": "reliable"}


def _main(argv=None) -> int:
    args = _parse(argv)
    writable_folder(args.output, "--output")
    run = run_demo(node_parameters(args), width=args.width, height=args.height, rate_hz=args.rate,
                   frames=args.frames, scene_seed=args.scene_seed, timeout_sec=args.timeout)
    args.output.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (rgb, depth, uncertainty) in enumerate(zip(run.rgb_hwc_u8, run.depth_hw, run.uncertainty_hw)):
        for name, image in (("rgb", rgb), ("depth", colorize(depth, 0.0, 1.0)),
                            ("uncertainty", colorize(uncertainty, 0.0)),
                            ("preview", relative_preview(rgb, depth, uncertainty, args.ensemble_size))):
            path = args.output / f"frame_{i:03d}_{name}.png"
            write_png(path, image)
            written.append(path)
    snap = run.stats
    print(f"depthfm-demo: {len(run.depth_hw)} frame(s) in {run.elapsed_sec:.1f} s; sent {run.frames_sent}, "
          f"processed {snap.processed}, dropped {snap.dropped}; mean latency {snap.latency_ms:.0f} ms, inference "
          f"{snap.inference_ms:.0f} ms", file=sys.stderr)
    if run.latencies_ms:
        print(f"depthfm-demo: end to end over DDS (image published -> depth received): p50 "
              f"{np.median(run.latencies_ms):.0f} ms, max {max(run.latencies_ms):.0f} ms", file=sys.stderr)
    print(f"depthfm-demo: wrote {len(written)} PNG(s) to {args.output.resolve()}")
    if not run.finished:
        print(f"depthfm-demo: timed out after {args.timeout:g} s with {len(run.depth_hw)} of {args.frames} frame(s)",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
