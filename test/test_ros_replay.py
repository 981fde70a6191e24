"""depthfm-replay: a synthetic bag through depthfm_node in an in-process ROS 2 graph (tiny model), the report."""

import dataclasses
import json
from types import SimpleNamespace

import cv2
import pytest
from rosbags.rosbag2 import Writer

from depthfm_ros.cli.replay import main
from depthfm_ros.errors import InputError
from depthfm_ros.ros import bag as bagio
from depthfm_ros.ros.params import SPECS
from depthfm_ros.ros.replay_options import ReplayOptions, parse_param, replay_parameters
from depthfm_ros.ros.replay_recorder import numeric_values
from depthfm_ros.ros.replay_report import summary
from depthfm_ros.ros.synthetic_bag import write_synthetic_bag
from depthfm_ros.settings import ModelSettings

W, H, N = 128, 96, 6
FAST = ["--tiny-model", "--processing-resolution", "64", "--steps", "1", "--drain-timeout", "10"]


@pytest.fixture(scope="module")
def synthetic_bag(tmp_path_factory):
    return write_synthetic_bag(tmp_path_factory.mktemp("bag") / "synthetic", N, W, H, storage="mcap")


def check_report(out, frames_in):
    report = json.loads((out / "report.json").read_text())
    assert report["frames_in"] == frames_in
    assert 1 <= report["frames_out"] <= frames_in
    assert report["frames_dropped"] + report["frames_out"] == report["frames_in"]
    latency = report["latency_ms"]
    assert latency["count"] == report["frames_out"] and 0 < latency["p50"] <= latency["p95"] <= latency["max"]
    assert report["outputs"]["relative_depth"] >= report["frames_out"] >= 1
    assert report["outputs"]["relative_uncertainty"] >= 1
    assert report["outputs"].get("depth", 0) == report["frames_metric"] <= report["frames_out"]
    assert report["backend"].startswith("torch")
    counters = report["node_counters"]
    if counters:  # the node's own accounting, from /diagnostics
        assert counters["frames_received"] == frames_in
    assert report["previews"]
    for name in report["previews"]:
        image = cv2.imread(str(out / name))
        if name.endswith("_preview.png"):  # the labelled one: titles above, colour bars beside the maps
            assert image is not None and image.shape[0] > H and image.shape[1] > 3 * W, name
        else:
            assert image is not None and image.shape == (H, W, 3), name
    assert any(name.endswith("_depth.png") for name in report["previews"])
    frames = {name[:len("frame_0000")] for name in report["previews"]}  # every kept frame has its labelled preview
    assert {f"{frame}_preview.png" for frame in frames} <= set(report["previews"])
    markdown = (out / "report.md").read_text()
    assert f"frames in {frames_in}, out {report['frames_out']}" in markdown
    assert "latency image -> relative depth" in markdown
    return report


def test_replay_as_fast_as_the_node_takes(synthetic_bag, tmp_path, capsys):
    out = tmp_path / "replay"
    assert main([str(synthetic_bag.path), *FAST, "--rate", "0", "--output", str(out)]) == 0
    report = check_report(out, N)
    assert report["frames_out"] == N and report["frames_dropped"] == 0  # each image waits for the previous depth
    assert report["topics"] == {"image": "/camera/image_raw", "camera_info": "/camera/camera_info",
                                "lidar": "/lidar/points"} or "use_lidar" not in SPECS
    if "use_lidar" in SPECS:  # the extrinsic comes from the bag's /tf_static
        assert report["parameters"]["lidar_to_camera_xyz"] == pytest.approx([0.0, -0.10, -0.05])
    if "publish_points" in SPECS:  # points are metric: one cloud per frame in metres (the random model's fits
        assert report["outputs"].get("points", 0) == report["frames_metric"]  # are mostly refused)
        assert report["frames_metric"] == 0 or report["points_per_cloud"]["min"] > 0
    assert "# depthfm-replay report" in capsys.readouterr().out


def test_make_synthetic_bag_and_replay_in_one_command(tmp_path):
    bag, out = tmp_path / "made", tmp_path / "replay"
    code = main(["--make-synthetic-bag", str(bag), "--synthetic-frames", "4", "--synthetic-size", "128x96",
                 "--synthetic-storage", "sqlite3", *FAST, "--rate", "2", "--no-lidar", "--no-points",
                 "--previews", "1", "--output", str(out)])
    assert code == 0 and (bag / "metadata.yaml").exists()
    report = check_report(out, 4)
    assert "lidar" not in report["topics"] and report["rate"] == 2
    assert report["wall_time_s"] >= report["bag_duration_s"] / 2 - 0.05  # played at twice the recorded speed
    assert report["bag_duration_s"] == pytest.approx(0.3, abs=0.01)


def test_a_bag_without_an_image_topic_exits_2(tmp_path, capsys):
    store = bagio.typestore()
    with Writer(tmp_path / "scan_only", version=9) as writer:
        writer.add_connection("/scan", bagio.POINTCLOUD2_TYPE, typestore=store)
    assert main([str(tmp_path / "scan_only"), "--tiny-model", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no sensor_msgs/Image" in err and "/scan" in err


def test_bad_arguments_exit_2(synthetic_bag, tmp_path, capsys):
    assert main([str(tmp_path / "missing"), "--tiny-model"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([str(synthetic_bag.path), "--tiny-model", "--param", "no_such_parameter:=1"]) == 2
    assert "no_such_parameter" in capsys.readouterr().err
    assert main([str(synthetic_bag.path), "--tiny-model", "--param", "num_step:=1"]) == 2
    assert "--param: parameter 'num_step' is not a depthfm node parameter; did you mean 'num_steps'?" in \
        capsys.readouterr().err
    assert main(["--make-synthetic-bag", str(synthetic_bag.path), "--tiny-model"]) == 2  # exists: says how to replay it
    assert f"exists already: replay it with depthfm-replay {synthetic_bag.path}" in capsys.readouterr().err
    assert main([str(synthetic_bag.path), "--tiny-model", "--image-topic", "/lidar/points"]) == 2
    assert "not sensor_msgs/msg/Image" in capsys.readouterr().err


def test_parameters_are_only_the_declared_ones(synthetic_bag):
    settings = ModelSettings(tiny_model=True, num_steps=1, ensemble_size=2, processing_resolution=64, seed=0)
    args = ReplayOptions(synthetic_bag.path, settings, no_points=False, rate=0.5,
                         param=("seed:=7", "diagnostics_period_sec:=1"))
    topics = bagio.pick_topics(bagio.bag_topics(synthetic_bag.path))
    params = replay_parameters(args, synthetic_bag.path, topics)
    assert set(params) <= set(SPECS)
    assert params["model"] == "tiny" and params["ensemble_size"] == 2 and params["seed"] == 7
    assert params["diagnostics_period_sec"] == 1.0 and isinstance(params["diagnostics_period_sec"], float)
    old_name = replay_parameters(dataclasses.replace(args, param=("lidar_min_range:=0.5",)), synthetic_bag.path, topics)
    assert old_name["lidar_min_range_m"] == 0.5 and "lidar_min_range" not in old_name  # documented alias
    # the LiDAR timeout counts bag time: longer at half speed, strict pairing in lockstep
    assert params["lidar_timeout_sec"] == 2 * SPECS["lidar_timeout_sec"].default
    assert replay_parameters(dataclasses.replace(args, rate=0.0), synthetic_bag.path,
                             topics)["lidar_timeout_sec"] == 0.0


def test_small_helpers():
    assert parse_param("use_lidar:=true") == ("use_lidar", True)
    assert parse_param("lidar_to_camera_xyz:=[0, 0.1, 0]") == ("lidar_to_camera_xyz", [0, 0.1, 0])
    with pytest.raises(InputError):
        parse_param("seed=3")
    kv = [SimpleNamespace(key="latency_ms", value="12.5"), SimpleNamespace(key="backend", value="torch"),
          SimpleNamespace(key="fit_residual", value="nan")]
    assert numeric_values(kv) == {"latency_ms": 12.5}
    stats = summary([1.0, 2.0, 3.0, 4.0])
    assert stats["count"] == 4 and stats["p50"] == 2.5 and stats["max"] == 4.0 and summary([]) is None
