"""Node parameters: one table of declarations, declared with descriptors and validated once at start.

Every parameter is read-only (the model, engine and subscriptions are built from them at start). A bad value
refuses to start the node with a :class:`ParameterError` whose message names the parameter.
"""

from __future__ import annotations

import array
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..backends import BACKENDS
from ..errors import DepthFMError
from ..processing import SIZE_MULTIPLE

MODELS = ("checkpoint", "tiny")
VAE_KINDS = ("full", "tiny")
DTYPES = ("fp32", "fp16", "bf16")
IMAGE_TRANSPORTS = ("raw", "compressed")
QOS_PROFILES = ("sensor_data", "reliable")


class ParameterError(DepthFMError, ValueError):
    """A node parameter has a wrong type or value; the message starts with the parameter's name."""


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter. The default's Python type is the parameter type (bool, int, float, str); a list of
    floats is a double array of exactly that length."""

    name: str
    default: bool | int | float | str | list[float]
    description: str
    choices: tuple[str, ...] = ()
    integer_range: tuple[int, int, int] | None = None  # (from, to, step), as rcl_interfaces/IntegerRange

    @property
    def constraints(self) -> str:
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        if self.integer_range:
            lo, hi, step = self.integer_range
            return f"{lo} <= value <= {hi}" + (f", multiple of {step}" if step > 1 else "")
        if isinstance(self.default, list):
            return f"{len(self.default)} numbers"
        return ""


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
    ParamSpec("dtype", "fp32", "compute precision of the engine", DTYPES),
    ParamSpec("num_steps", 2, "Euler flow-matching steps per image", integer_range=(1, 1000, 1)),
    ParamSpec("ensemble_size", 1, "ensemble members per image; their std is the uncertainty (0 with 1 member)",
              integer_range=(1, 64, 1)),
    ParamSpec("processing_resolution", 512, "longest side the model sees; 0 = input size rounded to 64",
              integer_range=(0, 8192, SIZE_MULTIPLE)),
    ParamSpec("seed", 0, "seed of the noise generator; -1 draws fresh entropy"),
    ParamSpec("image_transport", "raw", "'raw' subscribes sensor_msgs/Image on 'image'; 'compressed' subscribes "
              "sensor_msgs/CompressedImage on '<image>/compressed'", IMAGE_TRANSPORTS),
    ParamSpec("input_qos", "sensor_data", "QoS of image/camera_info subscriptions (sensor_data = best effort)",
              QOS_PROFILES),
    ParamSpec("output_qos", "reliable", "QoS of the depth, uncertainty and camera_info publishers", QOS_PROFILES),
    ParamSpec("diagnostics_period_sec", 1.0, "period of the /diagnostics status"),
    ParamSpec("log_throttle_sec", 5.0, "at most one log line per this period for repeated bad-input errors"),
    ParamSpec("torch_threads", 0, "torch intra-op threads set at start (torch.set_num_threads); 0 keeps torch's "
              "default. On a loaded CPU 1-2 threads can be ~10x faster than the default",
              integer_range=(0, 256, 1)),
    # LiDAR alignment (docs/ros.md, "LiDAR alignment")
    ParamSpec("use_lidar", False, "subscribe 'lidar' (sensor_msgs/PointCloud2), fit log depth = a*z + b to it and "
              "publish metric depth/uncertainty and depthfm/completed_depth for synchronized image+cloud pairs; "
              "see lidar_timeout_sec for images while no cloud arrives"),
    ParamSpec("lidar_slop_sec", 0.05, "largest stamp difference of a synchronized image + cloud pair"),
    ParamSpec("lidar_timeout_sec", 1.0, "when no cloud has arrived for this long (counting from start), images "
              "are processed alone and published as without LiDAR (relative depth; points with points_scale/"
              "points_shift) until clouds return; 0 = strict pairing: no cloud, no depth"),
    ParamSpec("lidar_queue_size", 10, "messages per stream the synchronizer keeps", integer_range=(1, 1000, 1)),
    ParamSpec("lidar_tf_timeout_sec", 0.05, "how long to wait for the tf2 transform cloud frame -> image frame "
              "at the image stamp before using lidar_to_camera_xyz/_quat_xyzw"),
    ParamSpec("lidar_to_camera_xyz", [0.0, 0.0, 0.0], "translation of T_camera_lidar (LiDAR points -> camera "
              "optical frame), metres; used when tf2 is unavailable or has no transform"),
    ParamSpec("lidar_to_camera_quat_xyzw", [0.0, 0.0, 0.0, 1.0], "rotation of T_camera_lidar as a quaternion "
              "x, y, z, w; used with lidar_to_camera_xyz"),
    ParamSpec("lidar_min_range", 0.1, "LiDAR points closer than this along the camera axis are ignored (m)"),
    ParamSpec("lidar_max_range", 0.0, "LiDAR points farther than this are ignored (m); 0 = no limit"),
    ParamSpec("completion_checkpoint", "", "folder of a DepthCompletionFM (depthfm-train --completion); when set, "
              "depthfm/completed_depth comes from that model (torch) instead of the log-residual interpolation"),
    # Point cloud (docs/ros.md, "Point cloud")
    ParamSpec("publish_points", False, "publish depthfm/points (sensor_msgs/PointCloud2, image frame and stamp)"),
    ParamSpec("points_scale", 1.0, "without LiDAR alignment, points use depth = exp(points_scale*z + "
              "points_shift) metres: a fixed calibration of this model and camera, NOT measured scale"),
    ParamSpec("points_shift", 0.0, "see points_scale"),
    ParamSpec("points_stride", 1, "use every n-th pixel of every n-th row", integer_range=(1, 64, 1)),
    ParamSpec("points_organized", False, "true: one point per (strided) pixel, NaN where filtered (organized "
              "cloud); false: only valid points (dense cloud)"),
    ParamSpec("points_rgb", True, "add the field rgb (image colour) to every point"),
    ParamSpec("points_min_range", 0.0, "drop points nearer than this depth (m)"),
    ParamSpec("points_max_range", 0.0, "drop points farther than this depth (m); 0 = no limit"),
    ParamSpec("points_max_std_m", 0.0, "drop points whose depth std exceeds this (m); 0 = off"),
    ParamSpec("points_max_relative_std", 0.0, "drop points whose depth std / depth exceeds this; 0 = off"),
    ParamSpec("points_edge_ratio", 0.0, "flying-pixel filter: drop both pixels of a 4-neighbour depth jump larger "
              "than this ratio (e.g. 1.1); 0 = off"),
)

SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}


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
    seed: int
    image_transport: str
    input_qos: str
    output_qos: str
    diagnostics_period_sec: float
    log_throttle_sec: float
    torch_threads: int
    use_lidar: bool
    lidar_slop_sec: float
    lidar_timeout_sec: float
    lidar_queue_size: int
    lidar_tf_timeout_sec: float
    lidar_to_camera_xyz: tuple[float, ...]
    lidar_to_camera_quat_xyzw: tuple[float, ...]
    lidar_min_range: float
    lidar_max_range: float
    completion_checkpoint: str
    publish_points: bool
    points_scale: float
    points_shift: float
    points_stride: int
    points_organized: bool
    points_rgb: bool
    points_min_range: float
    points_max_range: float
    points_max_std_m: float
    points_max_relative_std: float
    points_edge_ratio: float


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


def _check_value(spec: ParamSpec, value: Any) -> None:
    name = spec.name
    if spec.choices and value not in spec.choices:
        raise ParameterError(f"parameter '{name}' must be one of {', '.join(spec.choices)}; got {value!r}")
    if name == "processing_resolution" and (value < 0 or value % SIZE_MULTIPLE):
        raise ParameterError(f"parameter '{name}' must be 0 (native size) or a positive multiple of "
                             f"{SIZE_MULTIPLE}, got {value}")
    if spec.integer_range and not spec.integer_range[0] <= value <= spec.integer_range[1]:
        raise ParameterError(f"parameter '{name}' must be in [{spec.integer_range[0]}, {spec.integer_range[1]}], "
                             f"got {value}")
    if name == "seed" and value < -1:
        raise ParameterError(f"parameter '{name}' must be >= 0, or -1 for fresh entropy; got {value}")
    if name.endswith("_sec") and name not in _NON_NEGATIVE and not (math.isfinite(value) and value > 0):
        raise ParameterError(f"parameter '{name}' must be a finite number > 0 seconds, got {value}")
    if isinstance(value, tuple) and not all(math.isfinite(v) for v in value):
        raise ParameterError(f"parameter '{name}' must hold finite numbers, got {list(value)}")
    if type(value) is float and name in _NON_NEGATIVE and not (math.isfinite(value) and value >= 0):
        raise ParameterError(f"parameter '{name}' must be a finite number >= 0, got {value}")
    if name == "points_edge_ratio" and 0 < value < 1:
        raise ParameterError(f"parameter '{name}' must be 0 (off) or >= 1 (a depth ratio), got {value}")
    if name in ("points_scale", "points_shift") and not math.isfinite(value):
        raise ParameterError(f"parameter '{name}' must be finite, got {value}")
    if name == "lidar_to_camera_quat_xyzw" and math.hypot(*value) < 1e-6:
        raise ParameterError(f"parameter '{name}' must be a unit quaternion x, y, z, w, got {list(value)}")


_NON_NEGATIVE = ("lidar_timeout_sec", "lidar_min_range", "lidar_max_range", "points_min_range", "points_max_range", "points_max_std_m",
                 "points_max_relative_std", "points_edge_ratio")


def _check_ranges(config: NodeConfig) -> None:
    for near, far in (("lidar_min_range", "lidar_max_range"), ("points_min_range", "points_max_range")):
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


def validate(values: Mapping[str, Any]) -> NodeConfig:
    """Defaults + ``values`` -> :class:`NodeConfig`, or a :class:`ParameterError` naming the bad parameter."""
    unknown = sorted(set(values) - set(SPECS))
    if unknown:
        raise ParameterError(f"parameter '{unknown[0]}' is not a depthfm node parameter; known: {', '.join(SPECS)}")
    checked = {}
    for spec in PARAMETERS:
        value = _check_type(spec, values.get(spec.name, spec.default))
        _check_value(spec, value)
        checked[spec.name] = value
    config = NodeConfig(**checked)
    _check_ranges(config)
    _check_model_files(config)
    return config


def descriptor(spec: ParamSpec):
    """rcl_interfaces/ParameterDescriptor of one parameter (read-only, with range and constraint text)."""
    from rcl_interfaces.msg import IntegerRange, ParameterDescriptor, ParameterType

    types = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
             list: ParameterType.PARAMETER_DOUBLE_ARRAY}
    desc = ParameterDescriptor(name=spec.name, type=types[type(spec.default)], description=spec.description,
                               additional_constraints=spec.constraints, read_only=True)
    if spec.integer_range:
        lo, hi, step = spec.integer_range
        desc.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=step)]
    return desc


def declare_and_read(node) -> NodeConfig:
    """Declare every parameter on an rclpy node and return the validated values (ParameterError if any is bad)."""
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    values = {}
    for spec in PARAMETERS:
        try:
            default = list(spec.default) if isinstance(spec.default, list) else spec.default
            values[spec.name] = node.declare_parameter(spec.name, default, descriptor(spec)).value
        except InvalidParameterTypeException as exc:
            raise ParameterError(f"parameter '{spec.name}' must be {type(spec.default).__name__}: {exc}") from exc
        except InvalidParameterValueException as exc:
            raise ParameterError(f"parameter '{spec.name}' must be {spec.constraints} ({exc})") from exc
    return validate(values)

