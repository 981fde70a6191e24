"""depthfm-eval: AbsRel and delta1 (least-squares scale and shift in log space) vs NFE, like the paper's Table 3.

Data: a folder (``rgb/``, ``depth/`` .npy metres or 16-bit .png, optional ``mask/``; see
``depthfm_ros.training.data.FolderDepthDataset``) or ``--synthetic N`` held-out synthetic scenes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import DepthFMError
from ..evaluation.completion import completion_table, evaluate_completion
from ..evaluation.metrics import ALIGNMENTS, PROTOCOLS
from ..evaluation.steps import evaluate_num_steps
from ..files import writable_file
from ..models.completion import DepthCompletionFM
from ..training.data import FolderDepthDataset, SyntheticDepthDataset
from .common import add_model_args, pipeline_from_args, run_cli


def dataset_from_args(args: argparse.Namespace):
    if args.synthetic:
        h, w = args.synthetic_size
        return SyntheticDepthDataset(args.synthetic, h, w, seed=args.synthetic_seed)
    if args.data is None:
        raise DepthFMError("give a dataset folder (--data) or --synthetic N")
    return FolderDepthDataset(args.data, png_depth_scale_m=args.png_depth_scale)


def prior_dataset_from_args(args: argparse.Namespace):
    """The training set whose mean-depth prior is scored beside the model (None: no prior)."""
    if args.prior_synthetic:
        return SyntheticDepthDataset(args.prior_synthetic, *args.synthetic_size, seed=args.prior_seed)
    if args.prior_data:
        return FolderDepthDataset(args.prior_data, png_depth_scale_m=args.png_depth_scale)
    return None


def pipeline_for(args: argparse.Namespace):
    """``nfe -> pipeline`` of the model arguments with ``num_steps = nfe``."""
    def build(nfe: int):
        return pipeline_from_args(argparse.Namespace(**{**vars(args), "num_steps": nfe}))
    return build


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
    g.add_argument("--alignment", choices=[*ALIGNMENTS, "both"], default="log",
                   help="log: least squares log gt ~ a*z + b; depth: Marigold's gt ~ s*d + t on the relative "
                        "output, clipped to the depth cap; both: one table each")
    g.add_argument("--protocol", choices=sorted(PROTOCOLS), default="none",
                   help="crop and depth cap: nyuv2 (Eigen crop, 1e-3..10 m), kitti (Garg crop, 1e-3..80 m)")
    g.add_argument("--prior-synthetic", type=int, default=0, metavar="N",
                   help="also score the mean-depth prior (the mean training log-depth map, ignoring the image) of N "
                        "synthetic training scenes (seed --prior-seed) beside the model")
    g.add_argument("--prior-seed", type=int, default=0, help="seed of the prior's scenes (training uses 0)")
    g.add_argument("--prior-data", type=Path, help="or: the mean-depth prior of this training folder")
    g.add_argument("--completion", type=Path, metavar="FOLDER",
                   help="evaluate depth completion instead: this DepthCompletionFM folder beside the plain model "
                        "(--checkpoint / --tiny-model) + log fit, + the non-learned completion, and the points alone "
                        "(nearest fill, IP-Basic), on pixels not given")
    g.add_argument("--patterns", nargs="+", choices=["uniform", "rings"], default=["uniform", "rings"],
                   help="sparse patterns for --completion")
    g.add_argument("--sparse-density", type=float, default=0.02, help="fraction of valid pixels given (--completion)")
    g.add_argument("--json", type=Path, help="also write the results as JSON here")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    nfes = args.nfe or [args.num_steps]
    if any(n < 1 for n in nfes):
        parser.error("--nfe values must be >= 1")
    if args.json:
        writable_file(args.json, "--json")
    dataset = dataset_from_args(args)
    if args.completion:
        return completion_main(args, dataset)
    alignments = list(ALIGNMENTS) if args.alignment == "both" else [args.alignment]
    report = evaluate_num_steps(pipeline_for(args), nfes, dataset, alignments, args.protocol,
                                prior_dataset_from_args(args), progress=not args.quiet)
    print(report.text(args.ensemble_size, args.processing_resolution))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.json_payload(), indent=2))
    return 0


def completion_main(args: argparse.Namespace, dataset) -> int:
    model = DepthCompletionFM.from_pretrained(args.completion)
    pipe = pipeline_from_args(args) if (args.checkpoint or args.tiny_model or args.engine) else None
    results = {pattern: evaluate_completion(dataset, pattern, args.sparse_density, completion_model=model,
                                            pipeline=pipe, num_steps=args.num_steps,
                                            ensemble_size=args.ensemble_size,
                                            processing_resolution=args.processing_resolution, seed=max(args.seed, 0),
                                            protocol=args.protocol)
               for pattern in args.patterns}
    print(f"{len(dataset)} images, {100 * args.sparse_density:g} % of the valid pixels given, scored on the others; "
          f"completion model {args.completion} (encoding {model.sparse_encoding})")
    print(completion_table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
