#!/usr/bin/env python3
"""Full SD VAE vs distilled tiny VAE: FLOPs of the full-size model, CPU latency and accuracy cost of the tiny one.

1. FLOPs (``torch.utils.flop_counter.FlopCounterMode`` on the meta device, random weights, nothing downloaded) of
   the SD-2.1-size DepthFM (``depthfm_ros.models.architectures.build_full_depthfm``) with the SD VAE and with the
   TAESD-size tiny VAE (``tiny_vae.TAESD_DEPTH_CONFIG``), at 512x512 and 640x480 -- which runs at 512x640, sides
   rounded to multiples of 64 by ``processing.processing_size`` -- for k = 1, 2 steps and M = 1, 4 members.
2. CPU latency (torch) of the tiny random test model with its tiny SD-style VAE vs the test-size tiny VAE, and of the
   real-size SD VAE vs the TAESD-size tiny VAE alone (encode, decode) at a small size.
3. Accuracy cost: the test-size tiny VAE is distilled briefly from the tiny random teacher on synthetic scenes, then
   AbsRel / delta1 (log-space aligned, paper protocol) of both paths on held-out synthetic scenes. With a random
   teacher the absolute numbers mean nothing; the change shows the mechanism and how closely the student follows.

    python3 scripts/bench_tiny_vae.py [--no-latency] [--no-accuracy] [--distill-steps 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from depthfm_ros.evaluation.bench_report import format_table
from depthfm_ros.evaluation.benchmark import FLOP_SIZES_HW, stage_flops
from depthfm_ros.models.architectures import build_full_depthfm, build_tiny_depthfm
from depthfm_ros.models.tiny_vae import TINY_TEST_CONFIG, build_tiny_vae
from depthfm_ros.shapes import latent_noise_shape
from depthfm_ros.training.distill import DistillConfig, SyntheticImageDataset, distill, evaluate_vae_kinds


def flop_rows(steps=(1, 2), members=(1, 4)) -> list[dict]:
    model = build_full_depthfm("meta")
    with torch.device("meta"):
        tiny = build_tiny_vae(seed=None)
    rows = []
    for label, (h, w) in FLOP_SIZES_HW.items():
        per_kind = {}
        for kind in ("full", "tiny"):
            model.set_tiny_vae(tiny if kind == "tiny" else None)
            per_kind[kind] = {m: stage_flops(model, h, w, 1, m, "meta") for m in members}
        for k in steps:
            for m in members:
                full, fast = per_kind["full"][m], per_kind["tiny"][m]
                total = {kind: f["encode"] + k * f["per_step"] + f["decode"] for kind, f in
                         (("full", full), ("tiny", fast))}
                rows.append({
                    "input": label, "run_hw": f"{h}x{w}", "k": k, "M": m,
                    "unet_tflop": k * full["per_step"] / 1e12,
                    "sd_enc+dec_tflop": (full["encode"] + full["decode"]) / 1e12,
                    "tiny_enc+dec_tflop": (fast["encode"] + fast["decode"]) / 1e12,
                    "full_total_tflop": total["full"] / 1e12, "tiny_total_tflop": total["tiny"] / 1e12,
                    "vae_share_full": f"{100 * (full['encode'] + full['decode']) / total['full']:.0f}%",
                    "vae_share_tiny": f"{100 * (fast['encode'] + fast['decode']) / total['tiny']:.0f}%",
                    "speedup": f"{total['full'] / total['tiny']:.2f}x",
                })
    return rows


def interleaved_ms(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """(median, best) ms per callable, timed in alternation so a noisy neighbour hits all of them alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(1e3 * (time.perf_counter() - t0))
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


@torch.no_grad()
def latency_rows(size: int, repeats: int) -> list[dict]:
    model = build_tiny_depthfm(0)
    tiny = build_tiny_vae(TINY_TEST_CONFIG)
    rgb = torch.rand(1, 3, size, size) * 2 - 1
    rows = []
    for k in (1, 2):
        for m in (1, 4):
            noise = torch.randn(latent_noise_shape(1, m, size, size))
            ms = interleaved_ms({kind: (lambda kind=kind: model.set_tiny_vae(tiny if kind == "tiny" else None)(
                rgb, noise, k)) for kind in ("full", "tiny")}, repeats)
            model.set_tiny_vae(None)
            rows.append({"run_hw": f"{size}x{size}", "k": k, "M": m, "full_vae_ms": ms["full"][0],
                         "tiny_vae_ms": ms["tiny"][0], "full_best_ms": ms["full"][1], "tiny_best_ms": ms["tiny"][1],
                         "speedup_best": f"{ms['full'][1] / ms['tiny'][1]:.2f}x"})
    return rows


@torch.no_grad()
def vae_latency_rows(size: int, repeats: int) -> list[dict]:
    """Real-size SD VAE vs TAESD-size tiny VAE (random weights), one image at ``size``^2, encode and decode."""
    from diffusers import AutoencoderKL

    from depthfm_ros.models.architectures import FULL_VAE_CONFIG
    from depthfm_ros.models.tiny_vae import tiny_decode, tiny_encode

    torch.manual_seed(0)
    sd = AutoencoderKL(**FULL_VAE_CONFIG).eval()
    tiny = build_tiny_vae()
    rgb, latent = torch.rand(1, 3, size, size) * 2 - 1, torch.randn(1, 4, size // 8, size // 8)
    ms = interleaved_ms({
        "sd_encode": lambda: sd.encode(rgb).latent_dist.mode(), "tiny_encode": lambda: tiny_encode(tiny, rgb),
        "sd_decode": lambda: sd.decode(latent).sample.mean(1), "tiny_decode": lambda: tiny_decode(tiny, latent),
    }, repeats)
    return [{"run_hw": f"{size}x{size}", "stage": stage, "sd_vae_ms": ms[f"sd_{stage}"][1],
             "tiny_vae_ms": ms[f"tiny_{stage}"][1], "speedup": f"{ms[f'sd_{stage}'][1] / ms[f'tiny_{stage}'][1]:.1f}x"}
            for stage in ("encode", "decode")]


def accuracy(distill_steps: int, size: int, held_out: int) -> tuple[dict, list[dict]]:
    from depthfm_ros.sim.synthetic import make_scene

    teacher = build_tiny_depthfm(0, noising_step=400)
    student = build_tiny_vae(TINY_TEST_CONFIG, seed=0)
    train = SyntheticImageDataset(64, size, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        config = DistillConfig(max_steps=distill_steps, batch_size=4, resolution=size, learning_rate=2e-3,
                               checkpoint_every=10 ** 9)
        history = distill(teacher, student, train, tmp, config, device="cpu", progress=True)
    scenes = [make_scene(np.random.default_rng((10_000, i)), size, size) for i in range(held_out)]
    rgb = torch.from_numpy(np.stack([(s.rgb_hwc_u8.astype(np.float32) / 127.5 - 1).transpose(2, 0, 1)
                                     for s in scenes]))
    depth = np.stack([s.depth_hw_m for s in scenes])
    metrics = {k: evaluate_vae_kinds(teacher, student.eval(), rgb, depth, num_steps=k) for k in (1, 2)}
    return metrics, history


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--no-accuracy", action="store_true")
    p.add_argument("--latency-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--vae-size", type=int, default=128, help="side for the real-size VAE latency")
    p.add_argument("--vae-repeats", type=int, default=3)
    p.add_argument("--distill-steps", type=int, default=300)
    p.add_argument("--accuracy-size", type=int, default=128)
    p.add_argument("--held-out", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadiest on shared cores)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not args.no_flops:
        print("FLOPs per image, SD-2.1-size DepthFM, random weights (640x480 runs at 512x640: sides -> x64)")
        print(format_table(flop_rows(), ["input", "run_hw", "k", "M", "unet_tflop", "sd_enc+dec_tflop",
                                         "tiny_enc+dec_tflop", "full_total_tflop", "tiny_total_tflop",
                                         "vae_share_full", "vae_share_tiny", "speedup"], "{:.2f}"))
    if not args.no_latency:
        print(f"\nCPU latency (torch, {args.threads} thread(s), median and best of {args.repeats}, interleaved), "
              "tiny random test model: UNet + tiny SD-style VAE vs test-size tiny VAE")
        print(format_table(latency_rows(args.latency_size, args.repeats),
                           ["run_hw", "k", "M", "full_vae_ms", "tiny_vae_ms", "full_best_ms", "tiny_best_ms",
                            "speedup_best"]))
        print(f"\nCPU latency of the real-size VAEs alone (random weights, best of {args.vae_repeats}, "
              f"{args.threads} thread(s)): SD VAE vs TAESD-size tiny VAE")
        print(format_table(vae_latency_rows(args.vae_size, args.vae_repeats),
                           ["run_hw", "stage", "sd_vae_ms", "tiny_vae_ms", "speedup"]))
    if not args.no_accuracy:
        metrics, history = accuracy(args.distill_steps, args.accuracy_size, args.held_out)
        n = min(20, len(history))
        print(f"\nAccuracy cost on {args.held_out} held-out synthetic scenes ({args.accuracy_size}^2), tiny RANDOM "
              f"teacher, student distilled {len(history)} steps (loss {np.mean([h['total'] for h in history[:n]]):.4f}"
              f" -> {np.mean([h['total'] for h in history[-n:]]):.4f}); M=1, log-space aligned:")
        rows = [{"k": k, **{key: v for key, v in m.items()}} for k, m in metrics.items()]
        print(format_table(rows, ["k", "abs_rel_full", "abs_rel_tiny", "delta1_full", "delta1_tiny",
                                  "z_rmse_tiny_vs_full", "z_std_full"], "{:.4f}"))


if __name__ == "__main__":
    main()
