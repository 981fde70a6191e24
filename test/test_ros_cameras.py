"""One depthfm_node serving several cameras over DDS on loopback (issue 26): one engine, the cameras' frames batched,
each camera's outputs equal to a single-camera node's on the same frames; a stalled camera or one fed hostile input
costs the others nothing."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from ros_graph import TIMEOUT, Graph, camera_info_msg, stamp_ns
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from test_hostile_messages import CORPUS, build_image

from depthfm_ros.backends.base import Backend
from depthfm_ros.backends.torch_backend import TorchBackend
from depthfm_ros.ros.conversions import image_to_array

#: cameras of different resolutions and encodings (a raw rgb8, a raw bgr8, a PNG on image/compressed), one
#: processing size (64x64 at processing_resolution 64)
CAMERAS = {"front": (96, 128, "rgb8"), "side": (120, 160, "bgr8"), "rear": (72, 96, "png")}
BASE = {"model": "tiny", "processing_resolution": 64, "ensemble_size": 2, "seed": 3, "diagnostics_period_sec": 0.2}
T0 = 1_700_000_000_000_000_000
PERIOD_NS = 50_000_000


def camera_image(camera: str, k: int) -> Image | CompressedImage:
    """Frame ``k`` of ``camera``: its own size and encoding, stamped T0 + k periods."""
    h, w, encoding = CAMERAS[camera]
    rgb = np.random.default_rng([k, len(camera)]).integers(0, 256, (h, w, 3), dtype=np.uint8)
    if encoding == "png":
        msg = CompressedImage(format="rgb8; png compressed bgr8",
                              data=cv2.imencode(".png", rgb[..., ::-1])[1].tobytes())
    else:
        data = rgb[..., ::-1] if encoding == "bgr8" else rgb
        msg = Image(height=h, width=w, encoding=encoding, step=3 * w, data=np.ascontiguousarray(data).tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(T0 + k * PERIOD_NS, 10**9)
    msg.header.frame_id = f"{camera}_optical"
    return msg


def outputs_of(cameras) -> dict:
    """Probe subscriptions: '<camera>:relative_depth' etc. (the single camera: '' as its name)."""
    out = {}
    for camera in cameras:
        prefix = f"depthfm/{camera}/" if camera else "depthfm/"
        out[f"{camera}:relative_depth"] = (Image, prefix + "relative_depth")
        out[f"{camera}:relative_uncertainty"] = (Image, prefix + "relative_uncertainty")
    return out


class GatedBackend(Backend):
    """Runs the wrapped engine only when the test opens the gate (one call per ``open()``), recording the images
    per call: while it waits, frames of every camera pile up in the node's slots."""

    def __init__(self, inner: Backend):
        self.inner, self.calls, self._permits = inner, [], threading.Semaphore(0)
        self.name, self.num_steps, self.noising_step = "gated", inner.num_steps, inner.noising_step
        self.entered = 0  # calls that reached the gate

    def open(self) -> None:
        self._permits.release()

    def run(self, rgb_bchw, noise):
        self.entered += 1
        self._permits.acquire()
        self.calls.append(len(rgb_bchw))
        return self.inner.run(rgb_bchw, noise)


@pytest.fixture
def engine(tiny_model):
    return TorchBackend(tiny_model, num_steps=1)


def both_in_latest_array(g: Graph, stale: tuple[str, str], fresh: tuple[str, str]) -> bool:
    """The newest /diagnostics array holds status ``stale[0]`` with ``stale[1]`` in its message and status
    ``fresh[0]`` at level OK."""
    with g._cond:
        arrays = list(g.received["diagnostics"])
    if not arrays:
        return False
    statuses = {s.name: s for s in arrays[-1].status}
    return stale[0] in statuses and stale[1] in statuses[stale[0]].message and fresh[0] in statuses and \
        statuses[fresh[0]].level == DiagnosticStatus.OK


def received(g: Graph, key: str) -> dict[int, np.ndarray]:
    with g._cond:
        return {stamp_ns(m): image_to_array(m) for m in g.received[key]}


def single_camera_outputs(engine, camera: str, frames: list[int]) -> dict[str, dict[int, np.ndarray]]:
    """What a single-camera node with the same parameters publishes for ``camera``'s ``frames``, one at a time."""
    compressed = CAMERAS[camera][2] == "png"
    g = Graph(engine, {**BASE, "image_transport": "compressed" if compressed else "raw"}, outputs=outputs_of([""]))
    try:
        pub = g.publisher(CompressedImage, "/image/compressed") if compressed else g.publisher(Image, "/image")
        for k in frames:
            pub.publish(camera_image(camera, k))
            g.wait_for(lambda: len(g.received[":relative_uncertainty"]) > frames.index(k), f"single {camera} {k}")
        return {name: received(g, f":{name}") for name in ("relative_depth", "relative_uncertainty")}
    finally:
        g.close()


def test_three_cameras_run_as_one_batch_and_each_equals_its_single_camera_run(engine):
    gated = GatedBackend(engine)
    g = Graph(gated, {**BASE, "cameras": list(CAMERAS), "batch_window_sec": 0.0, "rear.image_transport": "compressed"},
              outputs=outputs_of(CAMERAS))
    try:
        pubs = {camera: g.publisher(Image, f"/{camera}/image") for camera in ("front", "side")}
        pubs["rear"] = g.publisher(CompressedImage, "/rear/image/compressed")
        pubs["front"].publish(camera_image("front", 0))  # the worker takes it and waits at the gate
        g.wait_for(lambda: gated.entered == 1, "front frame 0 at the engine")
        for k in (1, 2, 3):
            for camera in CAMERAS:
                pubs[camera].publish(camera_image(camera, k))
            g.wait_for(lambda: g.node._slots.waiting() == [0, 1, 2], f"frame {k} of every camera waiting")
            gated.open()  # the previous batch runs; the worker then takes every camera's frame k
            g.wait_for(lambda: gated.entered == k + 1, f"frame {k} at the engine")
        gated.open()
        g.wait_for(lambda: all(len(g.received[f"{c}:relative_uncertainty"]) == n
                               for c, n in (("front", 4), ("side", 3), ("rear", 3))), "every frame of every camera")
        assert gated.calls == [1, 3, 3, 3]  # the three cameras' frames in one engine call
        assert g.node.camera("side").stats.snapshot().batch_size == 3.0  # what /diagnostics shows
        multi = {c: {name: received(g, f"{c}:{name}") for name in ("relative_depth", "relative_uncertainty")}
                 for c in CAMERAS}
        for camera, (h, w, _) in CAMERAS.items():
            assert all(a.shape == (h, w) for a in multi[camera]["relative_depth"].values())
            assert g.node.camera(camera).stats.processed == len(multi[camera]["relative_depth"])
    finally:
        g.close()
    for camera, frames in (("front", [0, 1, 2, 3]), ("side", [1, 2, 3]), ("rear", [1, 2, 3])):
        single = single_camera_outputs(engine, camera, frames)
        for name in ("relative_depth", "relative_uncertainty"):
            assert sorted(multi[camera][name]) == sorted(single[name]) == [T0 + k * PERIOD_NS for k in frames]
            for stamp, alone in single[name].items():
                np.testing.assert_allclose(multi[camera][name][stamp], alone, atol=1e-5, err_msg=f"{camera} {name}")
        assert max(a.mean() for a in single["relative_uncertainty"].values()) > 1e-3  # the noise mattered


def test_a_stalled_camera_delays_no_other_camera(engine):
    """Camera b stops, camera c never sends: camera a's frames go out without waiting for them, though the batch
    window is 5 s, and b's diagnostics go stale while a's stay OK."""
    cameras = ["a", "b", "c"]
    g = Graph(engine, {**BASE, "ensemble_size": 1, "cameras": cameras, "batch_window_sec": 5.0},
              outputs=outputs_of(cameras))
    try:
        pubs = {camera: g.publisher(Image, f"/{camera}/image") for camera in ("a", "b")}
        for k in range(4):  # both live, frames 50 ms apart in the stamps, sent as fast as they are served
            for camera in ("a", "b"):
                pubs[camera].publish(camera_image("front", k))
            g.wait_for(lambda: all(g.node.camera(c).stats.processed > k for c in ("a", "b")), f"frame {k}")
        for k in range(4, 12):  # b has stalled; with 5 s per frame this would take 40 s and time out
            pubs["a"].publish(camera_image("front", k))
            g.wait_for(lambda: g.node.camera("a").stats.processed > k, f"a's frame {k} with b stalled")
        a, b = g.node.camera("a").stats, g.node.camera("b").stats
        assert a.processed == 12 and b.processed == 4 and a.dropped == 0
        k, deadline = 12, time.monotonic() + TIMEOUT
        while not both_in_latest_array(g, ("/depthfm: b: depth", "input stale"), ("/depthfm: a: depth", "")):
            pubs["a"].publish(camera_image("front", k))  # a keeps sending while b's silence becomes stale
            g.wait_for(lambda: g.node.camera("a").stats.processed > k, f"a's frame {k}")
            k += 1
            assert time.monotonic() < deadline, "b never reported stale beside a fresh a"
        assert not g.received["c:relative_depth"] and g.node.camera("c").stats.received == 0
    finally:
        g.close()


class PoisonBackend(Backend):
    """Fails on a batch holding an all-black image once ``poison`` is set; records the images per call."""

    def __init__(self, inner: Backend):
        self.inner, self.calls, self.poison = inner, [], False
        self.name, self.num_steps, self.noising_step = "poison", inner.num_steps, inner.noising_step

    def run(self, rgb_bchw, noise):
        self.calls.append(len(rgb_bchw))
        if self.poison and (rgb_bchw.reshape(len(rgb_bchw), -1) == -1).all(axis=1).any():
            raise RuntimeError("engine failed on a black frame")
        return self.inner.run(rgb_bchw, noise)


def test_hostile_input_on_one_camera_costs_the_other_none_of_its_frames(tiny_model):
    cameras = ["good", "bad"]
    engine = PoisonBackend(TorchBackend(tiny_model, num_steps=1))
    g = Graph(engine, {**BASE, "ensemble_size": 1, "cameras": cameras, "batch_window_sec": 0.05},
              outputs=outputs_of(cameras))
    try:
        good, bad = g.publisher(Image, "/good/image"), g.publisher(Image, "/bad/image")
        bad_info = g.publisher(CameraInfo, "/bad/camera_info")
        bad_info.publish(camera_info_msg(0, 0))  # an unusable calibration on the bad camera only
        hostile = CORPUS["images"]
        for k, entry in enumerate(hostile):
            msg = build_image(entry)
            msg.header.stamp.sec = 50
            bad.publish(msg)
            good.publish(camera_image("front", k))
            g.wait_for(lambda: g.node.camera("good").stats.processed > k and
                       g.node.camera("bad").stats.conversion_errors > k, f"hostile image {entry['name']}")
        g.wait_for(lambda: g.node._slots.waiting() == [], "the worker idle")
        black = camera_image("front", 99)
        black.data = bytes(len(black.data))  # decodes, but the engine fails on it
        now = time.perf_counter()  # one batch of both cameras' frames, run here (the worker is idle)
        engine.poison = True
        g.node._run_frames([(g.node.camera("good"), camera_image("front", len(hostile)), now, 0.0),
                            (g.node.camera("bad"), black, now, 0.0)])
        assert engine.calls[-3:] == [2, 1, 1]  # the batch failed; each frame alone: only the bad one fails
        good_stats, bad_stats = g.node.camera("good").stats, g.node.camera("bad").stats
        assert good_stats.processed == len(hostile) + 1
        assert (good_stats.conversion_errors, good_stats.inference_errors, good_stats.publishing_errors) == (0, 0, 0)
        assert (bad_stats.conversion_errors, bad_stats.inference_errors) == (len(hostile), 1)
        assert bad_stats.processed == 0 and not g.received["bad:relative_depth"]
        assert g.node._worker.is_alive()
    finally:
        g.close()


def test_a_single_camera_node_keeps_its_topics_and_diagnostics(engine):
    g = Graph(engine, BASE, outputs=outputs_of([""]))
    try:
        assert [c.name for c in g.node.cameras] == [""]
        topics = {t for t, _ in g.node.get_topic_names_and_types()}
        assert "/image" in {s.topic_name for s in g.node.subscriptions}
        assert {"/depthfm/relative_depth", "/depthfm/depth"} <= {p.topic_name for p in g.node.publishers}
        assert not any(t.startswith("/depthfm/front") for t in topics)
        g.wait_for(lambda: g.diagnostics("depthfm: depth"), "diagnostics")
        with g._cond:
            names = {s.name for a in g.received["diagnostics"] for s in a.status}
        assert names == {"/depthfm: depth", "/depthfm: metric scale"}
    finally:
        g.close()


def test_cameras_sharing_one_lidar_subscribe_it_once_and_each_gets_every_cloud(engine):
    from sensor_msgs.msg import PointCloud2, PointField

    cameras = ["a", "b", "c"]
    g = Graph(engine, {**BASE, "ensemble_size": 1, "cameras": cameras, "use_lidar": True, "c.use_lidar": False},
              remaps=["a/lidar:=/points", "b/lidar:=/points"], outputs=outputs_of(cameras))
    try:
        assert [s.topic_name for s in g.node.subscriptions if s.msg_type is PointCloud2] == ["/points"]
        assert g.node.camera("c").lidar is None
        clouds = g.publisher(PointCloud2, "/points")
        xyz = np.array([[0.0, 0.0, 2.0], [1.0, 0.0, 3.0]], np.float32)
        cloud = PointCloud2(height=1, width=2, point_step=12, row_step=24, is_dense=True, data=xyz.tobytes(),
                            fields=[PointField(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")])
        cloud.header.stamp.sec, cloud.header.frame_id = 100, "lidar"
        clouds.publish(cloud)
        bad = PointCloud2(height=1, width=2, point_step=12, row_step=24, data=bytes(5))  # no fields, short data
        bad.header.stamp.sec = 101
        clouds.publish(bad)
        lidars = [g.node.camera(c).lidar for c in ("a", "b")]
        g.wait_for(lambda: all(lidar.stats.clouds_received == 2 for lidar in lidars), "both clouds at a and b")
        g.wait_for(lambda: all(g.node.camera(c).stats.refused["cloud"] == 1 for c in ("a", "b")), "the bad one")
        buffered = []
        for lidar in lidars:
            with lidar.buffer.changed:
                entry, _ = lidar.buffer.nearest(100.0)
            assert entry is not None and np.array_equal(entry[1].points_n3, xyz)
            buffered.append(entry[1])
        assert buffered[0] is buffered[1]  # converted once for both cameras
    finally:
        g.close()


def test_max_batch_caps_every_engine_call_and_a_failed_batch_keeps_each_cameras_noise(tiny_model):
    """Three cameras, max_batch 2: calls of 2 and 1 on torch too. A batch the engine fails on is retried frame by
    frame with each camera's generator put back, so the good camera's outputs still equal its single-camera run."""
    engine = PoisonBackend(TorchBackend(tiny_model, num_steps=1))
    cameras = ["a", "b", "c"]
    g = Graph(engine, {**BASE, "cameras": cameras, "max_batch": 2}, outputs=outputs_of(cameras))
    try:
        assert g.node.config.batch_limit == 2
        now = time.perf_counter()
        g.node._run_frames([(g.node.camera(c), camera_image("front", 0), now, 0.0) for c in cameras])
        assert engine.calls == [2, 1]
        black = camera_image("front", 1)
        black.data = bytes(len(black.data))
        engine.poison = True
        g.node._run_frames([(g.node.camera("a"), camera_image("front", 1), now, 0.0),
                            (g.node.camera("b"), black, now, 0.0)])
        assert engine.calls == [2, 1, 2, 1, 1] and g.node.camera("b").stats.inference_errors == 1
        g.wait_for(lambda: len(g.received["a:relative_uncertainty"]) == 2, "camera a's two frames")
        multi = {name: received(g, f"a:{name}") for name in ("relative_depth", "relative_uncertainty")}
    finally:
        g.close()
    single = single_camera_outputs(TorchBackend(tiny_model, num_steps=1), "front", [0, 1])
    for name, frames in single.items():
        for stamp, alone in frames.items():
            np.testing.assert_allclose(multi[name][stamp], alone, atol=1e-5, err_msg=name)
