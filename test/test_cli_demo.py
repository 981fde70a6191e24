"""depthfm-demo: the node in an in-process ROS 2 graph on a synthetic camera writes colour-mapped PNGs."""

import cv2
import numpy as np

from depthfm_ros.cli.demo import _parse, main, node_parameters
from depthfm_ros.sim.synthetic import camera_path, default_camera, moved_scene, random_scene_spec, render_scene


def test_demo_writes_depth_and_uncertainty_pngs(tmp_path, capsys, one_torch_thread):
    out = tmp_path / "demo"
    code = main(["--frames", "2", "--width", "128", "--height", "96", "--processing-resolution", "64",
                 "--steps", "1", "--rate", "10", "--timeout", "20", "--output", str(out)])
    assert code == 0
    for i in range(2):
        for name in ("rgb", "depth", "uncertainty"):
            image = cv2.imread(str(out / f"frame_{i:03d}_{name}.png"))
            assert image is not None and image.shape == (96, 128, 3), (i, name)
    captured = capsys.readouterr()
    assert str(out.resolve()) in captured.out and "end to end over DDS" in captured.err


def test_demo_run_measures_the_latency_of_every_collected_frame(one_torch_thread):
    from depthfm_ros.cli.demo import node_parameters
    from depthfm_ros.ros.demo import run_demo

    run = run_demo(node_parameters(_parse(["--processing-resolution", "64", "--steps", "1"])), width=96,
                   height=64, rate_hz=10, frames=3, scene_seed=1, timeout_sec=30)
    assert run.finished and len(run.latencies_ms) == len(run.depth_hw) == 3
    # stamped before publishing, received after the node ran: positive, and within the run
    assert all(0 < ms <= 1e3 * run.elapsed_sec for ms in run.latencies_ms)


def test_demo_refuses_a_missing_checkpoint(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "missing.ckpt"), "--output", str(tmp_path)]) == 2
    assert "'checkpoint'" in capsys.readouterr().err


def test_vae_arguments_reach_the_node(tmp_path):
    params = node_parameters(_parse(["--tiny-model", "--vae-kind", "tiny", "--tiny-vae", str(tmp_path)]))
    assert (params["model"], params["vae_kind"], params["tiny_vae"]) == ("tiny", "tiny", str(tmp_path))
    assert (node_parameters(_parse([]))["vae_kind"], node_parameters(_parse([]))["tiny_vae"]) == ("full", "")


def test_moving_camera_sees_the_scene_come_closer():
    camera = default_camera(64, 48)
    spec = random_scene_spec(np.random.default_rng(3))
    near = render_scene(moved_scene(spec, camera_path(10)), camera).depth_hw_m
    far = render_scene(moved_scene(spec, camera_path(0)), camera).depth_hw_m
    assert np.nanmedian(near) < np.nanmedian(far)
    assert np.allclose(render_scene(moved_scene(spec, np.zeros(3)), camera).depth_hw_m, far, equal_nan=True)


def test_the_demo_camera_stays_in_the_scene_for_any_frame_index():
    """Frames of a slow node have large indices: the camera used to drive through the back wall (half-black
    frames)."""
    from depthfm_ros.ros.demo import demo_frame

    camera = default_camera(64, 48)
    spec = random_scene_spec(np.random.default_rng(3))
    for k in (0, 7, 15, 16, 40, 333):
        frame = demo_frame(spec, camera, k, 3)
        assert np.isfinite(frame.depth_hw_m).all() and frame.rgb_hwc_u8.max() > 0, k
