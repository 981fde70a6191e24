"""Node parameters: declarations, descriptors, and start-up validation that names the bad parameter."""

import dataclasses

import pytest

from depthfm_ros.ros.params import PARAMETERS, SPECS, NodeConfig, ParameterError, declare_and_read, descriptor, validate


def test_declarations_match_config_fields():
    assert [spec.name for spec in PARAMETERS] == [f.name for f in dataclasses.fields(NodeConfig)]


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
