"""What a replay plays and how (:class:`ReplayOptions`), and the depthfm_node parameters that turns into: the
model's, reliable QoS, the bag's image transport and LiDAR, the bag's /tf_static extrinsic, then every ``--param``."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from scipy.spatial.transform import Rotation

from ..errors import InputError
from ..settings import ModelSettings
from . import bag as bagio
from .params import ROS_PARAMETERS, SPECS, ParameterError, canonical_names, coerce, parameters_from_settings

DIAGNOSTICS_PERIOD_SEC = 0.5


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay and how: the model (``settings``; the tiny random model unless it names a checkpoint or
    engine), playback ``rate`` (0: lockstep), topic choices, extra node ``param`` texts (``NAME:=VALUE``), and the
    report (``output`` folder, ``previews`` frames)."""

    bag: Path
    settings: ModelSettings
    output: Path = Path("depthfm_replay")
    rate: float = 1.0
    image_topic: str | None = None
    camera_info_topic: str | None = None
    lidar_topic: str | None = None
    no_lidar: bool = False
    no_points: bool = False
    param: tuple[str, ...] = ()
    previews: int = 3
    frame_timeout: float = 60.0
    drain_timeout: float = 30.0


def parse_param(text: str) -> tuple[str, object]:
    """``name:=value`` -> (name, value) with the value read as YAML (true, 3, 0.5, text), as ``ros2 run -p``."""
    name, sep, value = text.partition(":=")
    if not sep or not name:
        raise InputError(f"--param wants NAME:=VALUE, got {text!r}")
    return name.strip(), yaml.safe_load(value) if value.strip() else ""


def replay_parameters(args: ReplayOptions, bag: Path, topics: bagio.ReplayTopics) -> dict:
    """depthfm_node parameters for the replay: only those the node declares (``params.SPECS``), so the replay works
    with nodes with and without LiDAR fusion. ``--param`` values must name declared parameters and win."""
    settings = args.settings
    if not (settings.checkpoint or settings.engine):
        settings = replace(settings, tiny_model=True)
    wanted = {**parameters_from_settings(settings), "output_qos": "reliable", "input_qos": "reliable",
              "image_transport": "compressed" if topics.compressed else "raw",
              "diagnostics_period_sec": DIAGNOSTICS_PERIOD_SEC,
              "use_lidar": topics.lidar is not None, "publish_points": not args.no_points}
    if "lidar_timeout_sec" in SPECS:  # in the bag's time; lockstep (--rate 0) stretches wall time: strict pairing
        wanted["lidar_timeout_sec"] = SPECS["lidar_timeout_sec"].default / args.rate if args.rate > 0 else 0.0
    params = {name: value for name, value in wanted.items() if name in SPECS}
    given = dict(parse_param(text) for text in args.param)
    try:  # old names become new ones; an unknown name is refused with the closest ones ("did you mean")
        known, unknown = canonical_names(given)
    except ParameterError as exc:
        raise InputError(f"--param: {exc}") from exc
    if unknown:  # a shared parameter file may carry other nodes' keys; a --param is meant for this node
        raise InputError(f"--param: {', '.join(repr(n) for n in unknown)} {'is' if len(unknown) == 1 else 'are'} "
                         "not a depthfm node parameter (the parameters: docs/ros.md#parameters)")
    user = {**known, **{k: v for k, v in given.items() if k in ROS_PARAMETERS}}
    if params.get("use_lidar") and "lidar_to_camera_xyz" in SPECS and \
            not any(name.startswith("lidar_to_camera_") for name in user):
        params.update(extrinsic_parameters(bag, topics))
    params.update(user)
    return {name: coerce(name, value) for name, value in params.items()}  # ros2-style 1 for a double parameter


def extrinsic_parameters(bag: Path, topics: bagio.ReplayTopics) -> dict:
    """lidar_to_camera_xyz / _quat_xyzw from the bag's /tf_static (image frame <- LiDAR frame), or {} with a note.

    The node asks tf2 first; this covers robots and replays without tf2 (and keeps the bag self-contained).
    """
    image_frame = bagio.first_frame_id(bag, topics.image.name)
    lidar_frame = bagio.first_frame_id(bag, topics.lidar.name)
    T = bagio.transform_between(bagio.static_transforms(bag), image_frame or "", lidar_frame or "")
    if T is None:
        print(f"depthfm-replay: no /tf_static transform {image_frame} <- {lidar_frame} in the bag: the node uses "
              "its lidar_to_camera_* parameters (--param lidar_to_camera_xyz:=[x,y,z] ...)", file=sys.stderr)
        return {}
    return {"lidar_to_camera_xyz": [float(v) for v in T[:3, 3]],
            "lidar_to_camera_quat_xyzw": [float(v) for v in Rotation.from_matrix(T[:3, :3]).as_quat()]}
