"""Node parameters: one table of declarations, declared with descriptors and validated once at start.

Every parameter is read-only (the model, engine and subscriptions are built from them at start). A bad value
refuses to start the node with a :class:`ParameterError` whose message names the parameter. A name the node does
not declare is refused when it is a likely misspelling of one of its own (``num_step``), else ignored with one
warning (robot-wide parameter files share keys such as ``robot_base_frame`` between nodes). The documentation's
parameter table is generated from :data:`PARAMETERS` (:func:`markdown_table`).
"""

from __future__ import annotations

import array
import difflib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from ..errors import DepthFMError, InputError
from ..fusion.alignment import LogDepthFit
from ..fusion.metric import MetricScale, ScaleFilter, ground_normal
from ..geometry.projection import PointsOptions
from ..settings import BACKENDS, DTYPES, VAE_KINDS, ModelSettings, tiny_model_conflict
from ..shapes import SIZE_MULTIPLE

MODELS = ("checkpoint", "tiny")
IMAGE_TRANSPORTS = ("raw", "compressed")
QOS_PROFILES = ("sensor_data", "reliable")
METRIC_SOURCES = ("auto", "lidar", "ground", "fixed", "none")


class ParameterError(DepthFMError, ValueError):
    """A node parameter has a wrong type or value; the message starts with the parameter's name."""


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter and its rules. The default's Python type is the parameter type (bool, int, float,
    str); a list of floats is a double array of exactly that length. Every number must be finite.

    ``choices``: allowed strings. ``integer_range``: (from, to, step) as rcl_interfaces/IntegerRange (step counts
    from ``from``). ``minimum`` / ``maximum`` (floats): lowest / highest value (the minimum excluded with
    ``exclusive_minimum``), declared as an rcl_interfaces/FloatingPointRange; ``or_zero``: 0 (off) is allowed below
    ``minimum``. ``check``: one more rule, returning what is wrong ("" when fine).
    """

    name: str
    default: bool | int | float | str | list[float]
    description: str
    choices: tuple[str, ...] = ()
    integer_range: tuple[int, int, int] | None = None
    minimum: float | None = None
    exclusive_minimum: bool = False
    or_zero: bool = False
    check: Callable[[Any], str] | None = None
    maximum: float | None = None

    @property
    def constraints(self) -> str:
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        if self.integer_range:
            lo, hi, step = self.integer_range
            return f"{lo} <= value <= {hi}" + (f", multiple of {step}" if step > 1 else "")
        if isinstance(self.default, list):
            return f"{len(self.default)} numbers"
        bounds = []
        if self.minimum is not None:
            bounds.append(f"{'>' if self.exclusive_minimum else '>='} {self.minimum:g}")
        if self.maximum is not None:
            bounds.append(f"<= {self.maximum:g}")
        if bounds:
            return ", ".join(["finite", *bounds]) + (", or 0 (off)" if self.or_zero else "")
        return ""

    def violation(self, value: Any) -> str:
        """What is wrong with an already type-checked ``value`` ("" when it is allowed)."""
        numbers = value if isinstance(value, tuple) else (value,) if type(value) is float else ()
        if not all(math.isfinite(v) for v in numbers):
            return f"must hold finite numbers, got {list(value) if isinstance(value, tuple) else value}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}; got {value!r}"
        if self.integer_range:
            lo, hi, step = self.integer_range
            if not lo <= value <= hi or (value - lo) % step:
                return f"must be {self.constraints}, got {value}"
        if self.minimum is not None and not (self.or_zero and value == 0):
            low = value <= self.minimum if self.exclusive_minimum else value < self.minimum
            if low:
                return f"must be {self.constraints}, got {value}"
        if self.maximum is not None and value > self.maximum:
            return f"must be {self.constraints}, got {value}"
        return self.check(value) if self.check else ""

    @property
    def floating_point_range(self) -> tuple[float, float] | None:
        """(from, to) of the rcl_interfaces/FloatingPointRange a decimal parameter is declared with (None when it
        has no bound): rclpy refuses values outside it. Inclusive: an exclusive minimum or the 0 (off) allowed
        below it is left to :meth:`violation`."""
        if type(self.default) is not float or (self.minimum is None and self.maximum is None):
            return None
        low = -sys.float_info.max if self.minimum is None else self.minimum
        if self.or_zero:
            low = min(low, 0.0)
        return low, sys.float_info.max if self.maximum is None else self.maximum


def _unit_quaternion(value) -> str:
    return "" if math.hypot(*value) >= 1e-6 else f"must be a unit quaternion x, y, z, w, got {list(value)}"


def _seconds(name: str, default: float, description: str, *, minimum: float = 0.0, exclusive: bool = True,
             **kwargs) -> ParamSpec:
    return ParamSpec(name, default, description, minimum=minimum, exclusive_minimum=exclusive, **kwargs)


def _metres(name: str, default: float, description: str) -> ParamSpec:
    return ParamSpec(name, default, description, minimum=0.0)


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "checkpoint", "'checkpoint': load the checkpoint/vae parameters; "
              "'tiny': a small random model on the torch backend, no engine (demos and tests, output is not depth)",
              MODELS),
    ParamSpec("checkpoint", "", "official depthfm-v1.ckpt, or a folder written by DepthFM.save_pretrained "
              "(recommended: loads faster, needs no vae)"),
    ParamSpec("vae", "", "Stable Diffusion VAE folder (diffusers format); needed with a .ckpt file"),
    ParamSpec("vae_kind", "full", "'full': the SD VAE; 'tiny': the distilled tiny VAE (docs/tiny_vae.md), "
              "about 3x fewer FLOPs", VAE_KINDS),
    ParamSpec("tiny_vae", "", "tiny VAE folder from depthfm-distill-vae (implies vae_kind tiny)"),
    ParamSpec("engine", "", "exported graph for backend onnxruntime (.onnx or split-graph folder) or tensorrt "
              "(.onnx/folder, built and cached on first start, or a prebuilt .engine); empty runs the checkpoint "
              "with torch (depthfm-export writes the graphs)"),
    ParamSpec("backend", "auto", "inference engine; auto picks tensorrt, then onnxruntime, then torch", BACKENDS),
    ParamSpec("dtype", "auto", "compute precision of the engine; auto: fp16 on tensorrt (as depthfm-export builds "
              "its engines), fp32 elsewhere", DTYPES),
    ParamSpec("num_steps", 2, "Euler flow-matching steps per image (1-2 are enough, paper Table 3)",
              integer_range=(1, 1000, 1)),
    ParamSpec("ensemble_size", 1, "ensemble members per image, run as one batch; their std is the uncertainty "
              "(0 with 1 member)", integer_range=(1, 64, 1)),
    ParamSpec("processing_resolution", 512, "longest side the model sees; 0 = input size rounded to 64. A graph or "
              "engine exported for one size runs at that size; one exported with --size-range runs any size in its "
              "range (outside: a per-frame error naming the range)", integer_range=(0, 8192, SIZE_MULTIPLE)),
    ParamSpec("rescale_attention", False, "the official code's attention without xformers (self-attention scaled "
              "by sqrt(log n / log 4n / d)); false: its xformers path (plain 1/sqrt(d)). An exported engine must "
              "have been exported the same way"),
    ParamSpec("seed", 0, "seed of the noise generator; -1 draws fresh entropy", integer_range=(-1, 2**31 - 1, 1)),
    ParamSpec("max_image_pixels", 16_777_216, "images (raw or compressed) with more pixels are refused before "
              "decoding (a compressed image's size comes from its header: a 62 KB PNG of 8000x8000 zeros costs 3 MB, "
              "not 4.5 GiB); 0 = no limit",
              integer_range=(0, 2**31 - 1, 1)),
    ParamSpec("image_transport", "raw", "'raw' subscribes sensor_msgs/Image on 'image'; 'compressed' subscribes "
              "sensor_msgs/CompressedImage on '<image>/compressed'", IMAGE_TRANSPORTS),
    ParamSpec("input_qos", "sensor_data", "QoS of the image, camera_info and lidar subscriptions: sensor_data "
              "(best effort, keep last 5) or reliable", QOS_PROFILES),
    ParamSpec("output_qos", "reliable", "QoS of the publishers: reliable (keep last 5) or sensor_data",
              QOS_PROFILES),
    _seconds("diagnostics_period_sec", 1.0, "period of the /diagnostics status (steady clock), at least 0.05 s",
             minimum=0.05, exclusive=False),
    _seconds("log_throttle_sec", 5.0, "at most one log line per this period for repeated bad-input errors"),
    ParamSpec("torch_threads", 0, "torch intra-op threads set at start (torch.set_num_threads); 0 = auto: "
              "OMP_NUM_THREADS if set, else the cores minus one (at least 1), leaving a core to the ROS executor "
              "and fusion; all cores were ~10x slower on a 2-core CPU", integer_range=(0, 256, 1)),
    ParamSpec("onnx_threads", 0, "onnxruntime intra-op threads (backend onnxruntime); 0 = auto, as torch_threads "
              "(its own default, one per core, competes with DDS and fusion)", integer_range=(0, 256, 1)),
    ParamSpec("max_batch", 1, "images per call of the TensorRT engine profile; the same as depthfm-export "
              "--max-batch so the node reuses the exported engine", integer_range=(1, 64, 1)),
    # LiDAR alignment (docs/ros.md, "LiDAR alignment")
    ParamSpec("use_lidar", False, "subscribe 'lidar' (sensor_msgs/PointCloud2), fit log depth = a*z + b to it and "
              "publish metric depth/uncertainty and depthfm/completed_depth for synchronized image+cloud pairs; "
              "see lidar_timeout_sec for images while no cloud arrives (docs/ros.md, LiDAR alignment)"),
    _seconds("lidar_slop_sec", 0.05, "largest stamp difference of a synchronized image + cloud pair"),
    _seconds("lidar_timeout_sec", 1.0, "when no cloud has arrived for this long (counting from start), images "
              "are processed alone (relative outputs; metric only from the hold or another source) until clouds "
              "return; 0 = strict pairing: no cloud, no depth", or_zero=True),
    ParamSpec("lidar_queue_size", 10, "messages per stream the synchronizer keeps", integer_range=(1, 1000, 1)),
    _seconds("lidar_tf_timeout_sec", 0.05, "how long to wait for the tf2 transform cloud frame -> image frame "
              "at the image stamp before using lidar_to_camera_xyz/_quat_xyzw"),
    ParamSpec("lidar_to_camera_xyz", [0.0, 0.0, 0.0], "translation of T_camera_lidar (LiDAR points -> camera "
              "optical frame), metres; used when tf2 is unavailable or has no transform"),
    ParamSpec("lidar_to_camera_quat_xyzw", [0.0, 0.0, 0.0, 1.0], "rotation of T_camera_lidar as a quaternion "
              "x, y, z, w (normalised); used with lidar_to_camera_xyz", check=_unit_quaternion),
    _metres("lidar_min_range_m", 0.1, "LiDAR points closer than this along the camera axis (or behind) are "
            "ignored (m)"),
    _metres("lidar_max_range_m", 100.0, "LiDAR points farther than this are ignored (m), and a fit whose depths "
            "fall far outside lidar_min_range_m..lidar_max_range_m is refused; 0 = no limit"),
    ParamSpec("completion_checkpoint", "", "folder of a DepthCompletionFM (depthfm-train --completion); when set, "
              "depthfm/completed_depth comes from that model (torch, a second diffusion run per frame) instead of the "
              "log-residual interpolation"),
    # Point cloud (docs/ros.md, "Point cloud")
    ParamSpec("publish_points", False, "publish depthfm/points (sensor_msgs/PointCloud2, image frame and stamp)"),
    # Metric scale (docs/ros.md, "Metric sources")
    ParamSpec("metric_source", "auto", "where metric scale comes from: auto (lidar when use_lidar, then the hold, "
              "then ground when camera_height_m > 0, then fixed when metric_fixed_scale > 0), lidar, ground, fixed, "
              "or none; frames without an accepted scale publish only the relative topics; a source asked for but "
              "not configured refuses the start (docs/ros.md, Metric sources)", METRIC_SOURCES),
    _seconds("metric_hold_sec", 1.0, "carry the last accepted LiDAR scale through LiDAR gaps this long (image "
             "stamps), with a growing uncertainty; 0 = no hold", or_zero=True),
    ParamSpec("metric_gate_log", 0.2, "a LiDAR scale that moves the frame's log depth by more than this from the "
              "filtered one is rejected (3 in a row restart the filter)", minimum=0.0, exclusive_minimum=True),
    _metres("camera_height_m", 0.0, "height of the camera above a flat ground (m): enables the ground source; "
            "0 = off"),
    ParamSpec("camera_pitch_deg", 0.0, "downward pitch of the camera from level (deg), for the ground source when "
              "ground_frame gives no tf", minimum=-60.0, maximum=60.0),
    ParamSpec("camera_roll_deg", 0.0, "roll of the camera from level (deg), for the ground source",
              minimum=-60.0, maximum=60.0),
    ParamSpec("ground_frame", "", "tf frame on the ground with z up (e.g. base_footprint): the ground source takes "
              "the camera height and orientation from tf (camera_height_m, _pitch_deg, _roll_deg when tf has none)"),
    ParamSpec("metric_fixed_scale", 0.0, "fixed source: depth = exp(metric_fixed_scale*z + metric_fixed_shift) "
              "metres, a calibration of one model and camera, not a measurement; 0 = off", minimum=0.0),
    ParamSpec("metric_fixed_shift", 0.0, "see metric_fixed_scale"),
    ParamSpec("image_rectified", False, "true: the image is rectified already (image_rect), camera_info's P "
              "describes it even when D is not zero; false: an image whose camera_info has D != 0 is raw, and depth, "
              "uncertainty, completed depth and points are published rectified (for P, with D = 0)"),
    ParamSpec("points_stride", 1, "use every n-th pixel of every n-th row", integer_range=(1, 64, 1)),
    ParamSpec("points_organized", False, "true: one point per (strided) pixel, ceil(H/stride) x ceil(W/stride) "
              "with NaN where filtered (organized cloud); false: only valid points (dense cloud, is_dense)"),
    ParamSpec("points_rgb", True, "add the field rgb (image colour, PCL packing 0x00RRGGBB in a float32) to every "
              "point"),
    _metres("points_min_range_m", 0.0, "drop points nearer than this depth (optical-axis z, m)"),
    _metres("points_max_range_m", 0.0, "drop points farther than this depth (optical-axis z, m); 0 = no limit"),
    _metres("points_max_std_m", 0.0, "drop points whose depth std exceeds this (m); 0 = off"),
    ParamSpec("points_max_relative_std", 0.0, "drop points whose depth std / depth exceeds this; 0 = off",
              minimum=0.0),
    ParamSpec("points_edge_ratio", 0.0, "flying-pixel filter: drop both pixels of a 4-neighbour depth jump larger "
              "than this ratio (1.05-1.1 works well); 0 = off", minimum=1.0, or_zero=True),
)

SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}

#: documented old names -> current names (a value under the old name is used as the new one)
ALIASES = {"lidar_min_range": "lidar_min_range_m", "lidar_max_range": "lidar_max_range_m",
           "points_scale": "metric_fixed_scale", "points_shift": "metric_fixed_shift",
           "points_min_range": "points_min_range_m", "points_max_range": "points_max_range_m"}
#: parameters rclpy itself declares (or reads) on every node
ROS_PARAMETERS = ("use_sim_time", "start_type_description_service", "start_parameter_services")


@dataclass(frozen=True)
class NodeConfig:
    """Validated parameter values, one field per entry of :data:`PARAMETERS`."""

    model: str
    checkpoint: str
    vae: str
    vae_kind: str
    tiny_vae: str
    engine: str
    backend: str
    dtype: str
    num_steps: int
    ensemble_size: int
    processing_resolution: int
    rescale_attention: bool
    seed: int
    max_image_pixels: int
    image_transport: str
    input_qos: str
    output_qos: str
    diagnostics_period_sec: float
    log_throttle_sec: float
    torch_threads: int
    onnx_threads: int
    max_batch: int
    use_lidar: bool
    lidar_slop_sec: float
    lidar_timeout_sec: float
    lidar_queue_size: int
    lidar_tf_timeout_sec: float
    lidar_to_camera_xyz: tuple[float, ...]
    lidar_to_camera_quat_xyzw: tuple[float, ...]
    lidar_min_range_m: float
    lidar_max_range_m: float
    completion_checkpoint: str
    publish_points: bool
    metric_source: str
    metric_hold_sec: float
    metric_gate_log: float
    camera_height_m: float
    camera_pitch_deg: float
    camera_roll_deg: float
    ground_frame: str
    metric_fixed_scale: float
    metric_fixed_shift: float
    image_rectified: bool
    points_stride: int
    points_organized: bool
    points_rgb: bool
    points_min_range_m: float
    points_max_range_m: float
    points_max_std_m: float
    points_max_relative_std: float
    points_edge_ratio: float


    def points_options(self) -> PointsOptions:
        """What the points_* parameters ask of depthfm/points."""
        return PointsOptions(self.points_stride, self.points_organized, self.points_rgb, self.points_min_range_m,
                             self.points_max_range_m, self.points_max_std_m, self.points_max_relative_std,
                             self.points_edge_ratio)

    def metric_scale(self) -> MetricScale:
        """The metric sources these parameters configure (ParameterError when one is asked for but not set up)."""
        fixed = LogDepthFit(self.metric_fixed_scale, self.metric_fixed_shift, 0.0, 0, 0) \
            if self.metric_fixed_scale > 0 else None
        try:
            return MetricScale(self.metric_source, use_lidar=self.use_lidar, hold_sec=self.metric_hold_sec,
                               camera_height_m=self.camera_height_m, ground_from_tf=bool(self.ground_frame),
                               fixed_fit=fixed,
                               ground_down_cam=ground_normal(self.camera_pitch_deg, self.camera_roll_deg),
                               scale_filter=ScaleFilter(gate_log=self.metric_gate_log))
        except InputError as exc:
            raise ParameterError(f"parameter 'metric_source' {self.metric_source!r}: {exc}") from exc

    def model_settings(self) -> ModelSettings:
        """The model part of the parameters, as the command-line tools build it too."""
        return ModelSettings(checkpoint=self.checkpoint, vae=self.vae, engine=self.engine,
                             tiny_model=self.model == "tiny", vae_kind=self.vae_kind, tiny_vae=self.tiny_vae,
                             backend=self.backend, dtype=self.dtype, num_steps=self.num_steps,
                             ensemble_size=self.ensemble_size, processing_resolution=self.processing_resolution,
                             seed=None if self.seed < 0 else self.seed, torch_threads=self.torch_threads,
                             rescale_attention=self.rescale_attention, onnx_threads=self.onnx_threads,
                             max_batch=self.max_batch)


def parameters_from_settings(settings: ModelSettings) -> dict[str, Any]:
    """Node parameter values for ``settings`` (the inverse of :meth:`NodeConfig.model_settings`)."""
    return {"model": "tiny" if settings.tiny_model else "checkpoint", "checkpoint": settings.checkpoint or "",
            "vae": settings.vae or "", "vae_kind": settings.vae_kind, "tiny_vae": settings.tiny_vae or "",
            "engine": settings.engine or "", "backend": settings.backend, "dtype": settings.dtype,
            "num_steps": settings.num_steps, "ensemble_size": settings.ensemble_size,
            "processing_resolution": settings.processing_resolution,
            "seed": -1 if settings.seed is None else settings.seed, "torch_threads": settings.torch_threads,
            "rescale_attention": settings.rescale_attention, "onnx_threads": settings.onnx_threads,
            "max_batch": settings.max_batch}


def _check_type(spec: ParamSpec, value: Any) -> Any:
    expected = type(spec.default)
    if expected is list:  # rclpy gives a list or array.array('d'); yaml a list; ints are fine
        numbers = list(value) if isinstance(value, (list, tuple, array.array)) else None
        if numbers is None or len(numbers) != len(spec.default) or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            raise ParameterError(f"parameter '{spec.name}' must be a list of {len(spec.default)} numbers, "
                                 f"got {value!r}")
        return tuple(float(v) for v in numbers)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not expected:
        raise ParameterError(f"parameter '{spec.name}' must be {expected.__name__}, got {value!r}")
    return value


def _check_ranges(config: NodeConfig) -> None:
    for near, far in (("lidar_min_range_m", "lidar_max_range_m"), ("points_min_range_m", "points_max_range_m")):
        lo, hi = getattr(config, near), getattr(config, far)
        if hi and lo > hi:
            raise ParameterError(f"parameter '{near}' ({lo}) is larger than '{far}' ({hi})")
    if config.completion_checkpoint and not Path(config.completion_checkpoint).is_dir():
        raise ParameterError(f"parameter 'completion_checkpoint': {config.completion_checkpoint} is not a folder")


def _check_model_files(config: NodeConfig) -> None:
    if config.tiny_vae and not Path(config.tiny_vae).is_dir():
        raise ParameterError(f"parameter 'tiny_vae': {config.tiny_vae} is not a folder")
    if config.model == "tiny":
        name, why = tiny_model_conflict(config.backend, config.engine)
        if name:
            raise ParameterError(f"parameter '{name}' {why}")
        return
    if not config.checkpoint and not config.engine:
        raise ParameterError("parameter 'checkpoint' is empty: give checkpoint:=<depthfm-v1.ckpt or converted "
                             "folder> (with vae:=<SD VAE folder> for a .ckpt), or model:=tiny for a random demo "
                             "model")
    for name in ("checkpoint", "vae", "engine"):
        path = getattr(config, name)
        if path and not Path(path).exists():
            raise ParameterError(f"parameter '{name}': {path} does not exist")
    if config.checkpoint and Path(config.checkpoint).is_file() and not config.vae:
        raise ParameterError(f"parameter 'vae' is empty: {config.checkpoint} is an official checkpoint file and "
                             "needs the Stable Diffusion VAE folder (diffusers format)")


def likely_meant(name: str) -> list[str]:
    """The node's parameter names (or old names) that ``name`` probably misspells: a close spelling (difflib ratio
    >= 0.8: ``num_step``, ``use_lidars``) or a name it begins at a word boundary (``ensemble`` for
    ``ensemble_size``, ``lidar_slop`` for ``lidar_slop_sec``). Keys other nodes use (``robot_base_frame``,
    ``global_frame``, ``queue_size``) score below that, so a shared parameter file is not refused."""
    known = [*SPECS, *ALIASES]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.8)
    return close + [k for k in known if k.startswith(name + "_") and k not in close][:3 - len(close)]


def canonical_names(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(``values`` of the node's parameters under their current names, the other names, which the node ignores).

    Aliases are renamed; ParameterError for a likely misspelling of a parameter name (with the names meant), or
    for a parameter given under both its names. ROS's own parameters (``use_sim_time``, ``qos_overrides.*``) are
    neither kept nor reported."""
    out, ignored = {}, []
    for name, value in values.items():
        if name in ROS_PARAMETERS or name.startswith("qos_overrides."):
            continue
        current = ALIASES.get(name, name)
        if current not in SPECS:
            meant = likely_meant(name)
            if meant:
                raise ParameterError(f"parameter '{name}' is not a depthfm node parameter; did you mean "
                                     f"{' or '.join(repr(c) for c in meant)}?")
            ignored.append(name)
            continue
        if current in out:
            raise ParameterError(f"parameter '{current}' is given twice (also as its old name "
                                 f"'{next(a for a, c in ALIASES.items() if c == current)}')")
        out[current] = value
    return out, ignored


def ignored_message(ignored: list[str]) -> str:
    """The one warning about parameters the node does not use ("" when there are none)."""
    if not ignored:
        return ""
    return (f"ignoring {len(ignored)} parameter{'s' if len(ignored) > 1 else ''} depthfm does not use (shared "
            f"parameter file?): {', '.join(sorted(ignored))}")


def check_params_file(path: str) -> str:
    """``path`` if it is a parameter file rcl can read (YAML, a mapping of node names to ``ros__parameters``), else
    a ParameterError naming the file and what is wrong (rcl's own message is a traceback in the node)."""
    file = Path(path)
    if not file.is_file():
        raise ParameterError(f"params_file {path} does not exist")
    try:
        document = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ParameterError(f"params_file {path} is not YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(document, dict) or not all(
            isinstance(section, dict) and isinstance(section.get("ros__parameters", {}), dict)
            for section in document.values()):
        raise ParameterError(f"params_file {path} is not a ROS 2 parameter file: it needs '<node name or /**>: "
                             "ros__parameters: {name: value, ...}' sections")
    return path


def validate(values: Mapping[str, Any]) -> NodeConfig:
    """Defaults + ``values`` -> :class:`NodeConfig`, or a :class:`ParameterError` naming the bad parameter. Names
    the node does not use are ignored unless they look like a misspelt parameter (:func:`canonical_names`)."""
    values, _ = canonical_names(values)
    checked = {}
    for spec in PARAMETERS:
        value = _check_type(spec, values.get(spec.name, spec.default))
        problem = spec.violation(value)
        if problem:
            raise ParameterError(f"parameter '{spec.name}' {problem}")
        checked[spec.name] = value
    config = NodeConfig(**checked)
    _check_ranges(config)
    _check_model_files(config)
    config.metric_scale()  # a source asked for but not configured refuses the start
    return config


def coerce(name: str, value: Any) -> Any:
    """``value`` as the declared type of parameter ``name`` where that is lossless (a whole number for a decimal
    parameter: ``lidar_timeout_sec:=0``); anything else is left for :func:`validate` to judge."""
    spec = SPECS.get(ALIASES.get(name, name))
    if spec is not None and type(spec.default) is float and type(value) is int:
        return float(value)
    if spec is not None and type(spec.default) is int and type(value) is float and value.is_integer():
        return int(value)
    if spec is not None and isinstance(spec.default, list) and isinstance(value, (list, tuple)):
        return [float(v) if type(v) is int else v for v in value]
    return value


def descriptor(spec: ParamSpec):
    """rcl_interfaces/ParameterDescriptor of one parameter (read-only, with range and constraint text)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    types = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
             list: ParameterType.PARAMETER_DOUBLE_ARRAY}
    # Decimal parameters take any type at declaration so that a whole number (lidar_timeout_sec:=0) reaches
    # validate(), which takes it as the decimal it means; every other type is refused there with the name.
    numeric = type(spec.default) is float or isinstance(spec.default, list)
    desc = ParameterDescriptor(name=spec.name, type=types[type(spec.default)], description=spec.description,
                               additional_constraints=spec.constraints, read_only=True, dynamic_typing=numeric)
    if spec.integer_range:
        lo, hi, step = spec.integer_range
        desc.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=step)]
    if spec.floating_point_range:
        lo, hi = spec.floating_point_range
        desc.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    return desc


def declare_and_read(node) -> NodeConfig:
    """Declare every parameter on an rclpy node and return the validated values (ParameterError if any is bad).

    Overrides under a likely misspelt name refuse the start, other names the node does not use are logged once
    (WARN) and ignored; old names (:data:`ALIASES`) give their value to the new name; a whole number given for a
    decimal parameter is taken as that decimal. Parameters declared already (a managed node configured again)
    keep their values.
    """
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    overrides = {name: param.value for name, param in getattr(node, "_parameter_overrides", {}).items()}
    given, ignored = canonical_names(overrides)
    values = {}
    for spec in PARAMETERS:
        default = list(spec.default) if isinstance(spec.default, list) else spec.default
        if spec.name in given and spec.name not in overrides:  # given under its old name only
            default = coerce(spec.name, given[spec.name])
        if node.has_parameter(spec.name):
            values[spec.name] = node.get_parameter(spec.name).value
            continue
        try:
            values[spec.name] = node.declare_parameter(spec.name, default, descriptor(spec)).value
        except InvalidParameterTypeException as exc:
            raise ParameterError(f"parameter '{spec.name}' must be {type(spec.default).__name__}: {exc}") from exc
        except InvalidParameterValueException as exc:  # rclpy's range check: say it as validate() does
            problem = spec.violation(coerce(spec.name, given.get(spec.name, default)))
            raise ParameterError(f"parameter '{spec.name}' {problem or f'must be {spec.constraints} ({exc})'}") \
                from exc
    config = validate(values)
    if ignored:
        node.get_logger().warning(ignored_message(ignored))
    return config


_TYPE_NAMES = {bool: "bool", int: "int", float: "double", str: "string"}


def type_name(spec: ParamSpec) -> str:
    """The parameter's ROS type as `ros2 param describe` says it (double[3] for a fixed-length double array)."""
    return f"double[{len(spec.default)}]" if isinstance(spec.default, list) else _TYPE_NAMES[type(spec.default)]


def default_text(spec: ParamSpec) -> str:
    """The default as a YAML parameter file writes it."""
    if isinstance(spec.default, bool):
        return "true" if spec.default else "false"
    if isinstance(spec.default, list):
        return "[" + ", ".join(repr(v) for v in spec.default) + "]"
    return '""' if spec.default == "" else str(spec.default)


def markdown_table() -> str:
    """The parameter table of docs/ros.md, generated from :data:`PARAMETERS` (test/test_docs.py checks the doc holds
    exactly this); old names are listed with the parameter they stand for."""
    old = {new: [a for a, n in ALIASES.items() if n == new] for new in ALIASES.values()}
    rows = ["| name | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for spec in PARAMETERS:
        meaning = spec.description.replace("|", "\\|")
        if spec.name in old:
            meaning += f" (old name{'s' if len(old[spec.name]) > 1 else ''}: {', '.join(old[spec.name])})"
        rows.append(f"| `{spec.name}` | {type_name(spec)} | `{default_text(spec)}` | {spec.constraints} | {meaning} |")
    return "\n".join(rows) + "\n"
