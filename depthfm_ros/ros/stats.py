"""Thread-safe counters of depthfm_node and their snapshots: frames (rates, latencies, errors per input), the LiDAR
alignment and the metric scale. Written by the executor and the workers, read by the diagnostics timer
(ros/diagnostics.py turns a snapshot into a DiagnosticStatus)."""

from __future__ import annotations

import math
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
    conversion_errors: int  # every refused input message: image_errors + cloud_errors + camera_info_errors
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
    image_errors: int = 0  # refused image messages (never published)
    cloud_errors: int = 0  # refused clouds (stamps, layouts)
    camera_info_errors: int = 0  # refused CameraInfo messages (each counted once)
    seconds_since_image: float = math.inf  # inf before the first
    metric_latency_ms: float = math.nan  # mean receive -> metric outputs over the window
    metric_processed: int = 0  # frames through the metric step
    metric_dropped: int = 0  # frames whose metric step was skipped: the metric worker was behind
    stale_warn_sec: float = math.inf  # no image for longer: WARN; longer than stale_error_sec: ERROR
    stale_error_sec: float = math.inf
    batch_size: float = math.nan  # mean images per engine call of this camera's frames over the window


#: words that name why an input was refused, in the order they are looked for; a refusal's kind is the first of
#: them its message contains (else "other"): a fixed, bounded set of kinds, whatever text the message carries
class FrameStats:
    """Thread-safe counters written by the subscription callbacks and the inference worker."""

    def __init__(self, clock=time.monotonic, stale_warn_sec: float = math.inf, stale_error_sec: float = math.inf):
        self._clock = clock
        self.stale_warn_sec, self.stale_error_sec = stale_warn_sec, stale_error_sec
        self._lock = threading.Lock()
        self.received = self.processed = self.dropped = 0
        self.conversion_errors = self.inference_errors = self.publishing_errors = 0
        self.refused: Counter = Counter()  # "image", "cloud", "camera_info" -> refused messages
        self.metric_processed = self.metric_dropped = 0
        self.last_error = ""
        self.last_latency_ms = self.points_ms = float("nan")
        self._last_received: float | None = None
        self._received_t: deque[float] = deque()
        self._done: deque[tuple[float, float, float, float, int]] = deque()  # time, latency, inference, queue, batch
        self._metric_done: deque[tuple[float, float]] = deque()  # (time, receive -> metric outputs ms)
        self._previous = (0, 0, 0)  # conversion_errors, inference_errors, processed at the last snapshot

    def _trim(self, now: float) -> None:
        for window in (self._received_t, self._done, self._metric_done):
            while window and now - (window[0] if window is self._received_t else window[0][0]) > RATE_WINDOW_SEC:
                window.popleft()

    def frame_received(self) -> None:
        with self._lock:
            now = self._clock()
            self.received += 1
            self._last_received = now
            self._received_t.append(now)
            self._trim(now)

    def frame_dropped(self) -> None:
        """A frame was replaced by a newer one before the worker took it."""
        with self._lock:
            self.dropped += 1

    def frame_processed(self, latency_ms: float, inference_ms: float, queue_ms: float = float("nan"),
                        batch_size: int = 1) -> None:
        with self._lock:
            now = self._clock()
            self.processed += 1
            self.last_latency_ms = latency_ms
            self._done.append((now, latency_ms, inference_ms, queue_ms, batch_size))
            self._trim(now)

    def points_published(self, points_ms: float) -> None:
        with self._lock:
            self.points_ms = points_ms

    def input_refused(self, what: str, message: str) -> None:
        """A refused input message: ``what`` is 'image', 'cloud' or 'camera_info'."""
        with self._lock:
            self.conversion_errors += 1
            self.refused[what] += 1
            self.last_error = f"{what}: {message}"

    def conversion_failed(self, message: str) -> None:
        """A refused image (:meth:`input_refused` with 'image')."""
        self.input_refused("image", message)

    def metric_published(self, latency_ms: float) -> None:
        """A frame went through the metric step (with or without metric outputs), ``latency_ms`` after it came."""
        with self._lock:
            now = self._clock()
            self.metric_processed += 1
            self._metric_done.append((now, latency_ms))
            self._trim(now)

    def metric_skipped(self) -> None:
        """A frame's metric step was skipped: the metric worker was behind."""
        with self._lock:
            self.metric_dropped += 1

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
            batch = [d[4] for d in self._done]
            metric_lat = [d[1] for d in self._metric_done]
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
                image_errors=self.refused["image"], cloud_errors=self.refused["cloud"],
                camera_info_errors=self.refused["camera_info"],
                seconds_since_image=math.inf if self._last_received is None else now - self._last_received,
                metric_latency_ms=sum(metric_lat) / len(metric_lat) if metric_lat else float("nan"),
                metric_processed=self.metric_processed, metric_dropped=self.metric_dropped,
                stale_warn_sec=self.stale_warn_sec, stale_error_sec=self.stale_error_sec,
                batch_size=sum(batch) / len(batch) if batch else float("nan"),
            )


@dataclass(frozen=True)
class AlignmentSnapshot:
    """LiDAR alignment: counters since start and the last frame's fit (NaN / 0 before the first fit)."""

    clouds_received: int
    with_cloud: int  # frames bound to a cloud within the slop
    without_cloud: int  # frames with no cloud within the slop (held scale or the next source)
    clouds_unused: int  # clouds that left the buffer without a frame bound to them
    resets: int  # times the cloud buffer started over because time jumped back
    aligned: int  # frames whose LiDAR fit was accepted
    refused: int  # frames whose LiDAR fit was refused
    metric: bool  # the last frame's LiDAR fit was accepted
    last_frame: str  # the last frame: "aligned", "refused", "no cloud" ("" before the first)
    stale: bool  # no cloud for longer than lidar_timeout_sec
    seconds_since_cloud: float  # inf before the first cloud
    a: float
    b: float
    rms_log: float
    num_points: int
    num_inliers: int
    inlier_share: float  # the acceptance evidence of the last accepted fit (docs/ros.md, LiDAR fit checks)
    region_offset: float
    spread: float
    z_coverage: float
    last_error: str  # why the last refused frame had no LiDAR scale ("" until one was)
    extrinsic_source: str  # "tf2" or "parameters" for the last frame
    fusion_ms: float  # projection + fit + completion of the last frame
    fit_ms: float  # of fusion_ms: the fit and its checks
    completion_ms: float  # of fusion_ms: completed depth (interpolation or DepthCompletionFM)
    new_refused: int  # since the previous snapshot
    new_aligned: int


class AlignmentStats:
    """Thread-safe LiDAR-alignment state written by the subscription callbacks and the metric worker.

    With ``lidar_timeout_sec`` > 0 the LiDAR is stale when no cloud has arrived for longer than that (counting from
    construction); 0 never calls it stale.
    """

    def __init__(self, lidar_timeout_sec: float = 0.0, clock=time.monotonic):
        self.lidar_timeout_sec, self._clock = lidar_timeout_sec, clock
        self._lock = threading.Lock()
        self.clouds_received = self.with_cloud = self.without_cloud = self.aligned = self.refused = 0
        self.metric = False
        self.last_frame = ""
        self.a = self.b = self.rms_log = self.fusion_ms = self.fit_ms = self.completion_ms = float("nan")
        self.inlier_share = self.region_offset = self.spread = self.z_coverage = float("nan")
        self.num_points = self.num_inliers = 0
        self.last_error = ""
        self.extrinsic_source = ""
        self._started = clock()
        self._last_cloud: float | None = None
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
        since = self._started if self._last_cloud is None else self._last_cloud
        return self.lidar_timeout_sec > 0 and now - since > self.lidar_timeout_sec

    def frame_bound(self, has_cloud: bool) -> None:
        """A frame was bound to a cloud (``has_cloud``) or found none within the slop."""
        with self._lock:
            if has_cloud:
                self.with_cloud += 1
            else:
                self.without_cloud += 1
                self.metric, self.last_frame = False, "no cloud"

    def fit_accepted(self, fit, extrinsic_source: str, fusion_ms: float, fit_ms: float = float("nan"),
                     completion_ms: float = float("nan")) -> None:
        """``fit`` is a fusion.LogDepthFit (with its evidence)."""
        with self._lock:
            self.aligned += 1
            self.metric, self.last_frame = True, "aligned"
            self.a, self.b, self.rms_log = fit.a, fit.b, fit.rms_log
            self.num_points, self.num_inliers = fit.num_points, fit.num_inliers
            evidence = fit.evidence
            if evidence is not None:
                self.inlier_share, self.region_offset = evidence.inlier_share, evidence.region_offset
                self.spread, self.z_coverage = evidence.spread, evidence.z_coverage
            self.extrinsic_source, self.fusion_ms = extrinsic_source, fusion_ms
            self.fit_ms, self.completion_ms = fit_ms, completion_ms

    def fit_refused(self, reason: str, num_points: int, extrinsic_source: str, fusion_ms: float) -> None:
        with self._lock:
            self.refused += 1
            self.metric, self.last_frame = False, "refused"
            self.a = self.b = self.rms_log = self.fit_ms = self.completion_ms = float("nan")
            self.inlier_share = self.region_offset = self.spread = self.z_coverage = float("nan")
            self.num_points, self.num_inliers = num_points, 0
            self.last_error = reason
            self.extrinsic_source, self.fusion_ms = extrinsic_source, fusion_ms

    def snapshot(self, clouds_unused: int = 0, resets: int = 0) -> AlignmentSnapshot:
        with self._lock:
            now = self._clock()
            prev_refused, prev_aligned = self._previous
            self._previous = (self.refused, self.aligned)
            return AlignmentSnapshot(
                clouds_received=self.clouds_received, with_cloud=self.with_cloud, without_cloud=self.without_cloud,
                clouds_unused=clouds_unused, resets=resets, aligned=self.aligned, refused=self.refused,
                metric=self.metric, last_frame=self.last_frame, stale=self._stale(now),
                seconds_since_cloud=float("inf") if self._last_cloud is None else now - self._last_cloud,
                a=self.a, b=self.b, rms_log=self.rms_log, num_points=self.num_points, num_inliers=self.num_inliers,
                inlier_share=self.inlier_share, region_offset=self.region_offset, spread=self.spread,
                z_coverage=self.z_coverage, last_error=self.last_error, extrinsic_source=self.extrinsic_source,
                fusion_ms=self.fusion_ms, fit_ms=self.fit_ms, completion_ms=self.completion_ms,
                new_refused=self.refused - prev_refused, new_aligned=self.aligned - prev_aligned)


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
    conflicts: int = 0  # frames without metres because two sources disagreed
    sigma_scale: float = math.nan  # the uncertainty calibration of the last metric frame


class MetricStats:
    """Thread-safe record of :class:`depthfm_ros.fusion.metric.MetricEstimate` per frame."""

    def __init__(self, configured: str, has_source: bool):
        self._lock = threading.Lock()
        self.configured, self.has_source = configured, has_source
        self.frames: Counter = Counter()
        self.last_source, self.reason = "", ""
        self.a = self.b = self.log_std = self.age_sec = self.sigma_scale = float("nan")
        self.conflicts = 0
        self._previous = (0, 0)

    def frame(self, estimate) -> None:
        with self._lock:
            self.frames[estimate.source] += 1
            self.conflicts += bool(estimate.conflict)
            self.last_source, self.reason = estimate.source, estimate.reason
            fit = estimate.fit
            self.a, self.b = (fit.a, fit.b) if fit is not None else (float("nan"), float("nan"))
            self.log_std = estimate.log_var ** 0.5 if fit is not None else float("nan")
            self.age_sec = estimate.age_sec if fit is not None else float("nan")
            self.sigma_scale = estimate.sigma_scale if fit is not None else float("nan")

    def snapshot(self) -> MetricSnapshot:
        with self._lock:
            total, metric = sum(self.frames.values()), sum(n for k, n in self.frames.items() if k)
            prev_total, prev_metric = self._previous
            self._previous = (total, metric)
            return MetricSnapshot(self.configured, self.has_source, self.last_source, dict(self.frames), self.a,
                                  self.b, self.log_std, self.age_sec, self.reason, total - prev_total,
                                  metric - prev_metric, self.conflicts, self.sigma_scale)


