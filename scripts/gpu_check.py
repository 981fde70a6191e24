"""The GPU path in one run: export -> TensorRT engines -> accuracy against torch fp32 -> timings -> report.

Run through ``scripts/gpu_check.sh`` (which installs the project with its GPU extras first). For each model (the
tiny random model; with ``--full`` also an SD-2.1-size random model, 320 channels, official layout), resolution,
k and M it exports the fused graph, builds fp16 (and bf16 where the GPU has it) TensorRT engines, checks every
engine against torch fp32 on the same inputs and noise (max |dz|, delta1 and AbsRel of the relative depth, with
pass/fail bounds) and times torch eager, torch.compile, ONNX Runtime CUDA and TensorRT with and without CUDA
graphs (p50/p95 over ``--runs`` after warm-up) and the peak GPU memory. It writes ``report.md`` and
``results.csv`` under ``--out`` and exits 1 if any check fails.

``--dry-run`` (CI, no GPU): the tiny model only; everything up to the GPU calls runs -- export, parser-ready ops and
opset, engine specs, optimisation profiles and cache keys, the torch fp32 reference, the report -- and every
GPU row says "not run (dry run)".
"""

from __future__ import annotations

import argparse
import csv
import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from depthfm_ros.backends.export import export_graph, model_hash
from depthfm_ros.backends.tensorrt_backend import EngineSpec, TensorRTBackend, check_parser_ready, profile_shapes
from depthfm_ros.backends.torch_backend import TorchBackend
from depthfm_ros.models.architectures import build_full_depthfm, build_tiny_depthfm
from depthfm_ros.processing import relative_depth

#: pass/fail bounds of an engine against torch fp32 (relative depth in [0, 1])
BOUNDS = {"fp16": {"max_dz": 0.05, "delta1": 0.99, "abs_rel": 0.02},
          "bf16": {"max_dz": 0.15, "delta1": 0.97, "abs_rel": 0.05}}
SIZES = ("512x512", "384x640")


def relative_metrics(z: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """max |dz| and delta1 / AbsRel of the relative depth (shifted by 1: min-max depth has zeros) against ``ref``."""
    d, r = relative_depth(z.mean(axis=1)) + 1.0, relative_depth(ref.mean(axis=1)) + 1.0
    ratio = np.maximum(d / r, r / d)
    return {"max_dz": float(np.abs(z - ref).max()), "delta1": float((ratio < 1.25).mean()),
            "abs_rel": float((np.abs(d - r) / r).mean())}


def percentiles(fn, runs: int, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - t0))
    return {"p50_ms": statistics.median(times), "p95_ms": float(np.percentile(times, 95))}


def precisions() -> list[str]:
    out = ["fp16"]
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        out.append("bf16")
    return out


def check_case(model, name: str, size: str, k: int, m: int, out: Path, dry_run: bool, runs: int) -> list[dict]:
    """All rows of one (model, size, k, M): the dry part always, the GPU part unless ``dry_run``."""
    h, w = (int(v) for v in size.split("x"))
    rng = np.random.default_rng(0)
    rgb = rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32)
    noise = rng.standard_normal((m, 4, h // 8, w // 8)).astype(np.float32)
    graph = export_graph(model, "fused", out / "graphs" / f"{name}_{size}_k{k}_m{m}.onnx", h, w, k, m,
                         mhash=model_hash(model))
    info = check_parser_ready(graph)  # ops and opset the TensorRT parser reads
    base = {"model": name, "size": size, "k": k, "M": m}
    rows = []
    device = "cuda" if not dry_run else "cpu"
    reference = TorchBackend(model, num_steps=k, dtype="fp32", device=device).run(rgb, noise)
    for precision in (["fp16"] if dry_run else precisions()):
        if precision == "bf16":  # TensorRT 10 builds fp16/fp32 engines: bf16 is checked on torch
            row = {**base, "engine": "torch bf16"}
        else:
            spec = EngineSpec.for_graph(info, precision, "dry-run", m)
            row = {**base, "engine": f"tensorrt {precision}", "profile_image": str(profile_shapes(spec)["image"][1]),
                   "cache_key": spec.cache_key()}
        if dry_run:
            rows.append({**row, "status": "not run (dry run)"})
            continue
        if precision == "bf16":
            backend = TorchBackend(model, num_steps=k, dtype="bf16", device="cuda")
        else:
            backend = TensorRTBackend(graph, precision=precision, ensemble_size=m, cache_dir=out / "engines")
        z = backend.run(rgb, noise)
        metrics = relative_metrics(z, reference)
        bounds = BOUNDS[precision]
        ok = metrics["max_dz"] <= bounds["max_dz"] and metrics["delta1"] >= bounds["delta1"] \
            and metrics["abs_rel"] <= bounds["abs_rel"]
        images, noise_t = torch.from_numpy(rgb).cuda(), torch.from_numpy(noise).cuda()
        timing = percentiles(lambda: backend.run_tensors(images, noise_t), runs)
        rows.append({**row, **metrics, **timing, "gpu_mem_mib": torch.cuda.max_memory_allocated() / 2**20,
                     "status": "pass" if ok else "FAIL"})
    if not dry_run:
        eager = TorchBackend(model, num_steps=k, dtype="fp16", device="cuda")
        images, noise_t = torch.from_numpy(rgb).cuda(), torch.from_numpy(noise).cuda()
        rows.append({**base, "engine": "torch eager fp16", **percentiles(
            lambda: eager.run_tensors(images, noise_t), runs), "status": "timed"})
        compiled = torch.compile(eager.model)
        rows.append({**base, "engine": "torch.compile fp16", **percentiles(
            lambda: compiled(images.half(), noise_t.half(), k), runs), "status": "timed"})
        from depthfm_ros.backends.onnx_backend import OnnxBackend

        ort = OnnxBackend(graph, num_steps=k)
        rows.append({**base, "engine": "onnxruntime", **percentiles(lambda: ort.run(rgb, noise), runs),
                     "status": "timed"})
    return rows


def write_report(rows: list[dict], out: Path, dry_run: bool) -> None:
    keys = sorted({key for row in rows for key in row}, key=lambda key: list(rows[0]).index(key)
                  if key in rows[0] else 99)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    gpu = "dry run, no GPU" if dry_run else torch.cuda.get_device_name()
    lines = [f"# GPU check ({gpu})", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[k]:.4g}" if isinstance(row.get(k), float) else str(row.get(k, ""))
                                       for k in keys) + " |")
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check_results")
    parser.add_argument("--dry-run", action="store_true", help="no GPU: everything up to the GPU calls")
    parser.add_argument("--full", action="store_true", help="also the SD-2.1-size random model")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--sizes", nargs="+", help=f"HxW processing sizes (default {' '.join(SIZES)}; dry run: "
                        "the first)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run, or on a machine with an NVIDIA GPU", file=sys.stderr)
        return 2
    models = {"tiny": build_tiny_depthfm(seed=0)}
    if args.full and not args.dry_run:
        models["sd21-size"] = build_full_depthfm(device="cpu")
    sizes = args.sizes or (list(SIZES[:1]) if args.dry_run else list(SIZES))
    cases = [(name, size, k, m) for name in models for size in sizes for k in (1, 2)
             for m in ((1, 2) if args.dry_run else (1, 2, 4))]
    rows = list(itertools.chain.from_iterable(
        check_case(models[name], name, size, k, m, out, args.dry_run, args.runs)
        for name, size, k, m in tqdm(cases, desc="gpu check", unit="case")))
    write_report(rows, out, args.dry_run)
    failed = [r for r in rows if r["status"] == "FAIL"]
    print(f"{len(rows)} rows, {len(failed)} failed; report: {out / 'report.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
