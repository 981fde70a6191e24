"""synthetic: exact ray-cast depth, LiDAR patterns and noise, a prediction affine in log depth up to distortion."""

import numpy as np
import pytest

from depthfm_ros.errors import InputError
from depthfm_ros.geometry.projection import project_points
from depthfm_ros.sim import synthetic
from depthfm_ros.sim.synthetic import Box, Plane, SceneSpec

CAM = synthetic.default_camera(160, 120)
GRAY = (0.5, 0.5, 0.5)


def test_wall_floor_and_box_depths_are_exact():
    spec = SceneSpec(
        planes=(Plane((0.0, 1.0, 0.0), 1.5, GRAY), Plane((0.0, 0.0, 1.0), 8.0, GRAY)),  # floor 1.5 m below, wall 8 m
        boxes=(Box((0.0, 0.0, 4.0), (0.5, 0.5, 0.5), 0.0, GRAY),),  # front face at z = 3.5
    )
    scene = synthetic.render_scene(spec, CAM)
    depth = scene.depth_hw_m
    assert depth.dtype == np.float32 and depth.shape == (120, 160) and np.isfinite(depth).all()
    assert depth[0, 0] == pytest.approx(8.0)  # upper corner sees the wall
    assert depth[60, 80] == pytest.approx(3.5) and scene.surface_id_hw[60, 80] == 2
    row = 110  # floor: y = 1.5 on the ray through this row -> z = 1.5 fy / (v - cy)
    assert depth[row, 5] == pytest.approx(1.5 * CAM.fy / (row - CAM.cy), rel=1e-5)
    assert scene.surface_id_hw[row, 5] == 0


def test_yawed_box_front_corner_is_nearest():
    spec = SceneSpec(planes=(Plane((0.0, 0.0, 1.0), 10.0, GRAY),),
                     boxes=(Box((0.0, 0.0, 4.0), (0.5, 0.5, 0.5), np.pi / 4, GRAY),))
    depth = synthetic.render_scene(spec, CAM).depth_hw_m
    assert depth[60].min() == pytest.approx(4.0 - 0.5 * np.sqrt(2), abs=0.02)  # the vertical edge faces us
    assert np.argmin(depth[60]) in (79, 80) and depth[60, 60] > depth[60, 70] > depth[60, 79]


def test_random_scenes_are_seeded_textured_and_plausible():
    a = synthetic.make_scene(np.random.default_rng(3), 160, 120)
    b = synthetic.make_scene(np.random.default_rng(3), 160, 120)
    c = synthetic.make_scene(np.random.default_rng(4), 160, 120)
    np.testing.assert_array_equal(a.depth_hw_m, b.depth_hw_m)
    np.testing.assert_array_equal(a.rgb_hwc_u8, b.rgb_hwc_u8)
    assert not np.array_equal(a.depth_hw_m, c.depth_hw_m)
    assert a.rgb_hwc_u8.dtype == np.uint8 and a.rgb_hwc_u8.shape == (120, 160, 3)
    assert a.rgb_hwc_u8.std() > 20  # textured, not flat
    assert np.isfinite(a.depth_hw_m).all() and 0.3 < a.depth_hw_m.min() and a.depth_hw_m.max() < 40
    assert len(np.unique(a.surface_id_hw)) >= 3


def test_spinning_lidar_rings_hit_the_scene_surfaces():
    spec = SceneSpec(planes=(Plane((0.0, 0.0, 1.0), 6.0, GRAY),), boxes=())  # only a wall 6 m ahead
    scene = synthetic.render_scene(spec, CAM)
    scan = synthetic.simulate_lidar(scene, "vlp16", np.random.default_rng(0), range_noise_m=0.0)
    points = scan.points_n3.astype(np.float64)
    elevation = np.degrees(np.arcsin(points[:, 2] / np.linalg.norm(points, axis=1)))
    assert len(np.unique(np.round(elevation, 3))) == 16
    cam_points = points @ scan.T_cam_lidar[:3, :3].T + scan.T_cam_lidar[:3, 3]
    np.testing.assert_allclose(cam_points[:, 2], 6.0, atol=1e-4)  # every return lies on the wall
    in_view = np.isfinite(project_points(cam_points, scene.camera))
    assert 1000 < in_view.sum() < len(points) / 2  # the camera sees the front of the sweep only


@pytest.mark.parametrize("pattern, rings", [("hdl32", 32), ("os64", 64)])
def test_other_patterns_have_their_ring_counts(pattern, rings):
    scene = synthetic.make_scene(np.random.default_rng(0), 160, 120)
    scan = synthetic.simulate_lidar(scene, pattern, np.random.default_rng(0), range_noise_m=0.0, azimuth_step_deg=1.0)
    points = scan.points_n3.astype(np.float64)
    elevation = np.degrees(np.arcsin(points[:, 2] / np.linalg.norm(points, axis=1)))
    assert len(np.unique(np.round(elevation, 2))) <= rings and len(np.unique(np.round(elevation, 2))) > rings // 2


def test_random_pixels_pattern_returns_exact_depth_at_two_percent_of_pixels():
    scene = synthetic.make_scene(np.random.default_rng(1), 160, 120)
    scan = synthetic.simulate_lidar(scene, "random2pct", np.random.default_rng(0), range_noise_m=0.0)
    sparse = project_points(scan.points_n3, scene.camera, scan.T_cam_lidar)
    filled = np.isfinite(sparse)
    assert filled.sum() == len(scan.points_n3) == round(0.02 * 160 * 120)
    np.testing.assert_allclose(sparse[filled], scene.depth_hw_m[filled], rtol=1e-5)


def test_range_noise_and_outlier_fraction():
    scene = synthetic.make_scene(np.random.default_rng(2), 160, 120)
    clean = synthetic.simulate_lidar(scene, "hdl32", np.random.default_rng(5), range_noise_m=0.0)
    noisy = synthetic.simulate_lidar(scene, "hdl32", np.random.default_rng(5), range_noise_m=0.05,
                                     outlier_fraction=0.15)
    dr = np.linalg.norm(noisy.points_n3, axis=1) - np.linalg.norm(clean.points_n3, axis=1)
    good = ~noisy.is_outlier_n
    assert 0.045 < dr[good].std() < 0.055 and abs(dr[good].mean()) < 0.005
    assert noisy.is_outlier_n.mean() == pytest.approx(0.15, abs=0.02)
    assert np.median(np.abs(dr[~good])) > 1.0
    with pytest.raises(InputError):
        synthetic.simulate_lidar(scene, "vlp8", np.random.default_rng(0))


def test_prediction_is_affine_in_log_depth_up_to_distortion_and_std_tracks_it():
    scene = synthetic.make_scene(np.random.default_rng(0), 160, 120)
    pred = synthetic.simulate_prediction(scene, np.random.default_rng(1))
    log_d = np.log(scene.depth_hw_m)
    recon = pred.a * pred.z_hw + pred.b
    np.testing.assert_allclose(recon - log_d, pred.distortion_log_hw, atol=5 * 0.003 * pred.a)
    assert np.corrcoef(recon.ravel(), log_d.ravel())[0, 1] > 0.95
    assert 0.03 < np.sqrt(np.mean(pred.distortion_log_hw**2)) < 0.3  # a real but moderate shape error
    assert np.corrcoef(pred.std_z_hw.ravel(), np.abs(pred.distortion_log_hw).ravel())[0, 1] > 0.6
    assert (pred.std_z_hw > 0).all() and pred.z_hw.dtype == pred.std_z_hw.dtype == np.float32
    again = synthetic.simulate_prediction(scene, np.random.default_rng(1))
    np.testing.assert_array_equal(again.z_hw, pred.z_hw)
