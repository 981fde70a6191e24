"""Per-stage latency of every available backend and FLOPs of the full-size DepthFM per stage (used by
depthfm-bench).

Latency: preprocess -> encode -> k flow steps -> decode -> postprocess -> fusion (LiDAR log-depth fit), median of
``repeats`` runs after one warm-up. Pre- and post-processing are the pipeline's own (:meth:`DepthFMPipeline.
preprocess` / :meth:`~DepthFMPipeline.postprocess`); stage times come from running the sampler over timed stage
calls; ``engine`` is one ``Backend.run`` (the fused graph for onnxruntime).

FLOPs: the full SD-2.1-size architecture (models.architectures) with random weights on the meta device (no
download, no memory), counted by ``torch.utils.flop_counter.FlopCounterMode``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..backends import cuda_available, tensorrt_importable
from ..backends.export import export_onnx
from ..backends.onnx_backend import OnnxBackend
from ..backends.staged import StagedModel
from ..backends.tensorrt_backend import TensorRTBackend
from ..backends.torch_backend import TorchBackend
from ..errors import AlignmentError
from ..fusion.alignment import fit_log_depth
from ..models.architectures import build_full_depthfm
from ..models.depthfm import DepthFM
from ..models.tiny_vae import build_tiny_vae
from ..pipeline import DepthFMPipeline
from ..processing import processing_size
from ..shapes import latent_noise_shape

FLOP_SIZES_HW = {"512x512": (512, 512), "640x480": processing_size(480, 640, 640)}  # -> (512, 640)
STAGES = ("preprocess", "encode", "steps", "decode", "postprocess", "fusion")


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
                 height: int, width: int, ensemble_size: int, repeats: int) -> dict:
    """Median per-stage ms of one backend on one image at processing size ``height`` x ``width`` (one warm-up run
    first). The fusion stage is the LiDAR fit on 3 % random sparse depth; a random model's z may be refused as
    degenerate (AlignmentError): the cost is what is measured."""
    rng = np.random.default_rng(0)
    pipe = DepthFMPipeline(backend, processing_resolution=0, ensemble_size=ensemble_size, seed=0)
    h_in, w_in = rgb_hwc_u8.shape[:2]
    sparse_hw_m = np.where(rng.random((h_in, w_in)) < 0.03, rng.uniform(1, 20, (h_in, w_in)), np.nan)
    sparse_hw_m = sparse_hw_m.astype(np.float32)
    records: list[dict[str, float]] = []
    for i in range(repeats + 1):
        ms: dict[str, float] = {}
        t0 = time.perf_counter()
        rgb_bchw, noise = pipe.preprocess([rgb_hwc_u8], height, width)
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
        z_bhw, std_bhw, _ = pipe.postprocess(members, h_in, w_in)
        ms["postprocess"] = 1e3 * (time.perf_counter() - t0)
        t0 = time.perf_counter()
        try:
            fit_log_depth(z_bhw[0], sparse_hw_m, std_bhw[0])
        except AlignmentError:
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
    def staged(stages: TimedStages, noising_step: int):
        runner = StagedModel(stages.encode, stages.velocity, stages.decode, noising_step)
        return lambda rgb, noise: runner(rgb, noise, num_steps)

    torch_backend = TorchBackend(model, num_steps=num_steps, device="cpu")
    t = TimedStages(model.encode, model.velocity, model.decode)
    out = [("torch[cpu]", torch_backend, t, staged(t, model.noising_step))]
    if not with_onnx:
        return out
    paths = export_onnx(model, graph_dir, height, width, num_steps, ensemble_size)
    threads = torch.get_num_threads()  # compare engines at equal threads
    fused = OnnxBackend(paths["fused"], num_steps=num_steps, intra_op_num_threads=threads)
    split = OnnxBackend(graph_dir, num_steps=num_steps, intra_op_num_threads=threads)
    t = TimedStages(*(split.stage(k) for k in ("encoder", "step", "decoder")))
    out.append(("onnxruntime fused", fused, None, None))
    out.append(("onnxruntime split", split, t, staged(t, model.noising_step)))
    if tensorrt_importable() and cuda_available():
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
