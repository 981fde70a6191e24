"""bagio: synthetic camera + LiDAR bags in sqlite3 and MCAP read back with rosbags; topic picking; CDR stamps."""

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from depthfm_ros.errors import InputError
from depthfm_ros.ros import bag as bagio
from depthfm_ros.ros import synthetic_bag as synbag
from depthfm_ros.ros.wire import unpack_xyz
from depthfm_ros.sim.synthetic import (
    T_CAM_LIDAR_DEFAULT,
    camera_path,
    default_camera,
    moved_scene,
    random_scene_spec,
    render_scene,
)

W, H, N = 64, 48, 3


@pytest.fixture(scope="module", params=bagio.STORAGES)
def bag(request, tmp_path_factory):
    return synbag.write_synthetic_bag(tmp_path_factory.mktemp(request.param) / "bag", N, W, H, rate_hz=10.0,
                                     storage=request.param)


def read_all(path):
    with AnyReader([path], default_typestore=bagio.typestore()) as reader:
        return [(conn.topic, conn.msgtype, log_ns, reader.deserialize(raw, conn.msgtype), raw)
                for conn, log_ns, raw in reader.messages()]


def stamp_ns(msg):
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def test_topics_types_counts_and_stamps(bag):
    topics = bagio.bag_topics(bag.path)
    assert {name: (t.msgtype, t.count) for name, t in topics.items()} == {
        "/camera/image_raw": (bagio.IMAGE_TYPE, N), "/camera/camera_info": (bagio.CAMERA_INFO_TYPE, N),
        "/lidar/points": (bagio.POINTCLOUD2_TYPE, N), "/tf_static": (bagio.TF_TYPE, 1)}
    assert bag.stamps_ns == tuple(synbag.SYNTHETIC_START_NS + k * 100_000_000 for k in range(N))
    messages = read_all(bag.path)
    per_frame = [m for m in messages if m[0] != "/tf_static"]
    assert [m[0] for m in per_frame] == ["/lidar/points", "/camera/camera_info", "/camera/image_raw"] * N
    for topic, _, log_ns, msg, raw in per_frame:  # same stamp per frame; log time = stamp + 0/1/2 ms
        assert stamp_ns(msg) in bag.stamps_ns and 0 <= log_ns - stamp_ns(msg) <= 2_000_000
        assert bagio.header_stamp_ns(raw) == stamp_ns(msg)
        assert msg.header.frame_id == (synbag.LIDAR_FRAME if topic == "/lidar/points" else synbag.CAMERA_FRAME)


def test_image_camera_info_and_cloud_decode_back(bag):
    camera = default_camera(W, H)
    spec = random_scene_spec(np.random.default_rng(3))
    messages = read_all(bag.path)
    images = [m[3] for m in messages if m[0] == "/camera/image_raw"]
    for k, image in enumerate(images):
        assert (image.encoding, image.width, image.height, image.step) == ("rgb8", W, H, 3 * W)
        expected = render_scene(moved_scene(spec, camera_path(k)), camera, np.random.default_rng(3)).rgb_hwc_u8
        np.testing.assert_array_equal(image.data.reshape(H, W, 3), expected)
    assert not np.array_equal(images[0].data, images[-1].data)  # the camera moves
    info = next(m[3] for m in messages if m[0] == "/camera/camera_info")
    np.testing.assert_allclose(info.k.reshape(3, 3), camera.K)
    np.testing.assert_allclose(info.p.reshape(3, 4)[:, :3], camera.K)
    clouds = [m[3] for m in messages if m[0] == "/lidar/points"]
    assert [c.width for c in clouds] == list(bag.points_per_scan) and min(bag.points_per_scan) > 100
    cloud = clouds[0]
    xyz = unpack_xyz(cloud.data, [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields], cloud.point_step,
                     cloud.width, cloud.height, cloud.is_bigendian)
    assert xyz.shape == (cloud.width, 3) and xyz.dtype == np.float32 and np.isfinite(xyz).all()
    ranges = np.linalg.norm(xyz, axis=1)
    assert 0.05 < ranges.min() and ranges.max() < 100.0


def test_camera_info_keeps_the_distortion_model():
    from depthfm_ros.geometry.camera import PinholeCamera

    build = synbag._Messages(bagio.typestore())
    header = build.header(0, synbag.CAMERA_FRAME)
    K = default_camera(W, H).K
    d8 = np.array([-0.3, 0.1, 0.001, 0.002, 0.01, 0.1, 0.02, 0.003])
    info = build.camera_info(PinholeCamera(W, H, K, d8, "rational_polynomial"), header)
    assert info.distortion_model == "rational_polynomial" and np.array_equal(info.d, d8)
    plain = build.camera_info(PinholeCamera(W, H, K, np.zeros(0), "none"), header)
    assert plain.distortion_model == "plumb_bob" and np.array_equal(plain.d, np.zeros(5))


def test_tf_static_holds_the_lidar_extrinsic(bag):
    transforms = bagio.static_transforms(bag.path)
    T = bagio.transform_between(transforms, synbag.CAMERA_FRAME, synbag.LIDAR_FRAME)
    np.testing.assert_allclose(T, T_CAM_LIDAR_DEFAULT, atol=1e-9)
    np.testing.assert_allclose(bagio.transform_between(transforms, synbag.LIDAR_FRAME, synbag.CAMERA_FRAME),
                               np.linalg.inv(T_CAM_LIDAR_DEFAULT), atol=1e-9)
    assert bagio.first_frame_id(bag.path, "/lidar/points") == synbag.LIDAR_FRAME


def test_read_raw_filters_by_stamp_and_keeps_order(bag):
    wanted = {bag.stamps_ns[1]}
    raws = list(bagio.read_raw(bag.path, {"/camera/image_raw", "/lidar/points"}, wanted))
    assert [r.topic for r in raws] == ["/lidar/points", "/camera/image_raw"]
    assert all(bagio.header_stamp_ns(r.cdr) == bag.stamps_ns[1] for r in raws)


def test_pick_topics_by_type_name_and_sibling():
    T = bagio.BagTopic
    topics = {t.name: t for t in [T("/left/image_raw", bagio.IMAGE_TYPE, 5), T("/right/image_raw", bagio.IMAGE_TYPE, 5),
                                  T("/left/camera_info", bagio.CAMERA_INFO_TYPE, 5),
                                  T("/right/camera_info", bagio.CAMERA_INFO_TYPE, 5)]}
    with pytest.raises(InputError, match="--image-topic"):
        bagio.pick_topics(topics)
    picked = bagio.pick_topics(topics, image="/right/image_raw")
    assert (picked.image.name, picked.camera_info.name, picked.lidar) == ("/right/image_raw", "/right/camera_info",
                                                                          None)
    with pytest.raises(InputError, match="not in the bag"):
        bagio.pick_topics(topics, image="/nope")
    with pytest.raises(InputError, match="no sensor_msgs/Image"):
        bagio.pick_topics({"/scan": T("/scan", bagio.POINTCLOUD2_TYPE, 3)})
    compressed = bagio.pick_topics({"/cam/image/compressed": T("/cam/image/compressed", bagio.COMPRESSED_IMAGE_TYPE, 2),
                                    "/cam/camera_info": T("/cam/camera_info", bagio.CAMERA_INFO_TYPE, 2)})
    assert compressed.compressed and compressed.camera_info.name == "/cam/camera_info"


def test_camera_only_bag_and_refusals(tmp_path):
    made = synbag.write_synthetic_bag(tmp_path / "cam", 2, 32, 24, lidar_pattern=None)
    assert set(bagio.bag_topics(made.path)) == {"/camera/image_raw", "/camera/camera_info"}
    assert made.points_per_scan == ()
    with pytest.raises(InputError, match="exists"):
        synbag.write_synthetic_bag(made.path, 1, 32, 24)
    with pytest.raises(InputError, match="storage"):
        synbag.write_synthetic_bag(tmp_path / "x", 1, 32, 24, storage="bag")
    with pytest.raises(InputError, match="does not exist"):
        bagio.bag_topics(tmp_path / "missing")
    with pytest.raises(InputError, match="CDR"):
        bagio.header_stamp_ns(b"\x00")
