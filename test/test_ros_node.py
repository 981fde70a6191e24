"""depthfm_node in a real ROS 2 graph (rclpy + Fast DDS on loopback) with a tiny random model."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.context import Context
from rclpy.parameter import Parameter
from ros_graph import Graph, H, W, camera_info_msg, image_msg, rgb_frame, stamp_ns
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from depthfm_ros.backends.base import Backend
from depthfm_ros.backends.torch_backend import TorchBackend
from depthfm_ros.ros.conversions import image_to_array
from depthfm_ros.ros.graph import InProcessGraph
from depthfm_ros.ros.node import DepthFMNode, main
from depthfm_ros.ros.params import ParameterError


class SlowBackend(Backend):
    """A backend that sleeps before running the wrapped one (an engine slower than the camera)."""

    def __init__(self, inner: Backend, delay_s: float):
        self.inner, self.delay_s = inner, delay_s
        self.name, self.num_steps = "slow-" + inner.name, inner.num_steps

    def run(self, rgb_bchw, noise):
        time.sleep(self.delay_s)
        return self.inner.run(rgb_bchw, noise)


class FailingOnceBackend(SlowBackend):
    """Raises on its first run, then works."""

    def __init__(self, inner: Backend):
        super().__init__(inner, 0.0)
        self.failed = False

    def run(self, rgb_bchw, noise):
        if not self.failed:
            self.failed = True
            raise RuntimeError("engine hiccup")
        return self.inner.run(rgb_bchw, noise)


@pytest.fixture
def torch_backend(tiny_model):
    return TorchBackend(tiny_model, num_steps=1)


@pytest.fixture
def graph_factory():
    graphs = []

    def make(*args, **kwargs):
        graphs.append(Graph(*args, **kwargs))
        return graphs[-1]

    yield make
    for graph in graphs:
        graph.close()


BASE = {"model": "tiny", "processing_resolution": 64, "diagnostics_period_sec": 0.2}


def test_depth_uncertainty_and_camera_info_carry_the_input_header(graph_factory, torch_backend):
    g = graph_factory(torch_backend, {**BASE, "ensemble_size": 2})
    info_pub = g.publisher(CameraInfo, "/camera_info")
    image_pub = g.publisher(Image, "/image")
    info_pub.publish(camera_info_msg(W, H))
    g.wait_for(lambda: g.node._camera_info is not None, "camera_info")
    stamps = [1_700_000_000_123_000_000 + k * 50_000_000 for k in range(3)]
    for k, stamp in enumerate(stamps):
        image_pub.publish(image_msg(k, stamp))
        g.wait_for(lambda: len(g.received["camera_info"]) > k, f"output {k}")
    g.wait_for(lambda: len(g.received["relative_depth"]) == 3 and len(g.received["relative_uncertainty"]) == 3,
               "all outputs")
    for key in ("relative_depth", "relative_uncertainty", "camera_info"):
        assert [stamp_ns(m) for m in g.received[key]] == stamps, key
        assert {m.header.frame_id for m in g.received[key]} == {"camera_optical"}, key
    for depth_msg, std_msg in zip(g.received["relative_depth"], g.received["relative_uncertainty"]):
        assert (depth_msg.encoding, std_msg.encoding) == ("32FC1", "32FC1")
        depth, std = image_to_array(depth_msg), image_to_array(std_msg)
        assert depth.shape == std.shape == (H, W) and depth.dtype == np.float32
        assert 0.0 <= depth.min() and depth.max() <= 1.0 and depth.max() > depth.min()
        assert np.all(std >= 0) and std.max() > 0  # two members disagree somewhere
    info = g.received["camera_info"][-1]
    assert (info.width, info.height) == (W, H) and list(info.k) == list(camera_info_msg(W, H).k)
    assert g.node.stats.dropped == 0


def test_camera_info_is_scaled_to_the_output_size(graph_factory, torch_backend):
    g = graph_factory(torch_backend, BASE)
    info_pub = g.publisher(CameraInfo, "/camera_info")
    image_pub = g.publisher(Image, "/image")
    info_pub.publish(camera_info_msg(2 * W, 2 * H))  # calibrated at twice the streamed size
    g.wait_for(lambda: g.node._camera_info is not None, "camera_info")
    image_pub.publish(image_msg(0, 42))
    g.wait_for(lambda: g.received["camera_info"], "scaled camera_info")
    info = g.received["camera_info"][0]
    assert (info.width, info.height) == (W, H) and stamp_ns(info) == 42
    assert info.k[0] == pytest.approx(camera_info_msg(2 * W, 2 * H).k[0] / 2)
    assert info.p[0] == pytest.approx(info.k[0]) and info.k[2] == pytest.approx((W - 1) / 2)


def test_malformed_messages_are_counted_and_the_node_keeps_serving(graph_factory, tiny_model):
    g = graph_factory(FailingOnceBackend(TorchBackend(tiny_model, num_steps=1)), BASE)
    image_pub = g.publisher(Image, "/image")
    good = image_msg(0, 1)
    bad_encoding = image_msg(0, 2)
    bad_encoding.encoding = "yuv999"
    bad_step = image_msg(0, 3)
    bad_step.step = 3 * W + 7  # step x height no longer matches the data
    short_data = image_msg(0, 4)
    short_data.data = short_data.data[: 3 * W * (H - 1)]
    empty = Image(encoding="rgb8")
    empty.header.stamp.sec = 5
    for k, msg in enumerate([bad_encoding, bad_step, short_data, empty]):
        image_pub.publish(msg)
        g.wait_for(lambda: g.node.stats.conversion_errors == k + 1, f"bad message {k} counted")
    image_pub.publish(good)  # first inference fails inside the engine
    g.wait_for(lambda: g.node.stats.inference_errors == 1, "inference error counted")
    g.wait_for(lambda: any(s.level == DiagnosticStatus.ERROR for a in g.received["diagnostics"]
                           for s in a.status), "ERROR diagnostics")
    good.header.stamp.sec, good.header.stamp.nanosec = 6, 0
    image_pub.publish(good)
    g.wait_for(lambda: g.received["relative_depth"], "depth after bad messages")
    assert stamp_ns(g.received["relative_depth"][0]) == 6 * 10**9
    g.wait_for(lambda: g.node.stats.processed == 1, "processed count")
    snap = g.node.stats.snapshot()
    assert (snap.conversion_errors, snap.inference_errors, snap.processed) == (4, 1, 1)
    assert "inference: RuntimeError: engine hiccup" in snap.last_error
    assert g.node._worker.is_alive()


def test_compressed_transport_with_namespace_and_remap(graph_factory, torch_backend):
    g = graph_factory(torch_backend, {**BASE, "image_transport": "compressed"}, namespace="robot",
                      remaps=["image:=/cam/color/image_raw"])
    pub = g.publisher(CompressedImage, "/cam/color/image_raw/compressed")
    ok, jpeg = cv2.imencode(".jpg", rgb_frame(0)[..., ::-1])
    msg = CompressedImage(format="jpeg", data=jpeg.tobytes())
    msg.header.stamp.sec, msg.header.frame_id = 7, "cam"
    pub.publish(msg)
    g.wait_for(lambda: g.received["relative_depth"] and g.received["relative_uncertainty"],
               "depth from a compressed image")
    depth = g.received["relative_depth"][0]
    assert (depth.width, depth.height, depth.header.frame_id, depth.header.stamp.sec) == (W, H, "cam", 7)
    assert not g.received["camera_info"]  # no camera_info in: none out


def test_model_from_parameters_tiny_with_tiny_vae(graph_factory):
    g = graph_factory(None, {**BASE, "vae_kind": "tiny", "num_steps": 1})
    assert g.node.backend.name == "torch" and g.node.backend.model.tiny_vae is not None
    image_pub = g.publisher(Image, "/image")
    image_pub.publish(image_msg(0, 99))
    g.wait_for(lambda: g.received["relative_depth"], "depth from the parameter-built model")
    first = g.received["relative_depth"][0]
    assert (first.width, first.height, stamp_ns(first)) == (W, H, 99)


def test_slow_backend_drops_stale_frames_and_reports_them(graph_factory, torch_backend):
    g = graph_factory(SlowBackend(torch_backend, 0.25), BASE)
    image_pub = g.publisher(Image, "/image")
    stamps = [1000 + k for k in range(16)]
    for k, stamp in enumerate(stamps):  # 40 Hz camera, ~4 Hz engine
        image_pub.publish(image_msg(k, stamp))
        time.sleep(0.025)
    g.wait_for(lambda: g.received["relative_depth"] and stamp_ns(g.received["relative_depth"][-1]) == stamps[-1],
               "the newest frame's depth")
    g.wait_for(lambda: g.node.stats.processed == len(g.received["relative_depth"]), "processed count")
    snap = g.node.stats.snapshot()
    assert snap.received == len(stamps)
    assert snap.processed == len(g.received["relative_depth"]) and snap.processed + snap.dropped == snap.received
    assert snap.dropped >= len(stamps) // 2
    out = [stamp_ns(m) for m in g.received["relative_depth"]]
    assert out == sorted(out) and len(out) < len(stamps)

    def reported_drops():
        values = [{kv.key: kv.value for kv in s.values} for a in g.received["diagnostics"] for s in a.status]
        return [int(v["frames_dropped"]) for v in values if v.get("backend") == "slow-torch"]

    g.wait_for(lambda: reported_drops() and reported_drops()[-1] == snap.dropped, "drops in /diagnostics")


def test_node_refuses_bad_parameters():
    context = Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(ParameterError, match="'processing_resolution'"):
            DepthFMNode(context=context, parameter_overrides=[Parameter("model", value="tiny"),
                                                             Parameter("processing_resolution", value=100)])
        with pytest.raises(ParameterError, match="'checkpoint'"):
            DepthFMNode(context=context)
    finally:
        rclpy.shutdown(context=context)


def test_main_exits_with_a_message_on_bad_parameters(capfd):
    assert main(["--ros-args", "-p", "model:=tiny", "-p", "num_steps:=0", "-r", "__node:=depthfm_main"]) == 2
    assert "num_steps" in capfd.readouterr().err


def test_ros2_run_entry_point_serves_and_stops_on_sigint():
    """``ros2 run depthfm_ros depthfm_node`` as its own process: serves depth, exits 0 on Ctrl-C."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "depthfm_ros.ros.node", "--ros-args", "-p", "model:=tiny",
                             "-p", "processing_resolution:=64", "-r", "image:=/entry_point_test/image"],
                            env=env, stderr=subprocess.PIPE, text=True)
    graph = InProcessGraph()
    probe = graph.add(rclpy.create_node("entry_point_probe", context=graph.context))
    got = []
    probe.create_subscription(Image, "/depthfm/relative_depth", got.append, 10)
    pub = probe.create_publisher(Image, "/entry_point_test/image", 10)
    graph.start()
    try:  # a generous bound on a busy machine: start-up imports torch and builds the model (seconds, not minutes)
        deadline = time.monotonic() + 120.0
        while not got and time.monotonic() < deadline and proc.poll() is None:
            if pub.get_subscription_count():
                pub.publish(image_msg(0, 77))
            time.sleep(0.1)
        assert got and stamp_ns(got[0]) == 77 and got[0].encoding == "32FC1"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60.0)  # shutting down takes seconds on a loaded machine
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        graph.close()
    assert code == 0, proc.stderr.read()[-2000:]


def test_torch_threads_parameter_sets_torch_threads_at_start(graph_factory, torch_backend):
    import torch

    before = torch.get_num_threads()
    try:
        graph_factory(torch_backend, {**BASE, "torch_threads": 2})
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    graph_factory(torch_backend, BASE)  # 0: left alone
    assert torch.get_num_threads() == before


def test_ensemble_size_reaches_tensorrt_engines_only(monkeypatch, tmp_path):
    from depthfm_ros import backends
    from depthfm_ros.backends import create_backend, load_backend
    from depthfm_ros.ros.params import validate

    calls = []
    monkeypatch.setattr(backends, "create_backend", lambda *args, **kwargs: calls.append(kwargs))
    engine = tmp_path / "split"
    engine.mkdir()
    load_backend(validate({"engine": str(engine), "backend": "tensorrt", "ensemble_size": 4}).model_settings())
    assert calls[-1]["ensemble_size"] == 4 and calls[-1]["engine"] == str(engine)
    # backends that take any M (or read it from the graph) are not given it
    monkeypatch.setattr("depthfm_ros.backends.torch_backend.TorchBackend.from_checkpoint",
                        classmethod(lambda cls, *args, **kwargs: kwargs))
    assert "ensemble_size" not in create_backend("torch", "model", ensemble_size=4)


def test_a_publishing_failure_is_counted_as_such_and_the_node_keeps_serving(graph_factory, torch_backend):
    """A bug or a broken publisher after inference is not reported as 'inference failed'."""
    g = graph_factory(torch_backend, BASE)
    image_pub = g.publisher(Image, "/image")
    real_publish, calls = g.node.outputs.relative_uncertainty.publish, []

    def publish_once_broken(msg):
        calls.append(msg)
        if len(calls) == 1:
            raise RuntimeError("publisher gone")
        real_publish(msg)

    g.node.outputs.relative_uncertainty.publish = publish_once_broken
    image_pub.publish(image_msg(0, 1_000_000_000))
    g.wait_for(lambda: g.node.stats.publishing_errors == 1, "publishing error counted")
    image_pub.publish(image_msg(1, 2_000_000_000))
    g.wait_for(lambda: g.received["relative_uncertainty"] and g.node.stats.processed == 1, "a frame after the failure")
    snap = g.node.stats.snapshot()
    assert (snap.publishing_errors, snap.inference_errors, snap.processed) == (1, 0, 1)
    assert snap.last_error == "publishing: RuntimeError: publisher gone"
    assert g.node._worker.is_alive()


def test_a_decompression_bomb_is_refused_and_the_next_frames_are_served(graph_factory, torch_backend):
    """8000x8000 zeros in a ~60 KB PNG: refused from its header (no 4.5 GiB decode), counted, and the good frames
    after it get their output (they used to get none)."""
    g = graph_factory(torch_backend, {**BASE, "image_transport": "compressed", "max_image_pixels": 1_000_000})
    pub = g.publisher(CompressedImage, "/image/compressed")
    ok, png = cv2.imencode(".png", np.zeros((8000, 8000), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    bomb = CompressedImage(format="png", data=png.tobytes())
    pub.publish(bomb)
    g.wait_for(lambda: g.node.stats.conversion_errors == 1, "the bomb refused")
    assert "over max_image_pixels" in g.node.stats.last_error
    ok, jpeg = cv2.imencode(".jpg", rgb_frame(0)[..., ::-1])
    for k in range(3):
        good = CompressedImage(format="jpeg", data=jpeg.tobytes())
        good.header.stamp.sec = 10 + k
        pub.publish(good)
        g.wait_for(lambda: len(g.received["relative_depth"]) == k + 1, f"good frame {k}")
    assert g.node.stats.conversion_errors == 1


def test_each_kind_of_bad_input_is_logged_and_diagnostics_run_on_a_steady_clock(graph_factory, torch_backend):
    """use_sim_time without /clock: the diagnostics timer used to stop (it ran on the ROS clock)."""
    g = graph_factory(torch_backend, {**BASE, "log_throttle_sec": 60.0, "use_sim_time": True})
    lines = []
    g.node.error_log._log = lines.append
    image_pub = g.publisher(Image, "/image")
    for k in range(3):
        bad_encoding = image_msg(k, 1)
        bad_encoding.encoding = f"yuv{k}"
        bad_step = image_msg(k, 2)
        bad_step.step = 3 * W + 7
        for j, msg in enumerate((bad_encoding, bad_step)):  # one at a time: the worker keeps only the newest
            image_pub.publish(msg)
            g.wait_for(lambda: g.node.stats.conversion_errors == 2 * k + j + 1, f"bad message {k}.{j}")
    assert len(lines) == 2 and "yuv0" in lines[0] and "step" in lines[1]
    count = len(g.received["diagnostics"])
    g.wait_for(lambda: len(g.received["diagnostics"]) >= count + 2, "diagnostics without /clock")


def test_a_negative_stamp_without_lidar_is_served_not_a_publishing_error(graph_factory, torch_backend):
    g = graph_factory(torch_backend, BASE)
    msg = image_msg(0, 0)
    msg.header.stamp.sec = -5  # rclpy's Time refuses it; the metric filter's clock must not
    g.publisher(Image, "/image").publish(msg)
    g.wait_for(lambda: g.node.stats.processed == 1 and g.received["relative_depth"], "the frame's relative depth")
    assert g.node.stats.publishing_errors == 0


def test_a_camera_that_stops_is_reported_stale_and_the_metric_status_with_it(graph_factory, torch_backend):
    """Used to: a 10 s publisher stall left the depth status OK at 0.0 Hz and the metric status OK. Now no image for
    2 diagnostics periods is WARN, for 5 periods ERROR, on both statuses; the first image ends it."""
    from diagnostic_msgs.msg import DiagnosticStatus as Status

    g = graph_factory(torch_backend, {**BASE, "metric_fixed_scale": 2.0})
    image_pub = g.publisher(Image, "/image")
    image_pub.publish(image_msg(0, 1))
    g.wait_for(lambda: g.received["relative_depth"], "a frame")

    def levels(suffix):
        return [s.level for a in list(g.received["diagnostics"]) for s in a.status if s.name.endswith(suffix)]

    start = len(g.received["diagnostics"])
    g.wait_for(lambda: Status.ERROR in levels(": depth")[start:] and Status.ERROR in levels(": metric scale")[start:],
               "ERROR after 5 periods without an image")
    depth_levels, metric_levels = levels(": depth")[start:], levels(": metric scale")[start:]
    assert depth_levels.index(Status.WARN) < depth_levels.index(Status.ERROR)  # WARN first
    assert Status.WARN in metric_levels[:metric_levels.index(Status.ERROR)]
    stale = [s for a in list(g.received["diagnostics"]) for s in a.status if s.name.endswith(": metric scale")][-1]
    assert "input stale: no image for" in stale.message and {kv.key: kv.value for kv in stale.values}["source"] == \
        "stale"
    image_pub.publish(image_msg(1, 2))  # the camera is back
    count = len(g.received["diagnostics"])
    g.wait_for(lambda: len(g.received["diagnostics"]) > count + 1 and levels(": depth")[-1] != Status.ERROR,
               "no longer stale")
