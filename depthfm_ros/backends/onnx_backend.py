"""ONNX Runtime backend (CPU or CUDA provider) for the graphs written by :mod:`depthfm_ros.backends.export`.

Two modes, chosen by what ``graph`` points at:

* the fused graph (``depthfm_fused_k{k}_m{M}.onnx``): one session call per batch; k and M are baked in.
* the split stages (a folder, or any of ``depthfm_encoder/step/decoder.onnx``): any k; the Euler loop is the
  PyTorch sampler's own (:class:`StagedModel`), each stage one session call.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..errors import BackendError, InputError
from .base import Backend
from .export import GRAPH_IO, SPLIT_FILES, GraphInfo, read_sidecar
from .staged import StagedModel

log = logging.getLogger(__name__)

PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def onnxruntime_providers(device: str = "auto") -> list[str]:
    """Execution providers for ``device`` 'auto' | 'cuda' | 'cpu' (CUDA first when available; CPU always last)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device not in ("auto", *PROVIDERS):
        raise InputError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
    if device == "cuda" and PROVIDERS["cuda"] not in available:
        raise BackendError(f"onnxruntime has no CUDA provider here (available: {available}); "
                           "install onnxruntime-gpu or use device 'cpu'")
    use_cuda = device in ("auto", "cuda") and PROVIDERS["cuda"] in available
    return [PROVIDERS["cuda"], PROVIDERS["cpu"]] if use_cuda else [PROVIDERS["cpu"]]


def resolve_graphs(graph: str | Path) -> dict[str, Path]:
    """``{'fused': path}`` for a fused graph, ``{'encoder'|'step'|'decoder': path}`` for a split-stage set."""
    path = Path(graph)
    if path.is_dir():
        folder = path
    elif path.suffix == ".onnx" and path.is_file():
        if read_sidecar(path).kind == "fused":
            return {"fused": path}
        folder = path.parent
    else:
        raise BackendError(f"ONNX graph not found: {path} (give a .onnx file or the folder of split stages)")
    paths = {kind: folder / name for kind, name in SPLIT_FILES.items() if kind != "fused"}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise BackendError(f"{folder} lacks split graphs {missing}; export them with depthfm-export --split")
    return paths


def read_split_infos(paths: dict[str, Path]) -> dict[str, GraphInfo]:
    """Sidecars of a split-stage set; BackendError unless all come from the same model and resolution."""
    infos = {kind: read_sidecar(p) for kind, p in paths.items()}
    first = infos["encoder"]
    for kind, info in infos.items():
        info.check(kind=kind, size=first.size, model_hash=first.model_hash, source=str(paths[kind]))
        if info.size_range != first.size_range:
            raise BackendError(f"{paths[kind]} was exported for sizes {info.size_text()}, {paths['encoder']} for "
                               f"{first.size_text()}: export the split stages together")
    return infos


class OnnxBackend(Backend):
    """ONNX Runtime engine. ``num_steps`` must match a fused graph's k (None takes it); split graphs run any k."""

    name = "onnxruntime"

    def __init__(self, graph: str | Path, num_steps: int | None = None, device: str = "auto",
                 intra_op_num_threads: int = 0, dtype: str = "fp32"):
        import onnxruntime as ort

        if dtype != "fp32":
            log.warning("onnxruntime runs the exported graphs in fp32 (asked for %s)", dtype)
        self.paths = resolve_graphs(graph)
        self.providers = onnxruntime_providers(device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_num_threads = intra_op_num_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.fused = "fused" in self.paths
        if self.fused:
            info = read_sidecar(self.paths["fused"])
            info.check(num_steps=num_steps, source=str(self.paths["fused"]))
            self.num_steps = int(info.num_steps)
            self.fixed_ensemble_size = int(info.ensemble_size)
        else:
            infos = read_split_infos(self.paths)
            info = infos["encoder"]
            self.num_steps = 2 if num_steps is None else int(num_steps)
            if self.num_steps < 1:
                raise InputError(f"num_steps must be >= 1, got {self.num_steps}")
        self.info = info
        self.fixed_size = info.size if info.size_range is None else None
        self.size_range = info.size_range
        self.noising_step = info.noising_step
        self.sessions = {}
        self.fused_inputs = GRAPH_IO["fused"][0]
        for kind, path in self.paths.items():
            try:
                self.sessions[kind] = ort.InferenceSession(str(path), options, providers=self.providers)
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
                raise BackendError(f"onnxruntime cannot load {path}: {exc}") from exc
            names = tuple(i.name for i in self.sessions[kind].get_inputs())
            if kind == "fused" and names == ("image",) and self.noising_step == 0:
                self.fused_inputs = names  # noising_step 0: the exporter drops the unused noise input
            elif names != GRAPH_IO[kind][0]:
                raise BackendError(f"{path} has inputs {names}, expected {GRAPH_IO[kind][0]} for a {kind} graph")
        if not self.fused:
            self.staged = StagedModel(self.stage("encoder"), self.stage("step"), self.stage("decoder"),
                                      self.noising_step)

    def stage(self, kind: str):
        """The graph ``kind`` (encoder, step, decoder) of a split export as a torch -> torch callable."""
        session, names = self.sessions[kind], GRAPH_IO[kind][0]

        def call(*tensors: torch.Tensor) -> torch.Tensor:
            feeds = {n: np.ascontiguousarray(t.numpy(), dtype=np.float32) for n, t in zip(names, tensors)}
            return torch.from_numpy(session.run(None, feeds)[0])

        return call

    def run(self, rgb_bchw: np.ndarray, noise: np.ndarray) -> np.ndarray:
        self.check_inputs(rgb_bchw, noise)
        rgb_bchw = np.ascontiguousarray(rgb_bchw, dtype=np.float32)
        noise = np.ascontiguousarray(noise, dtype=np.float32)
        if self.fused:
            feeds = {"image": rgb_bchw, "noise": noise}
            return self.sessions["fused"].run(None, {name: feeds[name] for name in self.fused_inputs})[0]
        with torch.inference_mode():
            return self.staged(torch.from_numpy(rgb_bchw), torch.from_numpy(noise), self.num_steps).numpy()

    def describe(self) -> str:
        mode = f"fused k={self.num_steps} M={self.fixed_ensemble_size}" if self.fused else \
            f"split steps={self.num_steps}"
        device = "cuda" if self.providers[0] == PROVIDERS["cuda"] else "cpu"
        threads = f", {self.intra_op_num_threads or 'default'} thread(s)" if device == "cpu" else ""
        return f"onnxruntime[{device}, {mode}, {self.info.size_text()}{threads}]"
