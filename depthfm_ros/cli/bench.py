"""depthfm-bench: per-stage latency of every available backend, and FLOPs of the full-size DepthFM per stage.

Latency: preprocess -> encode -> k flow steps -> decode -> postprocess -> fusion (LiDAR log-depth fit), median of
``--repeats`` runs after one warm-up, for torch, onnxruntime (fused graph and split stages) and TensorRT when
installed with a GPU. Stage times come from running the sampler over timed stage calls; ``engine`` is one
``Backend.run`` (the fused graph for onnxruntime). The tiny RANDOM model is the default, so numbers show the
mechanics and relative costs; give ``--checkpoint`` for real ones.

FLOPs: the full SD-2.1-size architecture (UNet 866 M, VAE 84 M parameters) with random weights on the meta device
(no download, no memory), counted by ``torch.utils.flop_counter.FlopCounterMode`` at 512x512 and 640x480, which
the model runs at 512x640 (sides rounded to multiples of 64, see ``processing.processing_size``).
Writes ``bench_latency.csv``, ``bench_flops.csv`` and ``bench.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..fusion.alignment import fit_log_depth
from ..models.depthfm import DepthFM
from ..models.ldm import unet_config_from_ldm
from ..processing import ensemble_stats, processing_size, relative_depth, resize_hw, to_model_input
from ..shapes import LATENT_CHANNELS, latent_noise_shape
from .common import add_checkpoint_args, add_sampling_args, model_from_args, run_cli

# DepthFM = SD 2.1 UNet (8 input channels: depth latent + image latent) and the SD AutoencoderKL.
FULL_LDM_HPARAMS = {
    "image_size": 64, "in_channels": 8, "model_channels": 320, "out_channels": 4, "num_res_blocks": 2,
    "attention_resolutions": (4, 2, 1), "channel_mult": (1, 2, 4, 4), "num_head_channels": 64,
    "use_spatial_transformer": True, "use_linear_in_transformer": True, "context_dim": 1024, "transformer_depth": 1,
    "legacy": False, "use_checkpoint": False,
}
FULL_VAE_CONFIG = {
    "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "latent_channels": LATENT_CHANNELS,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
FLOP_SIZES_HW = {"512x512": (512, 512), "640x480": processing_size(480, 640, 640)}  # -> (512, 640)
STAGES = ("preprocess", "encode", "steps", "decode", "postprocess", "fusion")


# ------------------------------------------------------------------------------------------------ FLOPs
def build_full_depthfm(device: str = "meta", noising_step: int = 400) -> DepthFM:
    """The full-size DepthFM architecture with random weights (``meta``: shapes only, no memory)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device(device):
        unet = UNet2DConditionModel(**unet_config_from_ldm(FULL_LDM_HPARAMS))
        vae = AutoencoderKL(**FULL_VAE_CONFIG)
    context = np.zeros((1, 77, FULL_LDM_HPARAMS["context_dim"]), np.float32)
    return DepthFM(unet.eval(), vae.eval(), context, noising_step).eval()


def count_flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


def stage_flops(model: DepthFM, height: int, width: int, num_steps: int = 2, ensemble_size: int = 1,
                device: str | None = None) -> dict[str, int]:
    """FLOPs of one image through each stage: encode (once), steps (k UNet calls on M members), decode (M)."""
    device = device or next(model.parameters()).device
    n = ensemble_size
    image = torch.zeros(1, 3, height, width, device=device)
    latent = torch.zeros(latent_noise_shape(n, 1, height, width), device=device)
    step = count_flops(lambda: model.velocity(latent, 0.5, latent))
    return {"encode": count_flops(lambda: model.encode(image)), "steps": num_steps * step,
            "decode": count_flops(lambda: model.decode(latent)), "per_step": step}


def flop_table(num_steps: int, ensemble_size: int, vae_kind: str = "full") -> list[dict]:
    """GFLOP rows for the full architecture at the FLOP_SIZES_HW processing sizes (``vae_kind`` 'tiny': TAESD VAE)."""
    model = build_full_depthfm("meta")
    if vae_kind == "tiny":
        from ..models.tiny_vae import build_tiny_vae

        with torch.device("meta"):
            model.set_tiny_vae(build_tiny_vae(seed=None))
    rows = []
    for label, (h, w) in FLOP_SIZES_HW.items():
        f = stage_flops(model, h, w, num_steps, ensemble_size, "meta")
        total = f["encode"] + f["steps"] + f["decode"]
        rows.append({"input": label, "processing_hw": f"{h}x{w}", "num_steps": num_steps,
                     "ensemble_size": ensemble_size, "encode_gflop": f["encode"] / 1e9,
                     "step_gflop": f["per_step"] / 1e9, "steps_gflop": f["steps"] / 1e9,
                     "decode_gflop": f["decode"] / 1e9, "total_gflop": total / 1e9})
    return rows


# ---------------------------------------------------------------------------------------------- latency
class TimedStages:
    """Stage callables (encode/velocity/decode on torch tensors) that add their wall time to ``ms``."""

    def __init__(self, encode, velocity, decode):
        self.ms = dict.fromkeys(("encode", "steps", "decode"), 0.0)
        self.encode, self.velocity, self.decode = (self._timed(s, f) for s, f in
                                                   (("encode", encode), ("steps", velocity), ("decode", decode)))

    def _timed(self, stage: str, fn):
        def call(*args):
            t0 = time.perf_counter()
            out = fn(*args)
            if isinstance(out, torch.Tensor) and out.is_cuda:
                torch.cuda.synchronize()
            self.ms[stage] += 1e3 * (time.perf_counter() - t0)
            return out

        return call


def time_backend(name: str, backend, stages: TimedStages | None, staged_run, rgb_hwc_u8: np.ndarray,
                 height: int, width: int, ensemble_size: int, repeats: int, fusion) -> dict:
    """Median per-stage ms of one backend on one image (one warm-up run first)."""
    rng = np.random.default_rng(0)
    sparse_hw_m = np.where(rng.random(rgb_hwc_u8.shape[:2]) < 0.03, rng.uniform(1, 20, rgb_hwc_u8.shape[:2]), 0.0)
    records: list[dict[str, float]] = []
    for i in range(repeats + 1):
        ms: dict[str, float] = {}
        t0 = time.perf_counter()
        rgb_bchw = to_model_input(rgb_hwc_u8, height, width)[None]
        noise = rng.standard_normal(latent_noise_shape(1, ensemble_size, height, width), dtype=np.float32)
        ms["preprocess"] = 1e3 * (time.perf_counter() - t0)
        if stages is not None:
            stages.ms = dict.fromkeys(stages.ms, 0.0)
            with torch.inference_mode():
                staged_run(torch.from_numpy(rgb_bchw), torch.from_numpy(noise))
            ms.update(stages.ms)
        else:  # one fused call: no stage split
            ms.update(dict.fromkeys(("encode", "steps", "decode"), float("nan")))
        t0 = time.perf_counter()
        members = backend.run(rgb_bchw, noise)
        ms["engine"] = 1e3 * (time.perf_counter() - t0)
        t0 = time.perf_counter()
        z_bhw, std_bhw = ensemble_stats(members)
        z_hw = resize_hw(z_bhw[0], *rgb_hwc_u8.shape[:2])
        resize_hw(std_bhw[0], *rgb_hwc_u8.shape[:2])
        relative_depth(z_hw[None])
        ms["postprocess"] = 1e3 * (time.perf_counter() - t0)
        t0 = time.perf_counter()
        try:
            fusion(z_hw.astype(np.float32), sparse_hw_m.astype(np.float32))
        except Exception:  # a random model's z may be refused as degenerate; the cost is what we measure
            pass
        ms["fusion"] = 1e3 * (time.perf_counter() - t0)
        if i:
            records.append(ms)
    row = {"backend": name, **{k: statistics.median(r[k] for r in records) for k in records[0]}}
    row["total"] = sum(row[k] for k in ("preprocess", "engine", "postprocess", "fusion"))
    row["fps"] = 1e3 / row["total"]
    return row


def available_backends(model: DepthFM, height: int, width: int, num_steps: int, ensemble_size: int,
                       graph_dir: Path, with_onnx: bool = True):
    """(name, backend, TimedStages | None, staged_run) for torch, onnxruntime fused/split, tensorrt if usable."""
    from ..backends.staged import StagedModel
    from ..backends.torch_backend import TorchBackend

    def staged(stages: TimedStages, noising_step: int):
        runner = StagedModel(stages.encode, stages.velocity, stages.decode, noising_step)
        return lambda rgb, noise: runner(rgb, noise, num_steps)

    torch_backend = TorchBackend(model, num_steps=num_steps, device="cpu")
    t = TimedStages(model.encode, model.velocity, model.decode)
    out = [("torch[cpu]", torch_backend, t, staged(t, model.noising_step))]
    if not with_onnx:
        return out
    from ..backends import cuda_available, tensorrt_importable
    from ..backends.export import export_onnx
    from ..backends.onnx_backend import OnnxBackend

    paths = export_onnx(model, graph_dir, height, width, num_steps, ensemble_size)
    fused = OnnxBackend(paths["fused"], num_steps=num_steps)
    split = OnnxBackend(graph_dir, num_steps=num_steps)
    t = TimedStages(*(split._stage(k) for k in ("encoder", "step", "decoder")))
    out.append(("onnxruntime fused", fused, None, None))
    out.append(("onnxruntime split", split, t, staged(t, model.noising_step)))
    if tensorrt_importable() and cuda_available():
        from ..backends.tensorrt_backend import TensorRTBackend

        for precision in ("fp16", "fp32"):
            out.append((f"tensorrt fused {precision}", TensorRTBackend(
                paths["fused"], num_steps=num_steps, precision=precision, ensemble_size=ensemble_size), None, None))
            split_trt = TensorRTBackend(graph_dir, num_steps=num_steps, precision=precision,
                                        ensemble_size=ensemble_size)
            t = TimedStages(*(split_trt.engines[k] for k in ("encoder", "step", "decoder")))
            run = staged(t, model.noising_step)
            out.append((f"tensorrt split {precision}", split_trt, t,
                        lambda rgb, noise, run=run: run(rgb.cuda(), noise.cuda())))
    return out


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

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.5))
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
    labels = [f"{r['input']} ({r['processing_hw']})" for r in flop_rows]
    bottom = np.zeros(len(labels))
    for stage in ("encode", "steps", "decode"):
        vals = np.array([r[f"{stage}_gflop"] for r in flop_rows])
        ax1.bar(labels, vals, bottom=bottom, label=stage)
        bottom += vals
    ax1.set_ylabel("GFLOP per image")
    ax1.set_title(f"full DepthFM, k={flop_rows[0]['num_steps']}, M={flop_rows[0]['ensemble_size']}", fontsize=9)
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
    p.add_argument("--input-size", default="480x640", help="camera image HxW fed to preprocess")
    p.add_argument("--no-onnx", action="store_true", help="torch only (skip export and onnxruntime)")
    p.add_argument("--no-flops", action="store_true", help="skip the full-model FLOP count")
    p.add_argument("--out", default="depthfm_bench", help="folder for CSVs and the plot")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_cli(_main, argv)


def _main(argv=None) -> int:
    from tqdm.auto import tqdm

    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.tiny_model = args.tiny_model or not args.checkpoint
    model = model_from_args(args)
    vae_kind = model.vae_kind
    model_name = (args.checkpoint or "tiny random model") + (", tiny VAE" if vae_kind == "tiny" else "")
    in_h, in_w = (int(v) for v in args.input_size.lower().split("x"))
    rgb = np.random.default_rng(0).integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
    fusion_name, fusion = "fusion.fit_log_depth", fit_log_depth
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        backends = available_backends(model, args.height, args.width, args.num_steps, args.ensemble_size, Path(tmp),
                                      with_onnx=not args.no_onnx)
        for name, backend, stages, staged_run in tqdm(backends, desc="latency", unit="backend"):
            rows.append(time_backend(name, backend, stages, staged_run, rgb, args.height, args.width,
                                     args.ensemble_size, args.repeats, fusion))
    title = (f"{model_name}, {args.height}x{args.width}, k={args.num_steps}, M={args.ensemble_size}, "
             f"{torch.get_num_threads()} threads")
    print(f"\nLatency (ms, median of {args.repeats}; {title}; fusion: {fusion_name})")
    print(format_table(rows, ["backend", *STAGES, "engine", "total", "fps"]))
    write_csv(out / "bench_latency.csv", rows)
    flop_rows = []
    if not args.no_flops:
        with tqdm(total=1, desc="FLOPs (full model, meta device)") as bar:
            flop_rows = flop_table(args.num_steps, args.ensemble_size, vae_kind)
            bar.update(1)
        vae_name = "TAESD-size tiny VAE" if vae_kind == "tiny" else "SD VAE"
        print(f"\nFLOPs of the full DepthFM (SD 2.1 UNet + {vae_name}), per image, k={args.num_steps}, "
              f"M={args.ensemble_size}")
        print(format_table(flop_rows, ["input", "processing_hw", "encode_gflop", "step_gflop", "steps_gflop",
                                       "decode_gflop", "total_gflop"], "{:.0f}"))
        write_csv(out / "bench_flops.csv", flop_rows)
        plot(out / "bench.png", rows, flop_rows, title)
    print(f"\nwrote {out}/bench_latency.csv" + ("" if args.no_flops else ", bench_flops.csv, bench.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
