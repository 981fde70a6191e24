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
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import InputError
from ..evaluation.bench_report import FLOP_COLUMNS, LATENCY_COLUMNS, format_table, plot, write_csv
from ..evaluation.benchmark import available_backends, flop_table, time_backend
from ..files import writable_folder
from ..settings import auto_threads
from .common import add_checkpoint_args, add_sampling_args, model_from_args, run_cli


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
