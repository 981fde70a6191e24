"""depthfm_node with use_lidar in a real ROS 2 graph: image + camera_info + PointCloud2 of a synthetic scene in.

The topic contract (REP-118): depthfm/depth, depthfm/uncertainty, depthfm/completed_depth carry metres only and only
for frames with an accepted metric scale; depthfm/relative_depth and depthfm/relative_uncertainty go out on every
frame, as soon as the model ran (the camera never waits for the LiDAR). Refusals, the cloud nearest in time before or
after the image, the hold through LiDAR gaps, stale LiDAR, time jumps and rectified cameras (P != K) are checked end
to end. The engine is a stand-in that predicts the scene up to DepthFM's affine ambiguity (ros_graph.SceneBackend),
so metres can be checked against the scene's ground truth.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from ros_graph import METRIC_OUTPUTS, OUTPUTS, Graph, SceneBackend, stamp_ns
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from depthfm_ros.evaluation.metrics import abs_rel
from depthfm_ros.fusion.alignment import residual_scale
from depthfm_ros.fusion.frame import fuse_frame, metric_maps, sparse_depth
from depthfm_ros.geometry.projection import transform_from_xyz_quat
from depthfm_ros.pipeline import DepthFMPipeline
from depthfm_ros.ros.conversions import (
    camera_to_camera_info,
    image_to_array,
    numpy_to_image,
    pointcloud2_to_xyz,
    xyz_to_pointcloud2,
)
from depthfm_ros.ros.params import validate
from depthfm_ros.sim.synthetic import T_CAM_LIDAR_DEFAULT, make_scene, simulate_lidar

H, W = 96, 128
XYZ = T_CAM_LIDAR_DEFAULT[:3, 3].tolist()
QUAT = Rotation.from_matrix(T_CAM_LIDAR_DEFAULT[:3, :3]).as_quat().tolist()
# diagnostics every 0.5 s: the input goes stale (and the metric status with it) after 2 periods without an image, which
# a loaded machine must not reach between a frame and the status a test waits for
FUSION = {"model": "tiny", "processing_resolution": 64, "ensemble_size": 2, "diagnostics_period_sec": 0.5,
          "use_lidar": True, "lidar_slop_sec": 0.05, "lidar_to_camera_xyz": XYZ, "lidar_to_camera_quat_xyzw": QUAT,
          "lidar_timeout_sec": 0.0,  # never stale unless a test says otherwise: discovery may take > 1 s
          "lidar_wait_sec": 5.0}  # a frame's metric step waits for its cloud (a loaded test machine is slow)
FUSION_OUTPUTS = {**OUTPUTS, **METRIC_OUTPUTS, "completed_depth": (Image, "depthfm/completed_depth")}
METRIC_KEYS = ("depth", "uncertainty", "completed_depth")


@pytest.fixture(scope="module")
def scene_and_scan():
    rng = np.random.default_rng(2)
    scene = make_scene(rng, W, H)
    return scene, simulate_lidar(scene, "random2pct", rng)


@pytest.fixture
def fusion_graph(scene_and_scan):
    graphs = []

    def make(outputs=FUSION_OUTPUTS, scene=None, **overrides):
        backend = SceneBackend((scene or scene_and_scan[0]).depth_hw_m)
        graphs.append(Graph(backend, {**FUSION, **overrides}, outputs=outputs))
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


def expected_frame(scene, scan, **overrides):
    """What the node computes for the first frame: same engine, seed, processing size, extrinsic and metric scale."""
    prediction = DepthFMPipeline(SceneBackend(scene.depth_hw_m), 64, 2, seed=0)(scene.rgb_hwc_u8)
    T_cam_lidar = transform_from_xyz_quat(XYZ, QUAT)
    sparse = sparse_depth(scan.points_n3, scene.camera, T_cam_lidar, W, H)
    fused = fuse_frame(prediction, scan.points_n3, scene.camera, T_cam_lidar, max_range_m=100.0)
    return prediction, sparse, fused


def statuses(g: Graph, suffix: str) -> list:
    return [s for a in list(g.received["diagnostics"]) for s in a.status if s.name.endswith(suffix)]


def values_of(status) -> dict:
    return {kv.key: kv.value for kv in status.values}


def test_lidar_pair_gives_metres_on_the_metric_topics_and_relative_on_the_relative_ones(fusion_graph, scene_and_scan):
    scene, scan = scene_and_scan
    g = fusion_graph({**FUSION_OUTPUTS, "points": (PointCloud2, "depthfm/points")}, publish_points=True)
    stamp = 1_700_000_000_500_000_000
    send(g, scene, scan.points_n3, stamp, stamp + 20_000_000)  # cloud 20 ms after the image: within the slop
    keys = (*METRIC_KEYS, "relative_depth", "relative_uncertainty", "camera_info", "points")
    g.wait_for(lambda: all(g.received[k] for k in keys), "every output")
    for key in (*METRIC_KEYS, "relative_depth", "relative_uncertainty"):
        msg = g.received[key][0]
        assert (msg.encoding, msg.width, msg.height, stamp_ns(msg), msg.header.frame_id) == (
            "32FC1", W, H, stamp, "camera_optical"), key
    depth, std, completed = (image_to_array(g.received[k][0]) for k in METRIC_KEYS)

    prediction, sparse, fused = expected_frame(scene, scan)
    estimate = validate(FUSION).metric_scale().update(  # the calibration from this cloud, as the node learns it
        stamp * 1e-9, prediction.z_hw, lidar_fit=fused.fit,
        lidar_calibration=lambda fit, var: residual_scale(fit, prediction.z_hw, sparse, prediction.std_z_hw, var))
    assert estimate.source == "lidar" and (estimate.fit.a, estimate.fit.b) == (fused.fit.a, fused.fit.b)
    expected_depth, expected_std = metric_maps(estimate.fit, prediction.z_hw, prediction.std_z_hw, estimate.log_var,
                                               estimate.sigma_scale)
    np.testing.assert_allclose(depth, expected_depth, rtol=1e-4)
    np.testing.assert_allclose(std, expected_std, rtol=1e-4, atol=1e-6)
    assert abs_rel(depth, scene.depth_hw_m) < 0.03  # metres of the scene, not [0, 1]
    lidar = np.isfinite(sparse)
    kept = fused.lidar_mask_hw  # LiDAR pixels of the completed depth are the LiDAR's where completion kept them
    assert lidar.sum() > 100 and kept.sum() >= 0.8 * lidar.sum() and not (kept & ~lidar).any()
    np.testing.assert_allclose(completed[kept], sparse[kept], rtol=1e-6)
    np.testing.assert_allclose(completed, fused.completed_hw_m, rtol=1e-4)
    np.testing.assert_allclose(image_to_array(g.received["relative_depth"][0]), prediction.relative_depth_hw,
                               atol=1e-6)
    np.testing.assert_allclose(image_to_array(g.received["relative_uncertainty"][0]), prediction.std_z_hw,
                               atol=1e-6)
    points = pointcloud2_to_xyz(g.received["points"][0])  # the metric depth back-projected
    np.testing.assert_allclose(points[:, 2], depth.ravel(), rtol=1e-6)

    g.wait_for(lambda: any(v["frames_aligned"] == "1" for v in map(values_of, statuses(g, ": lidar alignment"))),
               "alignment diagnostics")
    values = [v for v in map(values_of, statuses(g, ": lidar alignment")) if v["frames_aligned"] == "1"][-1]
    assert values["metric"] == "True" and values["extrinsic"] == "parameters"
    assert int(values["num_points"]) == fused.fit.num_points == lidar.sum()
    assert float(values["a"]) == pytest.approx(fused.fit.a, rel=1e-5)
    g.wait_for(lambda: any(s.level == DiagnosticStatus.OK and values_of(s)["source"] == "lidar"
                           for s in statuses(g, ": metric scale")), "metric diagnostics")


def _assert_relative_only(g: Graph, reason: str):
    g.wait_for(lambda: g.received["relative_depth"] and g.received["relative_uncertainty"], "relative outputs")
    g.wait_for(lambda: any(s.level == DiagnosticStatus.WARN and reason in s.message
                           for s in statuses(g, ": metric scale")), f"WARN '{reason}'")
    assert not any(g.received[k] for k in METRIC_KEYS)  # no metres at all, not relative values on a metre topic
    relative = image_to_array(g.received["relative_depth"][0])
    assert 0.0 <= relative.min() and relative.max() <= 1.0
    assert g.node._worker.is_alive() and g.node.stats.inference_errors == 0


def test_too_few_points_give_no_metric_output_and_say_why(fusion_graph, scene_and_scan):
    scene, scan = scene_and_scan
    g = fusion_graph()
    send(g, scene, scan.points_n3[:3], 5_000_000_000, 5_000_000_000)
    _assert_relative_only(g, "too few LiDAR points")
    values = [v for v in map(values_of, statuses(g, ": lidar alignment")) if v["frames_refused"] == "1"][-1]
    assert values["metric"] == "False" and values["frames_aligned"] == "0"


def test_a_cloud_with_the_wrong_byte_order_is_refused(fusion_graph, scene_and_scan):
    """is_bigendian flipped on a little-endian cloud: coordinates like 1e-38..1e38. It used to be accepted
    (rms_log 28.8, depth medians ~1e18 m, status OK)."""
    scene, scan = scene_and_scan
    g = fusion_graph()
    pubs = publishers(g)
    pubs["info"].publish(camera_to_camera_info(scene.camera, header(7_000_000_000, "camera_optical")))
    g.wait_for(lambda: g.node._camera_info is not None, "camera_info")
    cloud = xyz_to_pointcloud2(scan.points_n3, header(7_000_000_000, "lidar"))
    cloud.is_bigendian = not cloud.is_bigendian
    pubs["image"].publish(numpy_to_image(scene.rgb_hwc_u8, "rgb8", header(7_000_000_000, "camera_optical")))
    pubs["cloud"].publish(cloud)
    _assert_relative_only(g, "no metric depth")


def test_cloud_beyond_the_slop_is_not_fused_and_is_counted(fusion_graph, scene_and_scan):
    scene, scan = scene_and_scan
    g = fusion_graph(lidar_wait_sec=0.5)
    pubs = send(g, scene, scan.points_n3, 1_000_000_000, 2_000_000_000, cloud_first=True)  # 1 s apart
    g.wait_for(lambda: g.node.lidar.stats.without_cloud == 1 and g.received["relative_depth"],
               "the image without a cloud: relative outputs only")
    later = 3_000_000_000  # a matching pair afterwards is fused: the only metric outputs are its own
    send_pair(g, pubs, scene, scan.points_n3, later, later + 10_000_000)
    g.wait_for(lambda: g.received["completed_depth"] and g.received["depth"] and len(g.received["relative_depth"]) == 2,
               "fused output of the matching pair")
    assert [stamp_ns(m) for m in g.received["depth"]] == [later]
    assert [stamp_ns(m) for m in g.received["relative_depth"]] == [1_000_000_000, later]
    assert g.node.lidar.stats.with_cloud == 1 and g.node.stats.processed == 2
    g.wait_for(lambda: any(v["frames_without_cloud"] == "1" and v["frames_with_cloud"] == "1"
                           for v in map(values_of, statuses(g, ": lidar alignment"))), "frames without a cloud counted")


def test_the_camera_never_waits_for_the_lidar(fusion_graph, scene_and_scan):
    """Used to: images waited in the synchronizer for their cloud (a 0.5 s dropout lost every frame, not even
    relative depth). Now a frame's relative outputs go out before its cloud is even sent; the cloud that comes after
    the image (within the slop) is still bound to it, and the metric outputs follow."""
    scene, scan = scene_and_scan
    g = fusion_graph()
    stamp = 4_000_000_000
    pubs = publishers(g)
    pubs["info"].publish(camera_to_camera_info(scene.camera, header(stamp, "camera_optical")))
    g.wait_for(lambda: g.node._camera_info is not None, "camera_info")
    pubs["image"].publish(numpy_to_image(scene.rgb_hwc_u8, "rgb8", header(stamp, "camera_optical")))
    g.wait_for(lambda: g.received["relative_depth"] and g.received["relative_uncertainty"], "relative outputs")
    assert not g.received["depth"] and g.node.lidar.stats.clouds_received == 0
    pubs["cloud"].publish(xyz_to_pointcloud2(scan.points_n3, header(stamp + 40_000_000, "lidar")))  # 40 ms later
    g.wait_for(lambda: g.received["depth"] and g.received["completed_depth"], "metric outputs after the cloud")
    assert [stamp_ns(m) for m in g.received["depth"]] == [stamp]
    assert abs_rel(image_to_array(g.received["depth"][0]), scene.depth_hw_m) < 0.03
    assert g.node.lidar.stats.with_cloud == 1 and g.node.outputs.metric_stats.frames["lidar"] == 1


def test_negative_stamps_are_counted_and_pairing_goes_on(fusion_graph, scene_and_scan):
    """An image refused for its stamp is never published anywhere (it used to go out on the relative topics while
    the LiDAR was stale); images and clouds are counted apart."""
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
    assert (g.node.stats.refused["image"], g.node.stats.refused["cloud"]) == (1, 1)
    later = 2_000_000_000
    send_pair(g, pubs, scene, scan.points_n3, later, later)
    g.wait_for(lambda: g.received["completed_depth"] and g.received["depth"] and g.received["relative_depth"],
               "fused output after the bad stamps")
    assert [stamp_ns(m) for m in g.received["depth"]] == [later]
    assert [stamp_ns(m) for m in g.received["relative_depth"]] == [later]  # the refused image: nowhere
    assert "negative header stamp" in g.node.stats.last_error and g.node.lidar.stats.with_cloud == 1


def test_the_scale_is_held_through_a_lidar_gap_then_metric_output_stops_and_resumes(fusion_graph, scene_and_scan):
    scene, scan = scene_and_scan
    g = fusion_graph({**FUSION_OUTPUTS, "points": (PointCloud2, "depthfm/points")}, lidar_timeout_sec=0.5,
                     metric_hold_sec=1.0, publish_points=True)
    pubs = send(g, scene, scan.points_n3, 10_000_000_000, 10_000_000_000)
    g.wait_for(lambda: g.received["depth"] and g.received["uncertainty"], "the LiDAR frame")
    lidar_std = image_to_array(g.received["uncertainty"][0])
    g.wait_for(lambda: g.node.lidar.stats.is_stale(), "no pair for lidar_timeout_sec")

    def image_alone(stamp):
        """Send an image without a cloud; wait until the node has processed it and its relative depth (published
        on every frame) has arrived. Whether metres went out is read from the depth topic's order later."""
        processed = g.node.stats.processed
        pubs["image"].publish(numpy_to_image(scene.rgb_hwc_u8, "rgb8", header(stamp, "camera_optical")))
        g.wait_for(lambda: g.node.stats.processed == processed + 1 and
                   stamp in [stamp_ns(m) for m in g.received["relative_depth"]], f"frame {stamp}")

    image_alone(10_600_000_000)  # 0.6 s after the last accepted scale: held
    g.wait_for(lambda: len(g.received["depth"]) == 2 and len(g.received["uncertainty"]) == 2, "the held frame")
    assert [stamp_ns(m) for m in g.received["depth"]] == [10_000_000_000, 10_600_000_000]
    held_std = image_to_array(g.received["uncertainty"][1])
    assert np.all(held_std >= lidar_std) and held_std.mean() > lidar_std.mean()  # the scale's own doubt grows
    # same image (new ensemble noise), same held scale
    np.testing.assert_allclose(image_to_array(g.received["depth"][1]), image_to_array(g.received["depth"][0]),
                               rtol=0.05)
    g.wait_for(lambda: any(s.level == DiagnosticStatus.WARN and "holding the LiDAR scale for 0.6 s" in s.message
                           for s in statuses(g, ": metric scale")), "hold diagnostics")
    scales = {values_of(s)["source"]: values_of(s)["a"] for s in statuses(g, ": metric scale")}
    assert scales["hold"] == scales["lidar"]
    image_alone(12_000_000_000)  # 2 s old: past metric_hold_sec, no metres
    g.wait_for(lambda: any(s.level == DiagnosticStatus.WARN and "2.0 s old" in s.message
                           for s in statuses(g, ": metric scale")), "no-metric diagnostics")
    for k in range(3):  # clouds are back: metric output resumes within 3 pairs
        stamp = 12_100_000_000 + k * 100_000_000
        send_pair(g, pubs, scene, scan.points_n3, stamp, stamp + 10_000_000)
        # the next pair only once this one's metric step is done: a worker that is behind skips the completion
        g.wait_for(lambda: g.node.stats.metric_processed == 4 + k, f"the metric step of pair {k}")
        if sum(n for source, n in g.node.outputs.metric_stats.frames.items() if source) == 3:
            break
    g.wait_for(lambda: len(g.received["depth"]) == 3 and len(g.received["points"]) == 3 and
               len(g.received["completed_depth"]) == 2, "metric output after the gap")
    # Each topic is reliable and in order: the frame at 12.0 s (past the hold) is missing from every metre topic,
    # the held frame from completed_depth (its scale is not this frame's LiDAR fit).
    depth_stamps = [stamp_ns(m) for m in g.received["depth"]]
    assert depth_stamps[:2] == [10_000_000_000, 10_600_000_000] and depth_stamps[2] >= 12_100_000_000
    assert [stamp_ns(m) for m in g.received["points"]] == depth_stamps
    assert [stamp_ns(m) for m in g.received["completed_depth"]] == [depth_stamps[0], depth_stamps[2]]
    assert 12_000_000_000 in [stamp_ns(m) for m in g.received["relative_depth"]]


def test_metric_output_resumes_within_three_pairs_after_time_jumps_back(fusion_graph, scene_and_scan):
    """A bag loop or simulator restart 30 s back: 0 of 49 pairs used to be aligned afterwards."""
    scene, scan = scene_and_scan
    g = fusion_graph()
    pubs = send(g, scene, scan.points_n3, 100_000_000_000, 100_000_000_000)
    g.wait_for(lambda: len(g.received["depth"]) == 1, "metric before the jump")
    for k in range(3):
        stamp = 70_000_000_000 + k * 100_000_000
        send_pair(g, pubs, scene, scan.points_n3, stamp, stamp + 5_000_000)
        g.wait_for(lambda: g.node.stats.metric_processed == 2 + k, f"the metric step of pair {k} after the jump")
        if sum(n for source, n in g.node.outputs.metric_stats.frames.items() if source) > 1:
            break  # this frame got metres: its depth message is on its way
    g.wait_for(lambda: stamp in [stamp_ns(m) for m in g.received["depth"]], "metric output after the jump")
    assert [stamp_ns(m) for m in g.received["depth"]] == [100_000_000_000, stamp] and k == 0  # the first pair
    assert g.node.lidar.buffer.resets == 1


def test_without_any_cloud_relative_outputs_flow(fusion_graph, scene_and_scan):
    """lidar_timeout_sec 0 used to mean strict pairing: no cloud, no output. The camera never waits for the LiDAR
    now: without a single cloud every frame still gets its relative outputs, and no metres."""
    scene, _ = scene_and_scan
    g = fusion_graph(lidar_timeout_sec=0.0, lidar_wait_sec=0.1)
    pub = g.publisher(Image, "/image")
    for k in range(3):
        pub.publish(numpy_to_image(scene.rgb_hwc_u8, "rgb8", header(1_000_000_000 + k * 100_000_000,
                                                                       "camera_optical")))
        g.wait_for(lambda: len(g.received["relative_depth"]) == k + 1, f"relative output {k}")
    g.wait_for(lambda: g.node.lidar.stats.without_cloud == 3, "three frames without a cloud")
    g.wait_for(lambda: any("waiting for LiDAR clouds" in s.message for s in statuses(g, ": lidar alignment")),
               "diagnostics")
    assert not g.received["depth"] and not g.node.lidar.stats.is_stale()


def test_completion_checkpoint_gives_the_completion_models_depth(fusion_graph, scene_and_scan, tmp_path):
    from depthfm_ros.models.architectures import build_tiny_depthfm
    from depthfm_ros.models.completion import DepthCompletionFM

    widened = DepthCompletionFM.from_depthfm(build_tiny_depthfm(seed=1, noising_step=400))
    folder = widened.save_pretrained(tmp_path / "completion")
    scene, scan = scene_and_scan
    g = fusion_graph(completion_checkpoint=str(folder), num_steps=1)
    send(g, scene, scan.points_n3, 9_000_000_000, 9_000_000_000)
    g.wait_for(lambda: g.received["completed_depth"] and g.received["depth"], "completed depth")
    _, sparse, fused = expected_frame(scene, scan)
    expected = DepthCompletionFM.from_pretrained(folder).complete(scene.rgb_hwc_u8, sparse, num_steps=1,
                                                                  ensemble_size=2, processing_resolution=64, seed=0)
    # a random completion model's own fit may be refused (no metres from it): then the interpolation completes
    reference = fused.completed_hw_m if expected.depth_hw_m is None else expected.depth_hw_m
    np.testing.assert_allclose(image_to_array(g.received["completed_depth"][0]), reference, rtol=1e-4)
    np.testing.assert_allclose(image_to_array(g.received["depth"][0]), fused.depth_hw_m, rtol=1e-4)


def test_a_far_future_cloud_is_refused_and_pairing_goes_on(fusion_graph, scene_and_scan):
    """One cloud stamped 1000 s ahead of the node's clock used to become the sync's newest time and block every
    later pair; now it is refused (counted) and forgotten."""
    import time as _time

    scene, scan = scene_and_scan
    g = fusion_graph()
    pubs = publishers(g)
    now_ns = _time.time_ns()
    pubs["info"].publish(camera_to_camera_info(scene.camera, header(now_ns, "camera_optical")))
    g.wait_for(lambda: g.node._camera_info is not None, "camera_info")
    pubs["cloud"].publish(xyz_to_pointcloud2(scan.points_n3, header(now_ns + 1000 * 10**9, "lidar")))
    g.wait_for(lambda: g.node.stats.conversion_errors == 1, "the future cloud refused")
    assert "ahead of the clock" in g.node.stats.last_error
    send_pair(g, pubs, scene, scan.points_n3, now_ns, now_ns + 5_000_000)
    g.wait_for(lambda: g.received["depth"], "metric output after the future stamp")
    assert [stamp_ns(m) for m in g.received["depth"]] == [now_ns]


def test_every_refusal_is_counted_by_input_and_logged_once_per_kind(fusion_graph, scene_and_scan):
    """Used to: random encoding names gave 2,256 ERROR lines in 6 s (the throttle keyed on message text); CameraInfo
    and cloud refusals shared one throttled call site and malformed clouds were not counted as refused input. Now
    images, clouds and CameraInfo are counted apart and each kind of refusal is logged once per period."""
    from sensor_msgs.msg import PointField

    scene, scan = scene_and_scan
    g = fusion_graph(log_throttle_sec=60.0)
    lines = []
    g.node.error_log._log = lines.append
    pubs = publishers(g)
    rng = np.random.default_rng(0)
    for k in range(20):  # random encoding names: one kind
        msg = numpy_to_image(scene.rgb_hwc_u8, "rgb8", header(1_000_000_000 + k, "camera_optical"))
        msg.encoding = "".join(rng.choice(list("abcxyz0123456789_"), 10))
        pubs["image"].publish(msg)
        g.wait_for(lambda: g.node.stats.refused["image"] == k + 1, f"bad image {k}")
    for k in range(3):  # a cloud without x, y, z fields: refused on arrival, whether or not a frame binds it
        cloud = xyz_to_pointcloud2(scan.points_n3, header(2_000_000_000 + k, "lidar"))
        cloud.fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                        for i, name in enumerate("abc")]
        pubs["cloud"].publish(cloud)
        g.wait_for(lambda: g.node.stats.refused["cloud"] == k + 1, f"bad cloud {k}")
    bad_info = camera_to_camera_info(scene.camera, header(3_000_000_000, "camera_optical"))
    bad_info.k[0] = 0.0  # fx 0
    pubs["info"].publish(bad_info)
    g.wait_for(lambda: g.node._camera_info is not None, "camera_info")
    for k in range(2):  # two frames with the same bad CameraInfo: one refusal
        stamp = 3_000_000_000 + k * 100_000_000
        pubs["image"].publish(numpy_to_image(scene.rgb_hwc_u8, "rgb8", header(stamp, "camera_optical")))
        g.wait_for(lambda: stamp in [stamp_ns(m) for m in g.received["relative_depth"]], f"frame {k}")
    assert dict(g.node.stats.refused) == {"image": 20, "cloud": 3, "camera_info": 1}
    assert len(lines) == 3, lines
    assert [line.split(":")[0] for line in lines] == ["dropping bad image message", "dropping bad cloud message",
                                                      "dropping bad camera_info message"]
    g.wait_for(lambda: any(v["image_errors"] == "20" and v["cloud_errors"] == "3" and v["camera_info_errors"] == "1"
                           for v in g.diagnostics(": depth")), "refusals per input in /diagnostics")
    assert [stamp_ns(m) for m in g.received["relative_depth"]] == [3_000_000_000, 3_100_000_000]
