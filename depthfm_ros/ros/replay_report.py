"""The replay's report: its numbers as one dict (report.json), report.md, and the colour-mapped and labelled
previews of the kept frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from ..previews import Panel, compose, uncertainty_panel, write_png
from ..processing import colorize
from . import bag as bagio
from .conversions import compressed_image_to_rgb, image_to_rgb
from .replay_recorder import ReplayRecorder

# every frame gives relative_depth (latency and frames out count it); metric frames add depth, uncertainty and
# completed_depth
OUTPUT_IMAGE_KINDS = ("relative_depth", "relative_uncertainty", "depth", "uncertainty", "completed_depth")


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
