"""numpy <-> sensor_msgs: Image, CompressedImage, CameraInfo, PointCloud2. No rclpy needed.

Images are decoded by the numpy code below, never by cv_bridge: cv_bridge mis-decodes rows whose step is not a
whole number of pixels (wrong pixels, no error) and refuses big-endian images under numpy 2, which this code reads
right. sensor_msgs_py reads clouds when the robot has it (else the numpy path). Every malformed message raises
:class:`InputError` saying what is wrong; images over ``max_pixels`` are refused before any pixel is touched.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from ..errors import InputError
from ..geometry.camera import PinholeCamera
from .wire import (
    HOST_IS_BIGENDIAN,
    build_cloud_fields,
    byte_buffer,
    finite_rows,
    pack_points_array,
    strided_view,
    uint8_array,
    unpack_xyz,
)

try:
    from sensor_msgs_py import point_cloud2 as _POINT_CLOUD2
except ImportError:
    _POINT_CLOUD2 = None

# encoding -> (numpy scalar without byte order, channels), as sensor_msgs/image_encodings.hpp.
IMAGE_ENCODINGS = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4), "mono8": ("u1", 1),
    "rgb16": ("u2", 3), "bgr16": ("u2", 3), "rgba16": ("u2", 4), "bgra16": ("u2", 4), "mono16": ("u2", 1),
    **{f"{bits}{kind}C{channels}": (scalar, channels)
       for bits, kind, scalar in ((8, "U", "u1"), (8, "S", "i1"), (16, "U", "u2"), (16, "S", "i2"),
                                  (32, "S", "i4"), (32, "F", "f4"), (64, "F", "f8"))
       for channels in (1, 2, 3, 4)},
}
# colour encoding -> (channel indices giving R, G, B); "8UC3" is read as rgb, as cv_bridge does.
_RGB_CHANNELS = {"rgb8": [0, 1, 2], "8UC3": [0, 1, 2], "rgba8": [0, 1, 2], "bgr8": [2, 1, 0], "bgra8": [2, 1, 0],
                 "rgb16": [0, 1, 2], "rgba16": [0, 1, 2], "bgr16": [2, 1, 0], "bgra16": [2, 1, 0],
                 "mono8": [0, 0, 0], "8UC1": [0, 0, 0], "mono16": [0, 0, 0]}


def stamp_ns(stamp) -> int:
    """builtin_interfaces/Time (a header's ``stamp``) as integer nanoseconds."""
    return stamp.sec * 10**9 + stamp.nanosec


# ----------------------------------------------------------------------------------------------- Image


def _image_dtype(msg: Image) -> tuple[np.dtype, int]:
    """Check the message's size fields against its data; return its scalar dtype (with byte order) and channels."""
    if msg.encoding not in IMAGE_ENCODINGS:
        raise InputError(f"unsupported image encoding {msg.encoding!r}; supported: {sorted(IMAGE_ENCODINGS)}")
    if msg.height == 0 or msg.width == 0:
        raise InputError(f"image is empty ({msg.width}x{msg.height})")
    scalar, channels = IMAGE_ENCODINGS[msg.encoding]
    dtype = np.dtype((">" if msg.is_bigendian else "<") + scalar)
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes:
        raise InputError(f"image step {msg.step} is shorter than a {msg.encoding} row of {msg.width} pixels "
                         f"({row_bytes} bytes)")
    size = byte_buffer(msg.data).size
    if size != msg.step * msg.height:
        raise InputError(f"image data has {size} bytes, step {msg.step} x height {msg.height} needs "
                         f"{msg.step * msg.height}")
    return dtype, channels


def image_to_array(msg: Image) -> np.ndarray:
    """The pixels as stored: (H, W) for one channel, else (H, W, C); the encoding's dtype in host byte order.

    Row padding (``step``) and ``is_bigendian`` are honoured; the array owns its memory.
    """
    dtype, channels = _image_dtype(msg)
    pixels = strided_view(msg.data, dtype, (msg.height, msg.width, channels),
                          (msg.step, channels * dtype.itemsize, dtype.itemsize))
    array = pixels.astype(dtype.newbyteorder("="), order="C")
    return array[..., 0] if channels == 1 else array


def check_pixels(width: int, height: int, max_pixels: int, what: str = "image") -> None:
    """InputError for an image of more than ``max_pixels`` pixels (0 = no limit), before anything is decoded."""
    if max_pixels and width * height > max_pixels:
        raise InputError(f"{what} of {width}x{height} = {width * height} pixels is over max_image_pixels "
                         f"({max_pixels}); refused without decoding")


_TO_RGB = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
           "mono8": cv2.COLOR_GRAY2RGB, "8UC1": cv2.COLOR_GRAY2RGB}  # rgb8 / 8UC3 are copied as they are


def image_to_rgb(msg: Image, max_pixels: int = 0) -> np.ndarray:
    """The model input: RGB uint8 (H, W, 3) from any colour or mono encoding (alpha dropped, 16 bit >> 8).

    8-bit images are read in one pass straight from the message buffer (row padding honoured); the result owns
    its memory."""
    if msg.encoding not in _RGB_CHANNELS:
        raise InputError(f"image encoding {msg.encoding!r} is not a colour or mono image; "
                         f"supported: {sorted(_RGB_CHANNELS)}")
    check_pixels(msg.width, msg.height, max_pixels)
    dtype, channels = _image_dtype(msg)
    if dtype.itemsize == 1:
        pixels = strided_view(msg.data, dtype, (msg.height, msg.width, channels), (msg.step, channels, 1))
        if msg.encoding in _TO_RGB:
            return cv2.cvtColor(pixels if channels > 1 else pixels[..., 0], _TO_RGB[msg.encoding])
        return np.array(pixels, order="C")
    array = image_to_array(msg)
    if array.ndim == 2:
        array = array[..., None]
    rgb = np.ascontiguousarray(array[..., _RGB_CHANNELS[msg.encoding]])
    return (rgb >> 8).astype(np.uint8)


def numpy_to_image(array: np.ndarray, encoding: str, header) -> Image:
    """An Image of ``array`` ((H, W) or (H, W, C)) whose dtype must be the encoding's; host byte order, no padding."""
    if encoding not in IMAGE_ENCODINGS:
        raise InputError(f"unsupported image encoding {encoding!r}; supported: {sorted(IMAGE_ENCODINGS)}")
    scalar, channels = IMAGE_ENCODINGS[encoding]
    array = np.asarray(array)
    if array.dtype != np.dtype(scalar):
        raise InputError(f"{encoding} needs dtype {np.dtype(scalar)}, got {array.dtype}")
    shape_channels = 1 if array.ndim == 2 else (array.shape[2] if array.ndim == 3 else None)
    if shape_channels != channels or array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{encoding} needs a non-empty array of {channels} channel(s), got shape {array.shape}")
    height, width = array.shape[:2]
    msg = Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=int(HOST_IS_BIGENDIAN),
                step=width * channels * array.dtype.itemsize)
    msg.data = uint8_array(array)  # after construction: the constructor copies data element by element
    return msg


def compressed_size(encoded: np.ndarray, format_: str) -> tuple[int, int]:
    """(width, height) from a compressed image's header (Pillow reads the header only), without decoding it."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(encoded.tobytes())) as header:
            return header.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"compressed image ({format_!r}, {encoded.size} bytes) has no readable image header: "
                         f"{exc}") from exc


def compressed_image_to_rgb(msg, max_pixels: int = 0) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg, png, ...) -> RGB uint8 (H, W, 3). With ``max_pixels`` the size is read
    from the header first and a larger image is refused undecoded (a 62 KB PNG can hold 8000x8000 zeros)."""
    encoded = byte_buffer(msg.data)
    if encoded.size == 0:
        raise InputError(f"compressed image ({msg.format!r}) has no data")
    if max_pixels:
        check_pixels(*compressed_size(encoded, msg.format), max_pixels, f"compressed image ({msg.format!r})")
    try:
        bgr = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise InputError(f"cannot decode compressed image ({msg.format!r}): {exc}") from exc
    if bgr is None:
        raise InputError(f"cannot decode compressed image ({msg.format!r}, {encoded.size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------------------------- CameraInfo


def camera_info_to_camera(msg: CameraInfo) -> PinholeCamera:
    """Intrinsics K, D and size of a CameraInfo. Binning and a partial ROI are refused, not silently ignored."""
    full_roi = (msg.roi.x_offset, msg.roi.y_offset) == (0, 0) and msg.roi.width in (0, msg.width) \
        and msg.roi.height in (0, msg.height)
    if msg.binning_x > 1 or msg.binning_y > 1 or not full_roi:
        raise InputError("CameraInfo with binning or a region of interest is not supported")
    if msg.width == 0 or msg.height == 0:
        raise InputError("CameraInfo has no image size (is the camera calibrated?)")
    K, D, P = (np.asarray(v, np.float64) for v in (msg.k, msg.d, msg.p))
    if not (np.all(np.isfinite(K)) and np.all(np.isfinite(D)) and np.all(np.isfinite(P))):
        raise InputError("CameraInfo K, D or P holds NaN or inf")
    camera = PinholeCamera(msg.width, msg.height, K.reshape(3, 3), D, msg.distortion_model,
                           P.reshape(3, 4) if P.size == 12 else None)  # refuses fx, fy <= 0, unknown models
    if K[8] != 1.0:
        raise InputError(f"CameraInfo K[2][2] must be 1, got {K[8]:g}")
    expected = D_LENGTHS.get(msg.distortion_model)
    if expected is not None and D.size not in (0, *expected):
        raise InputError(f"CameraInfo distortion model {msg.distortion_model!r} takes {' or '.join(map(str, expected))}"
                         f" coefficients, got {D.size}")
    return camera


def camera_to_camera_info(camera: PinholeCamera, header) -> CameraInfo:
    """CameraInfo of ``camera`` (at its own size): K, D, R = identity, and P (``camera.P``, else [K | 0]), which is
    what depth_image_proc and image_geometry read for a rectified image."""
    P = camera.P if camera.P is not None else np.hstack([camera.K, np.zeros((3, 1))])
    return CameraInfo(header=header, width=camera.width, height=camera.height,
                      distortion_model=camera.distortion_model if camera.distortion_model not in ("", "none")
                      else "plumb_bob",
                      d=camera.D.tolist(), k=camera.K.ravel(), r=np.eye(3).ravel(), p=P.ravel())


# ----------------------------------------------------------------------------------------------- PointCloud2


def pointcloud2_to_xyz(msg: PointCloud2, keep_invalid: bool = False) -> np.ndarray:
    """x, y, z of any PointCloud2 as (N, 3) (float64 if a coordinate is float64, else float32).

    Points with a NaN/inf coordinate are dropped unless ``keep_invalid`` (then N = width * height, row-major).
    sensor_msgs_py reads the cloud when installed and able (one dtype, no row padding); else pointcloud.unpack_xyz.
    """
    unpadded = msg.row_step == msg.width * msg.point_step
    if _POINT_CLOUD2 is not None and unpadded:
        try:
            xyz = _POINT_CLOUD2.read_points_numpy(msg, field_names=("x", "y", "z"), skip_nans=False)
        except (AssertionError, ValueError, KeyError, TypeError):
            pass  # mixed dtypes or odd layouts: the numpy path below handles them or says why not
        else:
            xyz = np.asarray(xyz).reshape(-1, 3)
            return xyz if keep_invalid else finite_rows(xyz)
    fields = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    return unpack_xyz(msg.data, fields, msg.point_step, msg.width, msg.height, bool(msg.is_bigendian),
                      msg.row_step, keep_invalid)


def xyz_to_pointcloud2(points: np.ndarray, header, rgb: np.ndarray | None = None,
                       organized_shape: tuple[int, int] | None = None) -> PointCloud2:
    """A PointCloud2 (x, y, z float32 [+ rgb]) of points (N, 3) or organized (h, w, 3); ``rgb`` uint8, same shape.

    ``organized_shape`` (h, w) lays (N, 3) points out as h rows of w (h * w = N); (h, w, 3) points are organized
    already. ``is_dense`` is True when no coordinate is NaN/inf.
    """
    points = np.asarray(points)
    data = pack_points_array(points, rgb)
    n_points = points.size // 3
    if organized_shape is None:
        organized_shape = points.shape[:2] if points.ndim == 3 else (1, n_points)
    height, width = (int(side) for side in organized_shape)
    if height * width != n_points:
        raise InputError(f"organized shape {organized_shape} does not hold {n_points} points")
    fields, point_step = build_cloud_fields(rgb is not None)
    msg = PointCloud2(header=header, height=height, width=width,
                      fields=[PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
                              for f in fields],
                      is_bigendian=HOST_IS_BIGENDIAN, point_step=point_step, row_step=point_step * width,
                      is_dense=bool(np.isfinite(points).all()))
    msg.data = uint8_array(data)  # after construction: the constructor copies data element by element
    return msg


def output_camera(info: CameraInfo | None, width: int, height: int,
                  rectified: bool = False) -> tuple[PinholeCamera | None, str]:
    """The camera of the output image (``width`` x ``height``) for projection and points, or (None, why not).

    Like image_geometry: an image that is ``rectified`` (image_rect), or whose D is all zero, uses P's fx, fy, cx,
    cy (:meth:`PinholeCamera.rectified`); a raw distorted image keeps K and D. A calibration whose aspect ratio
    differs from the image's by more than 1 % is refused (a calibration of another camera mode)."""
    if info is None:
        return None, "no camera_info received yet"
    try:
        camera = camera_info_to_camera(info)
    except InputError as exc:
        return None, str(exc)
    sx, sy = width / camera.width, height / camera.height
    if abs(sx / sy - 1.0) > 0.01:
        return None, (f"camera_info is {camera.width}x{camera.height}, the image {width}x{height}: aspect ratios "
                      f"differ by {100 * abs(sx / sy - 1):.1f} % (a calibration of another camera mode?)")
    if rectified or not camera.is_distorted:
        camera = camera.rectified()
    return (camera if (camera.width, camera.height) == (width, height) else camera.scaled(width, height)), ""


D_LENGTHS = {"plumb_bob": (5,), "rational_polynomial": (8, 12, 14)}


def output_camera_info(info: CameraInfo, camera: PinholeCamera, header) -> CameraInfo:
    """The CameraInfo of the published depth, ``camera`` (:func:`output_camera`, rectified), with ``header``:
    ``info`` itself when it already says exactly that (its size, no distortion, R = identity, K = P's 3x3); else
    ``camera``'s own (D = 0, K from P, R = identity), so a consumer reading K and D is as right as one reading P."""
    as_is = (info.width, info.height) == (camera.width, camera.height) and not camera.is_distorted \
        and not np.any(np.asarray(info.d)) and np.array_equal(np.asarray(info.r), np.eye(3).ravel()) \
        and camera.P is not None and np.array_equal(np.asarray(info.k).reshape(3, 3), camera.P[:, :3]) \
        and np.array_equal(np.asarray(info.p).reshape(3, 4), camera.P)
    if not as_is:
        return camera_to_camera_info(camera, header)
    out = CameraInfo()
    out.header = header
    out.height, out.width = info.height, info.width
    out.distortion_model, out.d, out.k, out.r, out.p = info.distortion_model, info.d, info.k, info.r, info.p
    out.binning_x, out.binning_y, out.roi = info.binning_x, info.binning_y, info.roi
    return out
