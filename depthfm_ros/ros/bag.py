"""rosbag2 in for replays, with the ``rosbags`` library (no rclpy): the choice of camera/LiDAR topics in a recorded
bag, its messages as raw CDR bytes in recording order, its frame ids and /tf_static transforms. The synthetic
camera + LiDAR bag the replay can make is written by :mod:`.synthetic_bag`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from ..errors import InputError
from ..geometry.projection import transform_from_xyz_quat

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2_TYPE = "sensor_msgs/msg/PointCloud2"
TF_TYPE = "tf2_msgs/msg/TFMessage"
STORAGES = ("sqlite3", "mcap")


def typestore():
    """The rosbags type store bags are written with (ROS 2 Kilted, as the package's ROS wheels)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


# ----------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class BagTopic:
    """One topic of a bag: its message type and how many messages it holds."""

    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class ReplayTopics:
    """The bag topics that feed the node: image (Image or CompressedImage), camera_info and LiDAR (optional)."""

    image: BagTopic
    camera_info: BagTopic | None
    lidar: BagTopic | None

    @property
    def compressed(self) -> bool:
        return self.image.msgtype == COMPRESSED_IMAGE_TYPE

    def by_name(self) -> dict[str, str]:
        """topic -> role ("image", "camera_info", "lidar") of the chosen topics."""
        return {t.name: role for role, t in (("image", self.image), ("camera_info", self.camera_info),
                                             ("lidar", self.lidar)) if t is not None}


def _open(path: str | Path):
    from rosbags.highlevel import AnyReader

    path = Path(path)
    if not path.exists():
        raise InputError(f"bag {path} does not exist")
    if path.is_file():  # a .db3/.mcap file: rosbag2 bags are the folder holding metadata.yaml
        path = path.parent
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except Exception as exc:  # rosbags raises its own error types for every unreadable bag
        raise InputError(f"cannot read bag {path}: {exc}") from exc
    return reader


def bag_topics(path: str | Path) -> dict[str, BagTopic]:
    """topic -> :class:`BagTopic` of every topic in the bag."""
    reader = _open(path)
    try:
        topics: dict[str, BagTopic] = {}
        for conn in reader.connections:
            old = topics.get(conn.topic)
            topics[conn.topic] = BagTopic(conn.topic, conn.msgtype, conn.msgcount + (old.count if old else 0))
        return topics
    finally:
        reader.close()


def _pick(topics: Mapping[str, BagTopic], role: str, msgtypes: tuple[str, ...], wanted: str | None,
          prefer_prefix: str | None = None) -> BagTopic | None:
    if wanted is not None:
        if wanted not in topics:
            raise InputError(f"--{role.replace('_', '-')}-topic {wanted} is not in the bag; topics: "
                             f"{', '.join(f'{t.name} ({t.msgtype})' for t in topics.values())}")
        if topics[wanted].msgtype not in msgtypes:
            raise InputError(f"{wanted} holds {topics[wanted].msgtype}, not {' or '.join(msgtypes)}")
        return topics[wanted]
    candidates = [t for t in topics.values() if t.msgtype in msgtypes]
    if len(candidates) > 1 and prefer_prefix is not None:
        candidates = [t for t in candidates if t.name.startswith(prefer_prefix)] or candidates
    if len(candidates) > 1:
        raise InputError(f"the bag has {len(candidates)} {' / '.join(msgtypes)} topics "
                         f"({', '.join(t.name for t in candidates)}); choose one with --{role.replace('_', '-')}-topic")
    return candidates[0] if candidates else None


def pick_topics(topics: Mapping[str, BagTopic], image: str | None = None, camera_info: str | None = None,
                lidar: str | None = None, use_lidar: bool = True) -> ReplayTopics:
    """The topics to replay: the given names, else the only topic of each type.

    The image is sensor_msgs/Image, or CompressedImage when the bag has no raw image (raw wins when it has both);
    camera_info prefers the image's sibling (``<image namespace>/camera_info``). Raises :class:`InputError` when
    there is no image topic or a choice is ambiguous.
    """
    if image is not None:
        chosen = _pick(topics, "image", (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE), image)
    else:
        chosen = _pick(topics, "image", (IMAGE_TYPE,), None) or _pick(topics, "image", (COMPRESSED_IMAGE_TYPE,), None)
    if chosen is None:
        raise InputError("the bag has no sensor_msgs/Image or CompressedImage topic; topics: "
                         f"{', '.join(f'{t.name} ({t.msgtype})' for t in topics.values()) or 'none'}")
    namespace = chosen.name.rsplit("/", 1)[0] + "/"
    if chosen.msgtype == COMPRESSED_IMAGE_TYPE and chosen.name.endswith("/compressed"):
        namespace = chosen.name[: -len("/compressed")].rsplit("/", 1)[0] + "/"
    info = _pick(topics, "camera_info", (CAMERA_INFO_TYPE,), camera_info, prefer_prefix=namespace)
    cloud = _pick(topics, "lidar", (POINTCLOUD2_TYPE,), lidar) if use_lidar or lidar else None
    return ReplayTopics(chosen, info, cloud)


@dataclass(frozen=True)
class RawMessage:
    """One recorded message: topic, log (receive) time in ns and the serialized CDR bytes as recorded."""

    topic: str
    log_time_ns: int
    cdr: bytes


def read_raw(path: str | Path, topics: list[str] | tuple[str, ...] | set[str],
             stamps_ns: set[int] | None = None) -> Iterator[RawMessage]:
    """The messages of ``topics`` in log-time order (only those with a header stamp in ``stamps_ns`` if given)."""
    reader = _open(path)
    try:
        connections = [c for c in reader.connections if c.topic in set(topics)]
        for conn in connections:
            serialization = getattr(conn.ext, "serialization_format", "cdr")
            if serialization != "cdr":
                raise InputError(f"{conn.topic} is stored as {serialization}, not CDR")
        for conn, log_time_ns, data in reader.messages(connections=connections):
            if stamps_ns is not None and header_stamp_ns(data) not in stamps_ns:
                continue
            yield RawMessage(conn.topic, int(log_time_ns), bytes(data))
    finally:
        reader.close()


def header_stamp_ns(cdr: bytes) -> int:
    """The header stamp (ns) of a CDR message that starts with std_msgs/Header (Image, CameraInfo, PointCloud2...).

    CDR: 2 bytes representation id (0x0001 little endian, 0x0000 big endian), 2 bytes options, then
    ``int32 sec, uint32 nanosec``.
    """
    if len(cdr) < 12 or cdr[0] != 0 or cdr[1] not in (0, 1, 2, 3):
        raise InputError(f"not a CDR message with a header ({len(cdr)} bytes, starts {bytes(cdr[:4]).hex()})")
    sec, nanosec = struct.unpack_from("<iI" if cdr[1] & 1 else ">iI", cdr, 4)
    return sec * 10**9 + nanosec


def _deserialized(path: str | Path, topic_types: tuple[str, ...] = (), topic: str | None = None, first: bool = False):
    reader = _open(path)
    try:
        connections = [c for c in reader.connections if c.topic == topic or c.msgtype in topic_types]
        for conn, _, data in reader.messages(connections=connections):
            yield reader.deserialize(data, conn.msgtype)
            if first:
                return
    finally:
        reader.close()


def first_frame_id(path: str | Path, topic: str) -> str | None:
    """header.frame_id of the first message on ``topic`` (None when the topic is empty)."""
    for msg in _deserialized(path, topic=topic, first=True):
        return msg.header.frame_id
    return None


def static_transforms(path: str | Path) -> dict[tuple[str, str], np.ndarray]:
    """(parent frame, child frame) -> 4x4 ``T_parent_child`` (child coordinates -> parent) from ``/tf_static``."""
    transforms = {}
    for msg in _deserialized(path, topic="/tf_static"):
        for stamped in msg.transforms:
            q, t = stamped.transform.rotation, stamped.transform.translation
            T = transform_from_xyz_quat([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])
            transforms[(stamped.header.frame_id.lstrip("/"), stamped.child_frame_id.lstrip("/"))] = T
    return transforms


def transform_between(transforms: Mapping[tuple[str, str], np.ndarray], parent: str, child: str) -> np.ndarray | None:
    """``T_parent_child`` from a direct transform either way round (no chains); None when there is none."""
    parent, child = parent.lstrip("/"), child.lstrip("/")
    if (parent, child) in transforms:
        return transforms[(parent, child)]
    if (child, parent) in transforms:
        return np.linalg.inv(transforms[(child, parent)])
    return None
