"""launch/depth.launch.py (imported with stand-in launch/launch_ros modules) and config/depthfm.yaml."""

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from depthfm_ros.ros.params import SPECS, declare_and_read, validate

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "depth.launch.py"
PARAMS_FILE = ROOT / "config" / "depthfm.yaml"


class _Recorded:
    """Stand-in for a launch action: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@pytest.fixture
def launch_module(monkeypatch):
    """The launch file imported against stub ``launch``/``launch_ros`` modules (not installable here)."""
    launch = types.ModuleType("launch")
    launch.LaunchDescription = type("LaunchDescription", (_Recorded,), {})
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = type("DeclareLaunchArgument", (_Recorded,), {})
    actions.OpaqueFunction = type("OpaqueFunction", (_Recorded,), {})
    launch.actions = actions
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = type("Node", (_Recorded,), {})
    launch_ros.actions = ros_actions
    for name, module in {"launch": launch, "launch.actions": actions, "launch_ros": launch_ros,
                         "launch_ros.actions": ros_actions}.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("depth_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _arguments(description):
    return {a.args[0]: a.kwargs for a in description.args[0] if type(a).__name__ == "DeclareLaunchArgument"}


def _node(description, **configurations):
    """Run the launch file's OpaqueFunction the way launch does: defaults, then the given arguments."""
    args = _arguments(description)
    context = types.SimpleNamespace(launch_configurations={n: a["default_value"] for n, a in args.items()})
    context.launch_configurations.update(configurations)
    (opaque,) = [a for a in description.args[0] if type(a).__name__ == "OpaqueFunction"]
    (node,) = opaque.kwargs["function"](context)
    return node.kwargs


def test_declares_the_documented_arguments(launch_module):
    args = _arguments(launch_module.generate_launch_description())
    for name in ("checkpoint", "vae", "engine", "backend", "steps", "ensemble", "model", "namespace",
                 "image_topic", "camera_info_topic", "lidar_topic", "params_file"):
        assert name in args and args[name]["description"], name
    assert Path(args["params_file"]["default_value"]).resolve() == PARAMS_FILE
    assert args["checkpoint"]["default_value"] == "" and args["namespace"]["default_value"] == ""


def test_defaults_start_the_node_from_the_yaml_with_remaps(launch_module):
    node = _node(launch_module.generate_launch_description())
    assert (node["package"], node["executable"], node["name"], node["namespace"]) == (
        "depthfm_ros", "depthfm_node", "depthfm", "")
    params_file, overrides = node["parameters"]
    assert Path(params_file).resolve() == PARAMS_FILE and overrides == {}
    assert dict(node["remappings"]) == {"image": "/camera/image_raw", "camera_info": "/camera/camera_info",
                                        "lidar": "/lidar/points"}


def test_arguments_become_typed_parameters_remaps_and_namespace(launch_module, tmp_path):
    node = _node(launch_module.generate_launch_description(), checkpoint="/models/depthfm-v1.ckpt",
                 vae="/models/vae", engine="/models/depthfm.engine", backend="tensorrt", steps="1", ensemble="4",
                 processing_resolution="384", dtype="fp16", image_topic="/cam/color/image_raw",
                 camera_info_topic="/cam/color/camera_info", lidar_topic="/os1/points", namespace="robot1",
                 lidar_timeout="0.5", params_file=str(tmp_path / "mine.yaml"))
    params_file, overrides = node["parameters"]
    assert params_file == str(tmp_path / "mine.yaml")
    assert overrides == {"checkpoint": "/models/depthfm-v1.ckpt", "vae": "/models/vae",
                         "engine": "/models/depthfm.engine", "backend": "tensorrt", "num_steps": 1,
                         "ensemble_size": 4, "processing_resolution": 384, "dtype": "fp16", "lidar_timeout_sec": 0.5}
    assert node["namespace"] == "robot1"
    assert dict(node["remappings"]) == {"image": "/cam/color/image_raw", "camera_info": "/cam/color/camera_info",
                                        "lidar": "/os1/points"}
    for name, value in overrides.items():  # every override is a declared parameter of the right type
        assert name in SPECS and type(value) is type(SPECS[name].default), name


def _yaml_parameters():
    document = yaml.safe_load(PARAMS_FILE.read_text())
    assert list(document) == ["/**"]
    return document["/**"]["ros__parameters"]


def test_yaml_matches_the_node_declarations():
    values = _yaml_parameters()
    assert set(values) == set(SPECS)  # every declared parameter is in the file, nothing else
    for name, value in values.items():
        assert value == SPECS[name].default and type(value) is type(SPECS[name].default), name
    assert validate({**values, "model": "tiny"}).num_steps == values["num_steps"]


def test_yaml_loads_through_rcl_into_the_declarations():
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("depthfm", context=context, cli_args=[
            "--ros-args", "--params-file", str(PARAMS_FILE), "-p", "model:=tiny", "-p", "num_steps:=3"])
        try:
            config = declare_and_read(node)
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert (config.model, config.num_steps, config.backend) == ("tiny", 3, _yaml_parameters()["backend"])


def test_canonical_argument_names_win_over_their_old_aliases(launch_module):
    node = _node(launch_module.generate_launch_description(), num_steps="1", steps="3", ensemble="4",
                 lidar_slop="0.1")
    _, overrides = node["parameters"]
    assert overrides == {"num_steps": 1, "ensemble_size": 4, "lidar_slop_sec": 0.1}


@pytest.mark.parametrize("text", ["0", "2", "0.5", "2.0"])
def test_every_numeric_argument_takes_an_int_and_a_float_as_its_declared_type(launch_module, text):
    """``lidar_timeout_sec:=0`` must start the node (it failed with 'expecting type DOUBLE')."""
    numeric = [a for a in launch_module.PARAMETER_ARGUMENTS
               if type(SPECS[a].default) in (int, float) and not isinstance(SPECS[a].default, bool)]
    assert {"num_steps", "lidar_timeout_sec", "lidar_slop_sec", "torch_threads"} <= set(numeric)
    for argument in numeric:
        value = launch_module.typed(argument, text)
        expected = type(SPECS[argument].default)
        if expected is float or float(text).is_integer():
            assert type(value) is expected and value == float(text), (argument, text)
        else:  # 0.5 for an integer parameter stays a float, for validate() to refuse with the name
            assert value == 0.5
            with pytest.raises(Exception, match=f"'{argument}'"):
                validate({"model": "tiny", argument: value})


def test_launch_overrides_start_a_real_node(launch_module, ros_context):
    """The typed overrides of every decimal argument given as a whole number are accepted by rclpy + validate."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    overrides = launch_module.parameter_overrides({"model": "tiny", "lidar_timeout_sec": "0", "lidar_slop_sec": "1",
                                                   "num_steps": "1"})
    node = Node("launch_types", context=ros_context,
                parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    try:
        config = declare_and_read(node)
    finally:
        node.destroy_node()
    assert (config.lidar_timeout_sec, config.lidar_slop_sec, config.num_steps) == (0.0, 1.0, 1)
