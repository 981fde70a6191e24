"""The GPU path in one run: export -> TensorRT engines -> accuracy against torch fp32 -> timings -> report.

Run through ``scripts/gpu_check.sh`` (which installs the project with its GPU extras first). Models, in order of
priority: the tiny random model, the same with a tiny VAE, and with ``--full`` an SD-2.1-size random model
(320 channels, official layout) with the SD VAE and with a TAESD-size tiny VAE. Per model:

- ONE set of split engines (encoder, step, decoder; fp16) whose optimisation profile spans every size (the graphs
  are exported with a size range) and up to 4 members: every size, k in {1, 2} and M in {1, 2, 4} runs on those
  three engines, checked against torch fp32 on the same inputs and noise (max |dz|, delta1 and AbsRel of the
  relative depth, with pass/fail bounds) and timed (p50/p95 over ``--runs`` after warm-up); the UNet is built once
  per model, not once per case (a full-size UNet build takes minutes);
- the fused engine at the first size, k=1, M=1 (the fastest path; the FLOP goal's case), with and without CUDA-graph
  replay;
- torch eager fp16 and bf16 (TensorRT 10 builds fp16/fp32, so bf16 is checked on torch), torch.compile and ONNX
  Runtime CUDA at k=1, M=1, and the peak GPU memory.

Then depthfm_node end to end over DDS on loopback with the TensorRT engine (image published -> depth received).
``--budget-s`` (default 420) keeps the run inside a lent device's window: work that would start after the budget is
spent (or a full-size engine build with less than 4 minutes left) is skipped and reported as skipped, never
silently dropped. Writes ``report.md`` and ``results.csv`` under ``--out``; exit 1 if any check fails.

``--dry-run`` (CI, no GPU): the tiny model only; everything up to the GPU calls runs -- export (split graphs with
their size range, the fused graph), parser-ready ops and opset, engine specs, optimisation profiles and cache keys,
the torch fp32 reference, the report -- and every GPU row says "not run (dry run)"; the node end-to-end row runs
the fused graph with onnxruntime on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import csv
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from depthfm_ros.backends.export import export_graph, export_onnx, model_hash
from depthfm_ros.backends.tensorrt_backend import EngineSpec, TensorRTBackend, check_parser_ready, profile_shapes
from depthfm_ros.backends.torch_backend import TorchBackend
from depthfm_ros.models.architectures import build_full_depthfm, build_tiny_depthfm
from depthfm_ros.models.tiny_vae import TAESD_DEPTH_CONFIG, TINY_TEST_CONFIG, build_tiny_vae
from depthfm_ros.processing import relative_depth

#: pass/fail bounds of an engine against torch fp32 (relative depth in [0, 1])
BOUNDS = {"fp16": {"max_dz": 0.05, "delta1": 0.99, "abs_rel": 0.02},
          "bf16": {"max_dz": 0.15, "delta1": 0.97, "abs_rel": 0.05}}
SIZES = ("512x512", "384x640")
MAX_MEMBERS = 4
HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
NO_TENSORRT = "skipped (tensorrt not installed: scripts/gpu_check.sh installs it; docs/gpu.md)"
FULL_BUILD_S = 240  # a full-size engine set is not started with less time than this left


class Budget:
    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


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


def passes(metrics: dict, precision: str) -> bool:
    bounds = BOUNDS[precision]
    return metrics["max_dz"] <= bounds["max_dz"] and metrics["delta1"] >= bounds["delta1"] \
        and metrics["abs_rel"] <= bounds["abs_rel"]


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


def size_range_of(sizes: list[str]) -> tuple[int, int, int, int]:
    hw = [tuple(int(v) for v in size.split("x")) for size in sizes]
    return min(h for h, _ in hw), min(w for _, w in hw), max(h for h, _ in hw), max(w for _, w in hw)


def cases(sizes: list[str], dry_run: bool) -> list[tuple[str, int, int]]:
    return [(size, k, m) for size in sizes for k in (1, 2) for m in ((1, 2) if dry_run else (1, 2, 4))]


def check_model(model, name: str, sizes: list[str], work: Path, dry_run: bool, runs: int, budget: Budget,
                full_size: bool) -> list[dict]:
    """Every row of one model (see the module doc); the model stays on the CPU in fp32, GPU copies do the work."""
    rows: list[dict] = []
    device = "cpu" if dry_run else "cuda"
    reference_model = copy.deepcopy(model).to(device, torch.float32).eval()  # fp32 reference, and where to trace
    h0, w0 = (int(v) for v in sizes[0].split("x"))
    mhash = model_hash(model)
    split_dir = work / "graphs" / name
    split = export_onnx(reference_model, split_dir, h0, w0, fused=False, split=True, progress=False,
                        size_range=size_range_of(sizes), mhash=mhash)
    fused = export_graph(reference_model, "fused", split_dir / "fused_k1_m1.onnx", h0, w0, 1, 1, mhash=mhash)
    specs = {kind: EngineSpec.for_graph(check_parser_ready(path), "fp16", "dry-run", MAX_MEMBERS)
             for kind, path in split.items()}  # ops, opset, profiles and keys: checked before any GPU call
    fused_spec = EngineSpec.for_graph(check_parser_ready(fused), "fp16", "dry-run", 1)
    reference = TorchBackend(reference_model, num_steps=1, dtype="fp32", device=device)

    def base(size, k, m, engine):
        return {"model": name, "size": size, "k": k, "M": m, "engine": engine}

    if dry_run:
        for size, k, m in cases(sizes, dry_run):
            reference.num_steps = k
            reference.run(*case_inputs(size, m))  # the fp32 reference runs on the CPU
            rows.append({**base(size, k, m, "tensorrt fp16 split"), "status": "not run (dry run)",
                         "profile_image": str(profile_shapes(specs["encoder"])["image"]),
                         "profile_x_t": str(profile_shapes(specs["step"])["x_t"]),
                         "cache_key": specs["step"].cache_key()})
        rows.append({**base(sizes[0], 1, 1, "tensorrt fp16 fused"), "status": "not run (dry run)",
                     "profile_image": str(profile_shapes(fused_spec)["image"]), "cache_key": fused_spec.cache_key()})
        return rows
    if budget.left() < (FULL_BUILD_S if full_size else 30):
        return [{**base("-", "-", "-", "everything"), "status": f"skipped (time budget, {budget.left():.0f} s left)"}]
    split_backend = None
    if HAVE_TENSORRT:
        t0 = time.perf_counter()
        split_backend = TensorRTBackend(split_dir, precision="fp16", ensemble_size=MAX_MEMBERS,
                                        cache_dir=work / "engines")
        rows.append({**base(f"{sizes[0]}..{sizes[-1]}", "-", f"<= {MAX_MEMBERS}", "tensorrt fp16 split: build"),
                     "build_s": time.perf_counter() - t0, "status": "built"})
    else:
        rows.append({**base("-", "-", "-", "tensorrt"), "status": NO_TENSORRT})
    eager = TorchBackend(copy.deepcopy(model), num_steps=1, dtype="fp16", device="cuda")
    bf16 = TorchBackend(copy.deepcopy(model), num_steps=1, dtype="bf16", device="cuda") \
        if torch.cuda.is_bf16_supported() else None
    for size, k, m in tqdm(cases(sizes, dry_run), desc=name, unit="case"):
        if budget.left() <= 0:
            rows.append({**base(size, k, m, "remaining cases"), "status": "skipped (time budget)"})
            break
        rgb, noise = case_inputs(size, m)
        images, noise_t = torch.from_numpy(rgb).cuda(), torch.from_numpy(noise).cuda()
        for backend in (reference, split_backend, eager, bf16):
            if backend is not None:
                backend.num_steps = k
        ref = reference.run(rgb, noise)
        candidates = [("tensorrt fp16 split", split_backend, "fp16"), ("torch eager fp16", eager, "fp16"),
                      ("torch bf16", bf16, "bf16")]
        for engine, backend, precision in candidates:
            if backend is None:
                continue
            torch.cuda.reset_peak_memory_stats()
            metrics = relative_metrics(backend.run(rgb, noise), ref)
            rows.append({**base(size, k, m, engine), **metrics,
                         **percentiles(lambda: backend.run_tensors(images, noise_t), runs),
                         "gpu_mem_mib": torch.cuda.max_memory_allocated() / 2**20,
                         "status": "pass" if passes(metrics, precision) else "FAIL"})
    rows.append(pipeline_tensor_row(reference, name, sizes[0]))
    rows += fused_rows(reference, eager, fused, name, sizes[0], work, runs, budget, full_size)
    return rows


def pipeline_tensor_row(reference, name: str, size: str) -> dict:
    """The node's pre/post-processing on the GPU (``tensor_processing``) against the numpy path, same engine and
    noise, on a 640x480 camera image: max |dz| of the result and both paths' pre + post milliseconds."""
    from depthfm_ros.pipeline import DepthFMPipeline

    rgb = np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    resolution = max(int(v) for v in size.split("x"))
    reference.num_steps = 1
    out = {}
    for on_gpu in (True, False):
        pipe = DepthFMPipeline(reference, resolution, ensemble_size=2, seed=0, tensor_processing=on_gpu)
        pipe(rgb)  # warm-up
        pred = DepthFMPipeline(reference, resolution, ensemble_size=2, seed=0, tensor_processing=on_gpu)(rgb)
        out[on_gpu] = pred
    dz = float(np.abs(out[True].z_hw - out[False].z_hw).max())
    ms = {f"{'gpu' if g else 'numpy'}_pre_post_ms": p.timings_ms["preprocess"] + p.timings_ms["postprocess"]
          for g, p in out.items()}
    return {"model": name, "size": size, "k": 1, "M": 2, "engine": "pipeline tensor_processing (cuda vs numpy)",
            "max_dz": dz, **ms, "status": "pass" if dz < 1e-3 else "FAIL"}


def fused_rows(reference, eager, fused: Path, name: str, size: str, work: Path, runs: int, budget: Budget,
               full_size: bool) -> list[dict]:
    """The fused engine (k=1, M=1) with and without CUDA-graph replay, torch.compile and ONNX Runtime, same case."""
    base = {"model": name, "size": size, "k": 1, "M": 1}
    if budget.left() < (FULL_BUILD_S if full_size else 30):
        return [{**base, "engine": "fused, compile, onnxruntime", "status": "skipped (time budget)"}]
    rgb, noise = case_inputs(size, 1)
    images, noise_t = torch.from_numpy(rgb).cuda(), torch.from_numpy(noise).cuda()
    reference.num_steps = eager.num_steps = 1
    ref = reference.run(rgb, noise)
    rows = []
    for cuda_graph in ((False, True) if HAVE_TENSORRT else ()):
        try:
            backend = TensorRTBackend(fused, precision="fp16", cache_dir=work / "engines", cuda_graph=cuda_graph)
            metrics = relative_metrics(backend.run(rgb, noise), ref)
        except Exception as exc:  # a failed capture is a result to report, not the end of the run
            rows.append({**base, "engine": f"tensorrt fp16 fused{' cuda graph' if cuda_graph else ''}",
                         "status": f"FAIL ({type(exc).__name__}: {exc})"[:200]})
            continue
        rows.append({**base, "engine": f"tensorrt fp16 fused{' cuda graph' if cuda_graph else ''}", **metrics,
                     **percentiles(lambda: backend.run_tensors(images, noise_t), runs),
                     "status": "pass" if passes(metrics, "fp16") else "FAIL"})
    if budget.left() > (180 if full_size else 20):
        compiled = torch.compile(eager.model)
        rows.append({**base, "engine": "torch.compile fp16", **percentiles(
            lambda: compiled(images.half(), noise_t.half(), 1), runs), "status": "timed"})
    from depthfm_ros.backends.onnx_backend import OnnxBackend

    ort = OnnxBackend(fused, num_steps=1)
    if ort.providers[0] != "CUDAExecutionProvider" and full_size:  # minutes per timing on the CPU: not a GPU figure
        rows.append({**base, "engine": "onnxruntime", "status": "skipped (no CUDA provider: onnxruntime-gpu)"})
    else:
        rows.append({**base, "engine": f"onnxruntime ({ort.providers[0]})",
                     **percentiles(lambda: ort.run(rgb, noise), runs), "status": "timed"})
    return rows


def node_end_to_end(name: str, size: str, work: Path, dry_run: bool, frames: int, budget: Budget) -> dict:
    """depthfm_node with the fused TensorRT engine built above (onnxruntime on its graph in a dry run), fed a
    640x480 camera at 30 Hz over DDS on loopback: image published -> relative depth received."""
    from depthfm_ros.ros.demo import run_demo

    backend = "onnxruntime" if dry_run else "tensorrt"
    row = {"model": name, "size": size, "k": 1, "M": 1, "engine": f"node over DDS ({backend})"}
    if not dry_run and budget.left() < 30:
        return {**row, "status": "skipped (time budget)"}
    if not dry_run and not HAVE_TENSORRT:
        return {**row, "status": NO_TENSORRT}
    if importlib.util.find_spec("rclpy") is None:
        return {**row, "status": "skipped (rclpy not installed: pip install '.[ros]')"}
    graph = work / "graphs" / name / "fused_k1_m1.onnx"
    engine = graph
    if not dry_run:  # the engine built by fused_rows (a cache hit), so the node starts without a build
        from depthfm_ros.backends.tensorrt_backend import engine_for

        engine = engine_for(graph, "fp16", cache_dir=work / "engines")
    parameters = {"engine": str(engine), "backend": backend, "num_steps": 1, "ensemble_size": 1,
                  "output_qos": "reliable", "input_qos": "reliable"}
    run = run_demo(parameters, width=640, height=480, rate_hz=30.0, frames=frames, scene_seed=3, timeout_sec=120)
    lat = run.latencies_ms
    return {**row, "p50_ms": statistics.median(lat) if lat else float("nan"),
            "p95_ms": float(np.percentile(lat, 95)) if lat else float("nan"),
            "status": "pass" if run.finished else "FAIL (frames missing)"}


def write_report(rows: list[dict], out: Path, dry_run: bool, elapsed_s: float) -> None:
    keys = list(dict.fromkeys(key for row in rows for key in row))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    gpu = "dry run, no GPU" if dry_run else torch.cuda.get_device_name()
    lines = [f"# GPU check ({gpu})", "", f"{len(rows)} rows in {elapsed_s:.0f} s.", "",
             "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[k]:.4g}" if isinstance(row.get(k), float) else str(row.get(k, ""))
                                       for k in keys) + " |")
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check_results", help="report.md and results.csv")
    parser.add_argument("--work", help="exported graphs and engines (GBs at full size; default: --out)")
    parser.add_argument("--dry-run", action="store_true", help="no GPU: everything up to the GPU calls")
    parser.add_argument("--full", action="store_true", help="also the SD-2.1-size random model")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--node-frames", type=int, default=50, help="frames of the node end-to-end run")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip (and report) work beyond this many s")
    parser.add_argument("--sizes", nargs="+", help=f"HxW processing sizes (default {' '.join(SIZES)}; dry run: "
                        "the first)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else out
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run, or on a machine with an NVIDIA GPU", file=sys.stderr)
        return 2
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # the node run stays on loopback
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
    t0, budget = time.monotonic(), Budget(args.budget_s)
    tiny = build_tiny_depthfm(seed=0)
    models = {"tiny": (tiny, False)}
    if not args.dry_run:
        models["tiny+tiny-vae"] = (with_vae(tiny, "tiny"), False)
    if args.full and not args.dry_run:
        full = build_full_depthfm(device="cpu")
        models["sd21-size"] = (full, True)
        models["sd21-size+tiny-vae"] = (with_vae(full, "tiny"), True)
    sizes = args.sizes or (list(SIZES[:1]) if args.dry_run else list(SIZES))
    rows: list[dict] = []
    for name, (model, full_size) in models.items():
        rows += check_model(model, name, sizes, work, args.dry_run, args.runs, budget, full_size)
    node_model = "sd21-size" if "sd21-size" in models else "tiny"
    rows.append(node_end_to_end(node_model, sizes[0], work, args.dry_run, 3 if args.dry_run else args.node_frames,
                                budget))
    write_report(rows, out, args.dry_run, time.monotonic() - t0)
    failed = [r for r in rows if str(r["status"]).startswith("FAIL")]
    skipped = [r for r in rows if str(r["status"]).startswith("skipped")]
    print(f"{len(rows)} rows, {len(failed)} failed, {len(skipped)} skipped; report: {out / 'report.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
