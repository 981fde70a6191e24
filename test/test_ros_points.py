"""depthfm/points in a real ROS 2 graph: layout, filters, stride, organized clouds, stamps and frames."""

from __future__ import annotations

import numpy as np
import pytest
from ros_graph import METRIC_OUTPUTS, OUTPUTS, Graph, camera_info_msg, image_msg, rgb_frame, stamp_ns
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depthfm_ros.backends.torch_backend import TorchBackend
from depthfm_ros.fusion.alignment import LogDepthFit, metric_std
from depthfm_ros.geometry.camera import PinholeCamera
from depthfm_ros.geometry.masks import combined_mask
from depthfm_ros.geometry.projection import depth_to_points
from depthfm_ros.pipeline import DepthFMPipeline
from depthfm_ros.ros.conversions import image_to_array, pointcloud2_to_xyz
from depthfm_ros.ros.wire import FLOAT32, unpack_rgb

H, W = 96, 128
SCALE, SHIFT = 1.5, 0.7
POINTS = {"model": "tiny", "processing_resolution": 64, "ensemble_size": 2, "diagnostics_period_sec": 0.2,
          "publish_points": True, "metric_fixed_scale": SCALE, "metric_fixed_shift": SHIFT}
POINTS_OUTPUTS = {**OUTPUTS, **METRIC_OUTPUTS, "points": (PointCloud2, "depthfm/points")}


@pytest.fixture
def points_graph(tiny_model):
    graphs = []

    def make(**overrides):
        graphs.append(Graph(TorchBackend(tiny_model, num_steps=1), {**POINTS, **overrides}, outputs=POINTS_OUTPUTS))
        return graphs[-1]

    yield make
    for graph in graphs:
        graph.close()


def first_cloud(g: Graph, stamp: int, info: CameraInfo | None = None) -> PointCloud2:
    if info is not None:
        g.publisher(CameraInfo, "/camera_info").publish(info)
        g.wait_for(lambda: g.node._camera_info is not None, "camera_info")
    g.publisher(Image, "/image").publish(image_msg(0, stamp))
    g.wait_for(lambda: g.received["points"], "points")
    return g.received["points"][0]


def expected_depth(tiny_model):
    """The node's first frame in fixed-scale metres: depth = exp(SCALE z + SHIFT) and its std."""
    prediction = DepthFMPipeline(TorchBackend(tiny_model, num_steps=1), 64, 2, seed=0)(rgb_frame(0))
    fixed = LogDepthFit(SCALE, SHIFT, float("nan"), 0, 0)
    depth = fixed.depth_m(prediction.z_hw)
    return depth, metric_std(prediction.std_z_hw, depth, fixed)


def camera(width: int, height: int) -> PinholeCamera:
    info = camera_info_msg(width, height)
    return PinholeCamera(width, height, np.asarray(info.k))


def test_dense_cloud_layout_filters_and_header(points_graph, tiny_model):
    filters = {"points_max_relative_std": 0.05, "points_edge_ratio": 1.05, "points_max_range_m": 10.0}
    g = points_graph(**filters)
    stamp = 1_700_000_000_250_000_000
    cloud = first_cloud(g, stamp, camera_info_msg(2 * W, 2 * H))  # calibrated at twice the streamed size
    assert (stamp_ns(cloud), cloud.header.frame_id) == (stamp, "camera_optical")
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1), ("rgb", 12, FLOAT32, 1)]
    assert (cloud.point_step, cloud.height, cloud.row_step) == (16, 1, 16 * cloud.width)
    assert cloud.is_dense and len(cloud.data) == cloud.row_step

    depth, std = expected_depth(tiny_model)
    keep = combined_mask(depth, std, max_range_m=10.0, max_relative_std=0.05, edge_ratio=1.05)
    assert 0 < keep.sum() < keep.size  # the filters drop some pixels, not all
    assert cloud.width == keep.sum()
    expected = depth_to_points(depth, camera(2 * W, 2 * H).scaled(W, H), 1, rgb_frame(0), valid_hw=keep)
    np.testing.assert_allclose(pointcloud2_to_xyz(cloud), expected.xyz, rtol=1e-4, atol=1e-6)
    rgb = unpack_rgb(np.frombuffer(bytes(cloud.data), np.float32).reshape(-1, 4)[:, 3])
    np.testing.assert_array_equal(rgb, expected.rgb)
    # the fixed source is a metric source: depthfm/depth carries the same metres, relative_depth the [0, 1] map
    g.wait_for(lambda: g.received["depth"] and g.received["relative_depth"], "depth and relative depth")
    np.testing.assert_allclose(image_to_array(g.received["depth"][0]), depth, rtol=1e-5)
    assert image_to_array(g.received["relative_depth"][0]).max() <= 1.0
    g.wait_for(lambda: any(v["points_ms"] != "nan" for v in g.diagnostics(": depth")), "points_ms in diagnostics")
    assert all(float(v["points_ms"]) > 0 for v in g.diagnostics(": depth") if v["points_ms"] != "nan")


def test_organized_strided_cloud_without_rgb(points_graph, tiny_model):
    g = points_graph(points_organized=True, points_stride=3, points_rgb=False, points_min_range_m=2.0)
    cloud = first_cloud(g, 77, camera_info_msg(W, H))
    rows, cols = -(-H // 3), -(-W // 3)
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (rows, cols, 12, 12 * cols)
    assert [f.name for f in cloud.fields] == ["x", "y", "z"] and stamp_ns(cloud) == 77
    xyz = pointcloud2_to_xyz(cloud, keep_invalid=True).reshape(rows, cols, 3)
    depth, _ = expected_depth(tiny_model)
    keep = combined_mask(depth, min_range_m=2.0)[::3, ::3]
    assert 0 < keep.sum() < keep.size
    np.testing.assert_array_equal(np.isfinite(xyz[..., 2]), keep)  # NaN exactly where filtered
    np.testing.assert_allclose(xyz[..., 2][keep], depth[::3, ::3][keep], rtol=1e-6)
    assert not cloud.is_dense


def test_no_camera_info_means_no_points_until_it_arrives(points_graph):
    g = points_graph()
    image_pub = g.publisher(Image, "/image")
    image_pub.publish(image_msg(0, 1))
    g.wait_for(lambda: g.received["depth"] and g.node.stats.processed == 1, "depth without camera_info")
    assert not g.received["points"] and g.node._worker.is_alive()
    g.publisher(CameraInfo, "/camera_info").publish(camera_info_msg(W, H))
    g.wait_for(lambda: g.node._camera_info is not None, "camera_info")
    image_pub.publish(image_msg(0, 2))
    g.wait_for(lambda: g.received["points"], "points once camera_info is there")
    assert [stamp_ns(m) for m in g.received["points"]] == [2]
