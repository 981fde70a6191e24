"""Metric sources through a real ROS 2 graph: none configured, the ground plane, the fixed scale, and a rectified
camera whose P differs from K (projection, points and depthfm/camera_info agree as depth_image_proc reads them)."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from ros_graph import METRIC_OUTPUTS, OUTPUTS, Graph, SceneBackend, stamp_ns
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from depthfm_ros.evaluation.metrics import abs_rel, delta1
from depthfm_ros.geometry.camera import PinholeCamera
from depthfm_ros.ros.conversions import camera_to_camera_info, image_to_array, numpy_to_image, pointcloud2_to_xyz
from depthfm_ros.sim.synthetic import random_scene_spec, render_scene

H, W = 96, 128
BASE = {"model": "tiny", "processing_resolution": 64, "ensemble_size": 2, "diagnostics_period_sec": 0.2}
ALL = {**OUTPUTS, **METRIC_OUTPUTS}
WITH_POINTS = {**ALL, "points": (PointCloud2, "depthfm/points")}


def _header(stamp: int) -> Header:
    h = Header(frame_id="camera_optical")
    h.stamp.sec, h.stamp.nanosec = divmod(stamp, 10**9)
    return h


@pytest.fixture
def graphs():
    made = []

    def make(depth_hw_m, **params):
        outputs = WITH_POINTS if params.get("publish_points") else ALL
        made.append(Graph(SceneBackend(depth_hw_m), {**BASE, **params}, outputs=outputs))
        return made[-1]

    yield make
    for g in made:
        g.close()


def _scene(seed: int, camera: PinholeCamera):
    spec = random_scene_spec(np.random.default_rng(seed))
    return spec, render_scene(spec, camera, np.random.default_rng(seed))


def _send(g: Graph, scene_rgb, info: CameraInfo, stamp: int):
    g.publisher(CameraInfo, "/camera_info").publish(info)
    g.wait_for(lambda: g.node._camera_info is not None, "camera_info")
    g.publisher(Image, "/image").publish(numpy_to_image(scene_rgb, "rgb8", _header(stamp)))


def _status(g: Graph, level, text: str):
    def found():
        return any(s.level == level and text in s.message for a in list(g.received["diagnostics"])
                   for s in a.status if s.name.endswith(": metric scale"))
    g.wait_for(found, f"metric status '{text}'")


CAMERA = PinholeCamera(W, H, [[100.0, 0, (W - 1) / 2], [0, 100.0, (H - 1) / 2], [0, 0, 1]])


def test_without_a_metric_source_only_relative_topics_and_diagnostics_say_so(graphs):
    _, scene = _scene(3, CAMERA)
    g = graphs(scene.depth_hw_m)
    _send(g, scene.rgb_hwc_u8, camera_to_camera_info(CAMERA, _header(5)), 5)
    g.wait_for(lambda: g.received["relative_depth"] and g.node.stats.processed == 1, "relative depth")
    _status(g, DiagnosticStatus.WARN, "no metric source configured")
    assert not g.received["depth"] and not g.received["uncertainty"]


def test_ground_plane_gives_metres_for_a_camera_only_robot(graphs):
    spec, scene = _scene(7, CAMERA)
    floor = np.asarray(spec.planes[0].normal)
    height = spec.planes[0].offset / np.linalg.norm(floor)
    down = floor / np.linalg.norm(floor)  # mounting known (as tf or the pitch/roll parameters would give it)
    roll, pitch = np.degrees(np.arcsin(down[0])), np.degrees(np.arctan2(down[2], down[1]))
    g = graphs(scene.depth_hw_m, camera_height_m=float(height), camera_pitch_deg=float(pitch),
               camera_roll_deg=float(roll))
    _send(g, scene.rgb_hwc_u8, camera_to_camera_info(CAMERA, _header(9)), 9)
    g.wait_for(lambda: g.received["depth"], "metric depth from the ground")
    depth = image_to_array(g.received["depth"][0])
    assert abs_rel(depth, scene.depth_hw_m) < 0.05 and delta1(depth, scene.depth_hw_m) > 0.97
    _status(g, DiagnosticStatus.OK, "metric from ground")


def test_a_ground_that_is_not_there_is_refused(graphs):
    _, scene = _scene(7, CAMERA)
    g = graphs(scene.depth_hw_m, camera_height_m=1.3, camera_pitch_deg=-50.0)  # "ground" above the horizon
    _send(g, scene.rgb_hwc_u8, camera_to_camera_info(CAMERA, _header(11)), 11)
    _status(g, DiagnosticStatus.WARN, "no metric depth: ground plane")
    g.wait_for(lambda: g.received["relative_depth"], "relative depth")
    assert not g.received["depth"]


def test_rectified_camera_uses_p_and_points_match_depth_image_proc(graphs):
    """image_proc's image_rect comes with D != 0 and P != K. Projection and points use P; the depth_image_proc
    formula x = (u - cx) z / fx, y = (v - cy) z / fy on depthfm/depth with depthfm/camera_info's P gives
    depthfm/points back to 1e-4 m."""
    P = np.array([[92.0, 0, 61.3, 0], [0, 94.0, 49.1, 0], [0, 0, 1, 0]])
    rect = PinholeCamera(W, H, P[:, :3])
    _, scene = _scene(4, rect)  # the rectified image is what P describes
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob", d=[0.1, -0.2, 0.001, 0.0, 0.05],
                      k=[101.0, 0, 64.2, 0, 102.0, 47.9, 0, 0, 1], r=np.eye(3).ravel(), p=P.ravel(),
                      header=_header(13))
    g = graphs(scene.depth_hw_m, image_rectified=True, publish_points=True, metric_fixed_scale=2.0,
               metric_fixed_shift=float(np.median(np.log(scene.depth_hw_m))))
    _send(g, scene.rgb_hwc_u8, info, 13)
    g.wait_for(lambda: g.received["points"] and g.received["depth"] and g.received["camera_info"], "outputs")
    depth = image_to_array(g.received["depth"][0])
    out_info = g.received["camera_info"][0]
    p = np.asarray(out_info.p).reshape(3, 4)
    v, u = np.mgrid[0:H, 0:W]
    expected = np.stack([(u - p[0, 2]) * depth / p[0, 0], (v - p[1, 2]) * depth / p[1, 1], depth], -1)
    points = pointcloud2_to_xyz(g.received["points"][0])
    assert stamp_ns(g.received["points"][0]) == 13 and np.abs(p - P).max() == 0
    np.testing.assert_allclose(points, expected.reshape(-1, 3), atol=1e-4)


@pytest.mark.parametrize("rectified", [True, False])
def test_lidar_is_projected_with_p_for_a_rectified_image(graphs, rectified):
    """With image_rectified the LiDAR lands where P puts it (metres match the scene); projecting the rectified
    image's LiDAR with the raw K and D (as before) puts it on the wrong pixels."""
    from scipy.spatial.transform import Rotation

    from depthfm_ros.ros.conversions import xyz_to_pointcloud2
    from depthfm_ros.sim.synthetic import T_CAM_LIDAR_DEFAULT, simulate_lidar

    P = np.array([[92.0, 0, 61.3, 0], [0, 94.0, 49.1, 0], [0, 0, 1, 0]])
    _, scene = _scene(4, PinholeCamera(W, H, P[:, :3]))
    scan = simulate_lidar(scene, "random2pct", np.random.default_rng(1))
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob", d=[0.25, -0.3, 0.002, 0.0, 0.1],
                      k=[120.0, 0, 70.0, 0, 122.0, 40.0, 0, 0, 1], r=np.eye(3).ravel(), p=P.ravel(),
                      header=_header(21))
    g = graphs(scene.depth_hw_m, use_lidar=True, lidar_timeout_sec=0.0, image_rectified=rectified,
               lidar_to_camera_xyz=T_CAM_LIDAR_DEFAULT[:3, 3].tolist(),
               lidar_to_camera_quat_xyzw=Rotation.from_matrix(T_CAM_LIDAR_DEFAULT[:3, :3]).as_quat().tolist())
    _send(g, scene.rgb_hwc_u8, info, 21)
    cloud = xyz_to_pointcloud2(scan.points_n3, Header(frame_id="lidar", stamp=_header(21).stamp))
    g.publisher(PointCloud2, "/lidar").publish(cloud)
    def source():
        found = [{kv.key: kv.value for kv in st.values} for a in list(g.received["diagnostics"]) for st in a.status
                 if st.name.endswith(": metric scale")]
        done = [v for v in found if "frames_lidar" in v or "frames_relative_only" in v]
        return done[-1]["source"] if done else None

    g.wait_for(lambda: source() is not None, "the frame's metric status")
    if rectified:
        assert source() == "lidar"
    if source() == "lidar":
        g.wait_for(lambda: g.received["depth"], "metric depth")
        error = abs_rel(image_to_array(g.received["depth"][0]), scene.depth_hw_m)
        assert error < 0.03 if rectified else error > 0.03  # K and D put the LiDAR on the wrong pixels
