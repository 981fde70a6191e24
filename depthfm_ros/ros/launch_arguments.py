"""The arguments of launch/depth.launch.py and launch/depth_lifecycle.launch.py, from the one parameter table.

Pure Python (no ``launch`` import), so the arguments, their typing and the node they start are tested where ROS 2
launch is not installed. Every node parameter (:data:`depthfm_ros.ros.params.PARAMETERS`) is a launch argument of
the same name whose empty default keeps the ``params_file`` value; ``use_sim_time`` is one too; the topic
arguments remap the node's relative input topics to names that are relative as well, so ``namespace:=`` moves
them (image_pipeline's convention).
"""

from __future__ import annotations

import yaml

from .params import PARAMETERS, SPECS, ParameterError, check_params_file, coerce

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


__all__ = ["ARGUMENT_ALIASES", "LIFECYCLE_ARGUMENTS", "NODE_ARGUMENTS", "TOPIC_ARGUMENTS", "all_arguments",
           "flag", "markdown_table", "node_arguments", "parameter_arguments", "parameter_overrides",
           "typed"]
