"""geometry.projection: LiDAR points into the camera (pinhole, distortion, occlusion, extrinsics, scaling)."""

import cv2
import numpy as np
import pytest

from depthfm_ros.errors import InputError
from depthfm_ros.geometry.camera import PinholeCamera
from depthfm_ros.geometry.projection import project_points, transform_from_xyz_quat
from depthfm_ros.sim import synthetic

CAM = PinholeCamera(160, 120, np.array([[100.0, 0, 80], [0, 110.0, 60], [0, 0, 1]]))


def filled(depth_hw_m):
    return {(int(r), int(c)): float(depth_hw_m[r, c]) for r, c in zip(*np.nonzero(np.isfinite(depth_hw_m)))}


# --- projection -------------------------------------------------------------------------------------------------


def test_pinhole_projection_lands_on_expected_pixels():
    points = np.array([[0.0, 0.0, 2.0], [0.2, -0.2, 2.0], [-0.3, 0.33, 3.0], [0.64, 0.0, 1.0]])
    depth = project_points(points, CAM)
    assert depth.dtype == np.float32 and depth.shape == (120, 160)
    assert filled(depth) == pytest.approx({(60, 80): 2.0, (49, 90): 2.0, (72, 70): 3.0, (60, 144): 1.0})


def test_extrinsic_from_xyz_quaternion_maps_lidar_to_camera():
    T = transform_from_xyz_quat([0.0, -0.1, -0.05], [0.5, -0.5, 0.5, 0.5])  # REP-103 LiDAR -> optical frame
    np.testing.assert_allclose(T, synthetic.T_CAM_LIDAR_DEFAULT, atol=1e-12)
    depth = project_points(np.array([[5.0, 0.0, 0.1]]), CAM, T)  # 5 m ahead, 10 cm above the LiDAR
    row = int(np.floor(60 + 110 * -0.2 / 4.95 + 0.5))
    assert filled(depth) == pytest.approx({(row, 80): 4.95})
    with pytest.raises(InputError):
        transform_from_xyz_quat([0, 0, 0], [0, 0, 0, 0])


def test_occlusion_keeps_the_nearest_point_in_any_order():
    far_first = np.array([[0.5, 0.0, 5.0], [0.2, 0.0, 2.0], [0.4, 0.0, 4.0]])  # one ray, three depths
    for points in (far_first, far_first[::-1]):
        assert filled(project_points(points, CAM)) == pytest.approx({(60, 90): 2.0})


def test_behind_outside_nonfinite_and_out_of_range_points_are_dropped():
    points = np.array(
        [
            [0.0, 0.0, -2.0],  # behind
            [0.0, 0.0, 0.05],  # closer than min_depth_m
            [5.0, 0.0, 1.0],  # right of the image
            [0.0, -2.0, 1.0],  # above the image
            [np.nan, 0.0, 1.0],
            [0.0, np.inf, 1.0],
            [0.0, 0.0, 80.0],  # beyond max_depth_m
            [0.0, 0.0, 3.0],  # the only keeper
        ]
    )
    assert filled(project_points(points, CAM, max_depth_m=50.0)) == pytest.approx({(60, 80): 3.0})
    assert np.isnan(project_points(points[:7], CAM, max_depth_m=50.0)).all()
    with pytest.raises(InputError):
        project_points(np.zeros((4, 2)), CAM)
    with pytest.raises(InputError):
        project_points(points, CAM, np.eye(3))


@pytest.mark.parametrize(
    "model, D",
    [("plumb_bob", [0.1, -0.3, 0.001, -0.002, 0.05]),
     ("rational_polynomial", [0.2, -0.1, 0.001, 0.002, 0.01, 0.05, 0.02, 0.01])],
)
def test_distorted_projection_matches_cv2(model, D):
    cam = PinholeCamera(160, 120, CAM.K, np.array(D), model)
    rng = np.random.default_rng(0)
    z = rng.uniform(1.0, 10.0, 400)
    points = np.stack([rng.uniform(-0.7, 0.7, 400) * z, rng.uniform(-0.5, 0.5, 400) * z, z], 1)
    uv = cv2.projectPoints(points, np.zeros(3), np.zeros(3), cam.K, cam.D)[0].reshape(-1, 2)
    col, row = np.floor(uv[:, 0] + 0.5).astype(int), np.floor(uv[:, 1] + 0.5).astype(int)
    inside = (col >= 0) & (col < 160) & (row >= 0) & (row < 120)
    expected = {}
    for r, c, d in sorted(zip(row[inside], col[inside], z[inside]), key=lambda t: -t[2]):
        expected[(int(r), int(c))] = float(d)  # nearest written last
    got = filled(project_points(points, cam))
    assert len(got) > 300 and got == pytest.approx(expected, rel=1e-6)


def test_distortion_fold_back_from_far_outside_the_view_is_dropped():
    cam = PinholeCamera(160, 120, CAM.K, np.array([0.1, -0.3, 0.0, 0.0, 0.0]), "plumb_bob")
    point = np.array([[1.5, 0.1, 1.0]])  # 56 degrees off-axis; the polynomial folds it back to u ~ 34
    u = cv2.projectPoints(point, np.zeros(3), np.zeros(3), cam.K, cam.D)[0].ravel()[0]
    assert 0 <= u < 160
    assert np.isnan(project_points(point, cam)).all()


def test_size_wh_uses_the_scaled_camera():
    big = PinholeCamera(320, 240, np.array([[200.0, 0, 159.5], [0, 220.0, 119.5], [0, 0, 1]]))
    points = np.random.default_rng(1).uniform([-2, -1, 2], [2, 1, 8], (300, 3))
    np.testing.assert_array_equal(project_points(points, big, size_wh=(160, 120)),
                                  project_points(points, big.scaled(160, 120)))
