"""The arguments of launch/depth.launch.py, launch/depth_lifecycle.launch.py and launch/cameras.launch.py, from the
one parameter table.

Pure Python (no ``launch`` import), so the arguments, their typing and the node they start are tested where ROS 2
launch is not installed. Every node parameter (:data:`depthfm_ros.ros.params.PARAMETERS`) is a launch argument of
the same name whose empty default keeps the ``params_file`` value; ``use_sim_time`` is one too; the topic
arguments remap the node's relative input topics to names that are relative as well, so ``namespace:=`` moves
them (image_pipeline's convention). cameras.launch.py starts one node serving several cameras (``cameras``): its
topic arguments are patterns remapping every camera's inputs (:data:`CAMERA_TOPIC_ARGUMENTS`).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .params import ALIASES, PARAMETERS, SPECS, ParameterError, canonical_names, check_params_file, coerce

#: arguments of the node itself: name -> (default, description); the launch file fills in params_file's default
NODE_ARGUMENTS = {
    "params_file": ("", "node parameter YAML (default: the package's config/depthfm.yaml)"),
    "namespace": ("", "namespace of the node and its topics"),
    "node_name": ("depthfm", "node name"),
    "use_sim_time": ("", "true: the node's clock follows /clock (empty: from params_file)"),
}
#: documented older argument names -> the argument they stand for
ARGUMENT_ALIASES = {"steps": "num_steps", "ensemble": "ensemble_size", "lidar_slop": "lidar_slop_sec",
                    "lidar_timeout": "lidar_timeout_sec"}
#: launch argument -> (node topic it remaps, default target: relative, so it follows namespace:=)
TOPIC_ARGUMENTS = {
    "image_topic": ("image", "camera/image_raw"),
    "camera_info_topic": ("camera_info", "camera/camera_info"),
    "lidar_topic": ("lidar", "lidar/points"),  # subscribed with use_lidar
}
#: arguments of depth_lifecycle.launch.py only
LIFECYCLE_ARGUMENTS = {
    "autostart": ("true", "true: configure, then activate the managed node as soon as it starts (as "
                          "nav2_lifecycle_manager's autostart); false: wait for lifecycle services"),
}


def parameter_arguments() -> dict[str, str]:
    """Launch argument -> description, one per node parameter (and use_sim_time), in the table's order."""
    out = {spec.name: f"{spec.description} (empty: from params_file)" for spec in PARAMETERS}
    out["use_sim_time"] = NODE_ARGUMENTS["use_sim_time"][1]
    return out


def all_arguments(params_file_default: str, lifecycle: bool = False) -> list[tuple[str, str, str]]:
    """(name, default, description) of every argument a launch file declares."""
    node = dict(NODE_ARGUMENTS, params_file=(params_file_default, NODE_ARGUMENTS["params_file"][1]))
    out = [(name, default, text) for name, (default, text) in node.items() if name != "use_sim_time"]
    out += [(name, "", text) for name, text in parameter_arguments().items()]
    out += [(alias, "", f"old name of {name}") for alias, name in ARGUMENT_ALIASES.items()]
    out += [(name, default, f"topic remapped to the node's '{topic}'")
            for name, (topic, default) in TOPIC_ARGUMENTS.items()]
    if lifecycle:
        out += [(name, default, text) for name, (default, text) in LIFECYCLE_ARGUMENTS.items()]
    return out


def typed(parameter: str, text: str):
    """A launch argument's text as the value its node parameter declares (``"0"`` -> 0.0 for a double, ``"2.0"`` -> 2
    for an integer; anything else is left for the node's validation to name)."""
    if parameter == "use_sim_time":
        return flag(parameter, text)
    if isinstance(SPECS[parameter].default, str):
        return text  # paths and choices stay text
    return coerce(parameter, yaml.safe_load(text))


def flag(argument: str, text: str) -> bool:
    """A true/false launch argument (YAML booleans), or ParameterError naming it."""
    value = yaml.safe_load(text) if text else None
    if not isinstance(value, bool):
        raise ParameterError(f"launch argument '{argument}' must be true or false, got {text!r}")
    return value


def parameter_overrides(launch_configurations: dict) -> dict:
    """Typed node parameters for the non-empty parameter arguments. An old argument name counts like its new one;
    both given is refused (ParameterError), as is the same parameter twice in a parameter file."""
    overrides = {}
    for argument in parameter_arguments():
        text = launch_configurations.get(argument, "")
        if text != "":
            overrides[argument] = typed(argument, text)
    for alias, parameter in ARGUMENT_ALIASES.items():
        text = launch_configurations.get(alias, "")
        if text == "":
            continue
        if parameter in overrides:
            raise ParameterError(f"launch arguments '{alias}' (old name) and '{parameter}' are both given "
                                 f"({alias}:={text}, {parameter}:={launch_configurations[parameter]}): give one")
        overrides[parameter] = typed(parameter, text)
    return overrides


def node_arguments(launch_configurations: dict, params_file_default: str) -> dict:
    """Keyword arguments of the launch_ros Node (or LifecycleNode) action for these launch configurations."""
    cfg = launch_configurations
    return {
        "package": "depthfm_ros",
        "name": cfg.get("node_name", "depthfm"),
        "namespace": cfg.get("namespace", ""),
        "parameters": [check_params_file(cfg.get("params_file") or params_file_default), parameter_overrides(cfg)],
        "remappings": [(topic, cfg.get(argument, default)) for argument, (topic, default) in TOPIC_ARGUMENTS.items()],
        "output": "screen",
        "emulate_tty": True,
    }


# -- launch/cameras.launch.py: one node, several cameras --------------------------------------------------------------

#: stands for a camera's name in the topic arguments of cameras.launch.py
CAMERA = "{camera}"
#: cameras.launch.py: launch argument -> (input of every camera it remaps, '<camera>/<input>'; default target, relative
#: so that namespace:= moves it); '<camera>.<argument>' (front.image_topic:=...) gives one camera its own target
CAMERA_TOPIC_ARGUMENTS = {
    "image_topic": ("image", CAMERA + "_camera/image_raw"),  # '<target>/compressed' with image_transport compressed
    "camera_info_topic": ("camera_info", CAMERA + "_camera/camera_info"),
    "lidar_topic": ("lidar", "lidar/points"),  # one LiDAR for every camera with use_lidar
}


def params_file_cameras(path: str, node_name: str = "depthfm", namespace: str = "") -> tuple[str, ...]:
    """The ``cameras`` that parameter file ``path`` gives the node ``namespace``/``node_name``, as rclpy reads it: of
    the sections naming that node ('/**', '/**/depthfm', 'depthfm', '/robot1/depthfm', '/*/depthfm', ...), the last
    one with ``cameras`` wins; () when none has it. ParameterError when it is not a list of names."""
    check_params_file(path)
    fqn = "/" + "/".join(part for part in (*namespace.split("/"), node_name) if part)
    cameras = ()
    for key, section in yaml.safe_load(Path(path).read_text()).items():
        values = (section or {}).get("ros__parameters") or {}
        if "cameras" in values and _node_key_matches(str(key), fqn):
            cameras = values["cameras"]
    return _camera_names(cameras, f"parameter 'cameras' of params_file {path}")


def _node_key_matches(key: str, fqn: str) -> bool:
    """Whether a parameter file's node key matches the node ``fqn`` ('/**' any namespaces, '/*' one name)."""
    pattern = re.escape("/" + key.lstrip("/")).replace(r"/\*\*", "(/[^/]+)*").replace(r"/\*", "/[^/]+")
    return re.fullmatch(pattern, fqn) is not None


def _camera_names(value, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) for name in value):
        raise ParameterError(f"{what} must be a list of camera names such as [front, rear], got {value!r}")
    problem = SPECS["cameras"].violation(tuple(value))
    if problem:
        raise ParameterError(f"{what} {problem}")
    return tuple(value)


def launch_cameras(launch_configurations: dict, params_file_default: str) -> tuple[str, ...]:
    """The cameras the node will serve: the ``cameras`` argument (a YAML list, ``cameras:='[front, rear]'``), else
    params_file's; ParameterError when there are none (one camera: depth.launch.py)."""
    cfg = launch_configurations
    text = cfg.get("cameras", "")
    params_file = cfg.get("params_file") or params_file_default
    if text:
        cameras = _camera_names(yaml.safe_load(text), f"launch argument 'cameras' ({text})")
    else:
        cameras = params_file_cameras(params_file, cfg.get("node_name") or "depthfm", cfg.get("namespace", ""))
    if not cameras:
        given = f"cameras:={text}" if text else f"params_file {params_file} has no cameras"
        raise ParameterError(f"cameras.launch.py starts a node serving several cameras, but {given}: give "
                             "cameras:='[front, rear]' (or use depth.launch.py for one camera)")
    return cameras


def camera_remappings(cameras, launch_configurations: dict) -> list[tuple[str, str]]:
    """(camera input, topic) remappings of cameras.launch.py: '<camera>/<input>' -> '<camera>.<argument>' when given,
    else the argument's pattern with '{camera}' replaced. ParameterError for a '<camera>.<argument>' of a camera the
    node does not serve, and for two cameras on one image or camera_info topic."""
    cfg = launch_configurations
    for key, text in cfg.items():
        camera, _, argument = key.partition(".")
        if argument in CAMERA_TOPIC_ARGUMENTS and text and camera not in cameras:
            raise ParameterError(f"launch argument '{key}' is for camera '{camera}', which is not in cameras "
                                 f"{list(cameras)}")
    remaps = []
    for argument, (topic, default) in CAMERA_TOPIC_ARGUMENTS.items():
        pattern = cfg.get(argument) or default
        targets = {camera: cfg.get(f"{camera}.{argument}") or pattern.replace(CAMERA, camera) for camera in cameras}
        if topic != "lidar":
            shared = [camera for camera in cameras if list(targets.values()).count(targets[camera]) > 1]
            if shared:
                raise ParameterError(f"cameras {shared} would all read '{targets[shared[0]]}' as their '{topic}': give "
                                     f"{argument}:= a pattern with '{CAMERA}' (default '{default}'), or "
                                     f"'<camera>.{argument}:=' per camera")
        remaps += [(f"{camera}/{topic}", target) for camera, target in targets.items()]
    return remaps


def camera_parameter_overrides(cameras, launch_configurations: dict) -> dict:
    """Typed '<camera>.<parameter>' node parameters from launch arguments of that name (``rear.camera_height_m:=0.6``;
    undeclared, so only those given). ParameterError, as the node would give it, for a misspelt camera or a
    parameter that is not per camera; another prefix is passed on, and the node ignores it with a warning."""
    overrides = {}
    for key, text in launch_configurations.items():
        camera, dot, name = key.partition(".")
        parameter = ALIASES.get(name, name)
        if not dot or text == "" or name in CAMERA_TOPIC_ARGUMENTS:
            continue
        if camera in cameras or (parameter in SPECS and SPECS[parameter].per_camera):
            overrides[key] = typed(parameter, text) if parameter in SPECS else text
    canonical_names({"cameras": list(cameras), **overrides})  # the node's own refusals, at launch
    return overrides


def cameras_arguments(params_file_default: str) -> list[tuple[str, str, str]]:
    """(name, default, description) of every argument cameras.launch.py declares: depth.launch.py's with topic
    patterns for every camera, and '<camera>.<topic argument>' for the cameras of ``params_file_default``."""
    text = {"params_file": f"node parameter YAML with cameras (default: the package's config/"
                           f"{Path(params_file_default).name})",
            "cameras": "camera names as a YAML list, cameras:='[front, rear]'; the remappings follow it (empty: "
                       "params_file's cameras)"}
    out = [(name, default, text.get(name, description)) for name, default, description in all_arguments(
        params_file_default) if name not in TOPIC_ARGUMENTS]
    out += [(name, default, f"topic remapped to every camera's '<camera>/{topic}' ('{CAMERA}': its name)")
            for name, (topic, default) in CAMERA_TOPIC_ARGUMENTS.items()]
    out += [(f"{camera}.{name}", "", f"topic remapped to '{camera}/{topic}' (empty: from {name})")
            for camera in params_file_cameras(params_file_default) for name, (topic, _) in
            CAMERA_TOPIC_ARGUMENTS.items()]
    return out


def cameras_node_arguments(launch_configurations: dict, params_file_default: str) -> dict:
    """Keyword arguments of the launch_ros Node action of cameras.launch.py: :func:`node_arguments` with every
    camera's remappings and '<camera>.<parameter>' overrides."""
    out = node_arguments(launch_configurations, params_file_default)
    cameras = launch_cameras(launch_configurations, params_file_default)
    out["parameters"][1].update(camera_parameter_overrides(cameras, launch_configurations))
    out["remappings"] = camera_remappings(cameras, launch_configurations)
    return out


def markdown_table(params_file_default: str = "config/depthfm.yaml", lifecycle: bool = True) -> str:
    """The launch-argument table of docs/ros.md (test/test_docs.py checks the doc holds exactly this)."""
    rows = ["| argument | default | meaning |", "|---|---|---|"]
    per_parameter = set(parameter_arguments()) - {"use_sim_time"}
    for name, default, text in all_arguments(params_file_default, lifecycle):
        if name in per_parameter:
            continue
        default = f"`{default}`" if default else "empty"
        where = " (depth_lifecycle.launch.py)" if name in LIFECYCLE_ARGUMENTS else ""
        rows.append(f"| `{name}` | {default} | {text}{where} |")
    rows.append(f"| every parameter | empty | `<parameter>:=<value>` sets that node parameter, typed by its declared "
                f"type (`lidar_timeout_sec:=0` is the decimal 0.0); empty keeps the params_file value "
                f"({len(per_parameter)} arguments, one per row of the parameter table) |")
    return "\n".join(rows) + "\n"


__all__ = ["ARGUMENT_ALIASES", "CAMERA", "CAMERA_TOPIC_ARGUMENTS", "LIFECYCLE_ARGUMENTS", "NODE_ARGUMENTS",
           "TOPIC_ARGUMENTS", "all_arguments", "camera_parameter_overrides", "camera_remappings", "cameras_arguments",
           "cameras_node_arguments", "flag", "launch_cameras", "markdown_table", "node_arguments",
           "params_file_cameras", "parameter_arguments", "parameter_overrides", "typed"]
