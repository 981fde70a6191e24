"""fusion.metric: the temporal scale filter, the ground-plane source and the per-frame source chain."""

import numpy as np
import pytest

from depthfm_ros.errors import AlignmentError, InputError
from depthfm_ros.evaluation.metrics import abs_rel, delta1
from depthfm_ros.fusion.alignment import LogDepthFit
from depthfm_ros.fusion.metric import MetricScale, ScaleFilter, ground_normal, ground_plane_fit
from depthfm_ros.sim import synthetic

Z_RANGE = (-1.0, 1.0)


def fit(a=2.0, b=1.0, rms=0.05, n=400):
    return LogDepthFit(a, b, rms, n, n)


def test_filter_starts_on_the_first_fit_and_averages_later_ones():
    f = ScaleFilter()
    assert f.update(fit(2.0, 1.0), 0.0, Z_RANGE) == (True, "")
    assert (f.fit.a, f.fit.b) == (2.0, 1.0)
    f.update(fit(2.04, 1.02), 0.1, Z_RANGE)
    assert 2.0 < f.fit.a < 2.04 and 1.0 < f.fit.b < 1.02  # between the two: a filter, not a copy


def test_one_bad_frame_does_not_move_the_scale_three_in_a_row_reset_it():
    f = ScaleFilter(gate_log=0.2, reset_after=3)
    f.update(fit(2.0, 1.0), 0.0, Z_RANGE)
    accepted, why = f.update(fit(3.0, 1.5), 0.1, Z_RANGE)  # log depth off by up to 1.5: gated
    assert not accepted and "jumps by 1.50" in why and (f.fit.a, f.fit.b) == (2.0, 1.0)
    assert f.update(fit(2.01, 1.0), 0.2, Z_RANGE)[0]  # a good frame in between clears the count
    for k, t in enumerate((0.3, 0.4)):
        assert not f.update(fit(3.0, 1.5), t, Z_RANGE)[0], k
    assert f.update(fit(3.0, 1.5), 0.5, Z_RANGE) == (True, "")  # the third in a row: the scene changed
    assert (f.fit.a, f.fit.b) == (3.0, 1.5)


def test_the_scale_variance_grows_while_held_and_time_going_back_restarts():
    f = ScaleFilter(process_log_per_sec=0.05)
    f.update(fit(), 10.0, Z_RANGE)
    v0 = f.variance_at(10.0)
    assert f.variance_at(11.0) == pytest.approx(v0 + 0.05**2) and f.variance_at(12.0) > f.variance_at(11.0)
    assert f.update(fit(5.0, -3.0), 2.0, Z_RANGE) == (True, "")  # a bag loop: no gate against the old time
    assert f.fit.a == 5.0


def test_source_chain_lidar_hold_none():
    scale = MetricScale("auto", use_lidar=True, hold_sec=1.0)
    z = np.linspace(-1, 1, 100, dtype=np.float32).reshape(10, 10)
    first = scale.update(0.0, z, lidar_fit=fit())
    assert first.source == "lidar" and first.metric and first.age_sec == 0.0
    held = scale.update(0.5, z, lidar_reason="no LiDAR cloud")
    assert held.source == "hold" and held.fit == first.fit and held.log_var > first.log_var
    assert held.age_sec == pytest.approx(0.5) and held.reason == "no LiDAR cloud"
    gone = scale.update(1.6, z, lidar_reason="too few LiDAR points")
    assert not gone.metric and "too few LiDAR points" in gone.reason and "1.6 s old" in gone.reason


def test_auto_falls_back_to_ground_then_fixed_and_says_why():
    cam = synthetic.default_camera(64, 48)
    z = np.zeros((48, 64), np.float32)  # no ground here: the ground source refuses
    chain = MetricScale("auto", use_lidar=True, hold_sec=0.0, camera_height_m=1.2,
                        fixed_fit=LogDepthFit(1.5, 0.3, 0.0, 0, 0))
    assert chain.chain == ("lidar", "ground", "fixed")
    estimate = chain.update(0.0, z, lidar_reason="rms too large", camera=cam)
    assert estimate.source == "fixed" and "rms too large" in estimate.reason and "ground plane" in estimate.reason
    assert MetricScale("none", use_lidar=True).chain == () and not MetricScale().chain
    for source, kwargs in (("lidar", {}), ("ground", {}), ("fixed", {}), ("sky", {})):
        with pytest.raises(InputError):
            MetricScale(source, **kwargs)


def _scene(seed):
    rng = np.random.default_rng(seed)
    spec = synthetic.random_scene_spec(rng)
    scene = synthetic.render_scene(spec, synthetic.default_camera(320, 240), rng)
    normal = np.asarray(spec.planes[0].normal)
    return scene, normal / np.linalg.norm(normal), spec.planes[0].offset / np.linalg.norm(normal)


@pytest.mark.parametrize("seed", range(4))
def test_ground_plane_recovers_metres_when_the_orientation_is_known(seed):
    scene, down, height = _scene(seed)
    pred = synthetic.simulate_prediction(scene, np.random.default_rng([seed, 7]), distortion_log=0.0,
                                         object_offset_log=0.0, curvature_log=0.0)
    result = ground_plane_fit(pred.z_hw, scene.camera, height, down)
    assert result.a == pytest.approx(pred.a, rel=0.01) and result.b == pytest.approx(pred.b, abs=0.02)
    depth = result.depth_m(pred.z_hw)
    assert abs_rel(depth, scene.depth_hw_m) < 0.02 and delta1(depth, scene.depth_hw_m) > 0.99


def test_ground_plane_refuses_when_there_is_no_ground_below():
    scene, _, height = _scene(0)
    pred = synthetic.simulate_prediction(scene, np.random.default_rng(1))
    with pytest.raises(AlignmentError, match="ground plane"):
        ground_plane_fit(pred.z_hw, scene.camera, height, ground_normal(pitch_deg=-60.0))  # "down" is up
    with pytest.raises(InputError):
        ground_plane_fit(pred.z_hw, scene.camera, 0.0)


@pytest.mark.parametrize("pitch_deg", [0.0, 12.0])
def test_ground_from_tf_agrees_with_the_pitch_parameter(pitch_deg):
    """ground_frame via tf (base_footprint: x forward, z up) and camera_pitch_deg describe the same ground."""
    from scipy.spatial.transform import Rotation

    from depthfm_ros.ros.lidar import ground_from_transform

    optical_in_level = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical -> x fwd, z up
    pitch_down = Rotation.from_euler("y", pitch_deg, degrees=True).as_matrix()  # +y (left) axis: nose down
    T = np.eye(4)
    T[:3, :3] = pitch_down @ optical_in_level
    T[:3, 3] = [0.3, 0.0, 1.25]
    down, height = ground_from_transform(T)
    np.testing.assert_allclose(down, ground_normal(pitch_deg), atol=1e-12)
    assert height == 1.25


def test_ground_from_tf_only_needs_the_per_frame_height():
    cam = synthetic.default_camera(64, 48)
    scale = MetricScale("auto", ground_from_tf=True)
    assert scale.chain == ("ground",) and "tf height" in scale.describe()
    estimate = scale.update(0.0, np.zeros((48, 64), np.float32), camera=cam)  # tf gave nothing this frame
    assert not estimate.metric and "no camera height" in estimate.reason
