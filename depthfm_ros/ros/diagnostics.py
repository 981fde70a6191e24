"""Frame counters of the node and their diagnostic_msgs/DiagnosticStatus (rate, latency, backend, drops, errors,
input staleness), plus the LiDAR-alignment state (fit, evidence, refusals, frames with and without a cloud, LiDAR
staleness) and the metric scale (source per frame, why not)."""

from __future__ import annotations

from .stats import RATE_WINDOW_SEC, AlignmentSnapshot, MetricSnapshot, StatsSnapshot


def input_stale(snap: StatsSnapshot) -> tuple[str, str] | None:
    """('WARN' | 'ERROR', why) while no image has come for longer than ``stale_warn_sec`` / ``stale_error_sec``
    (after the first image), else None."""
    if snap.received == 0 or snap.seconds_since_image <= snap.stale_warn_sec:
        return None
    level = "ERROR" if snap.seconds_since_image > snap.stale_error_sec else "WARN"
    return level, f"input stale: no image for {snap.seconds_since_image:.1f} s"


def level_and_message(snap: StatsSnapshot) -> tuple[str, str]:
    """('OK' | 'WARN' | 'ERROR', summary) for one snapshot."""
    if snap.new_inference_errors and not snap.new_processed:
        return "ERROR", f"inference failing: {snap.last_error}"
    if snap.received == 0:
        return "WARN", "waiting for images"
    stale = input_stale(snap)
    if stale is not None:
        return stale
    if snap.new_conversion_errors:
        return "WARN", f"{snap.new_conversion_errors} bad input message(s): {snap.last_error}"
    if snap.input_rate_hz > 0 and snap.output_rate_hz == 0:
        return "WARN", (f"images arrive ({snap.input_rate_hz:.1f} Hz) but nothing was published in the last "
                        f"{RATE_WINDOW_SEC:g} s" + (f"; last error: {snap.last_error}" if snap.last_error else ""))
    return "OK", f"publishing depth at {snap.output_rate_hz:.1f} Hz"


def _status(level_message: tuple[str, str], name: str, hardware_id: str, values: dict[str, str]):
    """diagnostic_msgs/DiagnosticStatus with level ('OK' | 'WARN' | 'ERROR'), message and key/values."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    level, message = level_message
    return DiagnosticStatus(level=getattr(DiagnosticStatus, level), name=name, message=message,
                            hardware_id=hardware_id, values=[KeyValue(key=k, value=v) for k, v in values.items()])


def diagnostic_status(snap: StatsSnapshot, name: str, hardware_id: str, backend: str):
    """diagnostic_msgs/DiagnosticStatus of one snapshot."""
    values = {
        "backend": backend,
        "input_rate_hz": f"{snap.input_rate_hz:.2f}",
        "output_rate_hz": f"{snap.output_rate_hz:.2f}",
        "latency_ms": f"{snap.latency_ms:.1f}",
        "last_latency_ms": f"{snap.last_latency_ms:.1f}",
        "inference_ms": f"{snap.inference_ms:.1f}",
        "queue_ms": f"{snap.queue_ms:.1f}",
        "batch_size": f"{snap.batch_size:.2f}",
        "points_ms": f"{snap.points_ms:.1f}",
        "frames_received": str(snap.received),
        "frames_processed": str(snap.processed),
        "frames_dropped": str(snap.dropped),
        "conversion_errors": str(snap.conversion_errors),
        "image_errors": str(snap.image_errors),
        "cloud_errors": str(snap.cloud_errors),
        "camera_info_errors": str(snap.camera_info_errors),
        "seconds_since_image": f"{snap.seconds_since_image:.2f}",
        "metric_latency_ms": f"{snap.metric_latency_ms:.1f}",
        "metric_frames": str(snap.metric_processed),
        "metric_skipped": str(snap.metric_dropped),
        "inference_errors": str(snap.inference_errors),
        "publishing_errors": str(snap.publishing_errors),
        "last_error": snap.last_error,
    }
    return _status(level_and_message(snap), name, hardware_id, values)


def alignment_level_and_message(snap: AlignmentSnapshot) -> tuple[str, str]:
    """('OK' | 'WARN', summary) of the LiDAR alignment."""
    if snap.stale:
        since = "no cloud received yet" if snap.clouds_received == 0 else \
            f"last cloud {snap.seconds_since_cloud:.1f} s ago"
        return "WARN", f"LiDAR stale ({since}): frames take the held scale or the next source"
    if snap.clouds_received == 0:
        return "WARN", "waiting for LiDAR clouds"
    if snap.with_cloud == 0:
        return "WARN", f"no frame had a cloud within the slop yet ({snap.without_cloud} without)"
    if snap.new_refused and not snap.new_aligned:
        return "WARN", f"LiDAR fit refused: {snap.last_error}"
    if not snap.metric and snap.aligned == 0 and snap.refused == 0:
        return "WARN", "waiting for the first aligned frame"
    if snap.metric:
        return "OK", (f"metric: a={snap.a:.4g} b={snap.b:.4g} rms_log={snap.rms_log:.3f} on {snap.num_inliers}/"
                      f"{snap.num_points} points")
    return "OK", "last frame " + ("had no cloud" if snap.last_frame == "no cloud" else "had its fit refused")


def alignment_status(snap: AlignmentSnapshot, name: str, hardware_id: str):
    """diagnostic_msgs/DiagnosticStatus of the LiDAR alignment."""
    values = {
        "metric": str(snap.metric),
        "lidar_stale": str(snap.stale),
        "seconds_since_cloud": f"{snap.seconds_since_cloud:.2f}",
        "a": f"{snap.a:.6g}",
        "b": f"{snap.b:.6g}",
        "rms_log": f"{snap.rms_log:.4f}",
        "num_points": str(snap.num_points),
        "num_inliers": str(snap.num_inliers),
        "inlier_share": f"{snap.inlier_share:.3f}",
        "region_offset_sigma": f"{snap.region_offset:.2f}",
        "residual_spread_sigma": f"{snap.spread:.2f}",
        "z_coverage": f"{snap.z_coverage:.3f}",
        "frames_aligned": str(snap.aligned),
        "frames_refused": str(snap.refused),
        "frames_with_cloud": str(snap.with_cloud),
        "frames_without_cloud": str(snap.without_cloud),
        "clouds_received": str(snap.clouds_received),
        "clouds_unused": str(snap.clouds_unused),
        "time_jumps": str(snap.resets),
        "extrinsic": snap.extrinsic_source,
        "fusion_ms": f"{snap.fusion_ms:.1f}",
        "fit_ms": f"{snap.fit_ms:.1f}",
        "completion_ms": f"{snap.completion_ms:.1f}",
        "last_alignment_error": snap.last_error,
    }
    return _status(alignment_level_and_message(snap), name, hardware_id, values)


def metric_level_and_message(snap: MetricSnapshot, stale: tuple[str, str] | None = None) -> tuple[str, str]:
    """('OK' | 'WARN' | 'ERROR', summary) of the metric scale; ``stale``: :func:`input_stale` of the input (the
    metric status goes stale with it)."""
    if not snap.has_source:
        return "WARN", f"no metric source configured: relative depth only ({snap.configured})"
    if stale is not None:
        return stale[0], f"{stale[1]}: no metric depth is being published"
    if sum(snap.frames.values()) == 0:
        return "WARN", "waiting for the first frame"
    if snap.new_frames and not snap.new_metric:
        return "WARN", f"no metric depth: {snap.reason}"
    if snap.last_source == "hold":
        return "WARN", f"holding the LiDAR scale for {snap.age_sec:.1f} s (log std {snap.log_std:.3f}): {snap.reason}"
    if not snap.last_source:
        return "WARN", f"last frame not metric: {snap.reason}"
    return "OK", f"metric from {snap.last_source}: a={snap.a:.4g} b={snap.b:.4g} log std {snap.log_std:.3f}"


def metric_status(snap: MetricSnapshot, name: str, hardware_id: str, stale: tuple[str, str] | None = None):
    """diagnostic_msgs/DiagnosticStatus of the metric scale; ``stale``: the input's :func:`input_stale`."""
    values = {"source": "stale" if stale else snap.last_source or "none", "configured": snap.configured,
              "a": f"{snap.a:.6g}", "b": f"{snap.b:.6g}", "scale_log_std": f"{snap.log_std:.4f}",
              "scale_age_sec": f"{snap.age_sec:.2f}", "uncertainty_calibration": f"{snap.sigma_scale:.3f}",
              "source_conflicts": str(snap.conflicts), "reason": snap.reason,
              **{f"frames_{source or 'relative_only'}": str(n) for source, n in sorted(snap.frames.items())}}
    return _status(metric_level_and_message(snap, stale), name, hardware_id, values)


def diagnostic_array(status, stamp):
    """diagnostic_msgs/DiagnosticArray holding one status or a list of them."""
    from diagnostic_msgs.msg import DiagnosticArray

    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = list(status) if isinstance(status, (list, tuple)) else [status]
    return array
