"""Node parameters: one table of declarations, declared with descriptors and validated once at start.

Every parameter is read-only (the model, engine and subscriptions are built from them at start). A bad value
refuses to start the node with a :class:`ParameterError` whose message names the parameter.
"""

from __future__ import annotations

import array
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import DepthFMError, InputError
from ..fusion.alignment import LogDepthFit
from ..fusion.metric import MetricScale, ScaleFilter, ground_normal
from ..geometry.projection import PointsOptions
from ..settings import BACKENDS, DTYPES, VAE_KINDS, ModelSettings
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
    from ``from``). ``minimum`` (floats): lowest value, excluded with ``exclusive_minimum``; ``or_zero``: 0 (off)
    is allowed below ``minimum``. ``check``: one more rule, returning what is wrong ("" when fine).
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

    @property
    def constraints(self) -> str:
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        if self.integer_range:
            lo, hi, step = self.integer_range
            return f"{lo} <= value <= {hi}" + (f", multiple of {step}" if step > 1 else "")
        if isinstance(self.default, list):
            return f"{len(self.default)} numbers"
        if self.minimum is not None:
            bound = f"finite, {'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
            return bound + (", or 0 (off)" if self.or_zero else "")
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
        return self.check(value) if self.check else ""


def _unit_quaternion(value) -> str:
    return "" if math.hypot(*value) >= 1e-6 else f"must be a unit quaternion x, y, z, w, got {list(value)}"


def _seconds(name: str, default: float, description: str, *, minimum: float = 0.0, exclusive: bool = True,
             **kwargs) -> ParamSpec:
    return ParamSpec(name, default, description, minimum=minimum, exclusive_minimum=exclusive, **kwargs)


def _metres(name: str, default: float, description: str) -> ParamSpec:
    return ParamSpec(name, default, description, minimum=0.0)


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "checkpoint", "'checkpoint': load the checkpoint/vae parameters; "
              "'tiny': a small random model (demos and tests, output is not depth)", MODELS),
    ParamSpec("checkpoint", "", "official depthfm-v1.ckpt, or a folder written by DepthFM.save_pretrained"),
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
    ParamSpec("num_steps", 2, "Euler flow-matching steps per image", integer_range=(1, 1000, 1)),
    ParamSpec("ensemble_size", 1, "ensemble members per image; their std is the uncertainty (0 with 1 member)",
              integer_range=(1, 64, 1)),
    ParamSpec("processing_resolution", 512, "longest side the model sees; 0 = input size rounded to 64",
              integer_range=(0, 8192, SIZE_MULTIPLE)),
    ParamSpec("rescale_attention", False, "the official code's attention without xformers (self-attention scaled "
              "by sqrt(log n / log 4n / d)); false: its xformers path (plain 1/sqrt(d)). An exported engine must "
              "have been exported the same way"),
    ParamSpec("seed", 0, "seed of the noise generator; -1 draws fresh entropy", integer_range=(-1, 2**31 - 1, 1)),
    ParamSpec("max_image_pixels", 16_777_216, "images (raw or compressed) with more pixels are refused before "
              "decoding (a compressed image's size comes from its header); 0 = no limit",
              integer_range=(0, 2**31 - 1, 1)),
    ParamSpec("image_transport", "raw", "'raw' subscribes sensor_msgs/Image on 'image'; 'compressed' subscribes "
              "sensor_msgs/CompressedImage on '<image>/compressed'", IMAGE_TRANSPORTS),
    ParamSpec("input_qos", "sensor_data", "QoS of image/camera_info subscriptions (sensor_data = best effort)",
              QOS_PROFILES),
    ParamSpec("output_qos", "reliable", "QoS of the depth, uncertainty and camera_info publishers", QOS_PROFILES),
    _seconds("diagnostics_period_sec", 1.0, "period of the /diagnostics status (steady clock), at least 0.05 s",
             minimum=0.05, exclusive=False),
    _seconds("log_throttle_sec", 5.0, "at most one log line per this period for repeated bad-input errors"),
    ParamSpec("torch_threads", 0, "torch intra-op threads set at start (torch.set_num_threads); 0 keeps torch's "
              "default. On a loaded CPU 1-2 threads can be ~10x faster than the default",
              integer_range=(0, 256, 1)),
    ParamSpec("onnx_threads", 0, "onnxruntime intra-op threads (backend onnxruntime); 0 keeps its default (one "
              "per core, which competes with DDS and fusion on a loaded CPU)", integer_range=(0, 256, 1)),
    ParamSpec("max_batch", 1, "images per call of the TensorRT engine profile; the same as depthfm-export "
              "--max-batch so the node reuses the exported engine", integer_range=(1, 64, 1)),
    # LiDAR alignment (docs/ros.md, "LiDAR alignment")
    ParamSpec("use_lidar", False, "subscribe 'lidar' (sensor_msgs/PointCloud2), fit log depth = a*z + b to the "
              "cloud nearest in time to each image and publish metric depth/uncertainty and depthfm/completed_depth "
              "for frames whose fit is accepted (relative outputs never wait for the LiDAR)"),
    _seconds("lidar_slop_sec", 0.05, "largest stamp difference of an image and the cloud it is fused with (the "
             "cloud may come before or after the image)"),
    _seconds("lidar_wait_sec", 0.2, "how long after an image arrived its metric step waits for a cloud within "
             "lidar_slop_sec that may still come (relative outputs never wait); then the frame takes the held scale "
             "or the next source"),
    _seconds("lidar_timeout_sec", 1.0, "no cloud for this long (counting from start): the LiDAR is stale, frames "
             "stop waiting for clouds and take the held scale (up to metric_hold_sec) or the next source; 0 = never "
             "stale", or_zero=True),
    ParamSpec("lidar_queue_size", 10, "clouds kept for binding to images", integer_range=(1, 1000, 1)),
    _seconds("lidar_tf_timeout_sec", 0.05, "how long to wait for the tf2 transform cloud frame -> image frame "
              "at the image stamp before using lidar_to_camera_xyz/_quat_xyzw"),
    ParamSpec("lidar_to_camera_xyz", [0.0, 0.0, 0.0], "translation of T_camera_lidar (LiDAR points -> camera "
              "optical frame), metres; used when tf2 is unavailable or has no transform"),
    ParamSpec("lidar_to_camera_quat_xyzw", [0.0, 0.0, 0.0, 1.0], "rotation of T_camera_lidar as a quaternion "
              "x, y, z, w; used with lidar_to_camera_xyz", check=_unit_quaternion),
    _metres("lidar_min_range_m", 0.1, "LiDAR points closer than this along the camera axis are ignored (m)"),
    _metres("lidar_max_range_m", 100.0, "LiDAR points farther than this are ignored (m), and a fit whose depths "
            "fall far outside lidar_min_range_m..lidar_max_range_m is refused; 0 = no limit"),
    ParamSpec("completion_checkpoint", "", "folder of a DepthCompletionFM (depthfm-train --completion); when set, "
              "depthfm/completed_depth comes from that model (torch) instead of the log-residual interpolation"),
    # Point cloud (docs/ros.md, "Point cloud")
    ParamSpec("publish_points", False, "publish depthfm/points (sensor_msgs/PointCloud2, image frame and stamp)"),
    # Metric scale (docs/ros.md, "Metric sources")
    ParamSpec("metric_source", "auto", "where metric scale comes from: auto (lidar when use_lidar, then the hold, "
              "then ground when camera_height_m > 0, then fixed when metric_fixed_scale > 0), lidar, ground, fixed, "
              "or none; frames without an accepted scale publish only the relative topics", METRIC_SOURCES),
    _seconds("metric_hold_sec", 1.0, "carry the last accepted LiDAR scale through LiDAR gaps this long (image "
             "stamps), with a growing uncertainty; 0 = no hold", or_zero=True),
    ParamSpec("metric_gate_log", 0.2, "a LiDAR scale that moves the frame's log depth by more than this from the "
              "filtered one is rejected (3 in a row restart the filter)", minimum=0.0, exclusive_minimum=True),
    _metres("camera_height_m", 0.0, "height of the camera above a flat ground (m): enables the ground source; "
            "0 = off"),
    ParamSpec("camera_pitch_deg", 0.0, "downward pitch of the camera from level (deg), for the ground source when "
              "ground_frame gives no tf", check=lambda v: "" if abs(v) <= 60 else f"must be within +-60, got {v}"),
    ParamSpec("camera_roll_deg", 0.0, "roll of the camera from level (deg), for the ground source",
              check=lambda v: "" if abs(v) <= 60 else f"must be within +-60, got {v}"),
    ParamSpec("ground_frame", "", "tf frame on the ground with z up (e.g. base_footprint): the ground source takes "
              "the camera height and orientation from tf (camera_height_m, _pitch_deg, _roll_deg when tf has none)"),
    ParamSpec("metric_fixed_scale", 0.0, "fixed source: depth = exp(metric_fixed_scale*z + metric_fixed_shift) "
              "metres, a calibration of one model and camera, not a measurement; 0 = off", minimum=0.0),
    ParamSpec("metric_fixed_shift", 0.0, "see metric_fixed_scale"),
    ParamSpec("image_rectified", False, "the image is rectified (image_rect): project with camera_info P even when "
              "D is not zero; raw distorted images use K and D and their points are undistorted"),
    ParamSpec("points_stride", 1, "use every n-th pixel of every n-th row", integer_range=(1, 64, 1)),
    ParamSpec("points_organized", False, "true: one point per (strided) pixel, NaN where filtered (organized "
              "cloud); false: only valid points (dense cloud)"),
    ParamSpec("points_rgb", True, "add the field rgb (image colour) to every point"),
    _metres("points_min_range_m", 0.0, "drop points nearer than this depth (m)"),
    _metres("points_max_range_m", 0.0, "drop points farther than this depth (m); 0 = no limit"),
    _metres("points_max_std_m", 0.0, "drop points whose depth std exceeds this (m); 0 = off"),
    ParamSpec("points_max_relative_std", 0.0, "drop points whose depth std / depth exceeds this; 0 = off",
              minimum=0.0),
    ParamSpec("points_edge_ratio", 0.0, "flying-pixel filter: drop both pixels of a 4-neighbour depth jump larger "
              "than this ratio (e.g. 1.1); 0 = off", minimum=1.0, or_zero=True),
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
    lidar_wait_sec: float
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


def canonical_names(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` under current names: aliases renamed; ParameterError for an unknown name (with the closest valid
    names) or for a parameter given under both names."""
    out = {}
    for name, value in values.items():
        if name in ROS_PARAMETERS or name.startswith("qos_overrides."):
            continue
        current = ALIASES.get(name, name)
        if current not in SPECS:
            close = difflib.get_close_matches(name, [*SPECS, *ALIASES], n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ParameterError(f"parameter '{name}' is not a depthfm node parameter{hint} "
                                 f"(known: {', '.join(SPECS)})")
        if current in out:
            raise ParameterError(f"parameter '{current}' is given twice (also as its old name "
                                 f"'{next(a for a, c in ALIASES.items() if c == current)}')")
        out[current] = value
    return out


def validate(values: Mapping[str, Any]) -> NodeConfig:
    """Defaults + ``values`` -> :class:`NodeConfig`, or a :class:`ParameterError` naming the bad parameter."""
    values = canonical_names(values)
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
    from rcl_interfaces.msg import IntegerRange, ParameterDescriptor, ParameterType

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
    return desc


def declare_and_read(node) -> NodeConfig:
    """Declare every parameter on an rclpy node and return the validated values (ParameterError if any is bad).

    Overrides under an unknown name refuse the start; old names (:data:`ALIASES`) give their value to the new
    name; a whole number given for a decimal parameter is taken as that decimal.
    """
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    overrides = {name: param.value for name, param in getattr(node, "_parameter_overrides", {}).items()}
    given = canonical_names(overrides)
    values = {}
    for spec in PARAMETERS:
        default = list(spec.default) if isinstance(spec.default, list) else spec.default
        if spec.name in given and spec.name not in overrides:  # given under its old name only
            default = coerce(spec.name, given[spec.name])
        try:
            values[spec.name] = node.declare_parameter(spec.name, default, descriptor(spec)).value
        except InvalidParameterTypeException as exc:
            raise ParameterError(f"parameter '{spec.name}' must be {type(spec.default).__name__}: {exc}") from exc
        except InvalidParameterValueException as exc:
            raise ParameterError(f"parameter '{spec.name}' must be {spec.constraints} ({exc})") from exc
    return validate(values)
