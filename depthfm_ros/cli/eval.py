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
from ..evaluation.metrics import ALIGNMENTS, PROTOCOLS, evaluate
from ..files import writable_file
from ..geometry.masks import finite_depth_mask
from ..pipeline import DepthFMPipeline
from .common import add_model_args, pipeline_from_args, run_cli

METRICS = (("abs_rel", "AbsRel ↓"), ("delta1", "δ1 ↑"))


def evaluate_pipeline(pipe: DepthFMPipeline, dataset, progress: bool = True, alignments=("log",),
                      protocol: str = "none") -> dict[str, dict[str, float]]:
    """Mean per-image AbsRel and delta1 of the pipeline's z for each alignment ('log': least squares to log ground
    truth; 'depth': Marigold's depth-space fit of the relative output), inside ``protocol``'s crop and depth cap."""
    return score(lambda rgb, gt: pipe(rgb).z_hw, dataset, alignments, protocol,
                 tqdm(total=len(dataset), desc=f"eval nfe={pipe.backend.num_steps}", unit="img", disable=not progress))


def score(predict_z, dataset, alignments=("log",), protocol: str = "none", bar=None) -> dict[str, dict]:
    """``predict_z(rgb, gt_hw_m) -> z_hw`` scored on every pair of ``dataset``; per alignment the mean of each
    metric, the image count and the per-image AbsRel (for paired comparisons)."""
    per_image: dict[str, list] = {a: [] for a in alignments}
    for i in range(len(dataset)):
        rgb, depth_m, mask = dataset.pair(i)
        gt = np.where(np.isfinite(depth_m), depth_m, 0.0)
        z = predict_z(rgb, gt)
        for alignment in alignments:
            per_image[alignment].append(evaluate(z, gt, mask, alignment, protocol))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return {a: {key: float(np.mean([r[key] for r in rows])) for key, _ in METRICS}
            | {"num_images": len(rows), "abs_rel_per_image": [float(r["abs_rel"]) for r in rows]}
            for a, rows in per_image.items()}


def mean_log_depth_prior(dataset) -> np.ndarray:
    """The mean training log-depth map (H, W) of ``dataset``'s pairs (valid pixels only): a "model" that ignores the
    image. A trained model that does not beat it has not learnt to read images."""
    import cv2

    total, count, shape = None, None, None
    for i in range(len(dataset)):
        _, depth_m, mask = dataset.pair(i)
        depth_m = np.asarray(depth_m, np.float64)
        shape = shape or depth_m.shape
        valid = finite_depth_mask(depth_m) & (True if mask is None else np.asarray(mask, bool))
        log_d = cv2.resize(np.where(valid, np.log(np.where(valid, depth_m, 1.0)), 0.0), shape[::-1])
        weight = cv2.resize(valid.astype(np.float64), shape[::-1])
        total = log_d if total is None else total + log_d
        count = weight if count is None else count + weight
    if total is None:
        raise DepthFMError("the prior's dataset is empty")
    return (total / np.maximum(count, 1e-9)).astype(np.float32)


def evaluate_prior(prior_hw: np.ndarray, dataset, alignments=("log",), protocol: str = "none") -> dict:
    """The prior map scored like a prediction (as z: it is log depth, so the log alignment is exact for it)."""
    import cv2

    return score(lambda rgb, gt: cv2.resize(prior_hw, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR),
                 dataset, alignments, protocol)


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
    results = {}
    for nfe in nfes:
        args.num_steps = nfe
        pipe = pipeline_from_args(args)
        results[nfe] = evaluate_pipeline(pipe, dataset, not args.quiet, alignments, args.protocol)
    prior = None
    if args.prior_synthetic or args.prior_data:
        from ..training.data import FolderDepthDataset, SyntheticDepthDataset

        source = SyntheticDepthDataset(args.prior_synthetic, *args.synthetic_size, seed=args.prior_seed) \
            if args.prior_synthetic else FolderDepthDataset(args.prior_data, png_depth_scale_m=args.png_depth_scale)
        prior = evaluate_prior(mean_log_depth_prior(source), dataset, alignments, args.protocol)
    described = {"log": "least-squares scale and shift in log space",
                 "depth": "least-squares scale and shift in depth space (Marigold), clipped to the depth cap"}
    for alignment in alignments:
        print(f"{len(dataset)} images, ensemble {args.ensemble_size}, processing resolution "
              f"{args.processing_resolution}, protocol {args.protocol}, {described[alignment]}")
        print(format_table({nfe: r[alignment] for nfe, r in results.items()}))
        if prior is not None:
            print(f"mean-depth prior (ignores the image): AbsRel {100 * prior[alignment]['abs_rel']:.1f}, "
                  f"δ1 {100 * prior[alignment]['delta1']:.1f}")
            base = np.array(prior[alignment]["abs_rel_per_image"])
            wins = ", ".join(f"NFE {nfe}: {int((np.array(r[alignment]['abs_rel_per_image']) < base).sum())}/{len(base)}"
                             for nfe, r in results.items())
            print(f"images where the model's AbsRel beats the prior's: {wins}")
    if args.json:
        payload = {str(k): v[alignments[0]] if len(alignments) == 1 else v for k, v in results.items()}
        if prior is not None:
            payload["prior"] = prior[alignments[0]] if len(alignments) == 1 else prior
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


def completion_main(args: argparse.Namespace, dataset) -> int:
    from ..evaluation.completion import completion_table, evaluate_completion
    from ..models.completion import DepthCompletionFM

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
