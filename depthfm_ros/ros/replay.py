"""Replay of a rosbag2 through depthfm_node in an in-process ROS 2 graph, with a recorder of what came out and the
report writer (report.md, report.json, previews): the library behind ``depthfm-replay`` (cli/replay.py, whose
docstring describes the timing, topics and report)."""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from ..errors import InputError
from ..files import writable_folder
from ..previews import Panel, compose, uncertainty_panel, write_png
from ..processing import colorize
from ..settings import ModelSettings
from . import bag as bagio
from .params import ROS_PARAMETERS, SPECS, ParameterError, canonical_names, coerce, parameters_from_settings

NAMESPACE = "depthfm_replay"
# every frame gives relative_depth (latency and frames out count it); metric frames add depth, uncertainty and
# completed_depth
OUTPUT_IMAGE_KINDS = ("relative_depth", "relative_uncertainty", "depth", "uncertainty", "completed_depth")
DISCOVERY_TIMEOUT_SEC = 15.0
DIAGNOSTICS_PERIOD_SEC = 0.5


# ----------------------------------------------------------------------------------------------- parameters


def parse_param(text: str) -> tuple[str, object]:
    """``name:=value`` -> (name, value) with the value read as YAML (true, 3, 0.5, text), as ``ros2 run -p``."""
    name, sep, value = text.partition(":=")
    if not sep or not name:
        raise InputError(f"--param wants NAME:=VALUE, got {text!r}")
    return name.strip(), yaml.safe_load(value) if value.strip() else ""


def replay_parameters(args: ReplayOptions, bag: Path, topics: bagio.ReplayTopics) -> dict:
    """depthfm_node parameters for the replay: only those the node declares (``params.SPECS``), so the replay works
    with nodes with and without LiDAR fusion. ``--param`` values must name declared parameters and win."""
    settings = args.settings
    if not (settings.checkpoint or settings.engine):
        settings = replace(settings, tiny_model=True)
    wanted = {**parameters_from_settings(settings), "output_qos": "reliable", "input_qos": "reliable",
              "image_transport": "compressed" if topics.compressed else "raw",
              "diagnostics_period_sec": DIAGNOSTICS_PERIOD_SEC,
              "use_lidar": topics.lidar is not None, "publish_points": not args.no_points}
    if "lidar_timeout_sec" in SPECS:  # in the bag's time; lockstep (--rate 0) stretches wall time: strict pairing
        wanted["lidar_timeout_sec"] = SPECS["lidar_timeout_sec"].default / args.rate if args.rate > 0 else 0.0
    params = {name: value for name, value in wanted.items() if name in SPECS}
    given = dict(parse_param(text) for text in args.param)
    try:  # old names become new ones; an unknown name is refused with the closest ones ("did you mean")
        known, unknown = canonical_names(given)
    except ParameterError as exc:
        raise InputError(f"--param: {exc}") from exc
    if unknown:  # a shared parameter file may carry other nodes' keys; a --param is meant for this node
        raise InputError(f"--param: {', '.join(repr(n) for n in unknown)} {'is' if len(unknown) == 1 else 'are'} "
                         "not a depthfm node parameter (the parameters: docs/ros.md#parameters)")
    user = {**known, **{k: v for k, v in given.items() if k in ROS_PARAMETERS}}
    if params.get("use_lidar") and "lidar_to_camera_xyz" in SPECS and \
            not any(name.startswith("lidar_to_camera_") for name in user):
        params.update(extrinsic_parameters(bag, topics))
    params.update(user)
    return {name: coerce(name, value) for name, value in params.items()}  # ros2-style 1 for a double parameter


def extrinsic_parameters(bag: Path, topics: bagio.ReplayTopics) -> dict:
    """lidar_to_camera_xyz / _quat_xyzw from the bag's /tf_static (image frame <- LiDAR frame), or {} with a note.

    The node asks tf2 first; this covers robots and replays without tf2 (and keeps the bag self-contained).
    """
    from scipy.spatial.transform import Rotation

    image_frame = bagio.first_frame_id(bag, topics.image.name)
    lidar_frame = bagio.first_frame_id(bag, topics.lidar.name)
    T = bagio.transform_between(bagio.static_transforms(bag), image_frame or "", lidar_frame or "")
    if T is None:
        print(f"depthfm-replay: no /tf_static transform {image_frame} <- {lidar_frame} in the bag: the node uses "
              "its lidar_to_camera_* parameters (--param lidar_to_camera_xyz:=[x,y,z] ...)", file=sys.stderr)
        return {}
    return {"lidar_to_camera_xyz": [float(v) for v in T[:3, 3]],
            "lidar_to_camera_quat_xyzw": [float(v) for v in Rotation.from_matrix(T[:3, :3]).as_quat()]}


# ----------------------------------------------------------------------------------------------- recording


def numeric_values(key_values) -> dict[str, float]:
    """The finite numeric values of diagnostic_msgs/KeyValue pairs, by key (text values are skipped)."""
    out = {}
    for kv in key_values:
        try:
            value = float(kv.value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            out[kv.key] = value
    return out


class ReplayRecorder:
    """What the replay sent and what came back; written by the publishing loop and the executor thread."""

    def __init__(self, num_images: int, num_previews: int, diagnostics_prefix: str):
        self.num_images = max(num_images, 1)
        self.num_previews = num_previews
        self.diagnostics_prefix = diagnostics_prefix
        self.cond = threading.Condition()
        self.sent_wall: dict[int, float] = {}  # image stamp -> wall time it was published
        self.sent_index: dict[int, int] = {}
        self.depth_wall: dict[int, float] = {}  # image stamp -> wall time its depth arrived
        self.counts: Counter[str] = Counter()
        self.points_per_cloud: list[int] = []
        self.diagnostics: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.latest_diagnostics: dict[str, float] = {}
        self.latest_diagnostics_wall = 0.0
        self.previews: dict[int, dict] = {}  # slot -> {"stamp": ns, kind: array}

    def image_sent(self, stamp_ns: int) -> None:
        with self.cond:
            self.sent_index.setdefault(stamp_ns, len(self.sent_index))
            self.sent_wall[stamp_ns] = time.perf_counter()

    def _preview_slot(self, stamp_ns: int) -> int | None:
        """Slot of an output: the images split into ``num_previews`` runs; the first output of each run is kept."""
        index = self.sent_index.get(stamp_ns)
        if index is None or not self.num_previews:
            return None
        slot = min(index * self.num_previews // self.num_images, self.num_previews - 1)
        kept = self.previews.get(slot)
        return slot if kept is None or kept["stamp"] == stamp_ns else None

    def on_image_output(self, kind: str, msg) -> None:
        from ..ros.conversions import image_to_array, stamp_ns

        now = time.perf_counter()
        stamp = stamp_ns(msg.header.stamp)
        with self.cond:
            self.counts[kind] += 1
            if kind == "relative_depth" and stamp in self.sent_wall and stamp not in self.depth_wall:
                self.depth_wall[stamp] = now
            slot = self._preview_slot(stamp)
            if slot is not None:
                self.previews.setdefault(slot, {"stamp": stamp})[kind] = image_to_array(msg)
            self.cond.notify_all()

    def on_points(self, msg) -> None:
        with self.cond:
            self.counts["points"] += 1
            self.points_per_cloud.append(int(msg.width) * int(msg.height))

    def on_camera_info(self, msg) -> None:
        with self.cond:
            self.counts["camera_info"] += 1

    def on_diagnostics(self, msg) -> None:
        with self.cond:
            latest = {}
            for status in msg.status:
                if not status.name.startswith(self.diagnostics_prefix):
                    continue
                values = numeric_values(status.values)
                for key, value in values.items():
                    self.diagnostics[status.name][key].append(value)
                latest.update(values)
            if latest:
                self.latest_diagnostics = latest  # the node's statuses of one period, merged
                self.latest_diagnostics_wall = time.perf_counter()
            self.cond.notify_all()

    # -- conditions, called with self.cond held ---------------------------------------------------------------

    def errors_reported(self) -> float:
        return sum(v for k, v in self.latest_diagnostics.items() if k.endswith("errors"))

    def node_settled(self, frames_in: int, since_wall: float) -> bool:
        """Every image sent has an output, or the node's newest diagnostics account for all of them."""
        if len(self.depth_wall) >= frames_in:
            return True
        diag = self.latest_diagnostics
        keys = ("frames_received", "frames_processed", "frames_dropped")
        if self.latest_diagnostics_wall <= since_wall or not all(k in diag for k in keys):
            return False
        received, processed, dropped = (diag[k] for k in keys)
        return received >= frames_in and processed + dropped + self.errors_reported() >= received \
            and len(self.depth_wall) >= processed


# ----------------------------------------------------------------------------------------------- report


def summary(values) -> dict[str, float] | None:
    """count, min, p50, p95, max, mean of a sequence (None when empty)."""
    if len(values) == 0:
        return None
    v = np.asarray(values, np.float64)
    return {"count": int(v.size), "min": float(v.min()), "p50": float(np.percentile(v, 50)),
            "p95": float(np.percentile(v, 95)), "max": float(v.max()), "mean": float(v.mean())}


def is_fit_residual(key: str) -> bool:
    """A diagnostics key holding the LiDAR fit's residual (``rms_log``, ``fit_residual...``)."""
    return "residual" in key or key.startswith("rms")


def build_report(recorder: ReplayRecorder, *, bag: Path, topics: bagio.ReplayTopics, backend: str,
                 parameters: dict, rate: float, wall_s: float, bag_duration_s: float, interrupted: bool) -> dict:
    """The replay's numbers as one JSON-able dict (see docs/replay.md)."""
    frames_in = len(recorder.sent_wall)
    latencies = [1e3 * (recorder.depth_wall[s] - recorder.sent_wall[s]) for s in recorder.depth_wall]
    diagnostics = {name: {key: {**summary(values), "last": values[-1]} for key, values in keys.items()}
                   for name, keys in recorder.diagnostics.items()}
    last = {key: stats["last"] for keys in diagnostics.values() for key, stats in keys.items()}
    fit = {key: stats for keys in diagnostics.values() for key, stats in keys.items() if is_fit_residual(key)}
    return {
        "bag": str(bag),
        "topics": {role: name for name, role in topics.by_name().items()},
        "backend": backend,
        "parameters": parameters,
        "rate": rate,
        "interrupted": interrupted,
        "bag_duration_s": bag_duration_s,
        "wall_time_s": wall_s,
        "frames_in": frames_in,
        "frames_out": len(recorder.depth_wall),
        "frames_metric": recorder.counts.get("depth", 0),
        "frames_dropped": frames_in - len(recorder.depth_wall),
        "node_counters": {k: last[k] for k in ("frames_received", "frames_processed", "frames_dropped",
                                               "conversion_errors", "inference_errors") if k in last},
        "output_rate_hz": len(recorder.depth_wall) / wall_s if wall_s > 0 else 0.0,
        "latency_ms": summary(latencies),
        "outputs": dict(sorted(recorder.counts.items())),
        "points_per_cloud": summary(recorder.points_per_cloud),
        "fit_residual": fit or None,
        "diagnostics": diagnostics,
    }


def _fmt(stats: dict | None, unit: str = "", digits: int = 1) -> str:
    if not stats:
        return "n/a"
    values = " / ".join(f"{stats[k]:.{digits}f}" for k in ("p50", "p95", "max")) + (f" {unit}" if unit else "")
    return f"{values} (p50 / p95 / max, n = {stats['count']})"


def report_markdown(report: dict, previews: list[str]) -> str:
    """report.md: the headline numbers, then every numeric diagnostics key."""
    lines = [
        "# depthfm-replay report", "",
        f"- bag: `{report['bag']}`" + (" (interrupted)" if report["interrupted"] else ""),
        "- topics: " + ", ".join(f"{role} `{name}`" for role, name in report["topics"].items()),
        f"- backend: {report['backend']}",
        f"- rate: {report['rate']:g} ({'as fast as the node takes' if report['rate'] == 0 else 'x recorded'}); "
        f"bag {report['bag_duration_s']:.2f} s, replay {report['wall_time_s']:.2f} s",
        f"- frames in {report['frames_in']}, out {report['frames_out']}, dropped {report['frames_dropped']} "
        f"(output {report['output_rate_hz']:.2f} Hz); in metres {report['frames_metric']}",
        "- node counters: " + (", ".join(f"{k} {v:g}" for k, v in report["node_counters"].items()) or "n/a"),
        f"- latency image -> relative depth: {_fmt(report['latency_ms'], 'ms')}",
        "- outputs: " + ", ".join(f"{k} {v}" for k, v in report["outputs"].items()),
    ]
    if report["points_per_cloud"]:
        lines.append(f"- points per cloud: {_fmt(report['points_per_cloud'], digits=0)}")
    for key, stats in (report["fit_residual"] or {}).items():
        lines.append(f"- {key}: {_fmt(stats, digits=4)}")
    for name, keys in report["diagnostics"].items():
        lines += ["", f"## /diagnostics `{name}`", "", "| key | last | min | p50 | max |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {key} | {s['last']:g} | {s['min']:g} | {s['p50']:g} | {s['max']:g} |" for key, s in keys.items()]
    if previews:
        lines += ["", "## Previews", ""] + [f"![{p}]({p})" for p in previews]
    return "\n".join(lines) + "\n"


def preview_panels(rgb_hwc_u8: np.ndarray | None, maps: dict[str, np.ndarray], ensemble_size: int) -> list[list]:
    """The labelled preview of one replayed frame: image | relative depth | relative uncertainty, and on frames
    that went out in metres a second row depth | uncertainty | completed depth, in metres."""
    rows = [[*([Panel("image", rgb_hwc_u8=rgb_hwc_u8)] if rgb_hwc_u8 is not None else []),
             Panel("relative depth (0 near, 1 far)", values_hw=maps["relative_depth"], vmin=0.0, vmax=1.0),
             uncertainty_panel(maps.get("relative_uncertainty", np.zeros_like(maps["relative_depth"])),
                               ensemble_size)]]
    if "depth" in maps:
        shape = maps["depth"].shape
        rows.append([Panel("depth [m]", values_hw=maps["depth"], unit="m"),
                     Panel("uncertainty [m]", values_hw=maps.get("uncertainty", np.full(shape, np.nan)), unit="m",
                           vmin=0.0),
                     Panel("completed depth [m]", values_hw=maps.get("completed_depth", np.full(shape, np.nan)),
                           unit="m", note="" if "completed_depth" in maps else
                           "no completed depth: this frame's scale is not its own LiDAR fit")])
    return rows


def write_previews(recorder: ReplayRecorder, bag: Path, topics: bagio.ReplayTopics, output: Path,
                   ensemble_size: int = 1) -> list[str]:
    """frame_NNNN_{rgb,relative_depth,...,completed_depth}.png (colour-mapped, input size) and
    frame_NNNN_preview.png (labelled, with colour bars: :func:`preview_panels`) of the kept frames; returns the
    file names."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    from ..ros.conversions import compressed_image_to_rgb, image_to_rgb

    kept = {entry["stamp"]: entry for _, entry in sorted(recorder.previews.items()) if "relative_depth" in entry}
    rgb_by_stamp = {}
    for raw in bagio.read_raw(bag, [topics.image.name], set(kept)):
        if topics.compressed:
            rgb_by_stamp[bagio.header_stamp_ns(raw.cdr)] = compressed_image_to_rgb(
                deserialize_message(raw.cdr, CompressedImage))
        else:
            rgb_by_stamp[bagio.header_stamp_ns(raw.cdr)] = image_to_rgb(deserialize_message(raw.cdr, Image))
    names = []
    for stamp, entry in kept.items():
        frame = recorder.sent_index[stamp]
        maps = {"rgb": rgb_by_stamp.get(stamp)}
        for kind in OUTPUT_IMAGE_KINDS:
            if kind in entry:
                maps[kind] = colorize(entry[kind], 0.0) if kind.endswith("uncertainty") else colorize(entry[kind])
        maps["preview"] = compose(preview_panels(maps["rgb"], {k: entry[k] for k in OUTPUT_IMAGE_KINDS if k in entry},
                                                 ensemble_size))
        for kind, rgb in maps.items():
            if rgb is None:
                continue
            name = f"frame_{frame:04d}_{kind}.png"
            write_png(output / name, rgb)
            names.append(name)
    return names


# ----------------------------------------------------------------------------------------------- replay


def _message_types():
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

    return {bagio.IMAGE_TYPE: Image, bagio.COMPRESSED_IMAGE_TYPE: CompressedImage,
            bagio.CAMERA_INFO_TYPE: CameraInfo, bagio.POINTCLOUD2_TYPE: PointCloud2}


def _wait(recorder: ReplayRecorder, predicate, timeout_sec: float) -> bool:
    deadline = time.monotonic() + timeout_sec
    with recorder.cond:
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            recorder.cond.wait(min(left, 0.05))
    return True


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay and how: the model (``settings``; the tiny random model unless it names a checkpoint or
    engine), playback ``rate`` (0: lockstep), topic choices, extra node ``param`` texts (``NAME:=VALUE``), and the
    report (``output`` folder, ``previews`` frames)."""

    bag: Path
    settings: ModelSettings
    output: Path = Path("depthfm_replay")
    rate: float = 1.0
    image_topic: str | None = None
    camera_info_topic: str | None = None
    lidar_topic: str | None = None
    no_lidar: bool = False
    no_points: bool = False
    param: tuple[str, ...] = ()
    previews: int = 3
    frame_timeout: float = 60.0
    drain_timeout: float = 30.0


def replay(args: ReplayOptions) -> dict:
    """Play ``args.bag`` through a depthfm_node in an in-process ROS 2 graph; write report.md, report.json and
    previews to ``args.output``; return the report."""
    bag = args.bag
    topics = bagio.pick_topics(bagio.bag_topics(bag), args.image_topic, args.camera_info_topic, args.lidar_topic,
                               use_lidar=not args.no_lidar)
    parameters = replay_parameters(args, bag, topics)
    if parameters.get("model") == "tiny" and not args.settings.tiny_model:
        print("depthfm-replay: no --checkpoint/--engine: using the tiny RANDOM model (plumbing, not depth)",
              file=sys.stderr)
    lidar_fed = topics.lidar is not None and parameters.get("use_lidar", False)
    if topics.lidar is not None and not lidar_fed:
        print(f"depthfm-replay: not feeding {topics.lidar.name}: this depthfm_node has no LiDAR input",
              file=sys.stderr)
        topics = bagio.ReplayTopics(topics.image, topics.camera_info, None)

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # the replay never needs the network
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from tqdm import tqdm

    from .graph import InProcessGraph
    from .node import DepthFMNode

    writable_folder(args.output, "--output")  # before the model loads
    args.output.mkdir(parents=True, exist_ok=True)
    interrupted = False
    with InProcessGraph() as graph:
        node = graph.add(DepthFMNode(context=graph.context, namespace=NAMESPACE,
                                     parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()]))
        backend = node.backend.describe()
        recorder = ReplayRecorder(topics.image.count, args.previews, node.get_fully_qualified_name())
        player = graph.add(rclpy.create_node("depthfm_replay_player", context=graph.context))
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        image_input = node.resolve_topic_name("image") + ("/compressed" if topics.compressed else "")
        inputs = {"image": image_input, "camera_info": node.resolve_topic_name("camera_info"),
                  "lidar": node.resolve_topic_name("lidar")}
        types = _message_types()
        publishers = {}  # bag topic -> publisher on the node's input
        for role, bag_topic in (("image", topics.image), ("camera_info", topics.camera_info), ("lidar", topics.lidar)):
            if bag_topic is not None:
                publishers[bag_topic.name] = player.create_publisher(types[bag_topic.msgtype], inputs[role], reliable)
        out = node.resolve_topic_name("depthfm/depth").rsplit("/", 1)[0]
        for kind in OUTPUT_IMAGE_KINDS:
            player.create_subscription(Image, f"{out}/{kind}",
                                       lambda msg, kind=kind: recorder.on_image_output(kind, msg), reliable)
        player.create_subscription(CameraInfo, f"{out}/camera_info", recorder.on_camera_info, reliable)
        player.create_subscription(PointCloud2, f"{out}/points", recorder.on_points, reliable)
        player.create_subscription(DiagnosticArray, "/diagnostics", recorder.on_diagnostics, reliable)
        graph.start()

        def connected(bag_topics):
            return lambda: all(publishers[t].get_subscription_count() > 0 for t in bag_topics) and \
                player.count_publishers(f"{out}/relative_depth") > 0

        if not _wait(recorder, connected(list(publishers)), DISCOVERY_TIMEOUT_SEC / 3):
            if not _wait(recorder, connected([topics.image.name]), DISCOVERY_TIMEOUT_SEC):
                raise InputError(f"the node's image subscription was not discovered in {DISCOVERY_TIMEOUT_SEC:g} s")
            unheard = [t for t, p in publishers.items() if p.get_subscription_count() == 0]
            print(f"depthfm-replay: the node does not subscribe {', '.join(unheard)}; played anyway", file=sys.stderr)
        print(f"depthfm-replay: {bag} -> {backend}; {topics.image.count} image(s) on {topics.image.name}"
              + (f", LiDAR {topics.lidar.name}" if topics.lidar else "") + f", rate {args.rate:g}", file=sys.stderr)

        roles = topics.by_name()
        first_log_ns = last_log_ns = None
        t0 = last_publish = time.perf_counter()
        with tqdm(total=topics.image.count, unit="frame", desc="replay", file=sys.stderr) as progress:
            try:
                for raw in bagio.read_raw(bag, set(roles)):
                    first_log_ns = raw.log_time_ns if first_log_ns is None else first_log_ns
                    last_log_ns = raw.log_time_ns
                    if args.rate > 0:
                        delay = t0 + (raw.log_time_ns - first_log_ns) * 1e-9 / args.rate - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                    is_image = roles[raw.topic] == "image"
                    stamp = bagio.header_stamp_ns(raw.cdr) if is_image else None
                    if is_image:
                        with recorder.cond:
                            errors_before = recorder.errors_reported()
                        recorder.image_sent(stamp)
                    publishers[raw.topic].publish(raw.cdr)
                    last_publish = time.perf_counter()
                    if is_image:
                        if args.rate == 0:
                            _wait(recorder, lambda: stamp in recorder.depth_wall
                                  or recorder.errors_reported() > errors_before, args.frame_timeout)
                        progress.update()
                        progress.set_postfix(out=len(recorder.depth_wall))
            except KeyboardInterrupt:
                interrupted = True
            _wait(recorder, lambda: recorder.node_settled(len(recorder.sent_wall), last_publish),
                  0.0 if interrupted else args.drain_timeout)
            settled_wall = time.perf_counter()  # then one more /diagnostics, for the node's final counters
            _wait(recorder, lambda: recorder.latest_diagnostics_wall > settled_wall, 2 * DIAGNOSTICS_PERIOD_SEC + 1.0)
            progress.set_postfix(out=len(recorder.depth_wall))
        wall_s = time.perf_counter() - t0

    bag_duration_s = 0.0 if first_log_ns is None else (last_log_ns - first_log_ns) * 1e-9
    report = build_report(recorder, bag=Path(bag), topics=topics, backend=backend, parameters=parameters,
                          rate=args.rate, wall_s=wall_s, bag_duration_s=bag_duration_s, interrupted=interrupted)
    previews = write_previews(recorder, Path(bag), topics, args.output, int(parameters.get("ensemble_size", 1)))
    report["previews"] = previews
    (args.output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = report_markdown(report, previews)
    (args.output / "report.md").write_text(markdown)
    print(markdown, end="")
    print(f"depthfm-replay: wrote report.md, report.json and {len(previews)} PNG(s) to {args.output.resolve()}",
          file=sys.stderr)
    return report
