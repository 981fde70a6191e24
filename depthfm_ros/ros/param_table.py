"""The node's parameters, written down once: one :class:`ParamSpec` per parameter (name, default and so type,
meaning, allowed values) in :data:`PARAMETERS`, the documented old names (:data:`ALIASES`) and the parameters rclpy
itself declares. Reading and validating them is :mod:`.params`; the documentation's table is :mod:`.param_docs`."""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import DepthFMError
from ..settings import BACKENDS, DTYPES, VAE_KINDS
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
    ``minimum``. ``check``: one more rule, returning what is wrong ("" when fine). A tuple default (of str) is a
    string array. ``per_camera``: a node serving several cameras (``cameras``) takes this parameter for each camera
    as ``<camera>.<name>`` too, the node's value being the default.
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
    per_camera: bool = False

    @property
    def constraints(self) -> str:
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        if self.integer_range:
            lo, hi, step = self.integer_range
            return f"{lo} <= value <= {hi}" + (f", multiple of {step}" if step > 1 else "")
        if isinstance(self.default, list):
            return f"{len(self.default)} numbers"
        if isinstance(self.default, tuple):
            return self.check.__doc__ or "" if self.check else ""
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
        numbers = value if isinstance(value, tuple) and not isinstance(self.default, tuple) else \
            (value,) if type(value) is float else ()
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


MAX_CAMERAS = 16
_CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


#: names rclpy gives parameters of its own under (``qos_overrides.<topic>...``): no camera may be called so
RESERVED_CAMERA_NAMES = ("qos_overrides",)


def camera_names_problem(names) -> str:
    """names: [A-Za-z][A-Za-z0-9_]*, unique, at most 16, none a parameter's name"""
    bad = [n for n in names if not _CAMERA_NAME.fullmatch(n)]
    if bad:
        return (f"must hold names of letters, digits and '_' starting with a letter (each becomes a topic namespace "
                f"and a parameter prefix), got {bad[0]!r}")
    reserved = [n for n in names if n in RESERVED_CAMERA_NAMES or n in SPECS or n in ALIASES or n in ROS_PARAMETERS]
    if reserved:
        return (f"must not use {reserved[0]!r}: a parameter of the node or of ROS has that name (a camera's "
                "'<name>.<parameter>' keys would clash with it in a parameter file)")
    if len(set(names)) != len(names):
        return f"must hold each name once, got {list(names)}"
    if len(names) > MAX_CAMERAS:
        return f"must hold at most {MAX_CAMERAS} names, got {len(names)}"
    return ""


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
    ParamSpec("processing_resolution", 512, "longest side the model sees; 0 = input size rounded to 64; the other "
              "side is the multiple of 64 nearest the input's aspect ratio (1280x720 at 512: 512x320). A graph or "
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
    ParamSpec("max_batch", 0, "images per engine call at most, and of the TensorRT engine profile (give the same "
              "as depthfm-export --max-batch so the node reuses the exported engine); 0 = one per camera (1 with a "
              "single camera)", integer_range=(0, 64, 1)),
    # Several cameras (docs/ros.md, "Several cameras")
    ParamSpec("cameras", (), "camera names; empty: one camera on 'image', 'camera_info', 'lidar' publishing "
              "depthfm/<output>; [front, rear, ...]: one engine serves every camera, camera <name> on '<name>/image', "
              "'<name>/camera_info', '<name>/lidar' publishing depthfm/<name>/<output>, with '<name>.<parameter>' "
              "for the per-camera parameters", check=camera_names_problem),
    _seconds("batch_window_sec", 0.01, "several cameras: after a frame arrives, the engine waits at most this long "
             "for the other live cameras' frames to run them in one batch (cameras x ensemble members); a camera "
             "with no frame for two of its periods is not waited for; 0 = batch only frames already waiting",
             minimum=0.0, exclusive=False, maximum=10.0),
    # LiDAR alignment (docs/ros.md, "LiDAR alignment")
    ParamSpec("use_lidar", False, "subscribe 'lidar' (sensor_msgs/PointCloud2), fit log depth = a*z + b to the "
              "cloud nearest in time to each image and publish metric depth/uncertainty and depthfm/completed_depth "
              "for frames whose fit is accepted (relative outputs never wait for the LiDAR; docs/ros.md, LiDAR "
              "alignment)"),
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
              "filtered one is rejected (no hold on that frame either); a new scale is taken after 3 agreeing "
              "frames over 0.5 s while the model's view changed", minimum=0.0, exclusive_minimum=True),
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
    ParamSpec("points_stride", 1, "use every n-th pixel of every n-th row; the filters see that grid (the "
              "flying-pixel test compares neighbours n pixels apart)", integer_range=(1, 64, 1)),
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

#: parameters a node serving several cameras takes per camera too (``<camera>.<name>``): inputs, LiDAR, metric
#: sources and points; the model, engine, QoS and logging are the node's
PER_CAMERA: tuple[str, ...] = (
    "image_transport",
    "use_lidar",
    "lidar_slop_sec",
    "lidar_wait_sec",
    "lidar_timeout_sec",
    "lidar_queue_size",
    "lidar_tf_timeout_sec",
    "lidar_to_camera_xyz",
    "lidar_to_camera_quat_xyzw",
    "lidar_min_range_m",
    "lidar_max_range_m",
    "publish_points",
    "metric_source",
    "metric_hold_sec",
    "metric_gate_log",
    "camera_height_m",
    "camera_pitch_deg",
    "camera_roll_deg",
    "ground_frame",
    "metric_fixed_scale",
    "metric_fixed_shift",
    "image_rectified",
    "points_stride",
    "points_organized",
    "points_rgb",
    "points_min_range_m",
    "points_max_range_m",
    "points_max_std_m",
    "points_max_relative_std",
    "points_edge_ratio",
)
PARAMETERS = tuple(dataclasses.replace(spec, per_camera=spec.name in PER_CAMERA) for spec in PARAMETERS)


SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}

#: documented old names -> current names (a value under the old name is used as the new one)
ALIASES = {"lidar_min_range": "lidar_min_range_m", "lidar_max_range": "lidar_max_range_m",
           "points_scale": "metric_fixed_scale", "points_shift": "metric_fixed_shift",
           "points_min_range": "points_min_range_m", "points_max_range": "points_max_range_m"}
#: parameters rclpy itself declares (or reads) on every node
ROS_PARAMETERS = ("use_sim_time", "start_type_description_service", "start_parameter_services")
