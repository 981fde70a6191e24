#!/usr/bin/env python3
"""CPU ms/frame of the tiny DepthFM vs Euler steps and ensemble size, and batched-vs-looped ensemble speed-up.

A script that prints figures (not a test). Its defaults are the README table's settings (128x128, k 1 and 2,
M 1, 2, 4, 8, 1 torch thread, median of 5); the whole grid takes about 15 s on an idle 2-core VM.
Usage: python scripts/bench_ensemble.py [--size 128x128] [--steps 1,2] [--ensembles 1,2,4,8] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch
from tqdm import tqdm

from depthfm_ros.backends.torch_backend import TorchBackend
from depthfm_ros.models.architectures import build_tiny_depthfm
from depthfm_ros.shapes import latent_noise_shape


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(times))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="128x128", help="processing HxW (multiples of 64)")
    parser.add_argument("--steps", default="1,2", help="Euler step counts k, comma-separated")
    parser.add_argument("--ensembles", default="1,2,4,8", help="ensemble sizes M, comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: the README table; all cores fight on a shared CPU)")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    h, w = map(int, args.size.split("x"))
    backend = TorchBackend(build_tiny_depthfm(seed=0), num_steps=1, device="cpu")
    rgb = np.random.default_rng(0).uniform(-1, 1, (1, 3, h, w)).astype(np.float32)

    rows = []
    grid = list(itertools.product(map(int, args.steps.split(",")), map(int, args.ensembles.split(","))))
    for k, m in tqdm(grid, desc="bench"):
        backend.num_steps = k
        noise = np.random.default_rng(1).standard_normal(latent_noise_shape(1, m, h, w), dtype=np.float32)
        batched = median_ms(lambda: backend.run(rgb, noise), args.repeats)
        looped = median_ms(lambda: [backend.run(rgb, noise[i:i + 1]) for i in range(m)], args.repeats)
        rows.append((k, m, batched, looped))

    print(f"\ntiny DepthFM, {h}x{w}, CPU, {args.threads} thread(s), median of {args.repeats}")
    print("| steps | ensemble | batched ms/frame | looped ms/frame | speed-up |")
    print("|---:|---:|---:|---:|---:|")
    for k, m, b, lo in rows:
        print(f"| {k} | {m} | {b:.1f} | {lo:.1f} | {lo / b:.2f}x |")


if __name__ == "__main__":
    main()
