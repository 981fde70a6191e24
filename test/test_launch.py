"""launch/depth.launch.py, depth_lifecycle.launch.py and cameras.launch.py (imported with stand-in launch/launch_ros
modules; with the real ones too when installed), their shared arguments (ros/launch_arguments.py),
config/depthfm.yaml and config/four_cameras.yaml."""

import contextlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from depthfm_ros.ros.launch_arguments import (
    ARGUMENT_ALIASES,
    parameter_arguments,
    parameter_overrides,
    params_file_cameras,
    typed,
)
from depthfm_ros.ros.params import PARAMETERS, SPECS, ParameterError, declare_and_read, validate

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "depth.launch.py"
LIFECYCLE_LAUNCH_FILE = ROOT / "launch" / "depth_lifecycle.launch.py"
PARAMS_FILE = ROOT / "config" / "depthfm.yaml"
CAMERAS_LAUNCH_FILE = ROOT / "launch" / "cameras.launch.py"
FOUR_CAMERAS_FILE = ROOT / "config" / "four_cameras.yaml"


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


@pytest.fixture
def cameras_launch_module(monkeypatch):
    return _import(CAMERAS_LAUNCH_FILE, monkeypatch)


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


# -- launch/cameras.launch.py and config/four_cameras.yaml: one node serving four cameras ------------------------------

FOUR_CAMERAS = ("front", "left", "rear", "right")


def _flat(values: dict, prefix: str = "") -> dict:
    """A parameter file's nested sections as rcl reads them: ``front: {use_lidar: true}`` is 'front.use_lidar'."""
    out = {}
    for name, value in values.items():
        out.update(_flat(value, f"{prefix}{name}.") if isinstance(value, dict) else {f"{prefix}{name}": value})
    return out


@contextlib.contextmanager
def _rcl_node(*ros_args: str, namespace: str = ""):
    """A plain rclpy node 'depthfm' given these --ros-args, in its own context."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("depthfm", namespace=namespace, context=context, cli_args=["--ros-args", *ros_args])
        try:
            yield node
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def _four_camera_parameters() -> dict:
    document = yaml.safe_load(FOUR_CAMERAS_FILE.read_text())
    assert list(document) == ["/**"]
    return _flat(document["/**"]["ros__parameters"])


def test_cameras_launch_declares_depth_launchs_arguments_and_every_cameras_topics(cameras_launch_module):
    description = cameras_launch_module.generate_launch_description()
    declared = [a.args[0] for a in description.args[0] if type(a).__name__ == "DeclareLaunchArgument"]
    args = _arguments(description)
    assert len(declared) == len(args)  # each name once
    assert Path(args["params_file"]["default_value"]).resolve() == FOUR_CAMERAS_FILE
    for name in [*parameter_arguments(), *ARGUMENT_ALIASES, "namespace", "node_name"]:
        assert name in args and args[name]["description"], name
    assert {name: args[name]["default_value"] for name in ("image_topic", "camera_info_topic", "lidar_topic")} == {
        "image_topic": "{camera}_camera/image_raw", "camera_info_topic": "{camera}_camera/camera_info",
        "lidar_topic": "lidar/points"}
    per_camera = {f"{c}.{t}" for c in FOUR_CAMERAS for t in ("image_topic", "camera_info_topic", "lidar_topic")}
    assert per_camera <= set(args) and all(args[name]["default_value"] == "" for name in per_camera)
    assert args["cameras"]["default_value"] == "" and "[front, rear]" in args["cameras"]["description"]


def test_cameras_launch_defaults_start_one_node_with_every_cameras_inputs_remapped(cameras_launch_module):
    node = _node(cameras_launch_module.generate_launch_description())
    assert (node["package"], node["executable"], node["name"], node["namespace"]) == (
        "depthfm_ros", "depthfm_node", "depthfm", "")
    params_file, overrides = node["parameters"]
    assert Path(params_file).resolve() == FOUR_CAMERAS_FILE and overrides == {}
    assert len(node["remappings"]) == 12 and dict(node["remappings"]) == {
        **{f"{c}/image": f"{c}_camera/image_raw" for c in FOUR_CAMERAS},
        **{f"{c}/camera_info": f"{c}_camera/camera_info" for c in FOUR_CAMERAS},
        **{f"{c}/lidar": "lidar/points" for c in FOUR_CAMERAS}}  # relative: namespace:= moves them


def test_cameras_launch_arguments_set_patterns_one_cameras_topics_and_its_parameters(cameras_launch_module):
    node = _node(cameras_launch_module.generate_launch_description(), checkpoint="/models/depthfm-v1",
                 num_steps="1", namespace="robot1", image_topic="/{camera}/color/image_raw",
                 camera_info_topic="/{camera}/color/camera_info", lidar_topic="/os1/points",
                 **{"rear.image_topic": "/usb_cam/image_raw", "rear.camera_info_topic": "/usb_cam/camera_info",
                    "rear.camera_height_m": "0.5", "front.lidar_min_range": "1", "left.publish_points": "true"})
    assert node["namespace"] == "robot1"
    assert node["parameters"][1] == {"checkpoint": "/models/depthfm-v1", "num_steps": 1, "rear.camera_height_m": 0.5,
                                     "front.lidar_min_range": 1.0, "left.publish_points": True}
    remaps = dict(node["remappings"])
    assert [remaps[f"{c}/image"] for c in FOUR_CAMERAS] == [
        "/front/color/image_raw", "/left/color/image_raw", "/usb_cam/image_raw", "/right/color/image_raw"]
    assert (remaps["rear/camera_info"], remaps["left/camera_info"]) == ("/usb_cam/camera_info",
                                                                        "/left/color/camera_info")
    assert {remaps[f"{c}/lidar"] for c in FOUR_CAMERAS} == {"/os1/points"}


def test_the_cameras_argument_gives_the_list_and_its_remappings(cameras_launch_module):
    """cameras:= serves cameras with a params file that has none (config/depthfm.yaml); with one that has '<camera>.'
    values, the node refuses those of cameras left out (docs/ros.md, Several cameras)."""
    node = _node(cameras_launch_module.generate_launch_description(), cameras="[front, rear]",
                 params_file=str(PARAMS_FILE))
    assert node["parameters"] == [str(PARAMS_FILE), {"cameras": ["front", "rear"]}]
    assert dict(node["remappings"]) == {"front/image": "front_camera/image_raw", "rear/image": "rear_camera/image_raw",
                                        "front/camera_info": "front_camera/camera_info",
                                        "rear/camera_info": "rear_camera/camera_info",
                                        "front/lidar": "lidar/points", "rear/lidar": "lidar/points"}


def test_cameras_launch_follows_the_cameras_of_another_params_file(cameras_launch_module, tmp_path):
    mine = tmp_path / "two.yaml"
    mine.write_text("/**:\n  ros__parameters:\n    cameras: [wrist, head]\n    head:\n      camera_height_m: 1.5\n")
    node = _node(cameras_launch_module.generate_launch_description(), params_file=str(mine))
    assert [topic for topic, _ in node["remappings"]] == [
        "wrist/image", "head/image", "wrist/camera_info", "head/camera_info", "wrist/lidar", "head/lidar"]


@pytest.mark.parametrize("arguments, message", [
    ({"cameras": "front"}, r"launch argument 'cameras' \(front\) must be a list of camera names"),
    ({"cameras": "[front, front]"}, "must hold each name once"),
    ({"cameras": "[1front]"}, "starting with a letter"),
    ({"cameras": "[]"}, "serving several cameras, but cameras:=\\[\\]"),
    ({"image_topic": "/camera/image_raw"}, r"cameras \['front', 'left', 'rear', 'right'\] would all read "
                                           "'/camera/image_raw' as their 'image'"),
    ({"rear.camera_info_topic": "front_camera/camera_info"}, r"cameras \['front', 'rear'\] would all read"),
    ({"frnt.image_topic": "/x"}, "launch argument 'frnt.image_topic' is for camera 'frnt', which is not in cameras"),
    ({"frnt.camera_height_m": "1"}, "parameter 'frnt.camera_height_m' is for camera 'frnt', which is not in"),
    ({"front.num_steps": "1"}, "'num_steps' is one for the whole node"),
    ({"front.camera_heigth_m": "1"}, "did you mean 'front.camera_height_m'"),
])
def test_cameras_launch_refuses_what_the_node_would_not_serve(cameras_launch_module, arguments, message):
    with pytest.raises(ParameterError, match=message):
        _node(cameras_launch_module.generate_launch_description(), **arguments)


def test_cameras_launch_refuses_a_params_file_without_cameras(cameras_launch_module):
    with pytest.raises(ParameterError, match=f"params_file {PARAMS_FILE} has no cameras: give cameras:="):
        _node(cameras_launch_module.generate_launch_description(), params_file=str(PARAMS_FILE))


@pytest.mark.parametrize("sections, namespace", [
    ([("/**", "[a]")], ""), ([("depthfm", "[a]")], ""), ([("/**/depthfm", "[a]")], "robot1"),
    ([("/*/depthfm", "[a]")], "robot1"), ([("depthfm", "[a]")], "robot1"), ([("/robot1/depthfm", "[a]")], "robot1"),
    ([("/**", "[a]"), ("depthfm", "[b]")], ""), ([("depthfm", "[b]"), ("/**", "[a]")], ""),
    ([("/other", "[a]")], ""), ([("/**", "[a]"), ("/**/depthfm", "[b, c]")], "robot1"),
])
def test_params_file_cameras_are_the_ones_rclpy_gives_the_node(tmp_path, sections, namespace):
    """The launch reads the camera list the node will get: the sections rclpy applies, the last one winning."""
    path = tmp_path / "params.yaml"
    path.write_text("".join(f"{key}:\n  ros__parameters:\n    cameras: {cameras}\n" for key, cameras in sections))
    with _rcl_node("--params-file", str(path), namespace=namespace) as node:
        given = node._parameter_overrides.get("cameras")
    assert params_file_cameras(str(path), "depthfm", namespace) == (tuple(given.value) if given else ())


def test_four_camera_yaml_validates_into_four_cameras_with_their_own_values():
    values = _four_camera_parameters()
    assert all(name in SPECS or name.partition(".")[2] in SPECS for name in values)
    config = validate({**values, "model": "tiny"})
    assert config.cameras == FOUR_CAMERAS and list(config.camera_configs) == list(FOUR_CAMERAS)
    assert config.batch_limit == 4  # max_batch 0: one image per camera per engine call
    cams = config.camera_configs
    assert [cams[c].use_lidar for c in FOUR_CAMERAS] == [True, False, False, False]
    assert [cams[c].image_transport for c in FOUR_CAMERAS] == ["raw", "raw", "compressed", "raw"]
    assert [cams[c].camera_height_m for c in FOUR_CAMERAS] == [1.0, 0.9, 0.6, 0.9]
    assert [cams[c].camera_pitch_deg for c in FOUR_CAMERAS] == [10.0, 15.0, 20.0, 15.0]
    assert [cams[c].publish_points for c in FOUR_CAMERAS] == [True, False, False, False]
    assert cams["front"].lidar_to_camera_xyz != (0.0, 0.0, 0.0) and cams["left"].lidar_to_camera_xyz == (0.0, 0.0, 0.0)
    for camera in FOUR_CAMERAS:  # every camera has a metric source: the front the LiDAR, then the ground
        assert cams[camera].metric_scale().chain, camera


def test_four_camera_yaml_extrinsic_height_and_pitch_describe_one_rig():
    """The front camera's T_camera_lidar, camera_height_m and camera_pitch_deg agree: ground points 1.2 m below the
    roof LiDAR (REP-103, z up) lie camera_height_m below the camera along its ground normal."""
    import numpy as np

    from depthfm_ros.fusion.metric import ground_normal
    from depthfm_ros.geometry.projection import transform_from_xyz_quat

    front = validate({**_four_camera_parameters(), "model": "tiny"}).camera("front")
    camera_from_lidar = transform_from_xyz_quat(front.lidar_to_camera_xyz, front.lidar_to_camera_quat_xyzw)
    ground_lidar = np.array([[x, y, -1.2, 1.0] for x in (2.0, 5.0, 20.0) for y in (-3.0, 0.0, 3.0)])
    ground_camera = (camera_from_lidar @ ground_lidar.T)[:3].T
    down = ground_normal(front.camera_pitch_deg, front.camera_roll_deg)
    np.testing.assert_allclose(ground_camera @ down, front.camera_height_m, atol=2e-3)
    assert np.all(ground_camera[:, 2] > 0)  # the ground ahead of the LiDAR is in front of the camera


def test_four_camera_yaml_loads_through_rcl_into_the_declarations():
    with _rcl_node("--params-file", str(FOUR_CAMERAS_FILE), "-p", "model:=tiny", "-p", "rear.camera_height_m:=0.5") \
            as node:
        config = declare_and_read(node)
    assert config.cameras == FOUR_CAMERAS
    assert (config.camera("front").use_lidar, config.camera("rear").image_transport) == (True, "compressed")
    assert [config.camera(c).camera_height_m for c in FOUR_CAMERAS] == [1.0, 0.9, 0.5, 0.9]


def test_cameras_launch_starts_a_node_on_the_drivers_topics(cameras_launch_module, ros_context, tiny_model):
    """The launch's node arguments, given to a real depthfm_node as launch_ros gives them (--params-file, -r, -p):
    each camera reads its driver's topics under the namespace, the rear one compressed, and publishes its own."""
    from depthfm_ros.backends.torch_backend import TorchBackend
    from depthfm_ros.ros.node import DepthFMNode

    kwargs = _node(cameras_launch_module.generate_launch_description(), model="tiny", namespace="robot1",
                   lidar_topic="/os1/points", **{"left.image_topic": "/usb_left/image_raw"})
    params_file, overrides = kwargs["parameters"]
    cli = ["--ros-args", "--params-file", params_file, *[a for k, v in overrides.items() for a in ("-p", f"{k}:={v}")],
           *[a for topic, target in kwargs["remappings"] for a in ("-r", f"{topic}:={target}")]]
    node = DepthFMNode(backend=TorchBackend(tiny_model, num_steps=1), node_name=kwargs["name"],
                       namespace=kwargs["namespace"], context=ros_context, cli_args=cli)
    try:
        subscribed = {name for name, _ in node.get_subscriber_names_and_types_by_node("depthfm", "/robot1")}
        published = {name for name, _ in node.get_publisher_names_and_types_by_node("depthfm", "/robot1")}
    finally:
        node.destroy_node()
    assert {"/robot1/front_camera/image_raw", "/usb_left/image_raw", "/robot1/rear_camera/image_raw/compressed",
            "/robot1/right_camera/image_raw", "/os1/points"} <= subscribed
    assert {f"/robot1/{c}_camera/camera_info" for c in FOUR_CAMERAS} <= subscribed
    assert {f"/robot1/depthfm/{c}/relative_depth" for c in FOUR_CAMERAS} <= published
    assert "/robot1/depthfm/front/points" in published and "/robot1/depthfm/rear/points" not in published


def test_real_cameras_launch_file_builds_its_description():
    """With the real launch and launch_ros (a ROS 2 install): cameras.launch.py loads and declares its arguments."""
    pytest.importorskip("launch_ros")
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    description = PythonLaunchDescriptionSource(str(CAMERAS_LAUNCH_FILE)).get_launch_description(LaunchContext())
    names = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert set(parameter_arguments()) <= names and {"params_file", "image_topic", "front.image_topic"} <= names
