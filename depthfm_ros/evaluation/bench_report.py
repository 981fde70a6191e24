"""depthfm-bench's output: the latency and FLOP tables (markdown), their CSVs and the bench.png plot."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .benchmark import STAGES


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot(path: Path, latency_rows: list[dict], flop_rows: list[dict], title: str) -> Path:
    """bench.png: latency per stage and backend, beside it the FLOPs per stage (when there are FLOP rows)."""
    import matplotlib  # here, not at import: the headless backend is chosen for this plot only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if flop_rows else 1, figsize=(12 if flop_rows else 6.5, 4.5), squeeze=False)
    ax0 = axes[0, 0]
    names = [r["backend"] for r in latency_rows]
    bottom = np.zeros(len(names))
    for stage in (*STAGES[:4], "engine (fused)", *STAGES[4:]):
        if stage == "engine (fused)":  # fused rows have no encode/steps/decode split
            vals = np.array([r["engine"] if np.isnan(r["encode"]) else 0.0 for r in latency_rows])
        else:
            vals = np.nan_to_num(np.array([r[stage] for r in latency_rows], float))
        ax0.bar(names, vals, bottom=bottom, label=stage)
        bottom += vals
    ax0.set_ylabel("ms per image (median)")
    ax0.set_title(title, fontsize=9)
    ax0.legend(fontsize=8)
    ax0.tick_params(axis="x", labelsize=8)
    if flop_rows:
        _plot_flops(axes[0, 1], flop_rows)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_flops(ax1, flop_rows: list[dict]) -> None:
    labels = [f"{r['input']} ({r['processing_hw']})" for r in flop_rows]
    bottom = np.zeros(len(labels))
    for stage in ("encode", "steps", "decode"):
        vals = np.array([r[f"{stage}_gflop"] for r in flop_rows])
        ax1.bar(labels, vals, bottom=bottom, label=stage)
        bottom += vals
    ax1.set_ylabel("GFLOP per image")
    ax1.set_title(f"full DepthFM, k={flop_rows[0]['num_steps']}, M={flop_rows[0]['ensemble_size']}", fontsize=9)
    ax1.legend(fontsize=8)


LATENCY_COLUMNS = ["backend", *STAGES, "engine", "total", "fps"]
FLOP_COLUMNS = ["input", "processing_hw", "encode_gflop", "step_gflop", "steps_gflop", "decode_gflop", "total_gflop"]


def format_table(rows: list[dict], columns: list[str], fmt: str = "{:.1f}") -> str:
    header = "| " + " | ".join(columns) + " |"
    lines = [header, "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt.format(r[c]) if isinstance(r[c], float) else str(r[c])
                                       for c in columns) + " |")
    return "\n".join(lines)
