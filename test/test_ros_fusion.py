"""depthfm_node with use_lidar in a real ROS 2 graph: image + camera_info + PointCloud2 of a synthetic scene in,
metric depth, metric uncertainty and completed depth out; refusals, unsynchronized clouds and a stale LiDAR
reported; depth keeps flowing without clouds."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from ros_graph import OUTPUTS, Graph, stamp_ns
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from depthfm_ros.backends.torch_backend import TorchBackend
from depthfm_ros.errors import InputError
from depthfm_ros.fusion.alignment import LogDepthFit
from depthfm_ros.fusion.frame import fuse_frame, sparse_depth
from depthfm_ros.geometry.projection import transform_from_xyz_quat
from depthfm_ros.pipeline import DepthFMPipeline
from depthfm_ros.ros.conversions import (
    camera_to_camera_info,
    image_to_array,
    numpy_to_image,
    pointcloud2_to_xyz,
    xyz_to_pointcloud2,
)
from depthfm_ros.ros.sync import CloudImageSync
from depthfm_ros.sim.synthetic import T_CAM_LIDAR_DEFAULT, make_scene, simulate_lidar

H, W = 96, 128
XYZ = T_CAM_LIDAR_DEFAULT[:3, 3].tolist()
QUAT = Rotation.from_matrix(T_CAM_LIDAR_DEFAULT[:3, :3]).as_quat().tolist()
FUSION = {"model": "tiny", "processing_resolution": 64, "ensemble_size": 2, "diagnostics_period_sec": 0.2,
          "use_lidar": True, "lidar_slop_sec": 0.05, "lidar_to_camera_xyz": XYZ, "lidar_to_camera_quat_xyzw": QUAT,
          "lidar_timeout_sec": 0.0}  # strict pairing unless a test says otherwise: discovery may take > 1 s
FUSION_OUTPUTS = {**OUTPUTS, "completed_depth": (Image, "depthfm/completed_depth")}


@pytest.fixture(scope="module")
def scene_and_scan():
    rng = np.random.default_rng(2)
    scene = make_scene(rng, W, H)
    return scene, simulate_lidar(scene, "random2pct", rng)


@pytest.fixture
def fusion_graph(tiny_model):
    graphs = []

    def make(outputs=FUSION_OUTPUTS, **overrides):
        graphs.append(Graph(TorchBackend(tiny_model, num_steps=1), {**FUSION, **overrides}, outputs=outputs))
        return graphs[-1]

    yield make
    for graph in graphs:
        graph.close()


def header(stamp_ns_: int, frame_id: str) -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns_, 10**9)
    return h


def publishers(g: Graph) -> dict:
    return {"info": g.publisher(CameraInfo, "/camera_info"), "image": g.publisher(Image, "/image"),
            "cloud": g.publisher(PointCloud2, "/lidar")}


def send(g: Graph, scene, points_n3, image_stamp: int, cloud_stamp: int, cloud_first: bool = False):
    """camera_info, then the image and the cloud (LiDAR frame 'lidar') with the given stamps."""
    pubs = publishers(g)
    pubs["info"].publish(camera_to_camera_info(scene.camera, header(image_stamp, "camera_optical")))
    g.wait_for(lambda: g.node._camera_info is not None, "camera_info")
    send_pair(g, pubs, scene, points_n3, image_stamp, cloud_stamp, cloud_first)
    return pubs


def send_pair(g: Graph, pubs: dict, scene, points_n3, image_stamp: int, cloud_stamp: int, cloud_first: bool = False):
    """The image, then the cloud; or with ``cloud_first`` the cloud, and the image once the node has the cloud."""
    image = numpy_to_image(scene.rgb_hwc_u8, "rgb8", header(image_stamp, "camera_optical"))
    cloud = xyz_to_pointcloud2(points_n3, header(cloud_stamp, "lidar"))
    clouds_before = g.node.lidar.stats.clouds_received
    if cloud_first:
        pubs["cloud"].publish(cloud)
        g.wait_for(lambda: g.node.lidar.stats.clouds_received > clouds_before, "cloud received")
        pubs["image"].publish(image)
    else:
        pubs["image"].publish(image)
        pubs["cloud"].publish(cloud)


def expected_frame(tiny_model, scene, scan):
    """What the node computes for the first frame: same model, seed, processing size and extrinsic."""
    pipeline = DepthFMPipeline(TorchBackend(tiny_model, num_steps=1), 64, 2, seed=0)
    prediction = pipeline(scene.rgb_hwc_u8)
    T_cam_lidar = transform_from_xyz_quat(XYZ, QUAT)
    sparse = sparse_depth(scan.points_n3, scene.camera, T_cam_lidar, W, H)
    return prediction, sparse, fuse_frame(prediction, scan.points_n3, scene.camera, T_cam_lidar)


def test_lidar_pair_gives_metric_depth_uncertainty_and_completed_depth(fusion_graph, tiny_model, scene_and_scan):
    scene, scan = scene_and_scan
    g = fusion_graph({**FUSION_OUTPUTS, "points": (PointCloud2, "depthfm/points")}, publish_points=True)
    stamp = 1_700_000_000_500_000_000
    send(g, scene, scan.points_n3, stamp, stamp + 20_000_000)  # cloud 20 ms after the image: within the slop
    g.wait_for(lambda: all(g.received[k] for k in ("depth", "uncertainty", "completed_depth", "camera_info",
                                                   "points")), "fused outputs")
    for key in ("depth", "uncertainty", "completed_depth"):
        msg = g.received[key][0]
        assert (msg.encoding, msg.width, msg.height, stamp_ns(msg), msg.header.frame_id) == (
            "32FC1", W, H, stamp, "camera_optical"), key
    depth, std, completed = (image_to_array(g.received[k][0]) for k in ("depth", "uncertainty", "completed_depth"))

    _, sparse, aligned = expected_frame(tiny_model, scene, scan)
    lidar = np.isfinite(sparse)
    assert lidar.sum() > 100
    # LiDAR pixels of the completed depth are the LiDAR depths where completion kept them (local outliers dropped)
    kept = aligned.lidar_mask_hw
    assert kept.sum() >= 0.8 * lidar.sum() and not (kept & ~lidar).any()
    np.testing.assert_allclose(completed[kept], sparse[kept], rtol=1e-6)
    np.testing.assert_allclose(completed, aligned.completed_hw_m, rtol=1e-4)
    # depth is exp(a z + b) in metres, the uncertainty |a| std_z depth
    np.testing.assert_allclose(depth, aligned.depth_hw_m, rtol=1e-4)
    np.testing.assert_allclose(std, aligned.std_hw_m, rtol=1e-4, atol=1e-6)
    assert np.all(depth > 0) and std.max() > 0 and depth.max() > 1.0  # metres, not [0, 1]
    # the points are the metric depth back-projected (every pixel valid: no filter set)
    points = pointcloud2_to_xyz(g.received["points"][0])
    assert (stamp_ns(g.received["points"][0]), g.received["points"][0].header.frame_id) == (stamp, "camera_optical")
    np.testing.assert_allclose(points[:, 2], depth.ravel(), rtol=1e-6)

    g.wait_for(lambda: any(v["frames_aligned"] == "1" for v in g.diagnostics(": lidar alignment")), "diagnostics")
    values = [v for v in g.diagnostics(": lidar alignment") if v["frames_aligned"] == "1"][-1]
    assert values["metric"] == "True" and values["extrinsic"] == "parameters"
    assert int(values["num_points"]) == aligned.fit.num_points == lidar.sum()
    assert int(values["num_inliers"]) == aligned.fit.num_inliers > 0
    assert float(values["a"]) == pytest.approx(aligned.fit.a, rel=1e-5)
    assert float(values["b"]) == pytest.approx(aligned.fit.b, rel=1e-5)
    assert float(values["rms_log"]) == pytest.approx(aligned.fit.rms_log, abs=1e-4)
    assert values["last_alignment_error"] == "" and values["pairs_synchronized"] == "1"


def test_too_few_points_keep_outputs_relative_and_report_why(fusion_graph, scene_and_scan):
    scene, scan = scene_and_scan
    g = fusion_graph()
    send(g, scene, scan.points_n3[:3], 5_000_000_000, 5_000_000_000)
    g.wait_for(lambda: g.received["depth"] and g.received["uncertainty"], "relative outputs")
    g.wait_for(lambda: any(v["frames_refused"] == "1" for v in g.diagnostics(": lidar alignment")), "refusal")
    values = [v for v in g.diagnostics(": lidar alignment") if v["frames_refused"] == "1"][-1]
    assert values["metric"] == "False" and "too few LiDAR points" in values["last_alignment_error"]
    assert values["frames_aligned"] == "0"
    depth = image_to_array(g.received["depth"][0])
    assert 0.0 <= depth.min() and depth.max() <= 1.0  # relative, as without LiDAR
    assert not g.received["completed_depth"]
    assert g.node._worker.is_alive() and g.node.stats.inference_errors == 0


def test_cloud_beyond_the_slop_is_not_fused_and_is_counted(fusion_graph, scene_and_scan):
    scene, scan = scene_and_scan
    g = fusion_graph()
    pubs = send(g, scene, scan.points_n3, 1_000_000_000, 2_000_000_000, cloud_first=True)  # 1 s apart
    g.wait_for(lambda: g.node.lidar.stats.unsynchronized >= 1, "the stale image counted")
    # a matching pair afterwards is fused: the only outputs are its own
    later = 3_000_000_000
    send_pair(g, pubs, scene, scan.points_n3, later, later + 10_000_000)
    g.wait_for(lambda: g.received["completed_depth"], "fused output of the matching pair")
    g.wait_for(lambda: g.received["depth"], "depth")
    assert [stamp_ns(m) for m in g.received["depth"]] == [later]
    assert g.node.lidar.stats.pairs == 1 and g.node.stats.processed == 1
    g.wait_for(lambda: any(int(v["unsynchronized_dropped"]) >= 2 for v in g.diagnostics(": lidar alignment")),
               "unsynchronized in diagnostics")  # the 1 s image and the 2 s cloud


def test_negative_stamps_are_counted_and_pairing_goes_on(fusion_graph, scene_and_scan):
    scene, scan = scene_and_scan
    g = fusion_graph()
    pubs = publishers(g)
    pubs["info"].publish(camera_to_camera_info(scene.camera, header(0, "camera_optical")))
    g.wait_for(lambda: g.node._camera_info is not None, "camera_info")
    for k, (kind, msg) in enumerate([("image", numpy_to_image(scene.rgb_hwc_u8, "rgb8", header(0, "camera_optical"))),
                                     ("cloud", xyz_to_pointcloud2(scan.points_n3, header(0, "lidar")))]):
        msg.header.stamp.sec = -1  # rclpy Time (message_filters) raises on it: must not leave the callback
        pubs[kind].publish(msg)
        g.wait_for(lambda: g.node.stats.conversion_errors == k + 1, f"negative {kind} stamp counted")
    later = 2_000_000_000
    send_pair(g, pubs, scene, scan.points_n3, later, later)
    g.wait_for(lambda: g.received["completed_depth"], "fused output after the bad stamps")
    assert [stamp_ns(m) for m in g.received["depth"]] == [later]
    assert "negative header stamp" in g.node.stats.last_error and g.node.lidar.stats.unsynchronized == 0


def alignment_statuses(g: Graph) -> list:
    return [s for a in list(g.received["diagnostics"]) for s in a.status if s.name.endswith(": lidar alignment")]


def test_without_clouds_depth_flows_relative_after_the_timeout_and_metric_resumes(fusion_graph, tiny_model,
                                                                                  scene_and_scan):
    scene, scan = scene_and_scan
    g = fusion_graph({**FUSION_OUTPUTS, "points": (PointCloud2, "depthfm/points")}, lidar_timeout_sec=1.0,
                     publish_points=True, points_scale=2.0, points_shift=0.5)  # lidar_timeout_sec: the default
    pubs = publishers(g)
    stamp = 1_000_000_000
    pubs["info"].publish(camera_to_camera_info(scene.camera, header(stamp, "camera_optical")))
    g.wait_for(lambda: g.node._camera_info is not None and g.node.lidar.stats.is_stale(), "camera_info, stale LiDAR")
    # no cloud ever: the image goes out alone, as without LiDAR
    pubs["image"].publish(numpy_to_image(scene.rgb_hwc_u8, "rgb8", header(stamp, "camera_optical")))
    g.wait_for(lambda: g.received["depth"] and g.received["points"], "depth and points without LiDAR")
    depth = image_to_array(g.received["depth"][0])
    assert stamp_ns(g.received["depth"][0]) == stamp and 0.0 <= depth.min() and depth.max() <= 1.0  # relative
    prediction, _, _ = expected_frame(tiny_model, scene, scan)
    points = pointcloud2_to_xyz(g.received["points"][0])  # the fixed points_scale / points_shift mapping
    fixed = LogDepthFit(2.0, 0.5, float("nan"), 0, 0)
    np.testing.assert_allclose(points[:, 2], fixed.depth_m(prediction.z_hw).ravel(), rtol=1e-4)
    g.wait_for(lambda: any(s.level == DiagnosticStatus.WARN and "LiDAR stale" in s.message and
                           {kv.key: kv.value for kv in s.values}["frames_unaligned"] == "1"
                           for s in alignment_statuses(g)), "stale diagnostics")
    assert not g.received["completed_depth"] and g.node.lidar.stats.aligned == 0

    # clouds return: pairs are aligned again (cloud first, then the usual order: image, then its cloud)
    for k, cloud_first in enumerate((True, False)):
        later = stamp + (k + 1) * 100_000_000
        send_pair(g, pubs, scene, scan.points_n3, later, later + 10_000_000, cloud_first)
        g.wait_for(lambda: len(g.received["completed_depth"]) == k + 1, f"metric outputs of pair {k}")
        g.wait_for(lambda: len(g.received["depth"]) == k + 2, f"depth of pair {k}")
        assert stamp_ns(g.received["depth"][-1]) == stamp_ns(g.received["completed_depth"][-1]) == later
        assert image_to_array(g.received["depth"][-1]).max() > 1.0  # metres again
    g.wait_for(lambda: any(s.level == DiagnosticStatus.OK and s.message.startswith("metric")
                           for s in alignment_statuses(g)), "metric diagnostics")
    values = {kv.key: kv.value for kv in alignment_statuses(g)[-1].values}
    assert (values["lidar_stale"], values["frames_unaligned"], values["frames_aligned"]) == ("False", "1", "2")
    assert float(values["fit_ms"]) >= 0 and float(values["completion_ms"]) >= 0
    assert [stamp_ns(m) for m in g.received["depth"]] == [stamp, stamp + 100_000_000, stamp + 200_000_000]


def test_zero_timeout_keeps_strict_pairing(fusion_graph, scene_and_scan):
    scene, _ = scene_and_scan
    g = fusion_graph(lidar_timeout_sec=0.0)
    pub = g.publisher(Image, "/image")
    for k in range(3):
        pub.publish(numpy_to_image(scene.rgb_hwc_u8, "rgb8", header(1_000_000_000 + k, "camera_optical")))
    g.wait_for(lambda: g.node.stats.received == 3, "images received")
    g.wait_for(lambda: any("waiting for LiDAR clouds" in s.message for s in alignment_statuses(g)), "diagnostics")
    assert not g.received["depth"] and not g.node.lidar.stats.is_stale()


class _Msg:
    def __init__(self, stamp_s: float):
        self.header = header(int(round(stamp_s * 1e9)), "f")


def test_sync_pairs_within_slop_and_counts_what_can_no_longer_pair():
    pairs, lost = [], []
    sync = CloudImageSync(0.05, 10, lambda i, c: pairs.append((i, c)), lambda: lost.append(1),
                          use_message_filters=False)
    images = [_Msg(t) for t in (0.0, 0.033, 0.067, 0.1, 0.133)]  # 30 Hz camera
    clouds = [_Msg(t) for t in (0.01, 0.11)]  # 10 Hz LiDAR
    sync.add_image(images[0])
    sync.add_cloud(clouds[0])
    for image in images[1:4]:
        sync.add_image(image)
    sync.add_cloud(clouds[1])
    sync.add_image(images[4])
    assert pairs == [(images[0], clouds[0]), (images[3], clouds[1])]
    assert len(lost) == 2  # the 33 and 67 ms images never had a cloud within 50 ms
    sync.add_cloud(_Msg(5.0))  # the 133 ms image can no longer pair
    assert len(lost) == 3 and len(pairs) == 2


def test_sync_refuses_negative_stamps():
    sync = CloudImageSync(0.05, 10, lambda i, c: None, lambda: None, use_message_filters=False)
    msg = _Msg(1.0)
    msg.header.stamp.sec = -1
    with pytest.raises(InputError, match="negative header stamp"):
        sync.add_cloud(msg)


def test_completion_checkpoint_gives_the_completion_models_depth(fusion_graph, tiny_model, scene_and_scan, tmp_path):
    from depthfm_ros.models.architectures import build_tiny_depthfm
    from depthfm_ros.models.completion import DepthCompletionFM

    # from_depthfm widens the UNet it is given in place: never hand it the shared tiny_model
    widened = DepthCompletionFM.from_depthfm(build_tiny_depthfm(seed=1, noising_step=400))
    folder = widened.save_pretrained(tmp_path / "completion")
    scene, scan = scene_and_scan
    g = fusion_graph(completion_checkpoint=str(folder), num_steps=1)
    send(g, scene, scan.points_n3, 9_000_000_000, 9_000_000_000)
    g.wait_for(lambda: g.received["completed_depth"] and g.received["depth"], "model-completed depth")
    _, sparse, aligned = expected_frame(tiny_model, scene, scan)
    expected = DepthCompletionFM.from_pretrained(folder).complete(scene.rgb_hwc_u8, sparse, num_steps=1,
                                                                  ensemble_size=2, processing_resolution=64, seed=0)
    np.testing.assert_allclose(image_to_array(g.received["completed_depth"][0]), expected.depth_hw_m, rtol=1e-4)
    np.testing.assert_allclose(image_to_array(g.received["depth"][0]), aligned.depth_hw_m, rtol=1e-4)
