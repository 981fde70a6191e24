#!/usr/bin/env python3
"""Write one synthetic scene (exact depth) as an RGB PNG and its depth in metres (.npy): scene ``--index`` of the
synthetic set ``--seed``, as depthfm-train --synthetic (seed 0) and depthfm-eval --synthetic (seed 1000) draw it.

The README's preview is scene (1000, 3) at 256x192, held out from training:

    python scripts/synthetic_scene.py --seed 1000 --index 3 --size 256x192 -o scene_1000_3.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from depthfm_ros.errors import DepthFMError
from depthfm_ros.files import writable_file
from depthfm_ros.previews import write_png
from depthfm_ros.training.data import SyntheticDepthDataset


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1000, help="seed of the synthetic set (1000: the held-out scenes)")
    p.add_argument("--index", type=int, default=0, help="scene number within the set")
    p.add_argument("--size", default="256x192", help="WIDTHxHEIGHT")
    p.add_argument("--output", "-o", type=Path, default=Path("scene.png"),
                   help="RGB PNG; the depth goes beside it as <name>_depth_m.npy")
    args = p.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        writable_file(args.output, "--output")
        rgb, depth_m, _ = SyntheticDepthDataset(args.index + 1, height, width, seed=args.seed).pair(args.index)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        write_png(args.output, rgb)
        depth_path = args.output.with_name(args.output.stem + "_depth_m.npy")
        np.save(depth_path, depth_m.astype(np.float32))
    except (DepthFMError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"scene ({args.seed}, {args.index}), {width}x{height}: {args.output}, {depth_path} "
          f"(depth {np.nanmin(depth_m):.2f}..{np.nanmax(depth_m):.2f} m)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
