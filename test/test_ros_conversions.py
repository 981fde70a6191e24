"""numpy <-> sensor_msgs conversions: every encoding byte for byte, padding, endianness, bad messages, and which
code path (cv_bridge / sensor_msgs_py or numpy) is taken."""

import importlib
import sys

import pytest

pytest.importorskip("sensor_msgs.msg")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from depthfm_ros.errors import InputError  # noqa: E402
from depthfm_ros.geometry.camera import PinholeCamera
from depthfm_ros.ros import conversions  # noqa: E402
from depthfm_ros.ros.conversions import (  # noqa: E402
    camera_info_to_camera,
    camera_to_camera_info,
    compressed_image_to_rgb,
    image_to_array,
    image_to_rgb,
    numpy_to_image,
    output_camera,  # noqa: E402
    pointcloud2_to_xyz,
    xyz_to_pointcloud2,
)
from depthfm_ros.ros.wire import FLOAT32, FLOAT64, HOST_IS_BIGENDIAN

HEADER = Header(frame_id="camera_optical")
HEADER.stamp.sec, HEADER.stamp.nanosec = 12, 345


@pytest.fixture(autouse=True)
def numpy_paths(monkeypatch):
    """Pin the numpy paths even on a machine that has cv_bridge / sensor_msgs_py."""
    monkeypatch.setattr(conversions, "_POINT_CLOUD2", None)


def image_msg(array, encoding, pad=0, bigendian=False) -> Image:
    """An Image written by hand: each row in the requested byte order followed by ``pad`` junk bytes."""
    height, width = array.shape[:2]
    stored = array.astype(array.dtype.newbyteorder(">" if bigendian else "<"))
    data = b"".join(stored[row].tobytes() + b"\xee" * pad for row in range(height))
    return Image(header=HEADER, height=height, width=width, encoding=encoding, is_bigendian=int(bigendian),
                 step=len(data) // height, data=data)


def sample(encoding, height=3, width=5) -> np.ndarray:
    scalar, channels = conversions.IMAGE_ENCODINGS[encoding]
    dtype = np.dtype(scalar)
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype.kind == "f":
        return np.random.default_rng(1).normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return np.random.default_rng(1).integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1", "32FC1", "8UC1", "8UC3", "16SC1",
             "32SC1", "64FC1", "32FC3", "rgb16"]


# --------------------------------------------------------------------------------------------------- Image


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("bigendian", [False, True])
def test_image_to_array_every_encoding_padding_and_byte_order(encoding, pad, bigendian):
    array = sample(encoding)
    parsed = image_to_array(image_msg(array, encoding, pad, bigendian))
    assert parsed.dtype == array.dtype and parsed.dtype.isnative and parsed.shape == array.shape
    np.testing.assert_array_equal(parsed, array)
    assert parsed.flags.c_contiguous and parsed.flags.writeable


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1", "mono16", "mono8", "rgb8", "bgra8", "64FC1"])
def test_numpy_to_image_round_trip(encoding):
    array = sample(encoding, 4, 7)
    msg = numpy_to_image(array, encoding, HEADER)
    _, channels = conversions.IMAGE_ENCODINGS[encoding]
    assert (msg.height, msg.width, msg.encoding) == (4, 7, encoding)
    assert msg.step == 7 * channels * array.dtype.itemsize and len(msg.data) == msg.step * 4
    assert msg.is_bigendian == HOST_IS_BIGENDIAN and msg.header == HEADER
    np.testing.assert_array_equal(image_to_array(msg), array)


def test_numpy_to_image_rejects_wrong_dtype_and_shape():
    with pytest.raises(InputError, match="float32"):
        numpy_to_image(np.zeros((2, 2)), "32FC1", HEADER)
    with pytest.raises(InputError, match="3 channel"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8", HEADER)
    with pytest.raises(InputError, match="non-empty"):
        numpy_to_image(np.zeros((0, 2), np.float32), "32FC1", HEADER)
    with pytest.raises(InputError, match="unsupported"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "yuv422", HEADER)


def test_image_to_rgb_channel_orders():
    rgb = np.array([[[30, 20, 10], [255, 0, 7]]], np.uint8)
    alpha = np.full((1, 2, 1), 99, np.uint8)
    for encoding, stored in [("rgb8", rgb), ("8UC3", rgb), ("bgr8", rgb[..., ::-1]),
                             ("rgba8", np.concatenate([rgb, alpha], -1)),
                             ("bgra8", np.concatenate([rgb[..., ::-1], alpha], -1))]:
        out = image_to_rgb(image_msg(np.ascontiguousarray(stored), encoding, pad=2))
        assert out.dtype == np.uint8 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, rgb, err_msg=encoding)
    gray = np.array([[0, 17, 255]], np.uint8)
    np.testing.assert_array_equal(image_to_rgb(image_msg(gray, "mono8")), np.repeat(gray[..., None], 3, axis=2))
    gray16 = np.array([[0x1234, 0xFFFF]], np.uint16)
    np.testing.assert_array_equal(image_to_rgb(image_msg(gray16, "mono16", bigendian=True)),
                                  [[[0x12] * 3, [0xFF] * 3]])
    bgr16 = np.array([[[0x0100, 0x0200, 0x0300]]], np.uint16)
    np.testing.assert_array_equal(image_to_rgb(image_msg(bgr16, "bgr16")), [[[3, 2, 1]]])


@pytest.mark.parametrize("encoding", ["rgb8", "8UC3", "bgr8", "rgba8", "bgra8", "mono8", "8UC1"])
@pytest.mark.parametrize("pad", [0, 5])
def test_image_to_rgb_fast_paths_equal_the_channel_selection(encoding, pad):
    """The one-pass 8-bit paths (copy / cv2.cvtColor straight from the buffer) give exactly what selecting the
    channels of image_to_array gives, with odd row padding, in memory of their own."""
    array = sample(encoding, 37, 53)
    msg = image_msg(array, encoding, pad)
    out = image_to_rgb(msg)
    full = image_to_array(msg)
    full = full[..., None] if full.ndim == 2 else full
    np.testing.assert_array_equal(out, full[..., conversions._RGB_CHANNELS[encoding]])
    assert out.flags.c_contiguous and out.flags.owndata and out.shape == (37, 53, 3)
    out[:] = 0  # writing to the result never touches the message
    np.testing.assert_array_equal(image_to_array(msg)[..., 0] if full.shape[2] > 1 else image_to_array(msg),
                                  full[..., 0] if full.shape[2] > 1 else full[..., 0])


def test_bad_images_raise_input_error():
    good = image_msg(sample("rgb8"), "rgb8")
    cases = {
        "unsupported image encoding": dict(encoding="bayer_rggb8"),
        "empty": dict(height=0, width=0, step=0, data=b""),
        "shorter than": dict(step=good.width * 3 - 1),
        "data has": dict(data=bytes(good.data)[:-1]),
    }
    for message, change in cases.items():
        msg = image_msg(sample("rgb8"), "rgb8")
        for key, value in change.items():
            setattr(msg, key, value)
        with pytest.raises(InputError, match=message):
            image_to_array(msg)
        with pytest.raises(InputError):
            image_to_rgb(msg)
    with pytest.raises(InputError, match="not a colour"):
        image_to_rgb(image_msg(sample("32FC1"), "32FC1"))


def test_compressed_image_to_rgb():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    _, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(header=HEADER, format="png", data=png.tobytes())
    np.testing.assert_array_equal(compressed_image_to_rgb(msg), rgb)
    with pytest.raises(InputError, match="cannot decode"):
        compressed_image_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg at all"))
    with pytest.raises(InputError, match="no data"):
        compressed_image_to_rgb(CompressedImage(format="jpeg"))


# --------------------------------------------------------------------------------------------------- CameraInfo


def test_camera_info_round_trip_at_output_resolution():
    camera = PinholeCamera(640, 480, [[500.0, 0, 319.5], [0, 510.0, 239.5], [0, 0, 1]], D=[0.1, -0.2, 0, 0, 0.01])
    output = camera.scaled(320, 240)
    info = camera_to_camera_info(output, HEADER)
    assert (info.width, info.height, info.distortion_model, info.header) == (320, 240, "plumb_bob", HEADER)
    np.testing.assert_array_equal(np.reshape(info.k, (3, 3)), output.K)
    np.testing.assert_array_equal(np.reshape(info.p, (3, 4)), np.hstack([output.K, np.zeros((3, 1))]))
    np.testing.assert_array_equal(np.reshape(info.r, (3, 3)), np.eye(3))
    np.testing.assert_array_equal(info.d, camera.D)
    back = camera_info_to_camera(info)
    assert (back.width, back.height, back.distortion_model) == (320, 240, "plumb_bob")
    np.testing.assert_array_equal(back.K, output.K)
    np.testing.assert_array_equal(back.D, camera.D)
    assert camera_to_camera_info(PinholeCamera(4, 3, np.eye(3), distortion_model="none"), HEADER) \
        .distortion_model == "plumb_bob"


def test_bad_camera_info_raises_input_error():
    with pytest.raises(InputError, match="no image size"):
        camera_info_to_camera(CameraInfo())
    with pytest.raises(InputError, match="fx, fy"):
        camera_info_to_camera(CameraInfo(width=4, height=3))  # uncalibrated: K all zero
    info = camera_to_camera_info(PinholeCamera(4, 3, np.eye(3)), HEADER)
    info.binning_x = 2
    with pytest.raises(InputError, match="binning"):
        camera_info_to_camera(info)


def _calibrated(**changes) -> CameraInfo:
    info = camera_to_camera_info(PinholeCamera(1280, 720, [[900.0, 0, 639.5], [0, 900.0, 359.5], [0, 0, 1]],
                                               D=[0.1, -0.05, 0, 0, 0.01]), HEADER)
    for name, value in changes.items():
        setattr(info, name, value)
    return info


@pytest.mark.parametrize("changes, message", [
    ({"k": [900.0, 0, 639.5, 0, 900.0, 359.5, 0, 0, 0.0]}, "K\\[2\\]\\[2\\] must be 1"),
    ({"d": [0.1, -0.05, 0.0, 0.0]}, "takes 5 coefficients, got 4"),
    ({"d": [0.1, float("nan"), 0.0, 0.0, 0.0]}, "NaN or inf"),
    ({"k": [float("inf"), 0, 639.5, 0, 900.0, 359.5, 0, 0, 1.0]}, "NaN or inf"),
    ({"distortion_model": "rational_polynomial"}, "takes 8 or 12 or 14 coefficients, got 5"),
])
def test_camera_info_is_validated_not_trusted(changes, message):
    with pytest.raises(InputError, match=message):
        camera_info_to_camera(_calibrated(**changes))


def test_a_calibration_of_another_aspect_ratio_is_refused_not_stretched():
    """A 1280x720 calibration on a 160x120 image was rescaled to fx 128, fy 170.7 without a word."""
    camera, why = output_camera(_calibrated(), 160, 120)
    assert camera is None and "aspect ratios differ by 25.0 %" in why
    scaled, why = output_camera(_calibrated(), 640, 360)  # the same camera mode, binned: fine
    assert why == "" and (scaled.fx, scaled.fy) == (450.0, 450.0)


# --------------------------------------------------------------------------------------------------- PointCloud2


def test_xyz_to_pointcloud2_organized_with_rgb_round_trip():
    points = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    points[1, 1] = np.nan
    rgb = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    msg = xyz_to_pointcloud2(points, HEADER, rgb=rgb)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (2, 3, 16, 48)
    assert len(msg.data) == msg.row_step * msg.height and not msg.is_dense and msg.header == HEADER
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == \
        [("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
         ("rgb", 12, PointField.FLOAT32, 1)]
    assert msg.is_bigendian == HOST_IS_BIGENDIAN
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg), np.delete(points.reshape(-1, 3), 4, axis=0))
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg, keep_invalid=True), points.reshape(-1, 3))


def test_xyz_to_pointcloud2_dense_and_organized_shape():
    points = np.random.default_rng(0).normal(size=(6, 3))
    msg = xyz_to_pointcloud2(points, HEADER)
    assert (msg.height, msg.width, msg.point_step, msg.row_step, msg.is_dense) == (1, 6, 12, 72, True)
    np.testing.assert_allclose(pointcloud2_to_xyz(msg), points, rtol=1e-6)
    assert (xyz_to_pointcloud2(points, HEADER, organized_shape=(2, 3)).height,) == (2,)
    with pytest.raises(InputError, match="does not hold"):
        xyz_to_pointcloud2(points, HEADER, organized_shape=(4, 2))


def test_pointcloud2_to_xyz_foreign_layout():
    """A big-endian cloud as some driver might send: float64 y/z, float32 x, a ring field, padded points and rows."""
    dtype = np.dtype({"names": ["ring", "x", "y", "z"], "formats": [">u2", ">f4", ">f8", ">f8"],
                      "offsets": [0, 3, 9, 17], "itemsize": 28})
    cloud = np.zeros((2, 2), dtype)
    xyz = np.array([[1.5, -2.0, 3.25], [np.inf, 0, 0], [0.5, 0.25, 100.0], [7.0, 8.0, 9.0]])
    for i, axis in enumerate("xyz"):
        cloud[axis] = xyz[:, i].reshape(2, 2)
    data = b"".join(row.tobytes() + b"\x00" * 4 for row in cloud)
    fields = [PointField(name="ring", offset=0, datatype=PointField.UINT16, count=1)] + [
        PointField(name=axis, offset=offset, datatype=code, count=1)
        for axis, offset, code in (("x", 3, FLOAT32), ("y", 9, FLOAT64), ("z", 17, FLOAT64))]
    msg = PointCloud2(header=HEADER, height=2, width=2, fields=fields, is_bigendian=True, point_step=28,
                      row_step=60, data=data, is_dense=False)
    parsed = pointcloud2_to_xyz(msg)
    assert parsed.dtype == np.float64
    np.testing.assert_array_equal(parsed, xyz[[0, 2, 3]])
    msg.row_step = 20
    with pytest.raises(InputError, match="row_step"):
        pointcloud2_to_xyz(msg)


# --------------------------------------------------------------------------------------------------- code paths


def test_numpy_paths_are_chosen_without_cv_bridge_and_sensor_msgs_py(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv_bridge", None)  # None in sys.modules makes the import fail
    monkeypatch.setitem(sys.modules, "sensor_msgs_py", None)
    try:
        reloaded = importlib.reload(conversions)
        assert reloaded._POINT_CLOUD2 is None
        np.testing.assert_array_equal(reloaded.image_to_array(image_msg(sample("mono16"), "mono16")),
                                      sample("mono16"))
    finally:
        monkeypatch.undo()
        importlib.reload(conversions)


class WrongBridge:
    """cv_bridge as it behaves on padded rows and big-endian images: wrong pixels, or an error."""

    def __init__(self):
        self.calls = 0

    def imgmsg_to_cv2(self, msg, desired_encoding):
        self.calls += 1
        return np.zeros((msg.height, msg.width, 3), np.uint8)


@pytest.mark.parametrize("pad, bigendian", [(1, False), (7, False), (0, True), (3, True)])
def test_cv_bridge_is_never_used_so_padded_and_big_endian_rows_decode_right(monkeypatch, pad, bigendian):
    bridge = WrongBridge()
    module = type(sys)("cv_bridge")
    module.CvBridge = lambda: bridge
    monkeypatch.setitem(sys.modules, "cv_bridge", module)
    try:
        reloaded = importlib.reload(conversions)
        for encoding in ("rgb8", "bgr8", "rgb16", "mono16"):
            msg = image_msg(sample(encoding), encoding, pad=pad, bigendian=bigendian)
            rgb = reloaded.image_to_rgb(msg)
            array = sample(encoding)
            array = array[..., None] if array.ndim == 2 else array
            expected = array[..., {"rgb8": [0, 1, 2], "bgr8": [2, 1, 0], "rgb16": [0, 1, 2], "mono16": [0, 0, 0]}[
                encoding]]
            expected = (expected >> 8).astype(np.uint8) if expected.dtype == np.uint16 else expected
            np.testing.assert_array_equal(rgb, expected, err_msg=encoding)
        assert bridge.calls == 0
    finally:
        monkeypatch.undo()
        importlib.reload(conversions)


def test_images_over_max_pixels_are_refused_before_decoding():
    big = image_msg(np.zeros((30, 40, 3), np.uint8), "rgb8")
    with pytest.raises(InputError, match="1200 pixels is over max_image_pixels"):
        image_to_rgb(big, max_pixels=1000)
    assert image_to_rgb(big, max_pixels=1200).shape == (30, 40, 3)
    from sensor_msgs.msg import CompressedImage

    ok, png = cv2.imencode(".png", np.zeros((30, 40, 3), np.uint8))
    msg = CompressedImage(format="png", data=png.tobytes())
    with pytest.raises(InputError, match="over max_image_pixels"):
        conversions.compressed_image_to_rgb(msg, max_pixels=1000)
    assert conversions.compressed_image_to_rgb(msg, max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(InputError, match="no readable image header"):
        conversions.compressed_image_to_rgb(CompressedImage(format="png", data=b"\x89PNG garbage"), max_pixels=10)


BOMB = """
import resource, sys
import cv2, numpy as np
from sensor_msgs.msg import CompressedImage
from depthfm_ros.errors import InputError
from depthfm_ros.ros.conversions import compressed_image_to_rgb
ok, png = cv2.imencode(".png", np.zeros((8000, 8000), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
msg = CompressedImage(format="png", data=png.tobytes())
del png
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    compressed_image_to_rgb(msg, max_pixels=16_777_216)
    print("DECODED")
except InputError as exc:
    print("REFUSED", len(msg.data), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, exc)
"""


def test_a_decompression_bomb_is_refused_with_bounded_memory():
    """A ~60 KB PNG of 8000x8000 zeros grew the node from 0.46 to 4.95 GiB; now the header refuses it."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", BOMB], capture_output=True, text=True, timeout=120).stdout.split()
    assert out[0] == "REFUSED", out
    assert int(out[1]) < 200_000 and int(out[2]) < 50  # a small file; peak RSS grew by under 50 MB


class FakePointCloud2Module:
    def __init__(self, fail=False):
        self.calls, self.fail = 0, fail

    def read_points_numpy(self, msg, field_names, skip_nans):
        self.calls += 1
        if self.fail:
            raise AssertionError("All fields need to have the same datatype")
        assert field_names == ("x", "y", "z") and not skip_nans
        return np.array([[1.0, 2.0, 3.0], [np.nan, 0, 0]], np.float32)


def test_sensor_msgs_py_is_used_when_present_and_able(monkeypatch):
    msg = xyz_to_pointcloud2(np.array([[4.0, 5.0, 6.0]]), HEADER)
    reader = FakePointCloud2Module()
    monkeypatch.setattr(conversions, "_POINT_CLOUD2", reader)
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg), [[1, 2, 3]])
    assert reader.calls == 1
    failing = FakePointCloud2Module(fail=True)
    monkeypatch.setattr(conversions, "_POINT_CLOUD2", failing)
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg), [[4, 5, 6]])  # numpy path takes over
    assert failing.calls == 1


def test_stamp_ns():
    assert conversions.stamp_ns(HEADER.stamp) == 12 * 10**9 + 345
