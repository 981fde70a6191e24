"""Depth + intrinsics -> points, validity filters, and the PointCloud2 byte layout (pure numpy, no ROS import).

Frames and units follow REP-103/REP-118: points are in the camera optical frame (x right, y down, z forward),
in metres; invalid depth is NaN (0 and inf are treated as invalid too) and never becomes a point of a dense cloud.

Filters are pure functions returning a boolean ``keep`` mask of the depth's shape; combine them with ``&`` and
pass the result to :func:`depth_to_points` as ``valid_hw``.

The layout helpers speak the sensor_msgs/PointField vocabulary: a field is ``(name, offset, datatype, count)``
with the datatype codes below, and a cloud is ``height`` rows of ``width`` points, ``point_step`` bytes each.
"""

from __future__ import annotations

import sys
from typing import NamedTuple, Sequence

import numpy as np

from .camera import PinholeCamera
from .errors import InputError
from .processing import check_rgb

# sensor_msgs/PointField datatype codes and the numpy scalar each one is.
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
POINTFIELD_FORMATS = {INT8: "i1", UINT8: "u1", INT16: "i2", UINT16: "u2",
                      INT32: "i4", UINT32: "u4", FLOAT32: "f4", FLOAT64: "f8"}

HOST_IS_BIGENDIAN = sys.byteorder == "big"


class PointFieldSpec(NamedTuple):
    """One sensor_msgs/PointField: ``offset`` bytes into the point, ``count`` values of ``datatype``."""

    name: str
    offset: int
    datatype: int
    count: int = 1


class CameraPoints(NamedTuple):
    """Back-projected points. ``xyz`` float32 metres, (N, 3) dense or (h, w, 3) organized with NaN where invalid;
    ``rgb`` uint8 with the same leading shape, or None when no image was given."""

    xyz: np.ndarray
    rgb: np.ndarray | None


# --------------------------------------------------------------------------------------------- filters


def finite_depth_mask(depth_hw_m: np.ndarray) -> np.ndarray:
    """True where depth is a usable measurement: finite and > 0 (REP-118 NaN/inf/0 are not)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth_hw_m) & (depth_hw_m > 0)


def range_mask(depth_hw_m: np.ndarray, min_range_m: float = 0.0, max_range_m: float = np.inf) -> np.ndarray:
    """True where ``min_range_m <= depth <= max_range_m`` (range along the optical axis, as depth_image_proc)."""
    if not 0 <= min_range_m <= max_range_m:
        raise InputError(f"need 0 <= min_range_m <= max_range_m, got {min_range_m}, {max_range_m}")
    with np.errstate(invalid="ignore"):
        return (depth_hw_m >= min_range_m) & (depth_hw_m <= max_range_m)


def uncertainty_mask(depth_hw_m: np.ndarray, std_hw_m: np.ndarray, max_std_m: float | None = None,
                     max_relative_std: float | None = None) -> np.ndarray:
    """True where the depth standard deviation is small enough.

    ``max_std_m`` bounds the metric std (metres); ``max_relative_std`` bounds std / depth. None skips a test.
    A NaN std fails every test that is enabled.
    """
    if std_hw_m.shape != depth_hw_m.shape:
        raise InputError(f"std shape {std_hw_m.shape} differs from depth shape {depth_hw_m.shape}")
    keep = np.ones(depth_hw_m.shape, bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        if max_std_m is not None:
            keep &= std_hw_m <= max_std_m
        if max_relative_std is not None:
            keep &= std_hw_m <= max_relative_std * depth_hw_m
    return keep


def edge_mask(depth_hw_m: np.ndarray, max_neighbour_ratio: float = 1.1) -> np.ndarray:
    """Flying-pixel test: False where depth jumps to a 4-neighbour by more than ``max_neighbour_ratio``.

    The ratio ``max(d, d_n) / min(d, d_n)`` is the depth gradient relative to depth, so one threshold serves near
    and far. Both pixels either side of a jump are dropped; invalid neighbours (NaN, inf, <= 0) and the image border
    never drop a pixel.
    """
    if not max_neighbour_ratio >= 1:
        raise InputError(f"max_neighbour_ratio must be >= 1, got {max_neighbour_ratio}")
    depth = np.where(finite_depth_mask(depth_hw_m), depth_hw_m, np.nan)
    keep = np.ones(depth.shape, bool)
    with np.errstate(invalid="ignore"):
        across = _jumps(depth[:, :-1], depth[:, 1:], max_neighbour_ratio)
        keep[:, :-1] &= ~across
        keep[:, 1:] &= ~across
        down = _jumps(depth[:-1], depth[1:], max_neighbour_ratio)
        keep[:-1] &= ~down
        keep[1:] &= ~down
    return keep


def _jumps(a: np.ndarray, b: np.ndarray, max_ratio: float) -> np.ndarray:
    return np.maximum(a, b) > max_ratio * np.minimum(a, b)


def combined_mask(depth_hw_m: np.ndarray, std_hw_m: np.ndarray | None = None, *, min_range_m: float = 0.0,
                  max_range_m: float = 0.0, max_std_m: float = 0.0, max_relative_std: float = 0.0,
                  edge_ratio: float = 0.0) -> np.ndarray:
    """The filters above and-ed with finite_depth_mask, each off when its threshold is 0 (the node's parameters).

    ``std_hw_m`` (metres) is needed only when ``max_std_m`` or ``max_relative_std`` is set.
    """
    keep = finite_depth_mask(depth_hw_m)
    if min_range_m > 0 or max_range_m > 0:
        keep &= range_mask(depth_hw_m, min_range_m, max_range_m if max_range_m > 0 else np.inf)
    if max_std_m > 0 or max_relative_std > 0:
        if std_hw_m is None:
            raise InputError("an uncertainty filter is set but no std was given")
        keep &= uncertainty_mask(depth_hw_m, std_hw_m, max_std_m or None, max_relative_std or None)
    if edge_ratio > 0:
        keep &= edge_mask(depth_hw_m, edge_ratio)
    return keep


# --------------------------------------------------------------------------------------------- back-projection


def depth_to_points(depth_hw_m: np.ndarray, camera: PinholeCamera, stride: int = 1,
                    rgb_hwc_u8: np.ndarray | None = None, organized: bool = False,
                    valid_hw: np.ndarray | None = None) -> CameraPoints:
    """Back-project a metric depth map through a pinhole camera.

    Pixel (u, v) with depth z becomes ``((u - cx) z / fx, (v - cy) z / fy, z)`` (integer u, v are pixel centres).
    Every ``stride``-th pixel of every ``stride``-th row is used. A pixel is a point when its depth is finite and
    > 0 and ``valid_hw`` (full resolution, e.g. the filters above and-ed) is True there.

    Dense (default): ``xyz`` (N, 3) in row-major pixel order. Organized: ``xyz`` (ceil(H/stride), ceil(W/stride), 3)
    with NaN at invalid pixels. The camera must describe the depth's size and be undistorted (rectified).
    """
    depth_hw_m = np.asarray(depth_hw_m)
    if depth_hw_m.ndim != 2 or depth_hw_m.shape != (camera.height, camera.width):
        raise InputError(f"depth shape {depth_hw_m.shape} does not match the camera's {camera.height}x{camera.width};"
                         " use camera.scaled(width, height)")
    if camera.is_distorted:
        raise InputError("depth_to_points needs a rectified camera (D all zero); rectify the image first")
    if not (isinstance(stride, (int, np.integer)) and stride >= 1):
        raise InputError(f"stride must be a positive integer, got {stride!r}")
    if rgb_hwc_u8 is not None and check_rgb(rgb_hwc_u8).shape[:2] != depth_hw_m.shape:
        raise InputError(f"rgb shape {rgb_hwc_u8.shape[:2]} does not match depth shape {depth_hw_m.shape}")
    if valid_hw is not None and valid_hw.shape != depth_hw_m.shape:
        raise InputError(f"valid mask shape {valid_hw.shape} does not match depth shape {depth_hw_m.shape}")

    z = depth_hw_m[::stride, ::stride].astype(np.float32, copy=False)
    keep = finite_depth_mask(z)
    if valid_hw is not None:
        keep &= valid_hw[::stride, ::stride]
    ray_x = ((np.arange(0, camera.width, stride) - camera.cx) / camera.fx).astype(np.float32)
    ray_y = ((np.arange(0, camera.height, stride) - camera.cy) / camera.fy).astype(np.float32)
    rgb = None if rgb_hwc_u8 is None else rgb_hwc_u8[::stride, ::stride]

    if organized:
        xyz = np.empty((*z.shape, 3), np.float32)
        np.multiply(ray_x[None, :], z, out=xyz[..., 0])
        np.multiply(ray_y[:, None], z, out=xyz[..., 1])
        xyz[..., 2] = z
        xyz[~keep] = np.nan
        return CameraPoints(xyz, None if rgb is None else np.ascontiguousarray(rgb))

    # Dense: gather the kept pixels of each full-grid coordinate plane (1-D takes are numpy's fastest gather).
    kept = np.flatnonzero(keep)
    xyz = np.stack([(ray_x[None, :] * z).reshape(-1).take(kept), (ray_y[:, None] * z).reshape(-1).take(kept),
                    z.reshape(-1).take(kept)], axis=1)
    return CameraPoints(xyz, None if rgb is None else rgb.reshape(-1, 3).take(kept, axis=0))


# --------------------------------------------------------------------------------------------- PointCloud2 layout


def build_cloud_fields(with_rgb: bool) -> tuple[list[PointFieldSpec], int]:
    """Fields and point_step of the clouds this package publishes: x, y, z float32 (+ rgb packed in a float32)."""
    fields = [PointFieldSpec("x", 0, FLOAT32), PointFieldSpec("y", 4, FLOAT32), PointFieldSpec("z", 8, FLOAT32)]
    if with_rgb:
        fields.append(PointFieldSpec("rgb", 12, FLOAT32))
    return fields, 4 * len(fields)


def pack_points(points_n3: np.ndarray, rgb_n3_u8: np.ndarray | None = None) -> bytes:
    """Bytes of a PointCloud2 with :func:`build_cloud_fields` layout, host byte order.

    ``points_n3`` may also be organized (h, w, 3); ``rgb_n3_u8`` must have the same leading shape. Colour follows
    the ROS/PCL convention: ``0x00RRGGBB`` as uint32, its bits stored in the float32 field ``rgb``.
    """
    points_n3 = np.asarray(points_n3)
    if points_n3.shape[-1:] != (3,):
        raise InputError(f"points must be (..., 3), got shape {points_n3.shape}")
    xyz = points_n3.reshape(-1, 3)
    if rgb_n3_u8 is None:
        return xyz.astype(np.float32, copy=False).tobytes()
    rgb_n3_u8 = np.asarray(rgb_n3_u8)
    if rgb_n3_u8.dtype != np.uint8 or rgb_n3_u8.shape != points_n3.shape:
        raise InputError(f"rgb must be uint8 of the points' shape {points_n3.shape}, got {rgb_n3_u8.dtype} "
                         f"{rgb_n3_u8.shape}")
    rgb = rgb_n3_u8.reshape(-1, 3).astype(np.uint32)
    packed = np.empty((xyz.shape[0], 4), np.float32)
    packed[:, :3] = xyz
    packed[:, 3].view(np.uint32)[:] = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    return packed.tobytes()


def unpack_rgb(rgb_packed_f4: np.ndarray) -> np.ndarray:
    """Inverse of the ``rgb`` packing: float32 array (N,) -> uint8 (N, 3)."""
    bits = np.ascontiguousarray(rgb_packed_f4, np.float32).view(np.uint32)
    return np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], axis=-1).astype(np.uint8)


def byte_buffer(data) -> np.ndarray:
    """A message's ``data`` (bytes, bytearray, array.array, memoryview, uint8 array or list of ints) as 1-D uint8."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, np.uint8)
    return np.frombuffer(data, np.uint8)


def strided_view(data, dtype: np.dtype, shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """Zero-copy view of ``data`` as ``shape`` items of ``dtype`` with byte ``strides``, after a bounds check."""
    buffer = byte_buffer(data)
    needed = dtype.itemsize + sum((n - 1) * s for n, s in zip(shape, strides)) if all(shape) else 0
    if buffer.size < needed:
        raise InputError(f"data holds {buffer.size} bytes, the layout needs {needed}")
    return np.ndarray(shape, dtype, buffer=buffer, strides=strides)


def unpack_xyz(data, fields: Sequence[Sequence], point_step: int, width: int, height: int = 1,
               is_bigendian: bool = False, row_step: int | None = None, keep_invalid: bool = False) -> np.ndarray:
    """x, y, z of any PointCloud2 layout as (N, 3): float64 if any of them is float64, else float32.

    ``fields`` are ``(name, offset, datatype, count)`` (PointFieldSpec or plain tuples); x, y, z may be any numeric
    datatype at any offset, other fields and padding are skipped. ``row_step`` defaults to ``width * point_step``.
    Points with a NaN/inf coordinate are dropped unless ``keep_invalid`` (then N = width * height, row-major).
    """
    by_name = {}
    for name, offset, datatype, count in fields:
        by_name.setdefault(name, (int(offset), int(datatype), int(count)))
    missing = [axis for axis in "xyz" if axis not in by_name]
    if missing:
        raise InputError(f"point cloud has no field {', '.join(missing)}; fields: {[f[0] for f in fields]}")
    order = ">" if is_bigendian else "<"
    formats, offsets = [], []
    for axis in "xyz":
        offset, datatype, count = by_name[axis]
        if datatype not in POINTFIELD_FORMATS or count < 1:
            raise InputError(f"field {axis!r} has datatype {datatype} count {count}; expected a PointField code 1..8")
        fmt = np.dtype(order + POINTFIELD_FORMATS[datatype])
        if offset < 0 or offset + fmt.itemsize > point_step:
            raise InputError(f"field {axis!r} at offset {offset} ({fmt.itemsize} bytes) overflows point_step "
                             f"{point_step}")
        formats.append(fmt)
        offsets.append(offset)
    row_step = width * point_step if row_step is None else row_step
    if width < 0 or height < 0 or row_step < width * point_step:
        raise InputError(f"bad cloud size: width {width}, height {height}, point_step {point_step}, "
                         f"row_step {row_step}")
    point_dtype = np.dtype({"names": ["x", "y", "z"], "formats": formats, "offsets": offsets,
                            "itemsize": point_step})
    points = strided_view(data, point_dtype, (height, width), (row_step, point_step))

    out_dtype = np.float64 if any(f.kind == "f" and f.itemsize == 8 for f in formats) else np.float32
    xyz = np.empty((height * width, 3), out_dtype)
    for i, axis in enumerate("xyz"):
        xyz[:, i] = points[axis].reshape(-1)
    return xyz if keep_invalid else finite_rows(xyz)


def finite_rows(points_n3: np.ndarray) -> np.ndarray:
    """The rows of (N, 3) points whose three coordinates are finite (per-column tests: ~8x faster than all(axis=1))."""
    finite = np.isfinite(points_n3[:, 0]) & np.isfinite(points_n3[:, 1]) & np.isfinite(points_n3[:, 2])
    return np.compress(finite, points_n3, axis=0)
