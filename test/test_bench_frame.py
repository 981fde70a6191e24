"""scripts/bench_frame.py times what depthfm_node does per frame: its stage list is checked against a traced frame
of the node (every function the node's frame path calls is a stage, every stage is called), and it runs."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_frame.py"
spec = importlib.util.spec_from_file_location("bench_frame", SCRIPT)
bench = importlib.util.module_from_spec(spec)
sys.modules["bench_frame"] = bench
spec.loader.exec_module(bench)

#: the node's frame path: the functions whose direct calls the bench must time (module, qualname)
ORCHESTRATION = {("bench_frame", "node_frame"),
                 ("bench_frame", "InlineMetricWorker.submit"),
                 ("depthfm_ros.ros.lidar", "LidarInput.on_cloud"),
                 ("depthfm_ros.ros.node", "DepthFMNode._process"),
                 ("depthfm_ros.ros.node", "DepthFMNode._run_frames"),
                 ("depthfm_ros.ros.node", "DepthFMNode._infer"),
                 ("depthfm_ros.ros.camera", "CameraStream.decode"),
                 ("depthfm_ros.ros.camera", "CameraStream.publish"),
                 ("depthfm_ros.ros.camera", "CameraStream.metric_step"),
                 ("depthfm_ros.ros.outputs", "FrameOutputs.publish_relative"),
                 ("depthfm_ros.ros.outputs", "FrameOutputs.publish_metric"),
                 ("depthfm_ros.pipeline", "DepthFMPipeline.__call__"),
                 ("depthfm_ros.pipeline", "DepthFMPipeline._run_batch"),
                 ("depthfm_ros.ros.lidar", "LidarInput.fuse"),
                 ("depthfm_ros.fusion.frame", "fuse_frame")}
#: what they also call that is bookkeeping (counters, a stamp, checks of a few values): not a stage
BOOKKEEPING = {("depthfm_ros.ros.stats", "FrameStats.frame_processed"),
               ("depthfm_ros.ros.stats", "FrameStats.metric_published"),
               ("depthfm_ros.ros.stats", "AlignmentStats.cloud_received"),
               ("depthfm_ros.ros.sync", "CloudBuffer.add"),
               ("depthfm_ros.ros.lidar", "LidarInput._now_sec"),
               ("depthfm_ros.geometry.camera", "PinholeCamera.is_distorted"),
               ("depthfm_ros.ros.stats", "FrameStats.points_published"),
               ("depthfm_ros.ros.stats", "MetricStats.frame"),
               ("depthfm_ros.ros.stats", "AlignmentStats.fit_accepted"),
               ("depthfm_ros.ros.sync", "stamp_seconds"),
               ("depthfm_ros.processing", "check_rgb"),
               ("depthfm_ros.pipeline", "DepthFMPipeline.size_for"),
               ("depthfm_ros.ros.params", "NodeConfig.batch_limit"),
               ("depthfm_ros.fusion.frame", "FusedFrame.aligned"),
               ("depthfm_ros.fusion.metric", "MetricEstimate.metric"),
               ("rclpy.node", "Node.get_logger")}
GPU_ONLY = {("depthfm_ros.tensor_processing", "postprocess_tensor")}


def node_frame_calls(node, image, cloud) -> set[tuple[str, str]]:
    """(module, qualname) of every call the frame-path functions make directly during one ``_process``; message
    field accessors, numpy internals and comprehensions left out."""
    orchestration = {code for code in _codes(ORCHESTRATION)}
    calls = set()

    def profile(frame, event, arg):
        if event == "call" and frame.f_back is not None and frame.f_back.f_code in orchestration:
            module, qualname = frame.f_globals.get("__name__", ""), frame.f_code.co_qualname
            ours = module.startswith(("depthfm_ros", "bench_frame")) or module in ("rclpy.publisher", "rclpy.node")
            if ours and "<locals>" not in qualname:
                calls.add((module, qualname))

    sys.setprofile(profile)
    try:
        bench.node_frame(node, image, cloud)
    finally:
        sys.setprofile(None)
    return calls


def _codes(names):
    for module, qualname in names:
        owner, name, stored = bench.resolve(f"{module}:{qualname}")
        func = stored.__func__ if isinstance(stored, (staticmethod, classmethod)) else stored
        yield func.__code__


def _defined_at(target: str) -> tuple[str, str]:
    _, _, stored = bench.resolve(target)
    func = stored.fget if isinstance(stored, property) else getattr(stored, "__func__", stored)
    return func.__module__, func.__qualname__


@pytest.fixture(scope="module")
def small_frame():
    return bench.frame_inputs(160, 120)


def test_the_bench_times_exactly_the_calls_of_the_node_frame_path(small_frame):
    scene, sim, scan, image, cloud, info = small_frame
    with bench.bench_node(bench.ReplayBackend(sim.z_hw), scan.T_cam_lidar, {"processing_resolution": 128}) as node:
        node._on_camera_info(info)
        bench.node_frame(node, image, cloud)  # a first frame: caches, the metric filter
        calls = node_frame_calls(node, image, cloud)
    stages = {_defined_at(t) for targets in bench.STAGES.values() for t in targets}
    timed = calls - ORCHESTRATION - BOOKKEEPING
    assert timed - stages == set(), "the node calls functions the bench does not time: add them to STAGES"
    assert stages - timed - GPU_ONLY == set(), "STAGES names functions the node no longer calls"
    assert ("depthfm_ros.fusion.completion", "complete_depth") in timed  # the frame really was fused


def test_the_bench_runs_every_stage_and_restores_the_functions(small_frame):
    from depthfm_ros.fusion import frame

    before = frame.complete_depth
    result = bench.bench_size(160, 120, ensemble_size=2, resolution=128, repeats=3)
    assert frame.complete_depth is before  # the stage timer put the originals back
    stages = result["stages"]
    assert set(bench.STAGES) | {"total", "other", "base"} == set(stages)
    for name in ("conversion", "preprocess", "postprocess", "messages", "cloud", "projection", "fit", "completion",
                 "points", "publish"):
        assert stages[name]["median_ms"] > 0 and stages[name]["cpu_median_ms"] >= 0, name
    assert result["processing_size"] == "128x128" and result["lidar_points"] > 1000
