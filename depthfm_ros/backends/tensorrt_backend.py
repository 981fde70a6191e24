"""TensorRT backend: build engines from the exported ONNX graphs (fp16/fp32, cached) and run them on CUDA.

``tensorrt`` is the optional extra (``pip install .[tensorrt]``) and is imported only when an engine is built or
run. Everything up to the builder call is pure and tested without a GPU: which ops/opset the parser takes
(:func:`check_parser_ready`), optimisation-profile shapes (:func:`profile_shapes`) and the engine cache key
(:class:`EngineSpec`). CUDA memory is torch's; TensorRT >= 10 name-based I/O API (``execute_async_v3``).

Engines are cached as ``<cache_dir>/depthfm_<kind>_<H>x<W>_k<k>_m<M>_<precision>_<key>.engine`` (+ ``.json``),
keyed by the ONNX graph's own hash, the model hash, graph kind, k, M, resolution, batch profile, precision, TensorRT
version and GPU (name, compute capability, SM count, memory: Orin modules differ) and, for graphs exported with
dynamic spatial axes, the size range of the optimisation profile (one engine then runs every multiple of 64 in it,
the export size as the optimum), so a re-export, a changed
setting, another GPU or a TensorRT upgrade builds a new engine instead of loading a stale one; a prebuilt
``.engine`` that does not match this TensorRT or GPU is refused with the reason. A timing cache per TensorRT
version and GPU (``timing_<key>.cache`` in the same folder, written atomically) makes rebuilds for other shapes fast.

At run time each backend owns one CUDA stream: every engine call of a frame is enqueued on it and the frame is
synchronised once. I/O tensors are bound by name with the dtypes the engine declares; every TensorRT call that
reports failure raises :class:`BackendError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import mmap
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import BackendError, InputError
from ..shapes import latent_noise_shape, size_range_text
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
    graph_hash: str = ""
    size_range: tuple[int, int, int, int] | None = None  # (min_h, min_w, max_h, max_w); None: height x width only
    opt_batch: int = 1  # images per call the profile is tuned for (a node serving N cameras: N = max_batch)

    def __post_init__(self):
        if self.size_range is not None:
            object.__setattr__(self, "size_range", tuple(int(v) for v in self.size_range))  # JSON gives a list
        if self.precision not in PRECISIONS:
            raise BackendError(f"TensorRT precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.max_batch < 1 or self.ensemble_size < 1:
            raise InputError(f"max_batch and ensemble_size must be >= 1, got {self.max_batch}, {self.ensemble_size}")

    @classmethod
    def for_graph(cls, info: GraphInfo, precision: str, tensorrt_version: str, ensemble_size: int = 1,
                  max_batch: int = 1, device: str = "", graph_hash: str = "") -> "EngineSpec":
        m = info.ensemble_size or ensemble_size  # M is in the key: a profile for more members only wastes memory
        return cls(info.model_hash, info.kind, info.num_steps, m, info.height, info.width, precision,
                   tensorrt_version, max_batch, device, info.noising_step, max_members=m, graph_hash=graph_hash,
                   size_range=info.size_range, opt_batch=max_batch)

    def cache_key(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def engine_name(self) -> str:
        k = "any" if self.num_steps is None else self.num_steps
        size = f"{self.height}x{self.width}" if self.size_range is None else size_range_text(self.size_range, "-")
        return f"depthfm_{self.kind}_{size}_k{k}_m{self.ensemble_size}_{self.precision}_{self.cache_key()}.engine"


def profile_shapes(spec: EngineSpec, opt_batch: int | None = None) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Optimisation profile ``{input: (min, opt, max)}``: images 1..max_batch, members M..max_batch*M; with a
    ``size_range`` the spatial size runs from its minimum over the export size (optimum) to its maximum."""
    m = spec.ensemble_size
    opt_batch = min(max(spec.opt_batch if opt_batch is None else opt_batch, 1), spec.max_batch)
    lo_h, lo_w, hi_h, hi_w = spec.size_range or (spec.height, spec.width, spec.height, spec.width)
    sizes = ((lo_h, lo_w), (spec.height, spec.width), (hi_h, hi_w))

    def images(batches) -> tuple[tuple[int, ...], ...]:
        return tuple((b, 3, h, w) for b, (h, w) in zip(batches, sizes))

    def latents(counts) -> tuple[tuple[int, ...], ...]:
        return tuple(latent_noise_shape(n, 1, h, w) for n, (h, w) in zip(counts, sizes))

    batches = (1, opt_batch, spec.max_batch)
    if spec.kind == "fused":
        return {"image": images(batches), "noise": latents(b * m for b in batches)}
    if spec.kind == "encoder":
        return {"image": images(batches)}
    members = (1, opt_batch * m, max_split_members(spec))
    if spec.kind == "step":
        return {"x_t": latents(members), "t": tuple((n,) for n in members), "z_img": latents(members)}
    return {"x_1": latents(members)}


def max_split_members(spec: EngineSpec) -> int:
    """Largest ``N = b*M`` the split step/decoder engines take."""
    return spec.max_batch * max(spec.ensemble_size, spec.max_members)


def default_cache_dir(onnx_path: str | Path) -> Path:
    return Path(onnx_path).parent / "engines"


def graph_hash(onnx_path: str | Path) -> str:
    """sha256 of the ONNX file itself (its graph and inline weights; external weights are in the model hash)."""
    with open(onnx_path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def timing_cache_path(cache_dir: str | Path, tensorrt_version: str, device: str) -> Path:
    """The timing cache of one TensorRT version on one GPU (timings of another are wrong, not just stale)."""
    key = hashlib.sha256(f"{tensorrt_version}|{device}".encode()).hexdigest()[:12]
    return Path(cache_dir) / f"timing_{key}.cache"


# -------------------------------------------------------------------------------------------- tensorrt proper
#: TensorRT versions this backend drives: 8.6 (JetPack 6.0: name-based I/O, ``execute_async_v3``, opset 17 parser)
#: up to 10.x (x86 wheels of the ``tensorrt`` extra, JetPack 6.1/6.2); 11 removed weakly typed fp16 builds.
TENSORRT_MIN_VERSION = (8, 6)


def import_tensorrt():
    """The ``tensorrt`` module, or BackendError saying how to get it (or why this one does not do)."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendError("TensorRT is not installed: pip install '.[tensorrt]' (x86-64 with an NVIDIA GPU), on a "
                           "Jetson the JetPack python3-libnvinfer package (docs/backends.md), or use backend "
                           "'onnxruntime'/'torch'") from exc
    version = tuple(int(p) for p in tensorrt.__version__.split(".")[:2] if p.isdigit())
    if version < TENSORRT_MIN_VERSION:
        raise BackendError(f"TensorRT {tensorrt.__version__} is older than 8.6, the first with the name-based I/O "
                           "API and an opset-17 parser this backend needs (JetPack 6 or pip install '.[tensorrt]')")
    return tensorrt


_LOGGERS: dict[int, object] = {}


def trt_logger(trt):
    """The process's one TensorRT logger (TensorRT expects a single logger shared by builders and runtimes)."""
    if id(trt) not in _LOGGERS:
        _LOGGERS[id(trt)] = trt.Logger(trt.Logger.WARNING)
    return _LOGGERS[id(trt)]


def cuda_device_name(device: str | torch.device = "cuda") -> str:
    """The GPU as the engine key names it: name, compute capability, SM count and memory (engines and timings are not
    portable across GPUs, and every Orin module reports the same name and sm87). ``device`` "cpu" is only for a
    stand-in ``tensorrt`` module in tests."""
    device = torch.device(device)
    if device.type == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        raise BackendError("TensorRT needs a CUDA device; torch sees none")
    props = torch.cuda.get_device_properties(device)
    return (f"{props.name} sm{props.major}{props.minor} {props.multi_processor_count}SM "
            f"{props.total_memory / (1 << 30):.0f}GiB")


def _check(ok, what: str) -> None:
    if not ok:
        raise BackendError(f"TensorRT: {what} failed")


def build_engine(onnx_path: str | Path, spec: EngineSpec, engine_path: str | Path,
                 timing_cache_path: str | Path | None = None, workspace_gb: float = 4.0,
                 opt_batch: int | None = None) -> Path:
    """Parse ``onnx_path``, build a serialized engine for ``spec`` and write it (+ sidecar) to ``engine_path``."""
    trt = import_tensorrt()
    check_parser_ready(onnx_path)
    logger = trt_logger(trt)
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
    _check(config.set_timing_cache(timing_cache, ignore_mismatch=False), "loading the timing cache")
    t0 = time.perf_counter()
    log.info("building TensorRT %s engine for %s (%s); this takes minutes for the full model",
             spec.precision, Path(onnx_path).name, spec.engine_name())
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    partial = engine_path.with_name(engine_path.name + f".{os.getpid()}.tmp")  # atomic, like the timing cache
    with open(partial, "wb") as f:
        f.write(memoryview(serialized))  # no host copy of a multi-GB plan
    sidecar_path(engine_path).write_text(json.dumps(dataclasses.asdict(spec), indent=2))
    os.replace(partial, engine_path)
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
               cache_dir: str | Path | None = None, rebuild: bool = False, device: str = "cuda") -> Path:
    """Cached engine for a graph: its path if built before for the same spec (graph, model, settings, TensorRT,
    GPU), else build it now."""
    trt = import_tensorrt()
    info = check_parser_ready(onnx_path)
    gpu = cuda_device_name(device)
    spec = EngineSpec.for_graph(info, precision, trt.__version__, ensemble_size, max_batch, gpu, graph_hash(onnx_path))
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(onnx_path)
    engine_path = cache_dir / spec.engine_name()
    if engine_path.is_file() and not rebuild:
        log.info("TensorRT engine cache hit: %s", engine_path)
        return engine_path
    return build_engine(onnx_path, spec, engine_path, timing_cache_path(cache_dir, trt.__version__, gpu))


def torch_dtype_of(trt, trt_dtype) -> torch.dtype:
    """The torch dtype of a TensorRT tensor dtype; BackendError for one this package does not feed."""
    table = {trt.float32: torch.float32, trt.float16: torch.float16}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if trt_dtype not in table:
        raise BackendError(f"TensorRT tensor dtype {trt_dtype} is not supported by depthfm_ros")
    return table[trt_dtype]


class TrtEngine:
    """One deserialized engine and its execution context; tensors live on ``device`` (CUDA; "cpu" only with a
    stand-in ``tensorrt`` module in tests).

    Inputs are bound by name (positional arguments in the engine's input order, all of them), cast to the dtype the
    engine declares and made contiguous; the output is allocated in the engine's dtype. Calls are enqueued on the
    given CUDA stream; the caller synchronises it.
    """

    def __init__(self, engine_path: str | Path, device: str | torch.device = "cuda"):
        trt = import_tensorrt()
        self.device, self.path = torch.device(device), Path(engine_path)
        self.spec = read_engine_spec(engine_path)
        if self.spec.tensorrt_version != trt.__version__:
            raise BackendError(f"{engine_path} was built with TensorRT {self.spec.tensorrt_version}, this is "
                               f"{trt.__version__}: rebuild it from the .onnx")
        gpu = cuda_device_name(self.device)
        if self.spec.device and self.spec.device != gpu:
            raise BackendError(f"{engine_path} was built for {self.spec.device!r}, this GPU is {gpu!r}: engines are "
                               "not portable across GPUs; rebuild it from the .onnx on this machine")
        self.runtime = trt.Runtime(trt_logger(trt))
        try:  # memory-mapped: a multi-GB plan is not copied into host memory first
            with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as plan:
                self.engine = self.runtime.deserialize_cuda_engine(plan)
        except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
            raise BackendError(f"cannot read TensorRT engine {engine_path}: {exc}") from exc
        if self.engine is None:
            raise BackendError(f"TensorRT cannot deserialize {engine_path} (other GPU or TensorRT version?)")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"TensorRT cannot create an execution context for {engine_path} (out of GPU memory?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(self.outputs) != 1:
            raise BackendError(f"{engine_path} has outputs {self.outputs}; depthfm engines have exactly one")
        self.dtypes = {n: torch_dtype_of(trt, self.engine.get_tensor_dtype(n)) for n in names}

    def __call__(self, *tensors: torch.Tensor, stream: torch.cuda.Stream | None = None,
                 **named: torch.Tensor) -> torch.Tensor:
        """Run with the inputs by name (or all of them in the engine's order); returns the output tensor."""
        if tensors:
            if named or len(tensors) != len(self.inputs):
                raise BackendError(f"{self.path.name}: takes inputs {self.inputs}, got {len(tensors)} positional "
                                   f"and {sorted(named)} named")
            named = dict(zip(self.inputs, tensors))
        if set(named) != set(self.inputs):
            raise BackendError(f"{self.path.name}: takes inputs {self.inputs}, got {sorted(named)}")
        bound = []  # referenced until the call is enqueued; later work on the same stream orders after it
        for name in self.inputs:
            tensor = named[name].to(self.device, self.dtypes[name]).contiguous()
            _check(self.context.set_input_shape(name, tuple(tensor.shape)), f"set_input_shape({name}, "
                   f"{tuple(tensor.shape)}) (outside the engine's optimisation profile?)")
            _check(self.context.set_tensor_address(name, tensor.data_ptr()), f"set_tensor_address({name})")
            bound.append(tensor)
        out_name = self.outputs[0]
        out = torch.empty(tuple(self.context.get_tensor_shape(out_name)), dtype=self.dtypes[out_name],
                          device=self.device)
        _check(self.context.set_tensor_address(out_name, out.data_ptr()), f"set_tensor_address({out_name})")
        handle = stream.cuda_stream if stream is not None else 0
        _check(self.context.execute_async_v3(handle), f"execute_async_v3 of {self.path.name}")
        if stream is not None:
            for tensor in bound:
                tensor.record_stream(stream)
        return out


class TensorRTBackend(Backend):
    """TensorRT engine(s) from a fused ``.onnx`` (fixed k, M), a split-stage folder (any k) or a built ``.engine``.

    Images per call are at most ``max_batch``; the fused engine's M is fixed, and so is the resolution unless the
    graphs were exported with a size range (``size_range``: any multiple of 64 in it, no rebuild).
    ``device`` is the CUDA device ("cpu" only with a stand-in ``tensorrt`` module in tests). ``cuda_graph`` captures
    a frame's engine calls once per input shape (after one warm-up enqueue, as TensorRT requires) and replays the
    CUDA graph afterwards: the CPU launch cost of every kernel goes away, which matters for the tiny VAE and small
    models; inputs are copied into the graph's static buffers and the output is copied out.
    """

    name = "tensorrt"

    def __init__(self, engine: str | Path, num_steps: int | None = None, precision: str = "fp16",
                 ensemble_size: int = 1, max_batch: int = 1, cache_dir: str | Path | None = None,
                 device: str = "cuda", cuda_graph: bool = False):
        if precision not in PRECISIONS:
            raise BackendError(f"TensorRT backend builds {' or '.join(PRECISIONS)} engines, not {precision}")
        import_tensorrt()
        self.device = torch.device(device)
        cuda_device_name(self.device)  # BackendError without a GPU
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        if cuda_graph and self.stream is None:
            raise BackendError("cuda_graph needs a CUDA device")
        self.cuda_graph, self._graphs = bool(cuda_graph), {}
        path = Path(engine)
        self.max_batch = max_batch
        self.prebuilt = path.suffix == ".engine"
        if self.prebuilt:
            self.engines = {"fused": TrtEngine(path, self.device)}
            spec = self.engines["fused"].spec
            if spec.kind != "fused":
                raise BackendError(f"{path} is a {spec.kind} engine; give the split .onnx folder instead")
            info = GraphInfo("fused", spec.height, spec.width, spec.num_steps, spec.ensemble_size, 0,
                             spec.model_hash, spec.noising_step, size_range=spec.size_range)
            self.max_batch, precision = spec.max_batch, spec.precision  # what the engine is, not what was asked
            self.info = None  # a prebuilt engine does not record its attention path
        else:
            graphs = resolve_graphs(path)
            infos = {"fused": read_sidecar(graphs["fused"])} if "fused" in graphs else read_split_infos(graphs)
            self.engines = {kind: TrtEngine(engine_for(p, precision, ensemble_size, max_batch, cache_dir,
                                                       device=str(self.device)), self.device)
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
            e = self.engines
            self.staged = StagedModel(lambda image: e["encoder"](image=image, stream=self.stream),
                                      lambda x_t, t, z_img: e["step"](x_t=x_t, t=t, z_img=z_img, stream=self.stream),
                                      lambda x_1: e["decoder"](x_1=x_1, stream=self.stream), info.noising_step)
        self.noising_step, self.precision = info.noising_step, precision
        self.fixed_size = info.size if info.size_range is None else None
        self.size_range, self.size_text = info.size_range, info.size_text()

    @property
    def tensor_device(self) -> torch.device:
        return self.device

    def run(self, rgb_bchw: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return self.run_tensors(torch.from_numpy(np.ascontiguousarray(rgb_bchw, np.float32)),
                                torch.from_numpy(np.ascontiguousarray(noise, np.float32))).cpu().numpy()

    def run_tensors(self, rgb_bchw: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """z members (b, M, h, w) float32 on the device: every engine call on this backend's stream, one
        synchronisation per frame."""
        self.check_inputs(rgb_bchw, noise)
        if rgb_bchw.shape[0] > self.max_batch:
            raise BackendError(f"tensorrt: engine profile allows {self.max_batch} image(s) per call, "
                               f"got {rgb_bchw.shape[0]}")
        if not self.fused and noise.shape[0] > self.max_members:
            raise BackendError(f"tensorrt: split engines were built for at most {self.max_members} members per "
                               f"call (b*M), got {noise.shape[0]}; raise max_members/max_batch and rebuild")
        context = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
        with torch.inference_mode(), context:
            if self.stream is not None:  # inputs made on another stream are complete before this one reads them
                self.stream.wait_stream(torch.cuda.current_stream(self.device))
            images = rgb_bchw.to(self.device, torch.float32, non_blocking=True)
            noise_t = noise.to(self.device, torch.float32, non_blocking=True)
            z = self._replay(images, noise_t) if self.cuda_graph else self._enqueue(images, noise_t)
        if self.stream is not None:
            self.stream.synchronize()
        return z

    def _enqueue(self, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.fused:
            z = self.engines["fused"](image=images, noise=noise, stream=self.stream)
        else:
            z = self.staged(images, noise, self.num_steps)
        return z.float()

    def _replay(self, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The frame through a CUDA graph captured for these shapes (captured on first use)."""
        key = (tuple(images.shape), tuple(noise.shape))
        if key not in self._graphs:
            static_in = images.clone(), noise.clone()
            self._enqueue(*static_in)  # TensorRT's first enqueue for a shape allocates and must not be captured
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, stream=self.stream):
                    static_out = self._enqueue(*static_in)
            except RuntimeError as exc:
                raise BackendError(f"tensorrt: CUDA graph capture failed ({exc}); run without cuda_graph") from exc
            self._graphs[key] = graph, static_in, static_out
        graph, (static_images, static_noise), static_out = self._graphs[key]
        static_images.copy_(images)
        static_noise.copy_(noise)
        graph.replay()
        return static_out.clone()

    def describe(self) -> str:
        mode = f"fused M={self.fixed_ensemble_size}" if self.fused else "split"
        source = (", prebuilt .engine" if self.prebuilt else "") + (", CUDA graph" if self.cuda_graph else "")
        return (f"tensorrt[{self.precision}, {mode}, {self.size_text}, "
                f"max_batch {self.max_batch}{source}] (steps={self.num_steps})")


__all__ = ["PRECISIONS", "TENSORRT_MAX_OPSET", "TENSORRT_MIN_VERSION", "TENSORRT_ONNX_OPS", "EngineSpec",
           "TensorRTBackend", "TrtEngine", "build_engine", "check_parser_ready", "engine_for", "graph_hash",
           "profile_shapes", "tensorrt_unsupported_ops", "timing_cache_path"]
