"""ONNX export: one fused graph (encode -> k Euler steps -> decode) and the split stages for any k at run time.

Graphs (all float32, NCHW; ``N = b*M`` ensemble members, member-major per image; the batch axis is dynamic):

=========  =======================================================  ==========================
kind       inputs                                                   output
=========  =======================================================  ==========================
fused      ``image`` (b,3,H,W) in [-1,1], ``noise`` (b*M,4,H/8,W/8)  ``z`` (b,M,H,W)
encoder    ``image`` (b,3,H,W)                                      ``z_img`` (b,4,H/8,W/8)
step       ``x_t`` (N,4,H/8,W/8), ``t`` (N,) in [0,1], ``z_img``      ``velocity`` (N,4,H/8,W/8)
decoder    ``x_1`` (N,4,H/8,W/8)                                    ``z`` (N,1,H,W)
=========  =======================================================  ==========================

The fused graph bakes ``num_steps`` (k) and ``ensemble_size`` (M); noise is an input, so the graph is
deterministic and matches :meth:`DepthFM.forward` for the same noise. With ``size_range`` the spatial axes are
dynamic too (``height``/``width``, latents ``latent_height``/``latent_width``): one graph (and one TensorRT engine
with an optimisation profile over the range) serves every multiple of 64 in it, so the processing resolution can
change without a re-export or rebuild; H x W is then the optimum of the profile. The non-xformers attention
rescale follows the token count of each input in such a graph. Every graph gets a JSON sidecar
(``<name>.json``, :class:`GraphInfo`) that backends read to refuse a graph built for another shape, k or model.

Exporter choice: the TorchScript exporter (``dynamo=False``) at opset 17. On the diffusers UNet it exports in
seconds, keeps the batch axis dynamic and emits opset 17 directly. The dynamo exporter (torch 2.13) takes ~15x
longer on the same model and cannot go below opset 18 (onnx's version converter has no Pad 18 -> 17 adapter).
Opset 17 is what TensorRT >= 8.6 parses with a native ``LayerNormalization`` (JetPack 6, TensorRT 10 on x86);
GroupNorm is exported as ``InstanceNormalization`` + ``Reshape``, which every TensorRT 8.x/10.x parser takes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import BackendError, InputError
from ..models.depthfm import DepthFM
from ..sampler import flow_to_depth_latent
from ..shapes import LATENT_CHANNELS, check_image_batch, latent_noise_shape, size_in_range, size_range_text

log = logging.getLogger(__name__)

OPSET = 17
SIDECAR_FORMAT = "depthfm_ros.onnx/1"
GRAPH_KINDS = ("fused", "encoder", "step", "decoder")
GRAPH_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fused": (("image", "noise"), ("z",)),
    "encoder": (("image",), ("z_img",)),
    "step": (("x_t", "t", "z_img"), ("velocity",)),
    "decoder": (("x_1",), ("z",)),
}
SPLIT_FILES = {kind: f"depthfm_{kind}.onnx" for kind in GRAPH_KINDS}


# ------------------------------------------------------------------------------------------------ sidecar
@dataclass(frozen=True)
class GraphInfo:
    """What a graph (or an engine built from it) was exported for; stored as JSON next to it.

    ``num_steps`` and ``ensemble_size`` are baked only into the fused graph (None for split stages).
    ``model_hash`` identifies the weights (:func:`model_hash`), so engines are cached per model.
    """

    kind: str
    height: int
    width: int
    num_steps: int | None
    ensemble_size: int | None
    opset: int
    model_hash: str
    noising_step: int
    vae_kind: str = "full"
    rescale_attention: bool = False  # the official non-xformers attention path (models.attention)
    size_range: tuple[int, int, int, int] | None = None  # (min_h, min_w, max_h, max_w): dynamic spatial axes
    format: str = SIDECAR_FORMAT

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "GraphInfo":
        names = {f.name for f in dataclasses.fields(cls)}
        optional = ("format", "vae_kind", "rescale_attention", "size_range")
        missing = sorted(n for n in names if n not in data and n not in optional)
        if missing:
            raise BackendError(f"graph sidecar lacks {missing}; re-export with depthfm-export")
        data = {k: v for k, v in data.items() if k in names}
        if data.get("size_range") is not None:
            data["size_range"] = tuple(int(v) for v in data["size_range"])
        info = cls(**data)
        if info.format != SIDECAR_FORMAT or info.kind not in GRAPH_KINDS:
            raise BackendError(f"graph sidecar has format {info.format!r}, kind {info.kind!r}; expected "
                               f"{SIDECAR_FORMAT!r} and one of {GRAPH_KINDS}")
        return info

    def size_text(self) -> str:
        if self.size_range is None:
            return f"{self.height}x{self.width}"
        return f"{size_range_text(self.size_range, '..')} (opt {self.height}x{self.width})"

    def check(self, *, kind: str | None = None, num_steps: int | None = None, ensemble_size: int | None = None,
              size: tuple[int, int] | None = None, model_hash: str | None = None, source: str = "graph") -> None:
        """Raise BackendError naming the field if this graph was exported for something else."""
        wanted = {"kind": kind, "num_steps": num_steps, "ensemble_size": ensemble_size, "size": size,
                  "model_hash": model_hash}
        for field, want in wanted.items():
            have = getattr(self, field)
            if want is not None and have is not None and tuple(np.atleast_1d(want)) != tuple(np.atleast_1d(have)):
                raise BackendError(f"{source} was exported for {field}={have}, asked for {field}={want}"
                                   f"{_MISMATCH_HINTS.get(field, '')}")


#: how to fix a graph/request mismatch, naming the command-line flag and the node parameter
_MISMATCH_HINTS = {
    "num_steps": ": ask for the exported k (--num-steps on the command line, num_steps:= on the node), or "
                 "re-export with depthfm-export --num-steps",
    "ensemble_size": ": ask for the exported M (--ensemble-size, node ensemble_size:=), or re-export with "
                     "depthfm-export --ensemble-size (or use the split graphs, which take any M)",
    "size": ": ask for the exported size (--processing-resolution, node processing_resolution:=), or re-export "
            "with depthfm-export --height/--width or --size-range",
    "model_hash": ": the graph comes from another checkpoint; re-export it from this one with depthfm-export",
}


def sidecar_path(graph_path: str | Path) -> Path:
    """``foo.onnx`` / ``foo.engine`` -> ``foo.json``."""
    return Path(graph_path).with_suffix(".json")


def write_sidecar(graph_path: str | Path, info: GraphInfo) -> Path:
    path = sidecar_path(graph_path)
    path.write_text(info.to_json())
    return path


def read_sidecar(graph_path: str | Path) -> GraphInfo:
    """The :class:`GraphInfo` stored next to a graph; BackendError if it is missing or unreadable."""
    path = sidecar_path(graph_path)
    if not path.is_file():
        raise BackendError(f"{graph_path} has no sidecar {path.name}: export graphs with depthfm-export")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BackendError(f"cannot read graph sidecar {path}: {exc}") from exc
    return GraphInfo.from_dict(data)


def model_hash(model: DepthFM) -> str:
    """16 hex digits of sha256 over every weight, the text embedding, noising_step and latent_scale."""
    h = hashlib.sha256(f"{model.noising_step}/{model.latent_scale}".encode())
    for name, tensor in [*model.state_dict().items(), ("empty_text_embedding", model.empty_text_embedding)]:
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------- wrappers
class FusedGraph(nn.Module):
    """encode -> repeat per member -> noise augmentation -> ``num_steps`` Euler steps -> decode, for ONE ``M``.

    Same numbers as :func:`depthfm_ros.sampler.sample_members`; members are repeated with expand + reshape (the
    export-friendly form of ``repeat_interleave``, which would add OneHot/Tile nodes).
    """

    def __init__(self, model: DepthFM, num_steps: int, ensemble_size: int):
        super().__init__()
        self.model, self.num_steps, self.ensemble_size = model, num_steps, ensemble_size

    def forward(self, image: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        m = self.ensemble_size
        z_img = self.model.encode(image)
        z_img = z_img.unsqueeze(1).expand(-1, m, -1, -1, -1).reshape(-1, *z_img.shape[1:])
        x1 = flow_to_depth_latent(self.model, z_img, noise, self.num_steps)
        z = self.model.decode(x1)
        return z.reshape(-1, m, z.shape[-2], z.shape[-1])  # traced sizes: dynamic spatial axes stay dynamic


class _Stage(nn.Module):
    def __init__(self, model: DepthFM, kind: str):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if self.kind == "encoder":
            return self.model.encode(*args)
        if self.kind == "step":
            return self.model.velocity(*args)
        return self.model.decode(*args)


def example_inputs(kind: str, height: int, width: int, batch: int = 1,
                   ensemble_size: int = 1) -> tuple[torch.Tensor, ...]:
    """Random inputs of the right shapes for graph ``kind`` (``batch`` images; N = batch*ensemble_size)."""
    g = torch.Generator().manual_seed(0)
    n = batch * ensemble_size
    latent = latent_noise_shape(n, 1, height, width)
    image = torch.rand(batch, 3, height, width, generator=g) * 2 - 1
    if kind == "fused":
        return image, torch.randn(latent, generator=g)
    if kind == "encoder":
        return (image,)
    if kind == "step":
        return torch.randn(latent, generator=g), torch.full((n,), 0.5), torch.randn(latent, generator=g)
    return (torch.randn(latent, generator=g),)


# ------------------------------------------------------------------------------------------------- export
def check_size_range(size_range, height: int, width: int) -> tuple[int, int, int, int] | None:
    """``size_range`` (min_h, min_w, max_h, max_w) as ints, with ``height`` x ``width`` inside; InputError otherwise."""
    if size_range is None:
        return None
    size_range = tuple(int(v) for v in size_range)
    if len(size_range) != 4:
        raise InputError(f"size_range is (min_h, min_w, max_h, max_w), got {size_range}")
    for h, w in (size_range[:2], size_range[2:]):
        check_image_batch(torch.empty(1, 3, h, w, device="meta"))
    if not size_in_range(height, width, size_range):  # height x width: multiples of 64, checked by the caller
        raise InputError(f"export size {height}x{width} is outside size_range {size_range_text(size_range, '..')}")
    return size_range


def parse_size_range(text: str) -> tuple[int, int, int, int]:
    """``"256x256:768x1024"`` -> (256, 256, 768, 1024); InputError for anything else."""
    try:
        lo, hi = text.split(":")
        (lo_h, lo_w), (hi_h, hi_w) = (tuple(int(v) for v in part.lower().split("x")) for part in (lo, hi))
    except ValueError as exc:
        raise InputError(f"size range must look like 256x256:768x1024 (min HxW:max HxW), got {text!r}") from exc
    return lo_h, lo_w, hi_h, hi_w


def export_graph(model: DepthFM, kind: str, path: str | Path, height: int, width: int, num_steps: int | None = None,
                 ensemble_size: int | None = None, opset: int = OPSET, simplify: bool = False,
                 mhash: str | None = None, progress=None, size_range=None) -> Path:
    """Export one graph of ``kind`` (see module doc) to ``path`` with its sidecar; returns ``path``.

    ``size_range`` (min_h, min_w, max_h, max_w) makes the spatial axes dynamic (``height`` x ``width`` inside it is
    the size traced and the TensorRT profile's optimum). ``progress`` is an optional tqdm bar that gets one update
    per sub-stage (trace, check, simplify).
    """
    if kind not in GRAPH_KINDS:
        raise InputError(f"kind must be one of {GRAPH_KINDS}, got {kind!r}")
    check_image_batch(torch.empty(1, 3, height, width, device="meta"))
    size_range = check_size_range(size_range, height, width)
    if kind == "fused":
        if num_steps is None or num_steps < 1 or ensemble_size is None or ensemble_size < 1:
            raise InputError(f"fused graph needs num_steps >= 1 and ensemble_size >= 1, got {num_steps}, "
                             f"{ensemble_size}")
        module: nn.Module = FusedGraph(model, num_steps, ensemble_size)
    else:
        module, num_steps, ensemble_size = _Stage(model, kind), None, None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs, outputs = GRAPH_IO[kind]
    dynamic_axes = {name: {i: axis for i, axis in enumerate(dims) if isinstance(axis, str)}
                    for name, dims in io_dims(kind, height, width, ensemble_size, size_range is not None).items()}
    model = model.float().eval()
    device = next(model.parameters()).device  # trace where the model is (a GPU traces a full-size UNet in seconds)
    args = tuple(a.to(device) for a in example_inputs(kind, height, width, 1, ensemble_size or 1))

    def tick(what: str) -> None:
        if progress is not None:
            progress.set_postfix_str(f"{kind}: {what}")
            progress.update(1)

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / path.name
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings on shape asserts in diffusers; shapes are fixed here
            torch.onnx.export(module, args, str(raw), input_names=list(inputs), output_names=list(outputs),
                              dynamic_axes=dynamic_axes,
                              opset_version=opset, do_constant_folding=True, dynamo=False)
        tick("traced")
        if simplify:
            import contextlib
            import io

            import onnxslim

            with contextlib.redirect_stdout(io.StringIO()):  # onnxslim prints a model summary table
                onnxslim.slim(str(raw), str(path))
        else:
            _move_onnx(raw, path)
        tick("simplified" if simplify else "saved")
    import onnx

    _set_io_dims(path, kind, height, width, ensemble_size, size_range is not None)
    onnx.checker.check_model(str(path))  # path form: works for > 2 GB graphs with external data
    write_sidecar(path, GraphInfo(kind, height, width, num_steps, ensemble_size, opset,
                                  mhash or model_hash(model), model.noising_step, model.vae_kind,
                                  bool(getattr(model, "rescale_attention", False)), size_range))
    tick("checked")
    return path


def io_dims(kind: str, height: int, width: int, ensemble_size: int | None = None,
            dynamic_size: bool = False) -> dict[str, list]:
    """Declared input/output dims of a graph kind; str entries are dynamic axes (batch, and with ``dynamic_size``
    the spatial ones)."""
    lh, lw = latent_noise_shape(1, 1, height, width)[2:]
    if dynamic_size:
        height, width, lh, lw = "height", "width", "latent_height", "latent_width"
    image, latent = ["batch", 3, height, width], ["batch_members", LATENT_CHANNELS, lh, lw]
    return {
        "fused": {"image": image, "noise": latent, "z": ["batch", ensemble_size, height, width]},
        "encoder": {"image": image, "z_img": ["batch", *latent[1:]]},
        "step": {"x_t": latent, "t": ["batch_members"], "z_img": latent, "velocity": latent},
        "decoder": {"x_1": latent, "z": ["batch_members", 1, height, width]},
    }[kind]


def _set_io_dims(path: Path, kind: str, height: int, width: int, ensemble_size: int | None,
                 dynamic_size: bool) -> None:
    """Write the declared I/O dims into the graph (the tracer leaves some output dims symbolic)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)  # external weights stay where they are
    dims = io_dims(kind, height, width, ensemble_size, dynamic_size)
    for value in (*model.graph.input, *model.graph.output):
        shape = value.type.tensor_type.shape
        for dim, want in zip(shape.dim, dims[value.name]):
            if isinstance(want, str):
                dim.dim_param = want
            else:
                dim.dim_value = want
    onnx.save(model, str(path))


def _move_onnx(src: Path, dst: Path) -> None:
    """Move a graph and any external-data files the exporter wrote next to it (graphs > 2 GB)."""
    for f in src.parent.iterdir():
        target = dst if f == src else dst.parent / f.name
        shutil.move(str(f), str(target))


def export_onnx(model: DepthFM, out_dir: str | Path, height: int, width: int, num_steps: int = 2,
                ensemble_size: int = 1, fused: bool = True, split: bool = True, opset: int = OPSET,
                simplify: bool = False, progress: bool = True, size_range=None,
                mhash: str | None = None) -> dict[str, Path]:
    """Export the fused graph (``depthfm_fused_k{k}_m{M}.onnx``) and/or the split stages into ``out_dir``
    (``size_range``: dynamic spatial axes, see :func:`export_graph`; ``mhash``: the model's :func:`model_hash`
    when the caller has it, else computed once here).

    Returns ``{kind: path}``. Split stages are ``depthfm_encoder.onnx``, ``depthfm_step.onnx``,
    ``depthfm_decoder.onnx``; a backend given any of them (or ``out_dir``) runs any k.
    """
    from tqdm.auto import tqdm

    if not (fused or split):
        raise InputError("nothing to export: fused and split are both off")
    out_dir = Path(out_dir)
    kinds = (["fused"] if fused else []) + (["encoder", "step", "decoder"] if split else [])
    mhash = mhash or model_hash(model)
    paths: dict[str, Path] = {}
    with tqdm(total=3 * len(kinds), desc="export onnx", unit="stage", disable=not progress) as bar:
        for kind in kinds:
            name = f"depthfm_fused_k{num_steps}_m{ensemble_size}.onnx" if kind == "fused" else SPLIT_FILES[kind]
            paths[kind] = export_graph(model, kind, out_dir / name, height, width, num_steps, ensemble_size,
                                       opset, simplify, mhash, bar, size_range)
    log.info("exported %s to %s (%dx%d, opset %d, model %s)", ", ".join(kinds), out_dir, height, width, opset, mhash)
    return paths


def graph_op_types(path: str | Path) -> set[str]:
    """Op types used by a graph (``domain::Op`` for non-default domains), subgraphs included."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops: set[str] = set()

    def walk(graph) -> None:
        for node in graph.node:
            ops.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}")
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return ops


def graph_opset(path: str | Path) -> int:
    """The default-domain opset of a graph."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


__all__ = ["GRAPH_IO", "GRAPH_KINDS", "OPSET", "SPLIT_FILES", "FusedGraph", "GraphInfo", "check_size_range",
           "example_inputs", "export_graph", "export_onnx", "graph_op_types", "graph_opset", "model_hash",
           "parse_size_range", "read_sidecar", "sidecar_path", "write_sidecar"]
