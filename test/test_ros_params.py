"""Node parameters: declarations, descriptors, and start-up validation that names the bad parameter."""

import dataclasses

import pytest

from depthfm_ros.ros.params import (
    PARAMETERS,
    SPECS,
    NodeConfig,
    ParameterError,
    canonical_names,
    check_params_file,
    declare_and_read,
    descriptor,
    ignored_message,
    likely_meant,
    validate,
)


def test_declarations_match_config_fields():
    assert [spec.name for spec in PARAMETERS] == [f.name for f in dataclasses.fields(NodeConfig)
                                                  if f.name != "camera_configs"]


def test_defaults_with_tiny_model_are_valid():
    config = validate({"model": "tiny"})
    assert (config.backend, config.num_steps, config.ensemble_size, config.processing_resolution) == ("auto", 2, 1, 512)
    assert (config.input_qos, config.output_qos, config.image_transport) == ("sensor_data", "reliable", "raw")


@pytest.mark.parametrize("resolution", [0, 64, 128, 768])
def test_processing_resolution_multiples_of_64_and_native(resolution):
    assert validate({"model": "tiny", "processing_resolution": resolution}).processing_resolution == resolution


@pytest.mark.parametrize("name, value", [
    ("num_steps", 0), ("num_steps", -3), ("ensemble_size", 0),
    ("processing_resolution", 100), ("processing_resolution", -64),
    ("backend", "cuda"), ("dtype", "int8"), ("model", "huge"), ("image_transport", "theora"),
    ("input_qos", "fast"), ("vae_kind", "small"), ("output_qos", ""), ("seed", -2),
    ("diagnostics_period_sec", 0.0), ("log_throttle_sec", -1.0), ("diagnostics_period_sec", float("inf")),
    ("lidar_tf_timeout_sec", float("inf")),
    ("num_steps", "2"), ("num_steps", True), ("num_steps", 2.0), ("checkpoint", 3),
    ("torch_threads", -1), ("lidar_slop_sec", 0.0), ("lidar_queue_size", 0), ("use_lidar", "yes"),
    ("lidar_timeout_sec", -0.5), ("lidar_timeout_sec", float("inf")),
    ("lidar_to_camera_xyz", [0.0, 0.0]), ("lidar_to_camera_xyz", [0.0, "a", 0.0]),
    ("lidar_to_camera_quat_xyzw", [0.0, 0.0, 0.0, 0.0]), ("lidar_to_camera_quat_xyzw", 1.0),
    ("lidar_min_range_m", -0.1), ("points_stride", 0), ("points_max_std_m", -1.0),
    ("points_edge_ratio", 0.5), ("metric_fixed_scale", float("inf")), ("completion_checkpoint", "/no/such/folder"),
])
def test_bad_values_are_refused_naming_the_parameter(name, value):
    with pytest.raises(ParameterError, match=f"'{name}'"):
        validate({"model": "tiny", name: value})


def test_lidar_and_points_parameters():
    config = validate({"model": "tiny", "use_lidar": True, "lidar_to_camera_xyz": [0, 0.1, -0.05],
                       "lidar_to_camera_quat_xyzw": [0.5, -0.5, 0.5, -0.5], "points_edge_ratio": 1.1})
    assert config.lidar_to_camera_xyz == (0.0, 0.1, -0.05) and config.points_edge_ratio == 1.1
    assert validate({"model": "tiny"}).lidar_to_camera_quat_xyzw == (0.0, 0.0, 0.0, 1.0)
    assert validate({"model": "tiny"}).lidar_timeout_sec == 1.0
    assert validate({"model": "tiny", "lidar_timeout_sec": 0}).lidar_timeout_sec == 0.0  # 0 = strict pairing
    with pytest.raises(ParameterError, match="'points_min_range_m'.*'points_max_range_m'"):
        validate({"model": "tiny", "points_min_range": 5.0, "points_max_range": 2.0})


def test_unknown_parameter_is_refused():
    with pytest.raises(ParameterError, match="'num_step'"):
        validate({"model": "tiny", "num_step": 2})


def test_checkpoint_model_needs_existing_files(tmp_path):
    with pytest.raises(ParameterError, match="'checkpoint' is empty"):
        validate({})
    with pytest.raises(ParameterError, match="'checkpoint'.*does not exist"):
        validate({"checkpoint": str(tmp_path / "missing.ckpt")})
    ckpt = tmp_path / "depthfm-v1.ckpt"
    ckpt.write_bytes(b"")
    with pytest.raises(ParameterError, match="'vae'"):
        validate({"checkpoint": str(ckpt)})
    with pytest.raises(ParameterError, match="'vae'.*does not exist"):
        validate({"checkpoint": str(ckpt), "vae": str(tmp_path / "vae")})
    (tmp_path / "vae").mkdir()
    assert validate({"checkpoint": str(ckpt), "vae": str(tmp_path / "vae")}).checkpoint == str(ckpt)
    assert validate({"checkpoint": str(tmp_path)}).vae == ""  # a converted folder carries its VAE
    with pytest.raises(ParameterError, match="'tiny_vae'"):
        validate({"model": "tiny", "tiny_vae": str(tmp_path / "no_tiny_vae")})


def test_descriptors_are_read_only_with_ranges_and_constraints():
    from rcl_interfaces.msg import ParameterType

    res = descriptor(SPECS["processing_resolution"])
    assert res.read_only and res.type == ParameterType.PARAMETER_INTEGER
    assert (res.integer_range[0].from_value, res.integer_range[0].step) == (0, 64)
    backend = descriptor(SPECS["backend"])
    assert backend.type == ParameterType.PARAMETER_STRING and "onnxruntime" in backend.additional_constraints
    assert descriptor(SPECS["diagnostics_period_sec"]).type == ParameterType.PARAMETER_DOUBLE
    quat = descriptor(SPECS["lidar_to_camera_quat_xyzw"])
    assert quat.type == ParameterType.PARAMETER_DOUBLE_ARRAY and quat.additional_constraints == "4 numbers"
    assert all(descriptor(spec).description for spec in PARAMETERS)


def _declare(context, overrides):
    import rclpy
    from rclpy.parameter import Parameter

    node = rclpy.create_node("params_under_test", context=context,
                             parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    try:
        return declare_and_read(node), node.describe_parameters(["num_steps"])[0]
    finally:
        node.destroy_node()


def test_rclpy_declaration_reads_overrides(ros_context):
    config, described = _declare(ros_context, {"model": "tiny", "num_steps": 4, "processing_resolution": 0,
                                               "lidar_to_camera_xyz": [1.0, 2.0, 3.0], "use_lidar": True,
                                               "lidar_timeout_sec": 0.0})
    assert (config.num_steps, config.processing_resolution, config.lidar_timeout_sec) == (4, 0, 0.0)
    assert config.lidar_to_camera_xyz == (1.0, 2.0, 3.0) and config.use_lidar is True
    assert described.read_only and described.integer_range[0].from_value == 1


@pytest.mark.parametrize("name, value", [("num_steps", 0), ("ensemble_size", 0), ("processing_resolution", 96),
                                         ("backend", "cuda"), ("num_steps", "two"), ("diagnostics_period_sec", "fast")])
def test_rclpy_declaration_refuses_bad_values(ros_context, name, value):
    with pytest.raises(ParameterError, match=f"'{name}'"):
        _declare(ros_context, {"model": "tiny", name: value})


def test_unknown_names_refuse_the_start_with_the_closest_valid_ones(ros_context):
    """``-p num_step:=1`` started with 2 steps; now the node refuses and names what was meant."""
    with pytest.raises(ParameterError, match="'num_step' is not a depthfm node parameter; did you mean 'num_steps'"):
        _declare(ros_context, {"model": "tiny", "num_step": 1})
    with pytest.raises(ParameterError, match="did you mean 'lidar_slop_sec'"):
        validate({"model": "tiny", "lidar_slop": 0.1})


def test_old_names_are_aliases_and_whole_numbers_are_decimals(ros_context):
    config, _ = _declare(ros_context, {"model": "tiny", "lidar_min_range": 0.5, "points_max_range": 7,
                                       "lidar_timeout_sec": 0, "diagnostics_period_sec": 1, "lidar_slop_sec": 1})
    assert (config.lidar_min_range_m, config.points_max_range_m) == (0.5, 7.0)
    assert (config.lidar_timeout_sec, config.diagnostics_period_sec, config.lidar_slop_sec) == (0.0, 1.0, 1.0)
    assert type(config.points_max_range_m) is float and type(config.lidar_timeout_sec) is float
    with pytest.raises(ParameterError, match="'lidar_min_range_m' is given twice"):
        validate({"model": "tiny", "lidar_min_range": 0.5, "lidar_min_range_m": 0.2})


@pytest.mark.parametrize("name, value, message", [
    ("diagnostics_period_sec", 1e-6, ">= 0.05"), ("log_throttle_sec", 0.0, "> 0"),
    ("points_edge_ratio", 0.5, ">= 1, or 0"), ("seed", -2, "-1 <= value"),
    ("metric_fixed_scale", float("inf"), "finite"),
    ("processing_resolution", 100, "multiple of 64"), ("lidar_to_camera_quat_xyzw", [0.0, 0.0, 0.0, 0.0], "unit")])
def test_table_rules(name, value, message):
    with pytest.raises(ParameterError, match=f"'{name}'.*{message}"):
        validate({"model": "tiny", name: value})
    assert validate({"model": "tiny", "points_edge_ratio": 0.0}).points_edge_ratio == 0.0  # 0 = off


NAV2_STYLE = """\
/**:
  ros__parameters:
    use_sim_time: false
    robot_base_frame: base_link
    global_frame: odom
    transform_tolerance: 0.2
    queue_size: 10
    model: tiny
    num_steps: 1
depthfm:
  ros__parameters:
    ensemble_size: 2
"""


class _Log:
    def __init__(self):
        self.lines = []

    def warning(self, text):
        self.lines.append(text)


def test_a_robot_wide_parameter_file_starts_the_node_and_warns_once(ros_context, tmp_path):
    """Nav2-style bring-ups share one YAML with a /** section; keys the node does not use refused the start."""
    import rclpy

    path = tmp_path / "robot.yaml"
    path.write_text(NAV2_STYLE)
    node = rclpy.create_node("depthfm", context=ros_context, cli_args=["--ros-args", "--params-file", str(path)])
    log = _Log()
    node.get_logger = lambda: log
    try:
        config = declare_and_read(node)
    finally:
        node.destroy_node()
    assert (config.model, config.num_steps, config.ensemble_size) == ("tiny", 1, 2)
    assert log.lines == ["ignoring 4 parameters depthfm does not use (shared parameter file?): global_frame, "
                         "queue_size, robot_base_frame, transform_tolerance"]


@pytest.mark.parametrize("typo, meant", [("num_step", "num_steps"), ("ensemble", "ensemble_size"),
                                         ("use_lidars", "use_lidar"), ("camera_height", "camera_height_m"),
                                         ("lidar_slop", "lidar_slop_sec"), ("procesing_resolution",
                                                                            "processing_resolution")])
def test_likely_typos_of_the_nodes_own_names_still_refuse_the_start(typo, meant):
    with pytest.raises(ParameterError, match=f"'{typo}' is not a depthfm node parameter; did you mean .*'{meant}'"):
        validate({"model": "tiny", typo: 1})


@pytest.mark.parametrize("key", ["robot_base_frame", "global_frame", "odom_frame", "transform_tolerance",
                                 "queue_size", "max_range", "publish_tf", "image_topic", "camera_frame", "autostart"])
def test_keys_of_other_nodes_are_not_taken_for_typos(key):
    assert likely_meant(key) == []
    assert validate({"model": "tiny", key: 1}).num_steps == 2


def test_decimal_parameters_declare_their_floating_point_range(ros_context):
    slop = descriptor(SPECS["lidar_slop_sec"]).floating_point_range[0]
    assert (slop.from_value, slop.step) == (0.0, 0.0) and slop.to_value > 1e300
    pitch = descriptor(SPECS["camera_pitch_deg"]).floating_point_range[0]
    assert (pitch.from_value, pitch.to_value) == (-60.0, 60.0)
    edge = descriptor(SPECS["points_edge_ratio"]).floating_point_range[0]
    assert edge.from_value == 0.0  # 0 = off is allowed below the minimum 1
    assert not descriptor(SPECS["metric_fixed_shift"]).floating_point_range  # any value
    floats = [s for s in PARAMETERS if type(s.default) is float]
    assert all(descriptor(s).floating_point_range for s in floats if s.minimum is not None or s.maximum is not None)
    with pytest.raises(ParameterError, match="'camera_pitch_deg'"):  # refused by rclpy's range check already
        _declare(ros_context, {"model": "tiny", "camera_pitch_deg": 75.0})
    with pytest.raises(ParameterError, match="'camera_roll_deg' must be finite, >= -60, <= 60, got -61"):
        validate({"model": "tiny", "camera_roll_deg": -61.0})


@pytest.mark.parametrize("name, value", [("backend", "onnxruntime"), ("backend", "tensorrt"),
                                         ("engine", "/no/such/depthfm.onnx")])
def test_the_tiny_model_refuses_what_it_would_ignore(name, value):
    """model:=tiny backend:=onnxruntime ran torch while `ros2 param get backend` said onnxruntime."""
    with pytest.raises(ParameterError, match=f"parameter '{name}' .*tiny random model"):
        validate({"model": "tiny", name: value})
    for backend in ("auto", "torch"):
        assert validate({"model": "tiny", "backend": backend}).backend == backend


def test_parameter_files_that_rcl_cannot_read_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("foo: [unclosed\n  bar: : x\n")
    with pytest.raises(ParameterError, match=f"params_file {bad} is not YAML"):
        check_params_file(str(bad))
    flat = tmp_path / "flat.yaml"
    flat.write_text("num_steps: 2\n")
    with pytest.raises(ParameterError, match="not a ROS 2 parameter file"):
        check_params_file(str(flat))
    with pytest.raises(ParameterError, match="does not exist"):
        check_params_file(str(tmp_path / "missing.yaml"))
    good = tmp_path / "good.yaml"
    good.write_text(NAV2_STYLE)
    assert check_params_file(str(good)) == str(good)


def test_ground_frame_without_tf2_is_said_at_start(capfd):
    """ground_frame set on a machine without tf2_ros gave no word that the ground source would use the parameters."""
    import importlib.util

    import numpy as np
    from ros_graph import Graph, SceneBackend

    if importlib.util.find_spec("tf2_ros") is not None:
        pytest.skip("tf2_ros is installed: the ground source takes the frame from tf")
    Graph(SceneBackend(np.full((96, 128), 3.0)), {"model": "tiny", "ground_frame": "base_footprint",
                                                  "camera_height_m": 1.2}).close()
    assert "ground_frame 'base_footprint' is set but tf2_ros is not installed" in capfd.readouterr().err


# -- several cameras -------------------------------------------------------------------------------------------------

CAMERAS = {"model": "tiny", "cameras": ["front", "rear"], "use_lidar": True, "lidar_slop_sec": 0.04,
           "front.lidar_slop_sec": 0.02, "rear.use_lidar": False, "rear.camera_height_m": 0.6,
           "rear.image_transport": "compressed", "rear.lidar_min_range": 0.5}


def test_each_camera_takes_the_nodes_values_and_its_own():
    config = validate(CAMERAS)
    front, rear = config.camera("front"), config.camera("rear")
    assert config.cameras == ("front", "rear") and config.camera("") is config
    assert (front.use_lidar, front.lidar_slop_sec, front.camera_height_m) == (True, 0.02, 0.0)
    assert (rear.use_lidar, rear.lidar_slop_sec, rear.camera_height_m, rear.image_transport) == \
        (False, 0.04, 0.6, "compressed")
    assert rear.lidar_min_range_m == 0.5  # an old name works per camera too
    assert (config.batch_limit, validate({"model": "tiny"}).batch_limit) == (2, 1)  # max_batch 0: one per camera
    assert validate({**CAMERAS, "max_batch": 1}).batch_limit == 1
    assert validate({**CAMERAS, "max_batch": 1}).model_settings().max_batch == 1
    assert config.model_settings().max_batch == 2


@pytest.mark.parametrize("values, message", [
    ({"cameras": ["front"], "frnt.use_lidar": True}, "'frnt.use_lidar' is for camera 'frnt', which is not in "
                                                     r"cameras \['front'\]; did you mean 'front.use_lidar'"),
    ({"cameras": ["front"], "front.backend": "torch"}, "'front.backend': 'backend' is one for the whole node"),
    ({"cameras": ["front"], "front.use_lidars": True}, "did you mean 'front.use_lidar'"),
    ({"cameras": ["front"], "front.colour": 1}, "'colour' is not a per-camera parameter"),
    ({"cameras": ["front"], "front.lidar_slop_sec": -1.0}, "parameter 'front.lidar_slop_sec' must be"),
    ({"cameras": ["front"], "front.metric_source": "lidar"}, "parameter 'front.metric_source'"),
    ({"cameras": ["front", "front"]}, "each name once"),
    ({"cameras": ["front camera"]}, "letters, digits and '_'"),
    ({"cameras": ["1st"]}, "starting with a letter"),
    ({"cameras": ["qos_overrides"], "qos_overrides.camera_height_m": 0.7}, "a parameter of the node or of ROS"),
    ({"cameras": ["front", "use_lidar"]}, "must not use .use_lidar."),
    ({"cameras": [f"c{k}" for k in range(17)]}, "at most 16"),
    ({"cameras": "front"}, "must be a list of strings"),
    ({"batch_window_sec": -0.1}, "'batch_window_sec' must be"),
    ({"max_batch": 65}, "'max_batch' must be"),
])
def test_camera_parameters_that_cannot_work_refuse_the_start(values, message):
    with pytest.raises(ParameterError, match=message):
        validate({"model": "tiny", **values})


def test_other_prefixes_are_other_nodes_keys_ignored_with_a_hint():
    """A shared /** file may hold another node's 'left_cam.camera_height_m': ignored (with one warning that says it
    names no camera of this node), with or without cameras, unless the prefix is a misspelt camera."""
    for values in ({"model": "tiny"}, {"model": "tiny", "cameras": ["front"]}):
        values, ignored = canonical_names({**values, "left_cam.camera_height_m": 1.0, "planner.inflation": 2})
        assert ignored == ["left_cam.camera_height_m", "planner.inflation"]
        assert ignored_message(ignored).endswith("(left_cam: not in cameras, so not a camera of this node)")
    assert validate({"model": "tiny", "rear.use_lidar": True}).cameras == ()


def test_rclpy_declares_each_cameras_parameters_with_the_nodes_values_as_defaults(ros_context):
    import rclpy
    from rclpy.parameter import Parameter

    node = rclpy.create_node("depthfm", context=ros_context,
                             parameter_overrides=[Parameter(k, value=v) for k, v in CAMERAS.items()])
    try:
        config = declare_and_read(node)
        assert config.camera("front").lidar_slop_sec == 0.02 and config.camera("rear").camera_height_m == 0.6
        assert node.get_parameter("cameras").value == ["front", "rear"]
        assert node.get_parameter("front.lidar_slop_sec").value == 0.02
        assert node.get_parameter("rear.lidar_slop_sec").value == 0.04  # the node's value
        assert node.get_parameter("front.points_stride").value == 1
        assert not node.has_parameter("front.backend")  # one engine: not per camera
        assert node.describe_parameters(["rear.camera_height_m"])[0].read_only
        assert declare_and_read(node).camera("rear").image_transport == "compressed"  # configured again
    finally:
        node.destroy_node()
    node = rclpy.create_node("depthfm", context=ros_context, parameter_overrides=[Parameter("model", value="tiny")])
    try:
        config = declare_and_read(node)
        assert config.cameras == () and not node.has_parameter("front.use_lidar")
    finally:
        node.destroy_node()
