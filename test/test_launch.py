"""launch/depth.launch.py and depth_lifecycle.launch.py (imported with stand-in launch/launch_ros modules; with the
real ones too when installed), their shared arguments (ros/launch_arguments.py) and config/depthfm.yaml."""

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from depthfm_ros.ros.launch_arguments import parameter_arguments, parameter_overrides, typed
from depthfm_ros.ros.params import PARAMETERS, SPECS, ParameterError, declare_and_read, validate

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "depth.launch.py"
LIFECYCLE_LAUNCH_FILE = ROOT / "launch" / "depth_lifecycle.launch.py"
PARAMS_FILE = ROOT / "config" / "depthfm.yaml"


class _Recorded:
    """Stand-in for a launch action: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _stub_modules() -> dict[str, types.ModuleType]:
    """Stand-ins for the parts of launch/launch_ros the launch files use (neither is installable from PyPI)."""
    def module(name, *recorded, **attributes):
        mod = types.ModuleType(name)
        for attr in recorded:
            setattr(mod, attr, type(attr, (_Recorded,), {}))
        for attr, value in attributes.items():
            setattr(mod, attr, value)
        return mod

    return {
        "launch": module("launch", "LaunchDescription"),
        "launch.actions": module("launch.actions", "DeclareLaunchArgument", "OpaqueFunction", "EmitEvent",
                                 "RegisterEventHandler"),
        "launch.events": module("launch.events", matches_action=lambda action: ("matches", action)),
        "launch_ros": module("launch_ros"),
        "launch_ros.actions": module("launch_ros.actions", "Node", "LifecycleNode"),
        "launch_ros.event_handlers": module("launch_ros.event_handlers", "OnStateTransition"),
        "launch_ros.events": module("launch_ros.events"),
        "launch_ros.events.lifecycle": module("launch_ros.events.lifecycle", "ChangeState"),
    }


def _import(path: Path, monkeypatch):
    for name, module in _stub_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def launch_module(monkeypatch):
    """The launch file imported against stub ``launch``/``launch_ros`` modules (not installable here)."""
    return _import(LAUNCH_FILE, monkeypatch)


@pytest.fixture
def lifecycle_launch_module(monkeypatch):
    return _import(LIFECYCLE_LAUNCH_FILE, monkeypatch)


def _arguments(description):
    return {a.args[0]: a.kwargs for a in description.args[0] if type(a).__name__ == "DeclareLaunchArgument"}


def _node(description, **configurations):
    """Run the launch file's OpaqueFunction the way launch does: defaults, then the given arguments."""
    args = _arguments(description)
    context = types.SimpleNamespace(launch_configurations={n: a["default_value"] for n, a in args.items()})
    context.launch_configurations.update(configurations)
    (opaque,) = [a for a in description.args[0] if type(a).__name__ == "OpaqueFunction"]
    (node,) = [a for a in opaque.kwargs["function"](context) if type(a).__name__.endswith("Node")]
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
    assert dict(node["remappings"]) == {"image": "camera/image_raw", "camera_info": "camera/camera_info",
                                        "lidar": "lidar/points"}  # relative: namespace:= moves them


def test_arguments_become_typed_parameters_remaps_and_namespace(launch_module, tmp_path):
    (tmp_path / "mine.yaml").write_text(PARAMS_FILE.read_text())
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
        default = list(SPECS[name].default) if isinstance(SPECS[name].default, tuple) else SPECS[name].default
        assert value == default and type(value) is type(default), name
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


def test_old_argument_names_work_and_both_names_together_are_refused(launch_module):
    """steps:=1 num_steps:=4 dropped one of them without a word."""
    node = _node(launch_module.generate_launch_description(), steps="3", ensemble="4", lidar_slop="0.1")
    _, overrides = node["parameters"]
    assert overrides == {"num_steps": 3, "ensemble_size": 4, "lidar_slop_sec": 0.1}
    with pytest.raises(ParameterError, match="'steps' \\(old name\\) and 'num_steps' are both given"):
        _node(launch_module.generate_launch_description(), num_steps="4", steps="1")


@pytest.mark.parametrize("text", ["0", "2", "0.5", "2.0"])
def test_every_numeric_argument_takes_an_int_and_a_float_as_its_declared_type(launch_module, text):
    """``lidar_timeout_sec:=0`` must start the node (it failed with 'expecting type DOUBLE')."""
    numeric = [a for a in parameter_arguments() if a in SPECS
               and type(SPECS[a].default) in (int, float) and not isinstance(SPECS[a].default, bool)]
    assert {"num_steps", "lidar_timeout_sec", "lidar_slop_sec", "torch_threads"} <= set(numeric)
    for argument in numeric:
        value = typed(argument, text)
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

    overrides = parameter_overrides({"model": "tiny", "lidar_timeout_sec": "0", "lidar_slop_sec": "1",
                                     "num_steps": "1"})
    node = Node("launch_types", context=ros_context,
                parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    try:
        config = declare_and_read(node)
    finally:
        node.destroy_node()
    assert (config.lidar_timeout_sec, config.lidar_slop_sec, config.num_steps) == (0.0, 1.0, 1)


def _opaque_entities(description, **configurations):
    args = _arguments(description)
    context = types.SimpleNamespace(launch_configurations={n: a["default_value"] for n, a in args.items()})
    context.launch_configurations.update(configurations)
    (opaque,) = [a for a in description.args[0] if type(a).__name__ == "OpaqueFunction"]
    return opaque.kwargs["function"](context)


@pytest.mark.parametrize("module", ["launch_module", "lifecycle_launch_module"])
def test_every_parameter_and_use_sim_time_is_a_launch_argument(module, request):
    """metric_source:=fixed had no argument for its scale, nor use_sim_time, the QoS choices, the point filters."""
    args = _arguments(request.getfixturevalue(module).generate_launch_description())
    for spec in PARAMETERS:
        assert args[spec.name]["default_value"] == "" and spec.description in args[spec.name]["description"]
    assert args["use_sim_time"]["default_value"] == ""
    node = _node(request.getfixturevalue(module).generate_launch_description(), use_sim_time="true",
                 metric_source="fixed", metric_fixed_scale="1.5", metric_fixed_shift="0", input_qos="reliable",
                 points_edge_ratio="1.1", points_max_std_m="0.5")
    assert node["parameters"][1] == {"use_sim_time": True, "metric_source": "fixed", "metric_fixed_scale": 1.5,
                                     "metric_fixed_shift": 0.0, "input_qos": "reliable", "points_edge_ratio": 1.1,
                                     "points_max_std_m": 0.5}


def test_a_params_file_that_is_not_yaml_is_named_by_launch(launch_module, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("depthfm: [ros__parameters\n  : x\n")
    with pytest.raises(ParameterError, match=f"params_file {bad} is not YAML"):
        _node(launch_module.generate_launch_description(), params_file=str(bad))


def test_relative_default_topics_follow_the_namespace(launch_module, ros_context):
    """The default remaps were absolute (/camera/image_raw), so namespace:= did not move the inputs."""
    from rclpy.node import Node

    node_kwargs = _node(launch_module.generate_launch_description(), namespace="robot1")
    remaps = [arg for topic, target in node_kwargs["remappings"] for arg in ("-r", f"{topic}:={target}")]
    node = Node("depthfm", namespace="robot1", context=ros_context, cli_args=["--ros-args", *remaps])
    try:
        assert [node.resolve_topic_name(t, only_expand=False) for t in ("image", "camera_info", "lidar")] == [
            "/robot1/camera/image_raw", "/robot1/camera/camera_info", "/robot1/lidar/points"]
    finally:
        node.destroy_node()


def test_lifecycle_launch_starts_the_managed_node_and_autostarts_it(lifecycle_launch_module):
    from lifecycle_msgs.msg import Transition

    description = lifecycle_launch_module.generate_launch_description()
    assert _arguments(description)["autostart"]["default_value"] == "true"
    handler, node, configure = _opaque_entities(description, model="tiny")
    assert type(node).__name__ == "LifecycleNode" and node.kwargs["executable"] == "depthfm_lifecycle_node"
    assert node.kwargs["parameters"][1] == {"model": "tiny"} and node.kwargs["name"] == "depthfm"
    assert configure.kwargs["event"].kwargs == {"lifecycle_node_matcher": ("matches", node),
                                                "transition_id": Transition.TRANSITION_CONFIGURE}
    on_inactive = handler.args[0]
    assert on_inactive.kwargs["target_lifecycle_node"] is node
    assert (on_inactive.kwargs["start_state"], on_inactive.kwargs["goal_state"]) == ("configuring", "inactive")
    assert on_inactive.kwargs["handle_once"]  # a configure after cleanup is not activated behind the user's back
    (activate,) = on_inactive.kwargs["entities"]
    assert activate.kwargs["event"].kwargs["transition_id"] == Transition.TRANSITION_ACTIVATE
    (only,) = _opaque_entities(lifecycle_launch_module.generate_launch_description(), autostart="false")
    assert type(only).__name__ == "LifecycleNode"


def test_real_launch_files_build_their_descriptions():
    """With the real launch and launch_ros (a ROS 2 install): both files load and declare the same arguments."""
    pytest.importorskip("launch_ros")
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    for path in (LAUNCH_FILE, LIFECYCLE_LAUNCH_FILE):
        description = PythonLaunchDescriptionSource(str(path)).get_launch_description(LaunchContext())
        names = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
        assert set(parameter_arguments()) <= names and {"params_file", "namespace", "image_topic"} <= names
