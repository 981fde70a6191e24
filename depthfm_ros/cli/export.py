"""depthfm-export: write the ONNX graphs (fused k-step graph and/or split stages) and optionally TensorRT engines.

    depthfm-export --checkpoint depthfm-v1.ckpt --vae sd-vae --height 512 --width 640 --num-steps 2 --ensemble-size 4 \\
        --out models/depthfm_512x640 [--tensorrt --precision fp16]

See docs/backends.md for running the result on a robot.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging

from ..backends.export import OPSET, export_onnx, parse_size_range
from ..backends.tensorrt_backend import engine_for
from ..files import writable_folder
from .common import add_checkpoint_args, add_sampling_args, model_from_args, run_cli

log = logging.getLogger("depthfm_ros.cli.export")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="depthfm-export", description=__doc__.split("\n")[0])
    add_checkpoint_args(p, tiny_help="export the small RANDOM model (tests, demos)")
    p.add_argument("--height", type=int, default=512, help="processing height, multiple of 64")
    p.add_argument("--width", type=int, default=512, help="processing width, multiple of 64")
    p.add_argument("--size-range", type=parse_size_range, default=None, metavar="MINHxMINW:MAXHxMAXW",
                   help="dynamic spatial axes: one graph/engine for every multiple of 64 in the range, --height x "
                        "--width as the TensorRT optimum (e.g. 256x256:768x1024); default: that one size only")
    add_sampling_args(p, what=" baked into the fused graph")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-fused", action="store_true", help="skip the fused graph")
    p.add_argument("--no-split", action="store_true", help="skip the encoder/step/decoder graphs")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET}: TensorRT >= 8.6)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim (default: simplify if installed)")
    p.add_argument("--tensorrt", action="store_true", help="also build TensorRT engines (needs tensorrt + GPU)")
    p.add_argument("--precision", default="fp16", choices=["fp16", "fp32"], help="TensorRT engine precision")
    p.add_argument("--max-batch", type=int, default=1, help="images per call in the TensorRT profile")
    return p.parse_args(argv)


def _main(argv=None) -> int:
    args = parse_args(argv)
    writable_folder(args.out, "--out")
    model = model_from_args(args)
    simplify = not args.no_simplify and importlib.util.find_spec("onnxslim") is not None
    if not args.no_simplify and not simplify:
        log.warning("onnxslim is not installed: graphs are not simplified (pip install '.[simplify]')")
    paths = export_onnx(model, args.out, args.height, args.width, args.num_steps, args.ensemble_size,
                        fused=not args.no_fused, split=not args.no_split, opset=args.opset, simplify=simplify,
                        size_range=args.size_range)
    for kind, path in paths.items():
        print(f"{kind:8s} {path}")
    if args.tensorrt:
        for kind, path in paths.items():
            print(f"{kind:8s} {engine_for(path, args.precision, args.ensemble_size, args.max_batch)}")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
