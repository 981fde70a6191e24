"""A corpus of hostile messages (fixtures/hostile/messages.yaml): every one is refused with an InputError by the
conversions, and a real node fed the whole corpus over DDS keeps serving good frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from ros_graph import Graph, image_msg, stamp_ns
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

from depthfm_ros.errors import InputError
from depthfm_ros.ros import conversions

CORPUS = yaml.safe_load((Path(__file__).parent / "fixtures" / "hostile" / "messages.yaml").read_text())


def _sized(data: bytes, entry: dict) -> bytes:
    if "data_len" in entry:
        data = (data * (entry["data_len"] // max(len(data), 1) + 1))[: entry["data_len"]]
    return data


def build_image(entry: dict) -> Image:
    msg = Image(height=6, width=8, encoding="rgb8", step=24, data=bytes(range(144)))
    for key in ("height", "width", "encoding", "step"):
        if key in entry:
            setattr(msg, key, entry[key])
    msg.data = _sized(bytes(msg.data), entry)
    return msg


def build_compressed(entry: dict) -> CompressedImage:
    if "bomb" in entry:
        ok, png = cv2.imencode(".png", np.zeros(entry["bomb"], np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        return CompressedImage(format=entry["format"], data=png.tobytes())
    return CompressedImage(format=entry["format"], data=entry["data"].encode("latin-1"))


def build_camera_info(entry: dict) -> CameraInfo:
    msg = CameraInfo(width=8, height=6, distortion_model="plumb_bob", d=[0.0] * 5,
                     k=[10.0, 0, 3.5, 0, 10.0, 2.5, 0, 0, 1], r=[1.0, 0, 0, 0, 1, 0, 0, 0, 1],
                     p=[10.0, 0, 3.5, 0, 0, 10.0, 2.5, 0, 0, 0, 1, 0])
    for key in ("width", "height", "distortion_model", "d", "k", "p", "binning_x"):
        if key in entry:
            setattr(msg, key, entry[key])
    if "roi_width" in entry:
        msg.roi.width = entry["roi_width"]
    return msg


def build_cloud(entry: dict) -> PointCloud2:
    fields = entry.get("fields", [["x", 0, 7, 1], ["y", 4, 7, 1], ["z", 8, 7, 1]])
    msg = PointCloud2(height=1, width=3, point_step=12, row_step=36, is_dense=True,
                      fields=[PointField(name=n, offset=max(o, 0), datatype=t, count=c) for n, o, t, c in fields],
                      data=np.arange(9, dtype=np.float32).tobytes())
    if any(o < 0 for _, o, _, _ in fields):  # PointField offsets are unsigned: a negative one wraps around
        msg.fields[0].offset = 2**32 - 4
    for key in ("width", "row_step"):
        if key in entry:
            setattr(msg, key, entry[key])
    msg.data = _sized(bytes(msg.data), entry)
    return msg


def _ids(kind):
    return [pytest.param(entry, id=f"{kind}: {entry['name']}") for entry in CORPUS[kind]]


@pytest.mark.parametrize("entry", _ids("images"))
def test_hostile_images_are_refused(entry):
    with pytest.raises(InputError):
        conversions.image_to_rgb(build_image(entry), max_pixels=16_777_216)


@pytest.mark.parametrize("entry", _ids("compressed"))
def test_hostile_compressed_images_are_refused(entry):
    with pytest.raises(InputError):
        conversions.compressed_image_to_rgb(build_compressed(entry), max_pixels=16_777_216)


@pytest.mark.parametrize("entry", _ids("camera_infos"))
def test_hostile_camera_infos_are_refused(entry):
    msg = build_camera_info(entry)
    if entry.get("aspect_only"):
        camera, why = conversions.output_camera(msg, 8, 6)
        assert camera is None and "aspect" in why
        return
    with pytest.raises(InputError):
        conversions.camera_info_to_camera(msg)
    assert conversions.output_camera(msg, 8, 6)[0] is None


@pytest.mark.parametrize("entry", _ids("clouds"))
def test_hostile_clouds_are_refused(entry):
    with pytest.raises(InputError):
        conversions.pointcloud2_to_xyz(build_cloud(entry))


def test_a_node_fed_the_whole_corpus_keeps_serving(tiny_model):
    from depthfm_ros.backends.torch_backend import TorchBackend

    g = Graph(TorchBackend(tiny_model, num_steps=1), {"model": "tiny", "processing_resolution": 64,
                                                      "use_lidar": True, "lidar_timeout_sec": 0.5,
                                                      "diagnostics_period_sec": 0.2})
    try:
        images, infos = g.publisher(Image, "/image"), g.publisher(CameraInfo, "/camera_info")
        clouds = g.publisher(PointCloud2, "/lidar")
        for entry in CORPUS["camera_infos"]:
            infos.publish(build_camera_info(entry))
        for k, entry in enumerate(CORPUS["clouds"]):
            cloud = build_cloud(entry)
            cloud.header.stamp.sec = 100 + k
            clouds.publish(cloud)
        g.wait_for(lambda: g.node.lidar.stats.is_stale(), "no pair: the LiDAR is stale, images go out alone")
        for k, entry in enumerate(CORPUS["images"]):  # one at a time: the worker keeps only the newest
            msg = build_image(entry)
            msg.header.stamp.sec = 50
            images.publish(msg)
            g.wait_for(lambda: g.node.stats.conversion_errors >= k + 1, f"hostile image {entry['name']}")
        good = image_msg(0, 7_000_000_000)
        images.publish(good)
        g.wait_for(lambda: any(stamp_ns(m) == 7_000_000_000 for m in g.received["relative_depth"]),
                   "a good frame after the corpus")
        assert g.node._worker.is_alive() and g.node.stats.inference_errors == 0
        assert g.node.stats.publishing_errors == 0
    finally:
        g.close()
