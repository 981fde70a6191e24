"""depthfm-eval: AbsRel and delta1 (least-squares scale and shift in log space) vs NFE, like the paper's Table 3.

Data: a folder (``rgb/``, ``depth/`` .npy metres or 16-bit .png, optional ``mask/``; see
``depthfm_ros.training.data.FolderDepthDataset``) or ``--synthetic N`` held-out synthetic scenes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DepthFMError
from ..pipeline import DepthFMPipeline
from ..training.metrics import evaluate_log_aligned
from .common import add_model_args, pipeline_from_args, run_cli

METRICS = (("abs_rel", "AbsRel ↓"), ("delta1", "δ1 ↑"))


def evaluate_pipeline(pipe: DepthFMPipeline, dataset, progress: bool = True) -> dict[str, float]:
    """Mean per-image AbsRel and delta1 of the pipeline's z, each aligned to log ground truth by least squares."""
    per_image = []
    for i in tqdm(range(len(dataset)), desc=f"eval nfe={pipe.backend.num_steps}", unit="img", disable=not progress):
        rgb, depth_m, mask = dataset.pair(i)
        pred = pipe(rgb)
        gt = np.where(np.isfinite(depth_m), depth_m, 0.0)
        per_image.append(evaluate_log_aligned(pred.z_hw, gt, mask))
    return {key: float(np.mean([r[key] for r in per_image])) for key, _ in METRICS} | {"num_images": len(per_image)}


def format_table(results: dict[int, dict[str, float]]) -> str:
    """Markdown table: one column per NFE, rows AbsRel and delta1 (in %, as in the paper)."""
    nfes = sorted(results)
    lines = ["| NFE | " + " | ".join(str(n) for n in nfes) + " |", "|---" * (len(nfes) + 1) + "|"]
    for key, label in METRICS:
        lines.append(f"| {label} | " + " | ".join(f"{100 * results[n][key]:.1f}" for n in nfes) + " |")
    return "\n".join(lines)


def dataset_from_args(args: argparse.Namespace):
    from ..training.data import FolderDepthDataset, SyntheticDepthDataset

    if args.synthetic:
        h, w = args.synthetic_size
        return SyntheticDepthDataset(args.synthetic, h, w, seed=args.synthetic_seed)
    if args.data is None:
        raise DepthFMError("give a dataset folder (--data) or --synthetic N")
    return FolderDepthDataset(args.data, png_depth_scale_m=args.png_depth_scale)


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="depthfm-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    g = parser.add_argument_group("evaluation")
    g.add_argument("--data", type=Path, help="dataset folder with rgb/, depth/ and optional mask/")
    g.add_argument("--png-depth-scale", type=float, default=1e-3, help="metres per unit of 16-bit depth PNGs")
    g.add_argument("--synthetic", type=int, default=0, help="evaluate on N synthetic scenes instead of a folder")
    g.add_argument("--synthetic-seed", type=int, default=1000, help="seed of the synthetic scenes (held out: "
                   "training uses seed 0 by default)")
    g.add_argument("--synthetic-size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"))
    g.add_argument("--nfe", type=int, nargs="+", help="Euler step counts to compare (default: --steps)")
    g.add_argument("--json", type=Path, help="also write the results as JSON here")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    nfes = args.nfe or [args.num_steps]
    if any(n < 1 for n in nfes):
        parser.error("--nfe values must be >= 1")
    dataset = dataset_from_args(args)
    results = {}
    for nfe in nfes:
        args.num_steps = nfe
        pipe = pipeline_from_args(args)
        results[nfe] = evaluate_pipeline(pipe, dataset, progress=not args.quiet)
    print(f"{len(dataset)} images, ensemble {args.ensemble_size}, processing resolution {args.processing_resolution}, "
          "least-squares scale and shift in log space")
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2))
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
