"""A depth predictor scored over a dataset: the mean per-image AbsRel and δ1 of each alignment, and the paper's
Table 3 layout (one column per NFE)."""

from __future__ import annotations

import numpy as np

from .metrics import evaluate

METRICS = (("abs_rel", "AbsRel ↓"), ("delta1", "δ1 ↑"))


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


def format_table(results: dict[int, dict[str, float]]) -> str:
    """Markdown table: one column per NFE, rows AbsRel and delta1 (in %, as in the paper)."""
    nfes = sorted(results)
    lines = ["| NFE | " + " | ".join(str(n) for n in nfes) + " |", "|---" * (len(nfes) + 1) + "|"]
    for key, label in METRICS:
        lines.append(f"| {label} | " + " | ".join(f"{100 * results[n][key]:.1f}" for n in nfes) + " |")
    return "\n".join(lines)
