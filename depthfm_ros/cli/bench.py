"""depthfm-bench: per-stage latency of every available backend, and FLOPs of the full-size DepthFM per stage.

Latency: preprocess -> encode -> k flow steps -> decode -> postprocess -> fusion (LiDAR log-depth fit), median of
``--repeats`` runs after one warm-up, for torch, onnxruntime (fused graph and split stages) and TensorRT when
installed with a GPU. Stage times come from running the sampler over timed stage calls; ``engine`` is one
``Backend.run`` (the fused graph for onnxruntime). The tiny RANDOM model is the default, so numbers show the
mechanics and relative costs; give ``--checkpoint`` for real ones.

FLOPs: the full SD-2.1-size architecture (UNet 866 M, VAE 84 M parameters) with random weights on the meta device
(no download, no memory), counted by ``torch.utils.flop_counter.FlopCounterMode`` at 512x512 and 640x480, which
the model runs at 512x640 (sides rounded to multiples of 64, see ``processing.processing_size``).
Writes ``bench_latency.csv``, ``bench_flops.csv`` and ``bench.png`` (latency per stage and backend, and FLOPs
per stage; with ``--no-flops`` the latency alone) to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..evaluation.benchmark import STAGES, available_backends, flop_table, time_backend
from ..files import writable_folder
from ..settings import auto_threads
from .common import add_checkpoint_args, add_sampling_args, model_from_args, run_cli


# ------------------------------------------------------------------------------------------------ output
def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot(path: Path, latency_rows: list[dict], flop_rows: list[dict], title: str) -> Path:
    import matplotlib

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


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="depthfm-bench", description=__doc__.split("\n")[0])
    add_checkpoint_args(p, tiny_help="the small RANDOM model (the default when no --checkpoint is given)")
    p.add_argument("--height", type=int, default=256, help="processing height (multiple of 64)")
    p.add_argument("--width", type=int, default=256, help="processing width (multiple of 64)")
    add_sampling_args(p)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per backend (after one warm-up)")
    p.add_argument("--torch-threads", type=int, default=0,
                   help=f"torch intra-op threads, onnxruntime runs at the same count (0: auto, OMP_NUM_THREADS or "
                   f"the cores minus one: {auto_threads()} here)")
    p.add_argument("--input-size", default="480x640", help="camera image HxW fed to preprocess")
    p.add_argument("--no-onnx", action="store_true", help="torch only (skip export and onnxruntime)")
    p.add_argument("--no-flops", action="store_true", help="skip the full-model FLOP count")
    p.add_argument("--out", default="depthfm_bench", help="folder for the CSVs and bench.png (latency per stage; "
                   "beside it the FLOPs per stage unless --no-flops)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_cli(_main, argv)


def _main(argv=None) -> int:
    from tqdm.auto import tqdm

    args = parse_args(argv)
    out = writable_folder(args.out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    if args.torch_threads < 0:
        raise InputError(f"--torch-threads must be >= 0 (0: auto), got {args.torch_threads}")
    torch.set_num_threads(args.torch_threads or auto_threads())
    print(f"depthfm-bench: torch and onnxruntime on {torch.get_num_threads()} thread(s)", file=sys.stderr)
    args.tiny_model = args.tiny_model or not args.checkpoint
    model = model_from_args(args)
    vae_kind = model.vae_kind
    model_name = (args.checkpoint or "tiny random model") + (", tiny VAE" if vae_kind == "tiny" else "")
    in_h, in_w = (int(v) for v in args.input_size.lower().split("x"))
    rgb = np.random.default_rng(0).integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        backends = available_backends(model, args.height, args.width, args.num_steps, args.ensemble_size, Path(tmp),
                                      with_onnx=not args.no_onnx)
        for name, backend, stages, staged_run in tqdm(backends, desc="latency", unit="backend"):
            rows.append(time_backend(name, backend, stages, staged_run, rgb, args.height, args.width,
                                     args.ensemble_size, args.repeats))
    title = (f"{model_name}, {args.height}x{args.width}, k={args.num_steps}, M={args.ensemble_size}, "
             f"{torch.get_num_threads()} threads")
    print(f"\nLatency (ms, median of {args.repeats}; {title}; fusion: fusion.alignment.fit_log_depth)")
    print(format_table(rows, LATENCY_COLUMNS))
    write_csv(out / "bench_latency.csv", rows)
    flop_rows = []
    if not args.no_flops:
        with tqdm(total=1, desc="FLOPs (full model, meta device)") as bar:
            flop_rows = flop_table(args.num_steps, args.ensemble_size, vae_kind)
            bar.update(1)
        vae_name = "TAESD-size tiny VAE" if vae_kind == "tiny" else "SD VAE"
        print(f"\nFLOPs of the full DepthFM (SD 2.1 UNet + {vae_name}), per image, k={args.num_steps}, "
              f"M={args.ensemble_size}")
        print(format_table(flop_rows, FLOP_COLUMNS, "{:.0f}"))
        write_csv(out / "bench_flops.csv", flop_rows)
    plot(out / "bench.png", rows, flop_rows, title)
    print(f"\nwrote {out}/bench_latency.csv" + ("" if args.no_flops else ", bench_flops.csv") + ", bench.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
