"""geometry.projection.depth_to_points and geometry.masks: depth -> points, validity filters."""

import numpy as np
import pytest

from depthfm_ros.errors import InputError
from depthfm_ros.geometry.camera import PinholeCamera
from depthfm_ros.geometry.masks import edge_mask, finite_depth_mask, range_mask, uncertainty_mask
from depthfm_ros.geometry.projection import PointsOptions, depth_to_points, points_from_depth

H, W = 6, 8


@pytest.fixture
def camera() -> PinholeCamera:
    return PinholeCamera(W, H, [[50.0, 0, 3.7], [0, 40.0, 2.2], [0, 0, 1]])


def ramp_depth() -> np.ndarray:
    return (1.0 + 0.1 * np.arange(H * W, dtype=np.float32)).reshape(H, W)


def project(points_n3: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    x, y, z = points_n3.astype(np.float64).T
    return np.stack([camera.fx * x / z + camera.cx, camera.fy * y / z + camera.cy], axis=1)


def test_points_project_back_onto_their_pixels(camera):
    depth = ramp_depth()
    depth[1, 2] = np.nan
    points = depth_to_points(depth, camera)
    assert points.xyz.dtype == np.float32 and points.xyz.shape == (H * W - 1, 3) and points.rgb is None
    rows, cols = np.nonzero(np.isfinite(depth))
    np.testing.assert_allclose(project(points.xyz, camera), np.stack([cols, rows], axis=1), atol=1e-4)
    np.testing.assert_array_equal(points.xyz[:, 2], depth[rows, cols])
    # The principal point looks straight ahead; one pixel right of it is 1/fx radians-ish to the right.
    centre = PinholeCamera(W, H, [[50.0, 0, 3], [0, 40.0, 2], [0, 0, 1]])
    xyz_hw3 = depth_to_points(np.full((H, W), 2.0), centre, organized=True).xyz
    np.testing.assert_allclose(xyz_hw3[2, 3], [0, 0, 2])
    np.testing.assert_allclose(xyz_hw3[2, 4], [2 / 50, 0, 2])
    np.testing.assert_allclose(xyz_hw3[3, 3], [0, 2 / 40, 2])


def test_stride_organized_and_rgb(camera):
    depth = ramp_depth()
    depth[0, 0] = np.nan
    depth[2, 4] = 0.0
    rgb = np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3)
    organized = depth_to_points(depth, camera, stride=2, rgb_hwc_u8=rgb, organized=True)
    assert organized.xyz.shape == (3, 4, 3) and organized.rgb.shape == (3, 4, 3)
    invalid = ~np.isfinite(organized.xyz).all(axis=2)
    np.testing.assert_array_equal(np.argwhere(invalid), [[0, 0], [1, 2]])
    np.testing.assert_array_equal(organized.rgb, rgb[::2, ::2])
    keep = ~invalid
    sub_rows, sub_cols = np.nonzero(keep)
    np.testing.assert_allclose(project(organized.xyz[keep], camera),
                               np.stack([2 * sub_cols, 2 * sub_rows], axis=1), atol=1e-4)
    dense = depth_to_points(depth, camera, stride=2, rgb_hwc_u8=rgb)
    np.testing.assert_array_equal(dense.xyz, organized.xyz[keep])
    np.testing.assert_array_equal(dense.rgb, organized.rgb[keep])
    assert depth_to_points(depth, camera, stride=3).xyz.shape == (2 * 3 - 1, 3)  # rows 0,3 x cols 0,3,6


def test_invalid_depth_never_makes_a_point(camera):
    depth = np.full((H, W), np.nan, np.float32)
    depth[0, 1], depth[0, 2], depth[0, 3], depth[5, 7] = np.inf, -1.0, 0.0, 3.0
    assert finite_depth_mask(depth).sum() == 1
    points = depth_to_points(depth, camera).xyz
    assert points.shape == (1, 3) and points[0, 2] == 3.0
    assert depth_to_points(np.full((H, W), np.nan), camera).xyz.shape == (0, 3)
    organized = depth_to_points(depth, camera, organized=True).xyz
    assert np.isfinite(organized).all(axis=2).sum() == 1


def test_valid_mask_selects_points(camera):
    depth = ramp_depth()
    valid = np.zeros((H, W), bool)
    valid[3, 5] = valid[4, 1] = True
    points = depth_to_points(depth, camera, valid_hw=valid).xyz
    np.testing.assert_array_equal(points[:, 2], [depth[3, 5], depth[4, 1]])


def test_depth_to_points_rejects_mismatches(camera):
    depth = ramp_depth()
    with pytest.raises(InputError, match="scaled"):
        depth_to_points(depth[:, :-1], camera)
    with pytest.raises(InputError, match="rgb"):
        depth_to_points(depth, camera, rgb_hwc_u8=np.zeros((H, W + 1, 3), np.uint8))
    with pytest.raises(InputError, match="stride"):
        depth_to_points(depth, camera, stride=0)
    with pytest.raises(InputError, match="valid mask"):
        depth_to_points(depth, camera, valid_hw=np.ones((2, 2), bool))


def test_a_distorted_camera_is_undistorted_not_refused():
    """Raw (distorted) images still get points: each pixel's ray through K and D, so the points project back
    onto their own pixels through cv2.projectPoints with the same K and D."""
    import cv2

    cam = PinholeCamera(64, 48, [[50.0, 0, 31.5], [0, 52.0, 23.5], [0, 0, 1]], D=[0.12, -0.08, 0.001, -0.002, 0.02])
    depth = (1.0 + 0.05 * np.arange(64 * 48, dtype=np.float32)).reshape(48, 64)
    xyz = depth_to_points(depth, cam).xyz
    np.testing.assert_array_equal(xyz[:, 2], depth.ravel())
    uv = cv2.projectPoints(xyz.astype(np.float64), np.zeros(3), np.zeros(3), cam.K, cam.D)[0].reshape(48, 64, 2)
    v, u = np.mgrid[0:48, 0:64]
    assert np.abs(uv[..., 0] - u).max() < 1e-3 and np.abs(uv[..., 1] - v).max() < 1e-3
    straight = depth_to_points(depth, PinholeCamera(64, 48, cam.K)).xyz  # the same pixels without distortion
    assert np.abs(straight[:, :2] - xyz[:, :2]).max() > 0.05  # the distortion really moves the corner rays


def test_range_mask():
    depth = np.array([[0.2, 0.5, 1.0], [5.0, 5.01, np.nan]])
    np.testing.assert_array_equal(range_mask(depth, 0.5, 5.0), [[False, True, True], [True, False, False]])
    with pytest.raises(InputError):
        range_mask(depth, 2.0, 1.0)


def test_uncertainty_mask_metric_and_relative():
    depth = np.array([[1.0, 2.0, 4.0, 8.0]])
    std = np.array([[0.05, 0.15, 0.2, np.nan]])
    np.testing.assert_array_equal(uncertainty_mask(depth, std, max_std_m=0.1), [[True, False, False, False]])
    # std / depth = 0.05, 0.075, 0.05, nan
    np.testing.assert_array_equal(uncertainty_mask(depth, std, max_relative_std=0.06), [[True, False, True, False]])
    np.testing.assert_array_equal(uncertainty_mask(depth, std, max_std_m=0.18, max_relative_std=0.06),
                                  [[True, False, False, False]])
    assert uncertainty_mask(depth, std).all()
    with pytest.raises(InputError, match="std shape"):
        uncertainty_mask(depth, std[:, :2])


def test_edge_mask_drops_both_sides_of_one_step():
    depth = np.full((5, 8), 2.0)
    depth[:, 5:] = 3.0  # one vertical step between columns 4 and 5
    depth[:, 1] = 2.1  # a 5 % change stays under the 10 % threshold
    keep = edge_mask(depth, max_neighbour_ratio=1.1)
    expected = np.ones_like(keep)
    expected[:, 4:6] = False
    np.testing.assert_array_equal(keep, expected)
    assert edge_mask(depth, max_neighbour_ratio=1.6).all()


def test_edge_mask_flying_pixel_and_invalid_neighbours():
    depth = np.full((5, 5), 1.0)
    depth[2, 2] = 1.5  # a lone flying pixel drops itself and its 4 neighbours, not the diagonals
    depth[0, 0], depth[4, 4], depth[0, 4] = np.nan, 0.0, np.inf
    keep = edge_mask(depth, 1.2)
    expected = np.ones((5, 5), bool)
    expected[[2, 1, 3, 2, 2], [2, 2, 2, 1, 3]] = False
    np.testing.assert_array_equal(keep, expected)


def test_filters_combine_into_points(camera):
    depth = np.full((H, W), 2.0, np.float32)
    depth[:, :2] = 0.1  # too near, and an edge at columns 1|2
    std = np.full((H, W), 0.01, np.float32)
    std[0, 7] = 1.0
    valid = range_mask(depth, 0.5, 10) & uncertainty_mask(depth, std, max_std_m=0.1) & edge_mask(depth)
    points = depth_to_points(depth, camera, valid_hw=valid).xyz
    assert points.shape == (H * (W - 3) - 1, 3)


def test_points_from_depth_strides_before_filtering(camera):
    """The filters see the strided grid: neighbours ``stride`` px apart (as in the cloud), and a flying pixel
    between two strided samples removes nothing."""
    depth = np.full((H, W), 2.0, np.float32)
    depth[2, 3] = 5.0  # odd column: not a sample of stride 2, so it drops nothing there
    std = np.full((H, W), 0.01, np.float32)
    options = PointsOptions(stride=2, edge_ratio=1.1, rgb=False)
    strided = points_from_depth(depth, std, camera, options)
    assert strided.xyz.shape == (3 * 4, 3)
    full = points_from_depth(depth, std, camera, PointsOptions(edge_ratio=1.1, rgb=False))
    assert full.xyz.shape == (H * W - 5, 3)  # stride 1: the pixel and its 4 neighbours
    depth[2, 4] = 5.0  # a sample now: it and its 4 strided neighbours (2 px away) go
    assert points_from_depth(depth, std, camera, options).xyz.shape == (3 * 4 - 5, 3)
    # the same points as depth_to_points with the filters computed on the strided maps
    valid = np.zeros((H, W), bool)
    valid[::2, ::2] = edge_mask(depth[::2, ::2], 1.1)
    np.testing.assert_array_equal(points_from_depth(depth, std, camera, options).xyz,
                                  depth_to_points(depth, camera, stride=2, valid_hw=valid).xyz)
    with pytest.raises(InputError, match="std shape"):
        points_from_depth(depth, std[:2], camera, options)


@pytest.mark.parametrize("distorted", [False, True])
def test_every_pixel_a_point_takes_the_no_gather_path_with_the_same_result(distorted):
    K = [[50.0, 0, 31.5], [0, 52.0, 23.5], [0, 0, 1]]
    cam = PinholeCamera(64, 48, K, D=[0.12, -0.08, 0.001, -0.002, 0.02]) if distorted else PinholeCamera(64, 48, K)
    depth = (1.0 + 0.05 * np.arange(64 * 48, dtype=np.float32)).reshape(48, 64)
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    all_points = depth_to_points(depth, cam, rgb_hwc_u8=rgb)  # no gather
    almost = depth.copy()
    almost[0, 0] = np.nan  # one pixel out: the gather path
    gathered = depth_to_points(almost, cam, rgb_hwc_u8=rgb)
    np.testing.assert_array_equal(all_points.xyz[1:], gathered.xyz)
    np.testing.assert_array_equal(all_points.rgb[1:], gathered.rgb)
    organized = depth_to_points(depth, cam, rgb_hwc_u8=rgb, organized=True)
    np.testing.assert_array_equal(all_points.xyz, organized.xyz.reshape(-1, 3))
    assert all_points.xyz.dtype == np.float32 and all_points.xyz.flags.c_contiguous


@pytest.mark.parametrize("shape", [(1, 2), (2, 1), (1, 5), (4, 1), (1, 1), (3, 3), (7, 9)])
def test_edge_mask_on_thin_images_is_the_ratio_test(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(10):
        depth = (1 + rng.random(shape) * 0.3).astype(np.float32)
        depth[rng.random(shape) < 0.2] = np.nan
        d = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
        keep = np.ones(shape, bool)
        with np.errstate(invalid="ignore"):
            across = np.maximum(d[:, :-1], d[:, 1:]) > 1.1 * np.minimum(d[:, :-1], d[:, 1:])
            down = np.maximum(d[:-1], d[1:]) > 1.1 * np.minimum(d[:-1], d[1:])
        keep[:, :-1] &= ~across
        keep[:, 1:] &= ~across
        keep[:-1] &= ~down
        keep[1:] &= ~down
        np.testing.assert_array_equal(edge_mask(depth, 1.1), keep)


@pytest.mark.parametrize("options", [PointsOptions(), PointsOptions(stride=2, organized=True),
                                     PointsOptions(min_range_m=1.2, max_range_m=4.0, max_std_m=0.2,
                                                   max_relative_std=0.05, edge_ratio=1.1),
                                     PointsOptions(stride=3, rgb=False, edge_ratio=1.05)])
@pytest.mark.parametrize("distorted", [False, True])
def test_torch_tensors_give_the_numpy_points(options, distorted):
    """The CUDA path (depth as a torch tensor on the engine's device), run on CPU tensors: the same points."""
    torch = pytest.importorskip("torch")
    K = [[50.0, 0, 31.5], [0, 52.0, 23.5], [0, 0, 1]]
    cam = PinholeCamera(64, 48, K, D=[0.12, -0.08, 0.001, -0.002, 0.02]) if distorted else PinholeCamera(64, 48, K)
    rng = np.random.default_rng(4)
    depth = (1.5 + 0.04 * np.arange(64)[None, :] + 0.02 * np.arange(48)[:, None]
             + 0.01 * rng.random((48, 64))).astype(np.float32)
    depth[:, 40:] *= 1.5  # a step for the flying-pixel filter
    depth[rng.random(depth.shape) < 0.05] = np.nan
    depth[3, 3], depth[4, 4] = 0.0, np.inf
    std = (0.04 * depth * rng.random(depth.shape)).astype(np.float32)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    ref = points_from_depth(depth, std, cam, options, rgb)
    out = points_from_depth(torch.from_numpy(depth), torch.from_numpy(std), cam, options, rgb)
    assert out.xyz.dtype == np.float32 and out.xyz.shape == ref.xyz.shape
    assert 100 < np.isfinite(ref.xyz.reshape(-1, 3)).all(axis=1).sum() < 64 * 48 // options.stride**2
    np.testing.assert_allclose(out.xyz, ref.xyz, rtol=1e-6, atol=1e-6)
    if options.rgb:
        np.testing.assert_array_equal(out.rgb, ref.rgb)
    else:
        assert out.rgb is None and ref.rgb is None
