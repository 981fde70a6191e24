"""Engines behind one interface (:class:`Backend`): torch, onnxruntime, tensorrt; ``create_backend`` picks one."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from ..errors import BackendError, CheckpointError, InputError
from ..models.loading import load_model
from ..settings import BACKENDS, NO_MODEL_HINT, ModelSettings, resolve_dtype
from . import onnx_backend, tensorrt_backend
from .base import Backend
from .torch_backend import TorchBackend

log = logging.getLogger(__name__)


def tensorrt_importable() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def onnxruntime_cuda_available() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def choose_backend(engine: str | Path | None, tensorrt_ok: bool, cuda_ok: bool, ort_cuda_ok: bool,
                   dtype: str = "auto") -> tuple[str, str]:
    """The 'auto' choice and why: TensorRT (importable + CUDA + a graph/engine, and a precision it builds), else
    onnxruntime for a graph, else torch. TensorRT and onnxruntime need ``engine`` (an exported .onnx, split folder
    or built .engine)."""
    if engine is None:
        return "torch", "no engine/graph given, running the PyTorch model"
    if dtype == "bf16" and Path(engine).suffix != ".engine":  # TensorRT builds fp16/fp32; onnxruntime runs fp32
        return "onnxruntime", "dtype bf16: TensorRT builds fp16 or fp32 engines; running the graph in fp32"
    if tensorrt_ok and cuda_ok:
        return "tensorrt", f"TensorRT is installed and a CUDA device is present; engine from {engine}"
    if Path(engine).suffix == ".engine":
        raise BackendError(f"{engine} is a TensorRT engine but TensorRT is "
                           f"{'installed' if tensorrt_ok else 'not installed'} and CUDA is "
                           f"{'available' if cuda_ok else 'not available'}; give the .onnx graph instead")
    why = "TensorRT is not installed" if not tensorrt_ok else "no CUDA device for TensorRT"
    provider = "CUDA" if ort_cuda_ok else "CPU"
    return "onnxruntime", f"{why}; running graph {engine} with the onnxruntime {provider} provider"


def create_backend(name: str = "auto", checkpoint: str | None = None, vae: str | None = None,
                   num_steps: int = 2, dtype: str = "auto", engine: str | Path | None = None, **kwargs) -> Backend:
    """Build a backend by name. ``checkpoint`` is an official .ckpt (with ``vae``) or a converted model folder
    (torch backend); ``engine`` is an exported .onnx, a split-graph folder or a built .engine (onnxruntime,
    tensorrt). Extra ``kwargs`` go to the backend (``device``, ``intra_op_num_threads``, ``ensemble_size``,
    ``max_batch``, ``cache_dir``). Graphs built for another k, M or size raise BackendError. ``ensemble_size`` is
    only used by TensorRT (the split engines' member profile); onnxruntime reads M from a fused graph and
    torch takes any M, so they drop it.
    """
    if name not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "auto":
        ort_cuda = engine is not None and onnxruntime_cuda_available()
        name, reason = choose_backend(engine, tensorrt_importable(), cuda_available(), ort_cuda, dtype)
        log.info("backend auto -> %s: %s", name, reason)
        if name == "onnxruntime" and dtype == "bf16":  # auto chose it for bf16: runs as the graph is, fp32
            dtype = "fp32"
    dtype = resolve_dtype(dtype, name)
    if name != "torch" and engine is None:
        raise BackendError(f"backend {name!r} needs an exported graph: set engine to a .onnx/.engine "
                           "(depthfm-export writes them)")
    if name != "tensorrt":
        kwargs.pop("ensemble_size", None)
        kwargs.pop("max_batch", None)
    onnx_threads = kwargs.pop("onnx_threads", 0)
    if name == "torch":
        return TorchBackend.from_checkpoint(checkpoint, vae, num_steps=num_steps, dtype=dtype, **kwargs)
    rescale = kwargs.pop("rescale_attention", None)
    if name == "onnxruntime":
        backend = onnx_backend.OnnxBackend(engine, num_steps=num_steps, dtype=dtype, intra_op_num_threads=onnx_threads,
                                           **kwargs)
    else:
        backend = tensorrt_backend.TensorRTBackend(engine, num_steps=num_steps, precision=dtype, **kwargs)
    exported = getattr(getattr(backend, "info", None), "rescale_attention", None)  # None: not recorded
    if rescale is not None and exported is not None and bool(rescale) != exported:
        raise BackendError(f"{engine} was exported with rescale_attention={exported}, asked for "
                           f"rescale_attention={bool(rescale)}; re-export with depthfm-export"
                           + (" --rescale-attention" if rescale else ""))
    return backend



def load_backend(settings: ModelSettings) -> Backend:
    """The backend ``settings`` describe (the command-line tools and the ROS node both call this).

    ``tiny_model`` runs the small random model on torch; otherwise ``engine`` (an exported graph or TensorRT
    engine) or ``checkpoint`` (+ ``vae``) feed :func:`create_backend`.
    """
    if settings.tiny_model:
        return TorchBackend(load_model(settings), num_steps=settings.num_steps,
                            dtype=resolve_dtype(settings.dtype, "torch"))
    if not settings.checkpoint and not settings.engine:
        raise CheckpointError(f"no model given: {NO_MODEL_HINT}, or --engine GRAPH (an exported .onnx or "
                              "TensorRT .engine)")
    kwargs = {"rescale_attention": settings.rescale_attention, "onnx_threads": settings.threads()[1]}
    if settings.engine:  # split TensorRT engines size their member profile from the ensemble size
        kwargs.update(engine=settings.engine, ensemble_size=settings.ensemble_size, max_batch=settings.max_batch)
    elif settings.vae_kind == "tiny":
        kwargs.update(tiny_vae=settings.tiny_vae, vae_kind="tiny")
    return create_backend(settings.backend, settings.checkpoint, settings.vae, num_steps=settings.num_steps,
                          dtype=settings.dtype, **kwargs)


__all__ = ["BACKENDS", "Backend", "choose_backend", "create_backend", "load_backend"]
