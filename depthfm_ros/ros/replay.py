"""Replay of a rosbag2 through depthfm_node in an in-process ROS 2 graph: the library behind ``depthfm-replay``
(cli/replay.py, whose docstring describes the timing, topics and report).

:func:`replay` picks the topics, turns the options into node parameters (:mod:`.replay_options`), wires a player
node to the depthfm_node's inputs and outputs, plays the bag's CDR bytes at the recorded timing (or in lockstep),
lets the node drain, and writes the report (:mod:`.replay_report`) of what the recorder (:mod:`.replay_recorder`)
saw."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from tqdm import tqdm

from ..errors import InputError
from ..files import writable_folder
from . import bag as bagio
from .graph import InProcessGraph
from .node import DepthFMNode
from .replay_options import DIAGNOSTICS_PERIOD_SEC, ReplayOptions, replay_parameters
from .replay_recorder import ReplayRecorder, wait_for
from .replay_report import OUTPUT_IMAGE_KINDS, build_report, report_markdown, write_previews

NAMESPACE = "depthfm_replay"
DISCOVERY_TIMEOUT_SEC = 15.0
MESSAGE_TYPES = {bagio.IMAGE_TYPE: Image, bagio.COMPRESSED_IMAGE_TYPE: CompressedImage,
                 bagio.CAMERA_INFO_TYPE: CameraInfo, bagio.POINTCLOUD2_TYPE: PointCloud2}


@dataclass
class Playback:
    """When the bag's messages were logged and played: for the report's durations."""

    t0_wall: float
    last_publish_wall: float
    first_log_ns: int | None = None
    last_log_ns: int | None = None
    interrupted: bool = False

    @property
    def bag_duration_s(self) -> float:
        return 0.0 if self.first_log_ns is None else (self.last_log_ns - self.first_log_ns) * 1e-9


def topics_to_feed(topics: bagio.ReplayTopics, parameters: dict, tiny_model_asked: bool) -> bagio.ReplayTopics:
    """The bag's topics the node takes: its LiDAR only when the node fuses LiDAR (a note on stderr otherwise, and
    one when the tiny random model stands in for a missing checkpoint)."""
    if parameters.get("model") == "tiny" and not tiny_model_asked:
        print("depthfm-replay: no --checkpoint/--engine: using the tiny RANDOM model (plumbing, not depth)",
              file=sys.stderr)
    if topics.lidar is not None and not parameters.get("use_lidar", False):
        print(f"depthfm-replay: not feeding {topics.lidar.name}: this depthfm_node has no LiDAR input",
              file=sys.stderr)
        return bagio.ReplayTopics(topics.image, topics.camera_info, None)
    return topics


def wire_player(player: Node, node: DepthFMNode, topics: bagio.ReplayTopics, recorder: ReplayRecorder) -> tuple:
    """Publishers from each bag topic to the node's input, subscriptions of the node's outputs and /diagnostics to
    the recorder: (publishers by bag topic, the node's output namespace)."""
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    image_input = node.resolve_topic_name("image") + ("/compressed" if topics.compressed else "")
    inputs = {"image": image_input, "camera_info": node.resolve_topic_name("camera_info"),
              "lidar": node.resolve_topic_name("lidar")}
    publishers = {}
    for role, bag_topic in (("image", topics.image), ("camera_info", topics.camera_info), ("lidar", topics.lidar)):
        if bag_topic is not None:
            publishers[bag_topic.name] = player.create_publisher(MESSAGE_TYPES[bag_topic.msgtype], inputs[role],
                                                                 reliable)
    out = node.resolve_topic_name("depthfm/depth").rsplit("/", 1)[0]
    for kind in OUTPUT_IMAGE_KINDS:
        player.create_subscription(Image, f"{out}/{kind}", lambda msg, kind=kind: recorder.on_image_output(kind, msg),
                                   reliable)
    player.create_subscription(CameraInfo, f"{out}/camera_info", recorder.on_camera_info, reliable)
    player.create_subscription(PointCloud2, f"{out}/points", recorder.on_points, reliable)
    player.create_subscription(DiagnosticArray, "/diagnostics", recorder.on_diagnostics, reliable)
    return publishers, out


def wait_for_discovery(recorder: ReplayRecorder, player: Node, publishers: dict, image_topic: str, out: str) -> None:
    """Wait until the node hears every input and publishes its output; the image input alone is enough to play
    (a note names the inputs it does not subscribe); without it an InputError."""
    def connected(bag_topics):
        return lambda: all(publishers[t].get_subscription_count() > 0 for t in bag_topics) and \
            player.count_publishers(f"{out}/relative_depth") > 0

    if wait_for(recorder, connected(list(publishers)), DISCOVERY_TIMEOUT_SEC / 3):
        return
    if not wait_for(recorder, connected([image_topic]), DISCOVERY_TIMEOUT_SEC):
        raise InputError(f"the node's image subscription was not discovered in {DISCOVERY_TIMEOUT_SEC:g} s")
    unheard = [t for t, p in publishers.items() if p.get_subscription_count() == 0]
    print(f"depthfm-replay: the node does not subscribe {', '.join(unheard)}; played anyway", file=sys.stderr)


def play(args: ReplayOptions, topics: bagio.ReplayTopics, publishers: dict, recorder: ReplayRecorder,
         progress: tqdm) -> Playback:
    """Publish the bag's messages at the recorded timing / ``args.rate`` (0: each image waits for its depth or a
    reported error, up to ``args.frame_timeout``); Ctrl-C ends the playback early."""
    roles = topics.by_name()
    playback = Playback(t0_wall=time.perf_counter(), last_publish_wall=time.perf_counter())
    try:
        for raw in bagio.read_raw(args.bag, set(roles)):
            playback.first_log_ns = raw.log_time_ns if playback.first_log_ns is None else playback.first_log_ns
            playback.last_log_ns = raw.log_time_ns
            if args.rate > 0:
                delay = playback.t0_wall + (raw.log_time_ns - playback.first_log_ns) * 1e-9 / args.rate \
                    - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            is_image = roles[raw.topic] == "image"
            stamp = bagio.header_stamp_ns(raw.cdr) if is_image else None
            if is_image:
                with recorder.cond:
                    errors_before = recorder.errors_reported()
                recorder.image_sent(stamp)
            publishers[raw.topic].publish(raw.cdr)
            playback.last_publish_wall = time.perf_counter()
            if is_image:
                if args.rate == 0:
                    wait_for(recorder, lambda: stamp in recorder.depth_wall
                             or recorder.errors_reported() > errors_before, args.frame_timeout)
                progress.update()
                progress.set_postfix(out=len(recorder.depth_wall))
    except KeyboardInterrupt:
        playback.interrupted = True
    return playback


def drain(recorder: ReplayRecorder, playback: Playback, drain_timeout_sec: float) -> None:
    """Wait for the node to settle on every image sent (none after Ctrl-C), then for one more /diagnostics, for
    the node's final counters."""
    wait_for(recorder, lambda: recorder.node_settled(len(recorder.sent_wall), playback.last_publish_wall),
             0.0 if playback.interrupted else drain_timeout_sec)
    settled_wall = time.perf_counter()
    wait_for(recorder, lambda: recorder.latest_diagnostics_wall > settled_wall, 2 * DIAGNOSTICS_PERIOD_SEC + 1.0)


def replay(args: ReplayOptions) -> dict:
    """Play ``args.bag`` through a depthfm_node in an in-process ROS 2 graph; write report.md, report.json and
    previews to ``args.output``; return the report."""
    bag = args.bag
    topics = bagio.pick_topics(bagio.bag_topics(bag), args.image_topic, args.camera_info_topic, args.lidar_topic,
                               use_lidar=not args.no_lidar)
    parameters = replay_parameters(args, bag, topics)
    topics = topics_to_feed(topics, parameters, args.settings.tiny_model)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # the replay never needs the network
    writable_folder(args.output, "--output")  # before the model loads
    args.output.mkdir(parents=True, exist_ok=True)
    with InProcessGraph() as graph:
        node = graph.add(DepthFMNode(context=graph.context, namespace=NAMESPACE,
                                     parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()]))
        backend = node.backend.describe()
        recorder = ReplayRecorder(topics.image.count, args.previews, node.get_fully_qualified_name())
        player = graph.add(rclpy.create_node("depthfm_replay_player", context=graph.context))
        publishers, out = wire_player(player, node, topics, recorder)
        graph.start()
        wait_for_discovery(recorder, player, publishers, topics.image.name, out)
        print(f"depthfm-replay: {bag} -> {backend}; {topics.image.count} image(s) on {topics.image.name}"
              + (f", LiDAR {topics.lidar.name}" if topics.lidar else "") + f", rate {args.rate:g}", file=sys.stderr)
        with tqdm(total=topics.image.count, unit="frame", desc="replay", file=sys.stderr) as progress:
            playback = play(args, topics, publishers, recorder, progress)
            drain(recorder, playback, args.drain_timeout)
            progress.set_postfix(out=len(recorder.depth_wall))
        wall_s = time.perf_counter() - playback.t0_wall

    report = build_report(recorder, bag=Path(bag), topics=topics, backend=backend, parameters=parameters,
                          rate=args.rate, wall_s=wall_s, bag_duration_s=playback.bag_duration_s,
                          interrupted=playback.interrupted)
    return write_report(report, recorder, args, topics, int(parameters.get("ensemble_size", 1)))


def write_report(report: dict, recorder: ReplayRecorder, args: ReplayOptions, topics: bagio.ReplayTopics,
                 ensemble_size: int) -> dict:
    """report.json, report.md (also printed) and the previews in ``args.output``; the report with its previews."""
    previews = write_previews(recorder, Path(args.bag), topics, args.output, ensemble_size)
    report["previews"] = previews
    (args.output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = report_markdown(report, previews)
    (args.output / "report.md").write_text(markdown)
    print(markdown, end="")
    print(f"depthfm-replay: wrote report.md, report.json and {len(previews)} PNG(s) to {args.output.resolve()}",
          file=sys.stderr)
    return report
