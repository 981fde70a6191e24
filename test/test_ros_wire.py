"""ros.wire: PointCloud2 byte layouts (pack, unpack any layout, endianness, padding)."""

import numpy as np
import pytest

from depthfm_ros.errors import InputError
from depthfm_ros.ros.wire import (
    FLOAT32,
    FLOAT64,
    INT8,
    UINT16,
    UINT32,
    PointFieldSpec,
    build_cloud_fields,
    pack_points,
    unpack_rgb,
    unpack_xyz,
)


@pytest.mark.parametrize("with_rgb", [False, True])
def test_fields_pack_and_unpack_round_trip(with_rgb):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(4, 5, 3)).astype(np.float32)
    points[1, 2] = np.nan
    rgb = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8) if with_rgb else None
    fields, point_step = build_cloud_fields(with_rgb)
    assert point_step == (16 if with_rgb else 12)
    assert [f.name for f in fields] == ["x", "y", "z"] + (["rgb"] if with_rgb else [])
    assert all(f.datatype == FLOAT32 and f.count == 1 and f.offset == 4 * i for i, f in enumerate(fields))
    data = pack_points(points, rgb)
    width, height = 5, 4
    row_step = width * point_step
    assert len(data) == row_step * height
    kept = unpack_xyz(data, fields, point_step, width, height, is_bigendian=False)
    assert kept.dtype == np.float32 and kept.shape == (19, 3)
    np.testing.assert_array_equal(kept, points.reshape(-1, 3)[np.isfinite(points.reshape(-1, 3)).all(axis=1)])
    everything = unpack_xyz(data, fields, point_step, width, height, row_step=row_step, keep_invalid=True)
    np.testing.assert_array_equal(everything, points.reshape(-1, 3))
    if with_rgb:
        packed = np.frombuffer(data, np.float32).reshape(-1, 4)[:, 3]
        np.testing.assert_array_equal(unpack_rgb(packed), rgb.reshape(-1, 3))
        r, g, b = (int(c) for c in rgb[0, 0])
        assert packed[:1].view(np.uint32)[0] == (r << 16) | (g << 8) | b


def test_packing_is_bit_exact_for_every_colour_and_nan_payload():
    """The cv2 packing (BGRA lookup + 32-bit merge) equals the shift formula on every value, keeps NaN payloads and
    colours whose bits are float32 denormals, and packs no points to no bytes."""
    rgb = np.stack(np.meshgrid(np.arange(0, 256, 5), np.arange(0, 256, 3), np.arange(0, 256, 7)), -1)
    rgb = rgb.reshape(-1, 3).astype(np.uint8)
    points = np.random.default_rng(1).normal(size=(len(rgb), 3)).astype(np.float32)
    points[::7, 1] = np.array([0x7FC01234], np.uint32).view(np.float32)[0]  # a NaN with a payload
    words = np.frombuffer(pack_points(points, rgb), np.uint32).reshape(-1, 4)
    np.testing.assert_array_equal(words[:, :3], points.view(np.uint32))
    c = rgb.astype(np.uint32)
    np.testing.assert_array_equal(words[:, 3], (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2])
    assert pack_points(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)) == b""


def layout_bytes(points_n3, spec, point_step, byteorder, row_pad=0, width=None):
    """Write points with an arbitrary per-field layout (numpy structured dtype) plus junk padding."""
    width = width or len(points_n3)
    dtype = np.dtype({"names": [n for n, _, _ in spec], "formats": [byteorder + f for _, _, f in spec],
                      "offsets": [o for _, o, _ in spec], "itemsize": point_step})
    rows = []
    for start in range(0, len(points_n3), width):
        row = np.zeros(width, dtype)
        for i, axis in enumerate("xyz"):
            row[axis] = points_n3[start:start + width, i]
        if "intensity" in dtype.names:
            row["intensity"] = 7
        rows.append(row.tobytes() + b"\xab" * row_pad)
    return b"".join(rows)


def test_unpack_float64_at_odd_offsets_with_padding_and_extra_fields():
    points = np.array([[1.5, -2.25, 3.0], [np.nan, 0, 1], [4e8, 1e-9, -7.125]], np.float64)
    spec = [("intensity", 0, "u2"), ("x", 3, "f8"), ("y", 11, "f8"), ("z", 21, "f8")]
    data = layout_bytes(points, spec, point_step=33, byteorder="<")
    fields = [("intensity", 0, UINT16, 1), ("x", 3, FLOAT64, 1), ("y", 11, FLOAT64, 1), ("z", 21, FLOAT64, 1)]
    xyz = unpack_xyz(data, fields, point_step=33, width=3)
    assert xyz.dtype == np.float64
    np.testing.assert_array_equal(xyz, points[[0, 2]])


def test_unpack_big_endian_mixed_types_and_uint8_array_input():
    points = np.array([[1.0, 2.0, 3.0], [-0.5, 0.25, 8.0]])
    spec = [("x", 8, "f4"), ("y", 0, "f8"), ("z", 12, "f4")]
    data = layout_bytes(points, spec, point_step=20, byteorder=">")
    fields = [PointFieldSpec("x", 8, FLOAT32), PointFieldSpec("y", 0, FLOAT64), PointFieldSpec("z", 12, FLOAT32)]
    xyz = unpack_xyz(np.frombuffer(data, np.uint8), fields, 20, width=2, is_bigendian=True)
    assert xyz.dtype == np.float64
    np.testing.assert_array_equal(xyz, points)
    wrong_order = unpack_xyz(data, fields, 20, width=2, is_bigendian=False, keep_invalid=True)
    assert not np.array_equal(wrong_order, points)


def test_unpack_organized_with_nans_inf_and_row_padding():
    height, width = 3, 4
    points = np.arange(height * width * 3, dtype=np.float32).reshape(-1, 3)
    points[1, 0] = np.nan
    points[6, 2] = -np.inf
    points[11] = np.nan
    spec = [("x", 0, "f4"), ("y", 4, "f4"), ("z", 8, "f4"), ("intensity", 12, "f4")]
    data = layout_bytes(points, spec, point_step=16, byteorder="<", row_pad=5, width=width)
    fields = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1), ("intensity", 12, FLOAT32, 1)]
    xyz = unpack_xyz(data, fields, 16, width, height, row_step=16 * width + 5)
    np.testing.assert_array_equal(xyz, np.delete(points, [1, 6, 11], axis=0))
    full = unpack_xyz(data, fields, 16, width, height, row_step=16 * width + 5, keep_invalid=True)
    np.testing.assert_array_equal(full, points)
    # A list of ints (what some message constructors hold) parses the same.
    np.testing.assert_array_equal(unpack_xyz(list(data), fields, 16, width, height, row_step=69), xyz)


def test_unpack_integer_fields():
    spec = [("x", 0, "i1"), ("y", 1, "u4"), ("z", 5, "f4")]
    data = layout_bytes(np.array([[-3, 70000, 0.5]]), spec, point_step=9, byteorder="<")
    fields = [("x", 0, INT8, 1), ("y", 1, UINT32, 1), ("z", 5, FLOAT32, 1)]
    np.testing.assert_array_equal(unpack_xyz(data, fields, 9, 1), [[-3, 70000, 0.5]])


def test_unpack_rejects_bad_layouts():
    fields, step = build_cloud_fields(False)
    data = pack_points(np.ones((4, 3)))
    with pytest.raises(InputError, match="no field z"):
        unpack_xyz(data, fields[:2], step, 4)
    with pytest.raises(InputError, match="overflows"):
        unpack_xyz(data, fields, 8, 4)
    with pytest.raises(InputError, match="datatype 9"):
        unpack_xyz(data, [*fields[:2], ("z", 8, 9, 1)], step, 4)
    with pytest.raises(InputError, match="holds 48 bytes"):
        unpack_xyz(data, fields, step, 5)
    with pytest.raises(InputError, match="row_step"):
        unpack_xyz(data, fields, step, 2, 2, row_step=20)
    assert unpack_xyz(b"", fields, step, 0, 0).shape == (0, 3)


def test_pack_rejects_bad_shapes():
    with pytest.raises(InputError, match=r"\(\.\.\., 3\)"):
        pack_points(np.ones((4, 2)))
    with pytest.raises(InputError, match="rgb"):
        pack_points(np.ones((4, 3)), np.ones((4, 3), np.float32))
