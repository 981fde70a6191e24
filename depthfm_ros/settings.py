"""What a user chooses about the model, in one place: the command-line tools and the ROS node both build a
:class:`ModelSettings` and hand it to :func:`depthfm_ros.backends.load_backend` (or
:func:`depthfm_ros.models.loading.load_model`). The choice lists below are the only copies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import InputError
from .shapes import SIZE_MULTIPLE

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
DTYPES = ("auto", "fp32", "fp16", "bf16")


def resolve_dtype(dtype: str, backend: str) -> str:
    """'auto' -> the precision ``backend`` runs best and its engines are exported with: fp16 for TensorRT (what
    ``depthfm-export --tensorrt`` builds by default, so the node reuses that engine), fp32 elsewhere."""
    if dtype != "auto":
        return dtype
    return "fp16" if backend == "tensorrt" else "fp32"
VAE_KINDS = ("full", "tiny")


def tiny_model_conflict(backend: str, engine: str | None) -> tuple[str, str]:
    """(the setting, why) when the tiny random model is asked to run other than on torch, else ("", ""): it is
    built in memory on torch and has no exported graph, so onnxruntime, TensorRT or an engine file cannot run it."""
    if engine:
        return "engine", f"{engine!r} cannot run the tiny random model (built in memory, runs on torch); leave it empty"
    if backend not in ("auto", "torch"):
        return "backend", (f"{backend!r} cannot run the tiny random model (built in memory, runs on torch): use "
                           "torch or auto")
    return "", ""
def auto_threads() -> int:
    """Intra-op threads of torch and onnxruntime when 0 (auto) is asked for: ``OMP_NUM_THREADS`` when it is set,
    else the cores this process may run on minus one, at least 1. The core left over is what a running node keeps
    busy besides inference (the ROS executor: DDS, image decoding, publishing; the worker's fusion and points).
    Measured on the 2-core VM under load (README, "Threads"): all cores made the node 5x slower than one thread
    (OpenMP spinning starved those threads) and depthfm-predict 2.5-4x slower."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - 1)
#: what to give when no model is given, in the command-line tools' flags (the node names its parameters)
NO_MODEL_HINT = ("--checkpoint depthfm-v1.ckpt --vae SD_VAE_FOLDER (the official checkpoint), --checkpoint FOLDER (one "
                 "converted with DepthFM.save_pretrained), or --tiny-model (a small random model: mechanics only)")


@dataclass(frozen=True)
class ModelSettings:
    """Which DepthFM to run and how.

    Model: ``tiny_model`` (small random model, demos and tests), else ``checkpoint`` (official ``.ckpt`` with the SD
    ``vae`` folder, or a converted folder) and/or ``engine`` (exported ``.onnx``, split folder or TensorRT
    ``.engine``). ``vae_kind`` 'tiny' uses the distilled tiny VAE (``tiny_vae`` folder; giving one implies 'tiny').
    Run: ``backend``, ``dtype``, ``num_steps`` (k Euler steps), ``ensemble_size`` (M members),
    ``processing_resolution`` (longest side, multiple of 64; 0 = input size), ``seed`` (None = fresh entropy),
    ``torch_threads`` and ``onnx_threads`` (intra-op threads of torch and onnxruntime; 0 = :func:`auto_threads`),
    ``rescale_attention`` (the official code's attention without xformers; default its xformers path),
    ``max_batch`` (images per call of a TensorRT engine's profile, as exported). ``dtype`` 'auto' is fp16 on
    TensorRT and fp32 elsewhere (:func:`resolve_dtype`). Empty strings count as not given. Bad values raise
    InputError.
    """

    checkpoint: str | None = None
    vae: str | None = None
    engine: str | None = None
    tiny_model: bool = False
    vae_kind: str = "full"
    tiny_vae: str | None = None
    backend: str = "torch"
    dtype: str = "auto"
    num_steps: int = 2
    ensemble_size: int = 1
    processing_resolution: int = 512
    seed: int | None = 0
    torch_threads: int = 0
    rescale_attention: bool = False
    onnx_threads: int = 0
    max_batch: int = 1

    def __post_init__(self) -> None:
        for name in ("checkpoint", "vae", "engine", "tiny_vae"):
            value = getattr(self, name)
            object.__setattr__(self, name, str(value) if value not in (None, "") else None)
        if self.tiny_vae:
            object.__setattr__(self, "vae_kind", "tiny")
        for name, choices in (("backend", BACKENDS), ("dtype", DTYPES), ("vae_kind", VAE_KINDS)):
            if getattr(self, name) not in choices:
                raise InputError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        for name, lo in (("num_steps", 1), ("ensemble_size", 1), ("torch_threads", 0), ("onnx_threads", 0),
                          ("max_batch", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise InputError(f"{name} must be an integer >= {lo}, got {value!r}")
        res = self.processing_resolution
        if isinstance(res, bool) or not isinstance(res, int) or res < 0 or res % SIZE_MULTIPLE:
            raise InputError(f"processing_resolution must be 0 (input size) or a positive multiple of "
                             f"{SIZE_MULTIPLE}, got {res!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise InputError(f"seed must be an integer >= 0 or None (fresh entropy), got {self.seed!r}")
        if self.tiny_model:
            name, why = tiny_model_conflict(self.backend, self.engine)
            if name:
                raise InputError(f"{name} {why}")

    @property
    def model_seed(self) -> int:
        """Seed of the tiny random model's weights (0 when the noise seed is fresh entropy)."""
        return self.seed or 0

    def threads(self) -> tuple[int, int]:
        """(torch, onnxruntime) intra-op threads: the ones asked for, 0 resolved to :func:`auto_threads`."""
        return self.torch_threads or auto_threads(), self.onnx_threads or auto_threads()

    def apply_torch_threads(self) -> int:
        """``torch.set_num_threads`` with the torch threads of :meth:`threads`; returns them."""
        import torch

        threads = self.threads()[0]
        torch.set_num_threads(threads)
        return threads
