"""Byte layouts of sensor_msgs/PointCloud2 (pure numpy, no ROS import): the clouds this package publishes and any
cloud it receives.

The helpers speak the sensor_msgs/PointField vocabulary: a field is ``(name, offset, datatype, count)`` with the
datatype codes below, and a cloud is ``height`` rows of ``width`` points, ``point_step`` bytes each.
"""

from __future__ import annotations

import array as array_module
import sys
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from ..errors import InputError

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


def build_cloud_fields(with_rgb: bool) -> tuple[list[PointFieldSpec], int]:
    """Fields and point_step of the clouds this package publishes: x, y, z float32 (+ rgb packed in a float32)."""
    fields = [PointFieldSpec("x", 0, FLOAT32), PointFieldSpec("y", 4, FLOAT32), PointFieldSpec("z", 8, FLOAT32)]
    if with_rgb:
        fields.append(PointFieldSpec("rgb", 12, FLOAT32))
    return fields, 4 * len(fields)


def uint8_array(array: np.ndarray) -> array_module.array:
    """A message's uint8[] ``data`` from any numpy array in one copy: rosidl keeps an ``array.array('B')`` as it is
    (bytes would be copied once more, into one)."""
    out = array_module.array("B")
    out.frombytes(memoryview(np.ascontiguousarray(array)).cast("B"))
    return out


def pack_points(points_n3: np.ndarray, rgb_n3_u8: np.ndarray | None = None) -> bytes:
    """Bytes of a PointCloud2 with :func:`build_cloud_fields` layout, host byte order.

    ``points_n3`` may also be organized (h, w, 3); ``rgb_n3_u8`` must have the same leading shape. Colour follows
    the ROS/PCL convention: ``0x00RRGGBB`` as uint32, its bits stored in the float32 field ``rgb``.
    """
    return pack_points_array(points_n3, rgb_n3_u8).tobytes()


def pack_points_array(points_n3: np.ndarray, rgb_n3_u8: np.ndarray | None = None) -> np.ndarray:
    """:func:`pack_points` as a numpy array of the bytes' layout (no copy to bytes)."""
    points_n3 = np.asarray(points_n3)
    if points_n3.shape[-1:] != (3,):
        raise InputError(f"points must be (..., 3), got shape {points_n3.shape}")
    xyz = points_n3.reshape(-1, 3)
    if rgb_n3_u8 is None:
        return np.ascontiguousarray(xyz, np.float32)
    rgb_n3_u8 = np.asarray(rgb_n3_u8)
    if rgb_n3_u8.dtype != np.uint8 or rgb_n3_u8.shape != points_n3.shape:
        raise InputError(f"rgb must be uint8 of the points' shape {points_n3.shape}, got {rgb_n3_u8.dtype} "
                         f"{rgb_n3_u8.shape}")
    if xyz.shape[0] == 0:
        return np.empty((0, 4), np.float32)
    # 0x00RRGGBB: OpenCV's RGB -> BGRA puts B, G, R, A in memory, a little-endian uint32 A<<24 | R<<16 | G<<8 | B
    colour = cv2.cvtColor(np.ascontiguousarray(rgb_n3_u8.reshape(1, -1, 3)), cv2.COLOR_RGB2BGRA)
    colour = colour.reshape(-1).view(np.uint32)
    if HOST_IS_BIGENDIAN:
        colour.byteswap(inplace=True)
    colour &= np.uint32(0x00FFFFFF)
    # cv2.merge interleaves the four 32-bit columns as integers: every bit is kept (NaN payloads, colour bits)
    xyz_bits = np.ascontiguousarray(xyz, np.float32).view(np.int32).reshape(1, -1, 3)
    return cv2.merge([xyz_bits, colour.view(np.int32).reshape(1, -1, 1)])


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
