"""TensorRT backend: build engines from the exported ONNX graphs (fp16/fp32, cached) and run them on CUDA.

``tensorrt`` is the optional extra (``pip install .[tensorrt]``) and is imported only when an engine is built or
run. Everything up to the builder call is pure and tested without a GPU: which ops/opset the parser takes
(:func:`check_parser_ready`), optimisation-profile shapes (:func:`profile_shapes`) and the engine cache key
(:class:`EngineSpec`). CUDA memory is torch's; TensorRT >= 10 name-based I/O API (``execute_async_v3``).

Engines are cached as ``<cache_dir>/depthfm_<kind>_<H>x<W>_k<k>_m<M>_<precision>_<key>.engine`` (+ ``.json``),
keyed by model hash, graph kind, k, M, resolution, batch profile, precision, TensorRT version and GPU, so a changed
model, setting or TensorRT upgrade builds a new engine instead of loading a stale one. A timing cache
(``timing.cache`` in the same folder) makes rebuilds for other shapes fast.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import BackendError, InputError
from ..shapes import latent_noise_shape
from .base import Backend
from .export import GraphInfo, graph_op_types, graph_opset, read_sidecar, sidecar_path
from .onnx_backend import read_split_infos, resolve_graphs
from .staged import StagedModel

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")
# Opsets the TensorRT ONNX parser reads: 8.6 (JetPack 6) up to opset 17, 10.x newer ones. We export 17.
TENSORRT_MAX_OPSET = 17
# ONNX ops the TensorRT parser supports ("Y" in onnx-tensorrt docs/operators.md for TensorRT 8.5, plus
# LayerNormalization, native since TensorRT 8.6). Default domain only: no com.microsoft contrib ops.
TENSORRT_ONNX_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip Concat
Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout Einsum Elu
Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool
GlobalMaxPool Greater GreaterOrEqual GridSample GRU HardSigmoid HardSwish Identity If ImageScaler
InstanceNormalization IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero
Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin
ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter
ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth
Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())


# ------------------------------------------------------------------------------------- pure: before the builder
def tensorrt_unsupported_ops(onnx_path: str | Path) -> set[str]:
    """Ops of a graph the TensorRT parser does not take (empty set: parser-ready)."""
    return graph_op_types(onnx_path) - TENSORRT_ONNX_OPS


def check_parser_ready(onnx_path: str | Path) -> GraphInfo:
    """Sidecar of a graph TensorRT can parse; BackendError naming unsupported ops or a too-new opset."""
    info = read_sidecar(onnx_path)
    bad = tensorrt_unsupported_ops(onnx_path)
    if bad:
        raise BackendError(f"{onnx_path} uses ops the TensorRT parser does not support: {sorted(bad)}")
    opset = graph_opset(onnx_path)
    if opset > TENSORRT_MAX_OPSET:
        raise BackendError(f"{onnx_path} has opset {opset}; export with opset <= {TENSORRT_MAX_OPSET} for TensorRT")
    return info


@dataclass(frozen=True)
class EngineSpec:
    """Everything an engine depends on; its hash is the cache key.

    ``max_batch`` images per call; ``ensemble_size`` is M (baked in for the fused graph, the optimum of the
    member profile for split stages, which run ``N = b*M`` up to ``max_batch * max(ensemble_size, max_members)``).
    """

    model_hash: str
    kind: str
    num_steps: int | None
    ensemble_size: int
    height: int
    width: int
    precision: str
    tensorrt_version: str
    max_batch: int = 1
    device: str = ""
    noising_step: int = 0
    max_members: int = 8

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise BackendError(f"TensorRT precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.max_batch < 1 or self.ensemble_size < 1:
            raise InputError(f"max_batch and ensemble_size must be >= 1, got {self.max_batch}, {self.ensemble_size}")

    @classmethod
    def for_graph(cls, info: GraphInfo, precision: str, tensorrt_version: str, ensemble_size: int = 1,
                  max_batch: int = 1, device: str = "") -> "EngineSpec":
        return cls(info.model_hash, info.kind, info.num_steps, info.ensemble_size or ensemble_size, info.height,
                   info.width, precision, tensorrt_version, max_batch, device, info.noising_step)

    def cache_key(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def engine_name(self) -> str:
        k = "any" if self.num_steps is None else self.num_steps
        return (f"depthfm_{self.kind}_{self.height}x{self.width}_k{k}_m{self.ensemble_size}_{self.precision}_"
                f"{self.cache_key()}.engine")


def profile_shapes(spec: EngineSpec, opt_batch: int = 1) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Optimisation profile ``{input: (min, opt, max)}``: images 1..max_batch, members M..max_batch*M."""
    h, w, m = spec.height, spec.width, spec.ensemble_size
    opt_batch = min(max(opt_batch, 1), spec.max_batch)

    def image(b: int) -> tuple[int, ...]:
        return b, 3, h, w

    def latent(n: int) -> tuple[int, ...]:
        return latent_noise_shape(n, 1, h, w)

    batches = (1, opt_batch, spec.max_batch)
    if spec.kind == "fused":
        return {"image": tuple(image(b) for b in batches), "noise": tuple(latent(b * m) for b in batches)}
    if spec.kind == "encoder":
        return {"image": tuple(image(b) for b in batches)}
    members = (1, opt_batch * m, max_split_members(spec))
    if spec.kind == "step":
        return {"x_t": tuple(latent(n) for n in members), "t": tuple((n,) for n in members),
                "z_img": tuple(latent(n) for n in members)}
    return {"x_1": tuple(latent(n) for n in members)}


def max_split_members(spec: EngineSpec) -> int:
    """Largest ``N = b*M`` the split step/decoder engines take."""
    return spec.max_batch * max(spec.ensemble_size, spec.max_members)


def default_cache_dir(onnx_path: str | Path) -> Path:
    return Path(onnx_path).parent / "engines"


# -------------------------------------------------------------------------------------------- tensorrt proper
def import_tensorrt():
    """The ``tensorrt`` module, or BackendError saying how to get it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendError("TensorRT is not installed: pip install '.[tensorrt]' (needs an NVIDIA GPU and driver), "
                           "or use backend 'onnxruntime'/'torch'") from exc
    return tensorrt


def cuda_device_name() -> str:
    """GPU name and compute capability (part of the engine key: engines are not portable across GPUs)."""
    if not torch.cuda.is_available():
        raise BackendError("TensorRT needs a CUDA device; torch sees none")
    major, minor = torch.cuda.get_device_capability()
    return f"{torch.cuda.get_device_name()} sm{major}{minor}"


def build_engine(onnx_path: str | Path, spec: EngineSpec, engine_path: str | Path,
                 timing_cache_path: str | Path | None = None, workspace_gb: float = 4.0, opt_batch: int = 1) -> Path:
    """Parse ``onnx_path``, build a serialized engine for ``spec`` and write it (+ sidecar) to ``engine_path``."""
    trt = import_tensorrt()
    check_parser_ready(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])  # 8.6 needs the explicit-batch flag, 10 has no other mode
    network = builder.create_network(0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from file: external weights of > 2 GB graphs resolve
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if spec.precision == "fp16":
        fp16 = getattr(trt.BuilderFlag, "FP16", None)
        if fp16 is None:  # TensorRT 11 removed weak typing: precision comes from the graph's own types
            raise BackendError(f"TensorRT {trt.__version__} has no FP16 builder flag (weakly typed networks were "
                               "removed); use TensorRT 10 (pip install '.[tensorrt]' pins tensorrt<11) or "
                               "precision fp32")
        config.set_flag(fp16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes(spec, opt_batch).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    timing_cache_path = Path(timing_cache_path) if timing_cache_path else None
    cache_bytes = timing_cache_path.read_bytes() if timing_cache_path and timing_cache_path.is_file() else b""
    timing_cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(timing_cache, ignore_mismatch=True)
    t0 = time.perf_counter()
    log.info("building TensorRT %s engine for %s (%s); this takes minutes for the full model",
             spec.precision, Path(onnx_path).name, spec.engine_name())
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    sidecar_path(engine_path).write_text(json.dumps(dataclasses.asdict(spec), indent=2))
    if timing_cache_path:  # atomic: a reader never sees half a cache
        partial = timing_cache_path.with_name(timing_cache_path.name + f".{os.getpid()}.tmp")
        partial.write_bytes(bytes(config.get_timing_cache().serialize()))
        os.replace(partial, timing_cache_path)
    log.info("built %s in %.0f s", engine_path, time.perf_counter() - t0)
    return engine_path


def read_engine_spec(engine_path: str | Path) -> EngineSpec:
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise BackendError(f"{engine_path} has no sidecar {path.name}: build engines with depthfm_ros "
                           "(TensorRTBackend or depthfm-export --tensorrt)")
    try:
        return EngineSpec(**json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise BackendError(f"cannot read engine sidecar {path}: {exc}") from exc


def engine_for(onnx_path: str | Path, precision: str = "fp16", ensemble_size: int = 1, max_batch: int = 1,
               cache_dir: str | Path | None = None, rebuild: bool = False) -> Path:
    """Cached engine for a graph: load-path if built before for the same spec, else build it now."""
    trt = import_tensorrt()
    info = check_parser_ready(onnx_path)
    spec = EngineSpec.for_graph(info, precision, trt.__version__, ensemble_size, max_batch, cuda_device_name())
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(onnx_path)
    engine_path = cache_dir / spec.engine_name()
    if engine_path.is_file() and not rebuild:
        log.info("TensorRT engine cache hit: %s", engine_path)
        return engine_path
    return build_engine(onnx_path, spec, engine_path, cache_dir / "timing.cache")


class TrtEngine:
    """One deserialized engine and its execution context; inputs and outputs are CUDA torch tensors."""

    def __init__(self, engine_path: str | Path):
        trt = import_tensorrt()
        self.spec = read_engine_spec(engine_path)
        if self.spec.tensorrt_version != trt.__version__:
            raise BackendError(f"{engine_path} was built with TensorRT {self.spec.tensorrt_version}, this is "
                               f"{trt.__version__}: rebuild it from the .onnx")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BackendError(f"TensorRT cannot deserialize {engine_path} (other GPU or TensorRT version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        """Run with inputs in graph order; returns the (single) output as a new CUDA float32 tensor."""
        stream = torch.cuda.current_stream()
        for name, tensor in zip(self.inputs, tensors):
            tensor = tensor.contiguous()
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        out_name = self.outputs[0]
        out = torch.empty(tuple(self.context.get_tensor_shape(out_name)), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(out_name, out.data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execution failed")
        return out


class TensorRTBackend(Backend):
    """TensorRT engine(s) from a fused ``.onnx`` (fixed k, M), a split-stage folder (any k) or a built ``.engine``.

    Images per call are at most ``max_batch``; the fused engine's M and all engines' resolution are fixed.
    """

    name = "tensorrt"

    def __init__(self, engine: str | Path, num_steps: int | None = None, precision: str = "fp16",
                 ensemble_size: int = 1, max_batch: int = 1, cache_dir: str | Path | None = None):
        if precision == "bf16":
            raise BackendError("TensorRT backend builds fp16 or fp32 engines, not bf16")
        import_tensorrt()
        cuda_device_name()  # BackendError without a GPU
        path = Path(engine)
        self.max_batch = max_batch
        if path.suffix == ".engine":
            self.engines = {"fused": TrtEngine(path)}
            spec = self.engines["fused"].spec
            if spec.kind != "fused":
                raise BackendError(f"{path} is a {spec.kind} engine; give the split .onnx folder instead")
            info = GraphInfo("fused", spec.height, spec.width, spec.num_steps, spec.ensemble_size, 0,
                             spec.model_hash, spec.noising_step)
            self.max_batch = spec.max_batch
            self.info = None  # a prebuilt engine does not record its attention path
        else:
            graphs = resolve_graphs(path)
            infos = {"fused": read_sidecar(graphs["fused"])} if "fused" in graphs else read_split_infos(graphs)
            self.engines = {kind: TrtEngine(engine_for(p, precision, ensemble_size, max_batch, cache_dir))
                            for kind, p in graphs.items()}
            info = infos.get("fused") or infos["encoder"]
            self.info = info
        self.fused = "fused" in self.engines
        self.max_members = max_split_members(next(iter(self.engines.values())).spec)
        if self.fused:
            info.check(num_steps=num_steps, source=str(path))
            self.num_steps, self.fixed_ensemble_size = int(info.num_steps), int(info.ensemble_size)
        else:
            self.num_steps = 2 if num_steps is None else int(num_steps)
            self.staged = StagedModel(self.engines["encoder"], self.engines["step"], self.engines["decoder"],
                                      info.noising_step)
        self.fixed_size, self.noising_step, self.precision = info.size, info.noising_step, precision

    def run(self, rgb_bchw: np.ndarray, noise: np.ndarray) -> np.ndarray:
        self.check_inputs(rgb_bchw, noise)
        if rgb_bchw.shape[0] > self.max_batch:
            raise BackendError(f"tensorrt: engine profile allows {self.max_batch} image(s) per call, "
                               f"got {rgb_bchw.shape[0]}")
        if not self.fused and noise.shape[0] > self.max_members:
            raise BackendError(f"tensorrt: split engines were built for at most {self.max_members} members per "
                               f"call (b*M), got {noise.shape[0]}; raise max_members/max_batch and rebuild")
        with torch.inference_mode():
            images = torch.from_numpy(np.ascontiguousarray(rgb_bchw, np.float32)).cuda()
            noise_t = torch.from_numpy(np.ascontiguousarray(noise, np.float32)).cuda()
            z = self.engines["fused"](images, noise_t) if self.fused else self.staged(images, noise_t, self.num_steps)
            torch.cuda.current_stream().synchronize()
            return z.cpu().numpy()

    def describe(self) -> str:
        mode = f"fused M={self.fixed_ensemble_size}" if self.fused else "split"
        return f"tensorrt[{self.precision}, {mode}, {self.fixed_size[0]}x{self.fixed_size[1]}] (steps={self.num_steps})"


__all__ = ["PRECISIONS", "TENSORRT_MAX_OPSET", "TENSORRT_ONNX_OPS", "EngineSpec", "TensorRTBackend",
           "TrtEngine", "build_engine", "check_parser_ready", "engine_for", "profile_shapes",
           "tensorrt_unsupported_ops"]
