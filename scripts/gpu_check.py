"""The GPU path in one run: export -> TensorRT engines -> accuracy against torch fp32 -> timings -> report.

Run through ``scripts/gpu_check.sh`` (which installs the project with its GPU extras first). For each model (the
tiny random model; with ``--full`` also an SD-2.1-size random model, 320 channels, official layout), VAE (the SD
VAE and the tiny VAE), resolution, k and M it exports the fused graph, builds fp16 TensorRT engines (bf16 is
checked on torch where the GPU has it: TensorRT 10 builds fp16/fp32), checks every engine against torch fp32 on
the same inputs and noise (max |dz|, delta1 and AbsRel of the relative depth, with pass/fail bounds) and times
torch eager, torch.compile, ONNX Runtime CUDA and TensorRT with and without CUDA graphs (p50/p95 over ``--runs``
after warm-up) and the peak GPU memory. Per model and VAE it also builds ONE engine over a size range covering
every size and checks it at each (the processing resolution changing without a rebuild), and it runs the node end
to end over DDS on loopback with the TensorRT backend (image published -> depth received, p50/p95). It writes
``report.md`` and ``results.csv`` under ``--out`` and exits 1 if any check fails.

``--dry-run`` (CI, no GPU): the tiny model only; everything up to the GPU calls runs -- export, parser-ready ops and
opset, engine specs, optimisation profiles and cache keys, the torch fp32 reference, the report -- and every
GPU row says "not run (dry run)"; the node end-to-end row runs the same graph with onnxruntime on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import csv
import itertools
import os
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
from depthfm_ros.models.tiny_vae import TAESD_DEPTH_CONFIG, TINY_TEST_CONFIG, build_tiny_vae
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


def with_vae(model, vae: str):
    """``model`` with the SD VAE ("full") or a random tiny VAE of its scale ("tiny") in encode/decode."""
    if vae == "full":
        return model
    config = TINY_TEST_CONFIG if model.unet.config.block_out_channels[0] < 64 else TAESD_DEPTH_CONFIG
    return copy.deepcopy(model).set_tiny_vae(build_tiny_vae(config, seed=0))


def case_inputs(size: str, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    h, w = (int(v) for v in size.split("x"))
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32),
            rng.standard_normal((m, 4, h // 8, w // 8)).astype(np.float32))


def passes(metrics: dict, precision: str) -> bool:
    bounds = BOUNDS[precision]
    return metrics["max_dz"] <= bounds["max_dz"] and metrics["delta1"] >= bounds["delta1"] \
        and metrics["abs_rel"] <= bounds["abs_rel"]


def check_case(model, name: str, size: str, k: int, m: int, out: Path, dry_run: bool, runs: int) -> list[dict]:
    """All rows of one (model, size, k, M): the dry part always, the GPU part unless ``dry_run``."""
    h, w = (int(v) for v in size.split("x"))
    rgb, noise = case_inputs(size, m)
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
        torch.cuda.reset_peak_memory_stats()
        z = backend.run(rgb, noise)
        metrics = relative_metrics(z, reference)
        images, noise_t = torch.from_numpy(rgb).cuda(), torch.from_numpy(noise).cuda()
        timing = percentiles(lambda: backend.run_tensors(images, noise_t), runs)
        rows.append({**row, **metrics, **timing, "gpu_mem_mib": torch.cuda.max_memory_allocated() / 2**20,
                     "status": "pass" if passes(metrics, precision) else "FAIL"})
        if precision == "fp16":  # the same engine replayed as a CUDA graph: same numbers, less launch cost
            graphed = TensorRTBackend(graph, precision=precision, ensemble_size=m, cache_dir=out / "engines",
                                      cuda_graph=True)
            metrics = relative_metrics(graphed.run(rgb, noise), reference)
            rows.append({**row, "engine": "tensorrt fp16 cuda graph", **metrics,
                         **percentiles(lambda: graphed.run_tensors(images, noise_t), runs),
                         "status": "pass" if passes(metrics, precision) else "FAIL"})
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


def check_size_range(model, name: str, sizes: list[str], out: Path, dry_run: bool) -> list[dict]:
    """ONE fp16 engine whose profile spans every size, checked at each against torch fp32 (k=1, M=1)."""
    hw = [tuple(int(v) for v in size.split("x")) for size in sizes]
    size_range = (min(h for h, _ in hw), min(w for _, w in hw), max(h for h, _ in hw), max(w for _, w in hw))
    graph = export_graph(model, "fused", out / "graphs" / f"{name}_dynamic_k1_m1.onnx", *hw[0], 1, 1,
                         mhash=model_hash(model), size_range=size_range)
    spec = EngineSpec.for_graph(check_parser_ready(graph), "fp16", "dry-run")
    rows, backend = [], None
    for size in sizes:
        row = {"model": name, "size": size, "k": 1, "M": 1, "engine": "tensorrt fp16 size range",
               "profile_image": str(profile_shapes(spec)["image"]), "cache_key": spec.cache_key()}
        if dry_run:
            rows.append({**row, "status": "not run (dry run)"})
            continue
        rgb, noise = case_inputs(size, 1)
        reference = TorchBackend(model, num_steps=1, dtype="fp32", device="cuda").run(rgb, noise)
        backend = backend or TensorRTBackend(graph, precision="fp16", cache_dir=out / "engines")
        metrics = relative_metrics(backend.run(rgb, noise), reference)
        rows.append({**row, **metrics, "status": "pass" if passes(metrics, "fp16") else "FAIL"})
    return rows


def node_end_to_end(name: str, size: str, out: Path, dry_run: bool, frames: int) -> dict:
    """depthfm_node with the TensorRT backend (onnxruntime on the CPU in a dry run) on the k=1, M=1 graph, fed a
    640x480 camera over DDS on loopback: image published -> relative depth received."""
    from depthfm_ros.ros.demo import run_demo

    graph = out / "graphs" / f"{name}_{size}_k1_m1.onnx"
    backend = "onnxruntime" if dry_run else "tensorrt"
    parameters = {"engine": str(graph), "backend": backend, "num_steps": 1, "ensemble_size": 1,
                  "output_qos": "reliable", "input_qos": "reliable"}
    run = run_demo(parameters, width=640, height=480, rate_hz=30.0, frames=frames, scene_seed=3, timeout_sec=120)
    lat = run.latencies_ms
    return {"model": name, "size": size, "k": 1, "M": 1, "engine": f"node over DDS ({backend})",
            "p50_ms": statistics.median(lat) if lat else float("nan"),
            "p95_ms": float(np.percentile(lat, 95)) if lat else float("nan"),
            "status": "pass" if run.finished else "FAIL (frames missing)"}


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
    parser.add_argument("--node-frames", type=int, default=50, help="frames of the node end-to-end run")
    parser.add_argument("--sizes", nargs="+", help=f"HxW processing sizes (default {' '.join(SIZES)}; dry run: "
                        "the first)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run, or on a machine with an NVIDIA GPU", file=sys.stderr)
        return 2
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # the node run stays on loopback
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
    bases = {"tiny": build_tiny_depthfm(seed=0)}
    if args.full and not args.dry_run:
        bases["sd21-size"] = build_full_depthfm(device="cpu")
    vaes = ("full",) if args.dry_run else ("full", "tiny")
    models = {name if vae == "full" else f"{name}+tiny-vae": with_vae(model, vae)
              for name, model in bases.items() for vae in vaes}
    sizes = args.sizes or (list(SIZES[:1]) if args.dry_run else list(SIZES))
    cases = [(name, size, k, m) for name in models for size in sizes for k in (1, 2)
             for m in ((1, 2) if args.dry_run else (1, 2, 4))]
    rows = list(itertools.chain.from_iterable(
        check_case(models[name], name, size, k, m, out, args.dry_run, args.runs)
        for name, size, k, m in tqdm(cases, desc="gpu check", unit="case")))
    for name, model in tqdm(models.items(), desc="size-range engines", unit="model"):
        rows += check_size_range(model, name, sizes, out, args.dry_run)
    node_model = "sd21-size" if "sd21-size" in models else "tiny"
    rows.append(node_end_to_end(node_model, sizes[-1], out, args.dry_run, 3 if args.dry_run else args.node_frames))
    write_report(rows, out, args.dry_run)
    failed = [r for r in rows if r["status"] == "FAIL"]
    print(f"{len(rows)} rows, {len(failed)} failed; report: {out / 'report.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
