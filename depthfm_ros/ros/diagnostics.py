"""Frame counters of the node and their diagnostic_msgs/DiagnosticStatus (rate, latency, backend, drops, errors),
plus the LiDAR-alignment state (fit, points, refusals, unsynchronized messages, LiDAR staleness)."""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

RATE_WINDOW_SEC = 5.0


@dataclass(frozen=True)
class StatsSnapshot:
    """Counters since start plus rates and latencies over the last :data:`RATE_WINDOW_SEC` seconds."""

    received: int
    processed: int
    dropped: int
    conversion_errors: int
    inference_errors: int
    publishing_errors: int
    input_rate_hz: float
    output_rate_hz: float
    latency_ms: float  # mean receive -> publish over the window (waiting for the worker included)
    inference_ms: float  # mean pipeline time over the window
    queue_ms: float  # mean wait from hand-over to the worker taking the frame (the inference in flight)
    points_ms: float  # depthfm/points of the last frame that published them (NaN before)
    last_latency_ms: float
    last_error: str
    new_conversion_errors: int  # since the previous snapshot
    new_inference_errors: int
    new_processed: int


class ErrorLog:
    """Logs each *kind* of error at most once per ``period_sec`` (a kind: where it came from and the message with
    its numbers blanked), so one frequent error cannot hide a new one the way a single throttled call does."""

    def __init__(self, log_fn, period_sec: float, clock=time.monotonic):
        self._log, self.period_sec, self._clock = log_fn, period_sec, clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, source: str, message: str) -> bool:
        """Log ``message`` unless its kind was logged within the period; True when it was logged."""
        kind = source + ":" + re.sub(r"[-+]?\d[\d.e+-]*", "#", message)[:120]
        now = self._clock()
        with self._lock:
            if now - self._last.get(kind, -math.inf) < self.period_sec:
                return False
            self._last[kind] = now
            if len(self._last) > 256:  # forget the oldest kinds
                for old in sorted(self._last, key=self._last.get)[:128]:
                    del self._last[old]
        self._log(message)
        return True


class FrameStats:
    """Thread-safe counters written by the subscription callbacks and the inference worker."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self.received = self.processed = self.dropped = 0
        self.conversion_errors = self.inference_errors = self.publishing_errors = 0
        self.last_error = ""
        self.last_latency_ms = self.points_ms = float("nan")
        self._received_t: deque[float] = deque()
        self._done: deque[tuple[float, float, float, float]] = deque()  # (time, latency, inference, queue ms)
        self._previous = (0, 0, 0)  # conversion_errors, inference_errors, processed at the last snapshot

    def _trim(self, now: float) -> None:
        while self._received_t and now - self._received_t[0] > RATE_WINDOW_SEC:
            self._received_t.popleft()
        while self._done and now - self._done[0][0] > RATE_WINDOW_SEC:
            self._done.popleft()

    def frame_received(self) -> None:
        with self._lock:
            now = self._clock()
            self.received += 1
            self._received_t.append(now)
            self._trim(now)

    def frame_dropped(self) -> None:
        """A frame was replaced by a newer one before the worker took it."""
        with self._lock:
            self.dropped += 1

    def frame_processed(self, latency_ms: float, inference_ms: float, queue_ms: float = float("nan")) -> None:
        with self._lock:
            now = self._clock()
            self.processed += 1
            self.last_latency_ms = latency_ms
            self._done.append((now, latency_ms, inference_ms, queue_ms))
            self._trim(now)

    def points_published(self, points_ms: float) -> None:
        with self._lock:
            self.points_ms = points_ms

    def conversion_failed(self, message: str) -> None:
        with self._lock:
            self.conversion_errors += 1
            self.last_error = f"input: {message}"

    def inference_failed(self, message: str) -> None:
        with self._lock:
            self.inference_errors += 1
            self.last_error = f"inference: {message}"

    def publishing_failed(self, message: str) -> None:
        with self._lock:
            self.publishing_errors += 1
            self.last_error = f"publishing: {message}"

    def snapshot(self) -> StatsSnapshot:
        """Current numbers; the ``new_*`` fields count what happened since the previous call."""
        with self._lock:
            now = self._clock()
            self._trim(now)
            span = RATE_WINDOW_SEC
            lat = [d[1] for d in self._done]
            inf = [d[2] for d in self._done]
            queue = [d[3] for d in self._done]
            prev_conv, prev_inf, prev_proc = self._previous
            self._previous = (self.conversion_errors, self.inference_errors, self.processed)
            return StatsSnapshot(
                received=self.received, processed=self.processed, dropped=self.dropped,
                conversion_errors=self.conversion_errors, inference_errors=self.inference_errors,
                publishing_errors=self.publishing_errors,
                input_rate_hz=len(self._received_t) / span, output_rate_hz=len(self._done) / span,
                latency_ms=sum(lat) / len(lat) if lat else float("nan"),
                inference_ms=sum(inf) / len(inf) if inf else float("nan"),
                queue_ms=sum(queue) / len(queue) if queue else float("nan"),
                points_ms=self.points_ms, last_latency_ms=self.last_latency_ms, last_error=self.last_error,
                new_conversion_errors=self.conversion_errors - prev_conv,
                new_inference_errors=self.inference_errors - prev_inf,
                new_processed=self.processed - prev_proc,
            )


def level_and_message(snap: StatsSnapshot) -> tuple[str, str]:
    """('OK' | 'WARN' | 'ERROR', summary) for one snapshot."""
    if snap.new_inference_errors and not snap.new_processed:
        return "ERROR", f"inference failing: {snap.last_error}"
    if snap.received == 0:
        return "WARN", "waiting for images"
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
        "points_ms": f"{snap.points_ms:.1f}",
        "frames_received": str(snap.received),
        "frames_processed": str(snap.processed),
        "frames_dropped": str(snap.dropped),
        "conversion_errors": str(snap.conversion_errors),
        "inference_errors": str(snap.inference_errors),
        "publishing_errors": str(snap.publishing_errors),
        "last_error": snap.last_error,
    }
    return _status(level_and_message(snap), name, hardware_id, values)


@dataclass(frozen=True)
class AlignmentSnapshot:
    """LiDAR alignment: counters since start and the last frame's fit (NaN / 0 before the first fit)."""

    clouds_received: int
    pairs: int  # synchronized image + cloud pairs handed to the worker
    unsynchronized: int  # images and clouds dropped: no partner within the slop
    aligned: int  # frames published in metres
    refused: int  # frames published relative because the fit was refused
    unaligned: int  # frames published relative because the LiDAR was stale (no cloud to pair with)
    metric: bool  # the last processed frame was published in metres
    last_frame: str  # the last processed frame: "aligned", "refused", "unaligned" ("" before the first)
    stale: bool  # no cloud for longer than lidar_timeout_sec: images go out without LiDAR
    seconds_since_cloud: float  # inf before the first cloud
    a: float
    b: float
    rms_log: float
    num_points: int
    num_inliers: int
    last_error: str  # why the last refused frame stayed relative ("" until one was)
    extrinsic_source: str  # "tf2" or "parameters" for the last frame
    fusion_ms: float  # projection + fit + completion of the last frame
    fit_ms: float  # of fusion_ms: fit and metric maps
    completion_ms: float  # of fusion_ms: completed depth (interpolation or DepthCompletionFM)
    new_refused: int  # since the previous snapshot
    new_aligned: int


class AlignmentStats:
    """Thread-safe LiDAR-alignment state written by the subscription callbacks and the worker.

    With ``lidar_timeout_sec`` > 0 the LiDAR is stale when pairing has produced no image + cloud pair for longer than
    that (counting from construction): clouds that stop, and clouds that arrive but never match (a stamp jump, a
    wrong clock), both count; 0 never calls it stale.
    """

    def __init__(self, lidar_timeout_sec: float = 0.0, clock=time.monotonic):
        self.lidar_timeout_sec, self._clock = lidar_timeout_sec, clock
        self._lock = threading.Lock()
        self.clouds_received = self.pairs = self.unsynchronized = self.aligned = self.refused = self.unaligned = 0
        self.metric = False
        self.last_frame = ""  # "aligned", "refused" or "unaligned"
        self.a = self.b = self.rms_log = self.fusion_ms = self.fit_ms = self.completion_ms = float("nan")
        self.num_points = self.num_inliers = 0
        self.last_error = ""
        self.extrinsic_source = ""
        self._started = clock()
        self._last_cloud: float | None = None
        self._last_pair: float | None = None
        self._previous = (0, 0)

    def cloud_received(self) -> None:
        with self._lock:
            self.clouds_received += 1
            self._last_cloud = self._clock()

    def is_stale(self) -> bool:
        """No cloud for longer than ``lidar_timeout_sec`` (never with 0)."""
        with self._lock:
            return self._stale(self._clock())

    def _stale(self, now: float) -> bool:
        since = self._started if self._last_pair is None else self._last_pair
        return self.lidar_timeout_sec > 0 and now - since > self.lidar_timeout_sec

    def pair_matched(self) -> None:
        with self._lock:
            self.pairs += 1
            self._last_pair = self._clock()

    def message_unsynchronized(self) -> None:
        with self._lock:
            self.unsynchronized += 1

    def frame_unaligned(self) -> None:
        """A frame went out without LiDAR because the LiDAR was stale."""
        with self._lock:
            self.unaligned += 1
            self.metric, self.last_frame = False, "unaligned"

    def fit_accepted(self, fit, extrinsic_source: str, fusion_ms: float, fit_ms: float = float("nan"),
                     completion_ms: float = float("nan")) -> None:
        """``fit`` is a fusion.LogDepthFit."""
        with self._lock:
            self.aligned += 1
            self.metric, self.last_frame = True, "aligned"
            self.a, self.b, self.rms_log = fit.a, fit.b, fit.rms_log
            self.num_points, self.num_inliers = fit.num_points, fit.num_inliers
            self.extrinsic_source, self.fusion_ms = extrinsic_source, fusion_ms
            self.fit_ms, self.completion_ms = fit_ms, completion_ms

    def fit_refused(self, reason: str, num_points: int, extrinsic_source: str, fusion_ms: float) -> None:
        with self._lock:
            self.refused += 1
            self.metric, self.last_frame = False, "refused"
            self.a = self.b = self.rms_log = self.fit_ms = self.completion_ms = float("nan")
            self.num_points, self.num_inliers = num_points, 0
            self.last_error = reason
            self.extrinsic_source, self.fusion_ms = extrinsic_source, fusion_ms

    def snapshot(self) -> AlignmentSnapshot:
        with self._lock:
            now = self._clock()
            prev_refused, prev_aligned = self._previous
            self._previous = (self.refused, self.aligned)
            return AlignmentSnapshot(
                clouds_received=self.clouds_received, pairs=self.pairs, unsynchronized=self.unsynchronized,
                aligned=self.aligned, refused=self.refused, unaligned=self.unaligned, metric=self.metric,
                last_frame=self.last_frame, stale=self._stale(now),
                seconds_since_cloud=float("inf") if self._last_cloud is None else now - self._last_cloud,
                a=self.a, b=self.b, rms_log=self.rms_log, num_points=self.num_points, num_inliers=self.num_inliers,
                last_error=self.last_error, extrinsic_source=self.extrinsic_source, fusion_ms=self.fusion_ms,
                fit_ms=self.fit_ms, completion_ms=self.completion_ms,
                new_refused=self.refused - prev_refused, new_aligned=self.aligned - prev_aligned)


def alignment_level_and_message(snap: AlignmentSnapshot) -> tuple[str, str]:
    """('OK' | 'WARN', summary) of the LiDAR alignment."""
    if snap.stale:
        since = "no cloud received yet" if snap.clouds_received == 0 else \
            f"no image + cloud pair; last cloud {snap.seconds_since_cloud:.1f} s ago"
        return "WARN", f"LiDAR stale ({since}): frames go out without LiDAR, {snap.unaligned} so far"
    if snap.pairs == 0:
        if snap.clouds_received == 0:
            return "WARN", "waiting for LiDAR clouds"
        return "WARN", f"no image + cloud pair within the slop yet ({snap.unsynchronized} unsynchronized)"
    if snap.new_refused and not snap.new_aligned:
        return "WARN", f"LiDAR fit refused: {snap.last_error}"
    if not snap.metric and snap.aligned == 0 and snap.refused == 0:
        return "WARN", "waiting for the first aligned frame"
    if snap.metric:
        return "OK", (f"metric: a={snap.a:.4g} b={snap.b:.4g} rms_log={snap.rms_log:.3f} on {snap.num_inliers}/"
                      f"{snap.num_points} points")
    return "OK", "last frame " + ("had no LiDAR" if snap.last_frame == "unaligned" else "had its fit refused")


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
        "frames_aligned": str(snap.aligned),
        "frames_refused": str(snap.refused),
        "frames_unaligned": str(snap.unaligned),
        "clouds_received": str(snap.clouds_received),
        "pairs_synchronized": str(snap.pairs),
        "unsynchronized_dropped": str(snap.unsynchronized),
        "extrinsic": snap.extrinsic_source,
        "fusion_ms": f"{snap.fusion_ms:.1f}",
        "fit_ms": f"{snap.fit_ms:.1f}",
        "completion_ms": f"{snap.completion_ms:.1f}",
        "last_alignment_error": snap.last_error,
    }
    return _status(alignment_level_and_message(snap), name, hardware_id, values)


@dataclass(frozen=True)
class MetricSnapshot:
    """Metric scale: how the last frame was published, frames per source since start, the last scale."""

    configured: str  # MetricScale.describe()
    has_source: bool
    last_source: str  # "lidar", "hold", "ground", "fixed", or "" (relative only) for the last frame
    frames: dict  # source -> frames published in metres from it; "" -> frames without metric output
    a: float
    b: float
    log_std: float  # std of the scale in log depth
    age_sec: float
    reason: str  # why the last frame was not metric, or why its source was not the first choice
    new_frames: int
    new_metric: int


class MetricStats:
    """Thread-safe record of :class:`depthfm_ros.fusion.metric.MetricEstimate` per frame."""

    def __init__(self, configured: str, has_source: bool):
        self._lock = threading.Lock()
        self.configured, self.has_source = configured, has_source
        self.frames: Counter = Counter()
        self.last_source, self.reason = "", ""
        self.a = self.b = self.log_std = self.age_sec = float("nan")
        self._previous = (0, 0)

    def frame(self, estimate) -> None:
        with self._lock:
            self.frames[estimate.source] += 1
            self.last_source, self.reason = estimate.source, estimate.reason
            fit = estimate.fit
            self.a, self.b = (fit.a, fit.b) if fit is not None else (float("nan"), float("nan"))
            self.log_std = estimate.log_var ** 0.5 if fit is not None else float("nan")
            self.age_sec = estimate.age_sec if fit is not None else float("nan")

    def snapshot(self) -> MetricSnapshot:
        with self._lock:
            total, metric = sum(self.frames.values()), sum(n for k, n in self.frames.items() if k)
            prev_total, prev_metric = self._previous
            self._previous = (total, metric)
            return MetricSnapshot(self.configured, self.has_source, self.last_source, dict(self.frames), self.a,
                                  self.b, self.log_std, self.age_sec, self.reason, total - prev_total,
                                  metric - prev_metric)


def metric_level_and_message(snap: MetricSnapshot) -> tuple[str, str]:
    """('OK' | 'WARN', summary) of the metric scale."""
    if not snap.has_source:
        return "WARN", f"no metric source configured: relative depth only ({snap.configured})"
    if sum(snap.frames.values()) == 0:
        return "WARN", "waiting for the first frame"
    if snap.new_frames and not snap.new_metric:
        return "WARN", f"no metric depth: {snap.reason}"
    if snap.last_source == "hold":
        return "WARN", f"holding the LiDAR scale for {snap.age_sec:.1f} s (log std {snap.log_std:.3f}): {snap.reason}"
    if not snap.last_source:
        return "WARN", f"last frame not metric: {snap.reason}"
    return "OK", f"metric from {snap.last_source}: a={snap.a:.4g} b={snap.b:.4g} log std {snap.log_std:.3f}"


def metric_status(snap: MetricSnapshot, name: str, hardware_id: str):
    """diagnostic_msgs/DiagnosticStatus of the metric scale."""
    values = {"source": snap.last_source or "none", "configured": snap.configured, "a": f"{snap.a:.6g}",
              "b": f"{snap.b:.6g}", "scale_log_std": f"{snap.log_std:.4f}", "scale_age_sec": f"{snap.age_sec:.2f}",
              "reason": snap.reason,
              **{f"frames_{source or 'relative_only'}": str(n) for source, n in sorted(snap.frames.items())}}
    return _status(metric_level_and_message(snap), name, hardware_id, values)


def diagnostic_array(status, stamp):
    """diagnostic_msgs/DiagnosticArray holding one status or a list of them."""
    from diagnostic_msgs.msg import DiagnosticArray

    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = list(status) if isinstance(status, (list, tuple)) else [status]
    return array
