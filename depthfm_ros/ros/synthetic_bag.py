"""A synthetic camera + LiDAR rosbag2 for replays, tests and demos, written with the ``rosbags`` library (no rclpy).

The synthetic bag is a camera driving through a :mod:`synthetic` scene (``moved_scene`` / ``camera_path``) with a
LiDAR mounted on it (``T_CAM_LIDAR_DEFAULT``):

- ``/camera/image_raw`` sensor_msgs/Image rgb8, frame ``camera_optical_frame``
- ``/camera/camera_info`` sensor_msgs/CameraInfo (plumb_bob, D = 0, P = [K | 0])
- ``/lidar/points`` sensor_msgs/PointCloud2 x, y, z float32 in frame ``lidar`` (REP-103)
- ``/tf_static`` tf2_msgs/TFMessage: the pose of ``lidar`` in ``camera_optical_frame`` (transient local)

Each frame's three messages carry the same header stamp; their log times are the stamp + 0/1/2 ms (LiDAR, then
camera_info, then image), so a player delivers the image last.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry.camera import PinholeCamera
from ..sim.synthetic import (
    T_CAM_LIDAR_DEFAULT,
    camera_path,
    default_camera,
    moved_scene,
    random_scene_spec,
    render_scene,
    simulate_lidar,
)
from .bag import CAMERA_INFO_TYPE, IMAGE_TYPE, POINTCLOUD2_TYPE, STORAGES, TF_TYPE, typestore
from .wire import HOST_IS_BIGENDIAN, build_cloud_fields, pack_points

CAMERA_FRAME = "camera_optical_frame"
LIDAR_FRAME = "lidar"
SYNTHETIC_TOPICS = {"image": "/camera/image_raw", "camera_info": "/camera/camera_info", "lidar": "/lidar/points",
                    "tf_static": "/tf_static"}
SYNTHETIC_START_NS = 1_700_000_000_000_000_000


@dataclass(frozen=True)
class SyntheticBag:
    """What :func:`write_synthetic_bag` wrote: the bag folder, its topics and each frame's header stamp."""

    path: Path
    topics: dict[str, str]  # role ("image", "camera_info", "lidar", "tf_static") -> topic
    stamps_ns: tuple[int, ...]
    width: int
    height: int
    points_per_scan: tuple[int, ...]  # empty without LiDAR


class _Messages:
    """Message builders of one type store (rosbags dataclasses)."""

    def __init__(self, store):
        self.store = store
        self.t = store.types

    def header(self, stamp_ns: int, frame_id: str):
        sec, nanosec = divmod(stamp_ns, 10**9)
        return self.t["std_msgs/msg/Header"](stamp=self.t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                             frame_id=frame_id)

    def image(self, rgb_hwc_u8: np.ndarray, header):
        h, w, _ = rgb_hwc_u8.shape
        return self.t[IMAGE_TYPE](header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w,
                                  data=np.ascontiguousarray(rgb_hwc_u8).reshape(-1))

    def camera_info(self, camera: PinholeCamera, header):
        # An empty or "none" model is written as plumb_bob with zero D (the rectified-camera convention).
        model = camera.distortion_model if camera.D.size and camera.distortion_model not in ("none", "") \
            else "plumb_bob"
        d = camera.D if model == camera.distortion_model else np.zeros(5)
        roi = self.t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self.t[CAMERA_INFO_TYPE](
            header=header, height=camera.height, width=camera.width, distortion_model=model, d=d.astype(float),
            k=camera.K.ravel().astype(float), r=np.eye(3).ravel(),
            p=np.hstack([camera.K, np.zeros((3, 1))]).ravel().astype(float), binning_x=0, binning_y=0, roi=roi)

    def cloud(self, points_n3: np.ndarray, header):
        fields, point_step = build_cloud_fields(with_rgb=False)
        field_msgs = [self.t["sensor_msgs/msg/PointField"](name=f.name, offset=f.offset, datatype=f.datatype,
                                                           count=f.count) for f in fields]
        n = len(points_n3)
        return self.t[POINTCLOUD2_TYPE](header=header, height=1, width=n, fields=field_msgs,
                                        is_bigendian=HOST_IS_BIGENDIAN, point_step=point_step,
                                        row_step=point_step * n, data=np.frombuffer(pack_points(points_n3), np.uint8),
                                        is_dense=True)

    def static_transform(self, T_parent_child: np.ndarray, header, child_frame_id: str):
        from scipy.spatial.transform import Rotation

        qx, qy, qz, qw = Rotation.from_matrix(T_parent_child[:3, :3]).as_quat()
        tx, ty, tz = (float(v) for v in T_parent_child[:3, 3])
        transform = self.t["geometry_msgs/msg/Transform"](
            translation=self.t["geometry_msgs/msg/Vector3"](x=tx, y=ty, z=tz),
            rotation=self.t["geometry_msgs/msg/Quaternion"](x=float(qx), y=float(qy), z=float(qz), w=float(qw)))
        stamped = self.t["geometry_msgs/msg/TransformStamped"](header=header, child_frame_id=child_frame_id,
                                                               transform=transform)
        return self.t[TF_TYPE](transforms=[stamped])


def _tf_static_qos():
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    default = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, default, default,
               QosLiveliness.AUTOMATIC, default, False)


def write_synthetic_bag(path: str | Path, num_frames: int = 30, width: int = 320, height: int = 240,
                        rate_hz: float = 10.0, storage: str = "sqlite3", lidar_pattern: str | None = "vlp16",
                        scene_seed: int = 3, start_ns: int = SYNTHETIC_START_NS) -> SyntheticBag:
    """Write a rosbag2 folder ``path`` (must not exist) of ``num_frames`` frames at ``rate_hz``.

    ``storage`` is "sqlite3" or "mcap"; ``lidar_pattern`` one of ``synthetic.LIDAR_PATTERNS`` or None for a
    camera-only bag. The same ``scene_seed`` gives the same bag.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in STORAGES:
        raise InputError(f"storage must be one of {STORAGES}, got {storage!r}")
    if num_frames < 1 or rate_hz <= 0 or width < 8 or height < 8:
        raise InputError(f"need num_frames >= 1, rate_hz > 0 and at least 8x8 pixels; got {num_frames}, {rate_hz}, "
                         f"{width}x{height}")
    path = Path(path)
    if path.exists():
        raise InputError(f"{path} exists already; rosbag2 writes a new folder")
    store = typestore()
    build = _Messages(store)
    camera = default_camera(width, height)
    spec = random_scene_spec(np.random.default_rng(scene_seed))
    period_ns = int(round(1e9 / rate_hz))
    stamps, points_per_scan = [], []
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        def connection(role, msgtype, **kwargs):
            return writer.add_connection(SYNTHETIC_TOPICS[role], msgtype, typestore=store, **kwargs)

        image_conn = connection("image", IMAGE_TYPE)
        info_conn = connection("camera_info", CAMERA_INFO_TYPE)
        lidar_conn = connection("lidar", POINTCLOUD2_TYPE) if lidar_pattern else None
        if lidar_pattern:
            tf_conn = connection("tf_static", TF_TYPE, offered_qos_profiles=[_tf_static_qos()])
            tf = build.static_transform(T_CAM_LIDAR_DEFAULT, build.header(start_ns, CAMERA_FRAME), LIDAR_FRAME)
            writer.write(tf_conn, start_ns, store.serialize_cdr(tf, TF_TYPE))

        def write(conn, log_ns, msg):
            writer.write(conn, log_ns, store.serialize_cdr(msg, conn.msgtype))

        for k in range(num_frames):
            stamp = start_ns + k * period_ns
            scene = render_scene(moved_scene(spec, camera_path(k)), camera, np.random.default_rng(scene_seed))
            if lidar_conn is not None:
                scan = simulate_lidar(scene, lidar_pattern, np.random.default_rng([scene_seed, k]))
                write(lidar_conn, stamp, build.cloud(scan.points_n3, build.header(stamp, LIDAR_FRAME)))
                points_per_scan.append(len(scan.points_n3))
            write(info_conn, stamp + 1_000_000, build.camera_info(camera, build.header(stamp, CAMERA_FRAME)))
            write(image_conn, stamp + 2_000_000, build.image(scene.rgb_hwc_u8, build.header(stamp, CAMERA_FRAME)))
            stamps.append(stamp)
    topics = {role: topic for role, topic in SYNTHETIC_TOPICS.items() if lidar_pattern or role in ("image",
                                                                                                     "camera_info")}
    return SyntheticBag(path, topics, tuple(stamps), width, height, tuple(points_per_scan))
