"""Frame counters and their DiagnosticStatus: rates over a window, drops, errors, levels; LiDAR alignment state."""

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus

from depthfm_ros.fusion.alignment import LogDepthFit
from depthfm_ros.ros.diagnostics import alignment_status, diagnostic_array, diagnostic_status, level_and_message
from depthfm_ros.ros.stats import RATE_WINDOW_SEC, AlignmentStats, FrameStats


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _values(status):
    return {kv.key: kv.value for kv in status.values}


def test_waiting_then_ok_with_rates_latency_and_drops():
    clock = FakeClock()
    stats = FrameStats(clock)
    status = diagnostic_status(stats.snapshot(), "/depthfm: depth", "torch[cpu]", "torch")
    assert status.level == DiagnosticStatus.WARN and "waiting" in status.message
    for k in range(10):  # 10 Hz camera, every other frame replaced before the worker took it
        clock.t += 0.1
        stats.frame_received()
        if k % 2:
            stats.frame_dropped()
        else:
            stats.frame_processed(latency_ms=120.0 + k, inference_ms=100.0)
    snap = stats.snapshot()
    assert (snap.received, snap.processed, snap.dropped) == (10, 5, 5)
    assert snap.input_rate_hz == 10 / RATE_WINDOW_SEC and snap.output_rate_hz == 5 / RATE_WINDOW_SEC
    assert snap.latency_ms == 124.0 and snap.inference_ms == 100.0 and snap.last_latency_ms == 128.0
    status = diagnostic_status(snap, "/depthfm: depth", "torch[cpu]", "torch")
    assert status.level == DiagnosticStatus.OK and status.hardware_id == "torch[cpu]"
    values = _values(status)
    assert (values["frames_dropped"], values["frames_processed"], values["backend"]) == ("5", "5", "torch")
    clock.t += 2 * RATE_WINDOW_SEC  # nothing new: rates fall to zero
    assert stats.snapshot().output_rate_hz == 0.0


def test_errors_raise_the_level_for_one_period():
    stats = FrameStats(FakeClock())
    stats.frame_received()
    stats.frame_processed(10.0, 9.0)  # output flows (input without output is a WARN of its own)
    stats.frame_received()
    stats.conversion_failed("image encoding 'yuv999' is not a colour or mono image")
    status = diagnostic_status(stats.snapshot(), "n", "h", "torch")
    assert status.level == DiagnosticStatus.WARN and "yuv999" in status.message
    assert diagnostic_status(stats.snapshot(), "n", "h", "torch").level == DiagnosticStatus.OK  # nothing new
    stats.inference_failed("RuntimeError: CUDA out of memory")
    status = diagnostic_status(stats.snapshot(), "n", "h", "torch")
    assert status.level == DiagnosticStatus.ERROR and _values(status)["inference_errors"] == "1"
    stats.inference_failed("RuntimeError: again")
    stats.frame_processed(10.0, 9.0)  # recovered within the period
    assert diagnostic_status(stats.snapshot(), "n", "h", "torch").level == DiagnosticStatus.OK


def test_array_wraps_the_status_with_a_stamp():
    from builtin_interfaces.msg import Time

    status = diagnostic_status(FrameStats().snapshot(), "n", "h", "torch")
    array = diagnostic_array(status, Time(sec=3))
    assert array.header.stamp.sec == 3 and array.status == [status]


def test_points_ms_is_reported():
    stats = FrameStats(FakeClock())
    assert _values(diagnostic_status(stats.snapshot(), "n", "h", "torch"))["points_ms"] == "nan"
    stats.points_published(8.25)
    assert _values(diagnostic_status(stats.snapshot(), "n", "h", "torch"))["points_ms"] == "8.2"


def _fit(a=2.0, b=0.5):
    return LogDepthFit(a, b, 0.05, num_inliers=380, num_points=400)


def test_lidar_goes_stale_after_the_timeout_and_recovers_with_clouds():
    clock = FakeClock()
    stats = AlignmentStats(lidar_timeout_sec=1.0, clock=clock)
    assert not stats.is_stale()  # the timeout counts from start
    status = alignment_status(stats.snapshot(), "n", "/lidar")
    assert status.level == DiagnosticStatus.WARN and status.message == "waiting for LiDAR clouds"
    clock.t += 1.5  # no cloud ever
    assert stats.is_stale()
    stats.frame_bound(False)
    stats.frame_bound(False)
    status = alignment_status(stats.snapshot(), "n", "/lidar")
    assert status.level == DiagnosticStatus.WARN and "LiDAR stale (no cloud received yet)" in status.message
    values = _values(status)
    assert (values["lidar_stale"], values["frames_without_cloud"], values["metric"]) == ("True", "2", "False")
    assert values["seconds_since_cloud"] == "inf"

    stats.cloud_received()  # clouds are back
    assert not stats.is_stale()
    stats.frame_bound(True)
    stats.fit_accepted(_fit(), "parameters", fusion_ms=30.0, fit_ms=4.0, completion_ms=25.0)
    status = alignment_status(stats.snapshot(), "n", "/lidar")
    assert status.level == DiagnosticStatus.OK and status.message.startswith("metric: a=2")
    values = _values(status)
    assert (values["lidar_stale"], values["fusion_ms"], values["fit_ms"], values["completion_ms"]) == (
        "False", "30.0", "4.0", "25.0")
    assert values["frames_with_cloud"] == "1"

    clock.t += 3.0  # the LiDAR stops
    assert stats.is_stale()
    stats.frame_bound(False)
    status = alignment_status(stats.snapshot(clouds_unused=4, resets=1), "n", "/lidar")
    assert status.level == DiagnosticStatus.WARN and "last cloud 3.0 s ago" in status.message
    values = _values(status)
    assert (values["frames_without_cloud"], values["frames_aligned"], values["clouds_unused"],
            values["time_jumps"]) == ("3", "1", "4", "1")


def test_zero_timeout_never_goes_stale():
    clock = FakeClock()
    stats = AlignmentStats(lidar_timeout_sec=0.0, clock=clock)
    clock.t += 1e6
    assert not stats.is_stale()
    assert alignment_status(stats.snapshot(), "n", "/lidar").message == "waiting for LiDAR clouds"


def test_a_steady_lidar_never_goes_stale():
    """Used to: 265 stale/back flips in 20 min with a steady 10 Hz LiDAR (staleness counted image + cloud pairs,
    which the newest-only worker thinned out). Now it counts clouds: 10 Hz with 30 % jitter never flips."""
    clock = FakeClock()
    stats = AlignmentStats(lidar_timeout_sec=1.0, clock=clock)
    rng = np.random.default_rng(0)
    flips, stale = 0, False
    for _ in range(12_000):  # 20 minutes
        clock.t += 0.1 * rng.uniform(0.7, 1.3)
        stats.cloud_received()
        for _ in range(3):  # images in between
            clock.t += 0.0
            flips += stats.is_stale() != stale
            stale = stats.is_stale()
    assert flips == 0


def test_metric_status_says_which_source_and_why_not():
    from depthfm_ros.fusion.metric import MetricEstimate
    from depthfm_ros.ros.diagnostics import metric_status
    from depthfm_ros.ros.stats import MetricStats

    none = MetricStats("no metric source: only relative depth", has_source=False)
    status = metric_status(none.snapshot(), "n", "")
    assert status.level == DiagnosticStatus.WARN and status.message.startswith("no metric source configured")
    stats = MetricStats("metric depth from LiDAR fit", has_source=True)
    stats.frame(MetricEstimate("lidar", _fit(2.0, 0.5), 0.0004))
    status = metric_status(stats.snapshot(), "n", "")
    assert status.level == DiagnosticStatus.OK and status.message.startswith("metric from lidar: a=2 b=0.5")
    assert _values(status)["scale_log_std"] == "0.0200" and _values(status)["frames_lidar"] == "1"
    stats.frame(MetricEstimate("hold", _fit(2.0, 0.5), 0.0009, 0.4, "no LiDAR cloud for this frame"))
    status = metric_status(stats.snapshot(), "n", "")
    assert status.level == DiagnosticStatus.WARN and "holding the LiDAR scale for 0.4 s" in status.message
    stats.frame(MetricEstimate("", None, reason="lidar: too few LiDAR points"))
    status = metric_status(stats.snapshot(), "n", "")
    assert status.level == DiagnosticStatus.WARN and status.message == "no metric depth: lidar: too few LiDAR points"
    assert (_values(status)["source"], _values(status)["frames_relative_only"]) == ("none", "1")


def test_error_log_throttles_each_kind_apart():
    """One throttled call used to serve every bad input: 7 of 29 refused images were never logged."""
    from depthfm_ros.ros.error_log import ErrorLog

    clock, lines = FakeClock(), []
    log = ErrorLog(lines.append, period_sec=5.0, clock=clock)
    for k in range(3):  # two kinds interleaved, the text differs from message to message
        assert log("image:encoding", f"dropping bad image message: encoding 'yuv{k}' ({2 * k + 1} so far)") == (k == 0)
        assert log("cloud:step", f"dropping bad cloud message: row_step {100 + k} too small") == (k == 0)
    assert len(lines) == 2 and "yuv0" in lines[0] and "row_step 100" in lines[1]
    clock.t += 5.0
    assert log("image:encoding", "dropping bad image message: encoding 'yuv9' (7 so far)")
    assert len(lines) == 3


def test_the_kind_of_a_refusal_is_fixed_whatever_its_text():
    """Used to: random encoding names gave 2,256 ERROR lines in 6 s (the kind was the message text with its numbers
    blanked, so every new name was a new kind). The kind is now the call site and a fixed reason word."""
    from depthfm_ros.errors import InputError
    from depthfm_ros.ros.error_log import REASON_WORDS, ErrorLog, reason_kind

    rng = np.random.default_rng(0)
    names = ["".join(rng.choice(list("abcdefxyz0123456789_"), 8)) for _ in range(2000)]
    kinds = {reason_kind(InputError(f"image encoding {name!r} is not a colour or mono image")) for name in names}
    assert kinds == {"InputError:encoding"}
    clock, lines = FakeClock(), []
    log = ErrorLog(lines.append, period_sec=5.0, clock=clock)
    for k, name in enumerate(names):  # 2,000 bad images in 2 s: one line
        clock.t += 0.001
        log(f"image:{reason_kind(InputError(f'image encoding {name!r} unknown'))}", f"bad image {name}")
    assert len(lines) == 1
    stamp, step = InputError("negative header stamp (-1 s)"), InputError("step 77 does not match width 640")
    assert len({reason_kind(stamp), reason_kind(step), reason_kind(ValueError("?"))}) == 3
    assert len(REASON_WORDS) < 32  # a bounded set of kinds


def test_refusals_are_counted_per_input_kind():
    """Used to: CameraInfo and cloud refusals shared the image counter and one throttled call site."""
    stats = FrameStats(FakeClock())
    stats.frame_received()
    stats.frame_processed(10.0, 9.0)
    stats.input_refused("image", "encoding 'x'")
    stats.input_refused("cloud", "row_step too small")
    stats.input_refused("cloud", "negative header stamp")
    stats.input_refused("camera_info", "K has fx <= 0")
    values = _values(diagnostic_status(stats.snapshot(), "n", "h", "torch"))
    assert (values["conversion_errors"], values["image_errors"], values["cloud_errors"],
            values["camera_info_errors"]) == ("4", "1", "2", "1")


def test_input_stale_goes_warn_then_error_and_the_metric_status_with_it():
    """Used to: a 10 s publisher stall left depth status OK at 0.0 Hz and metric status OK "metric from lidar"."""
    from depthfm_ros.fusion.metric import MetricEstimate
    from depthfm_ros.ros.diagnostics import input_stale, metric_status
    from depthfm_ros.ros.stats import MetricStats

    clock = FakeClock()
    stats = FrameStats(clock, stale_warn_sec=2.0, stale_error_sec=5.0)
    metric = MetricStats("metric depth from LiDAR fit", has_source=True)
    for _ in range(30):
        clock.t += 0.033
        stats.frame_received()
        stats.frame_processed(50.0, 40.0)
        metric.frame(MetricEstimate("lidar", _fit(), 0.0001))
    snap = stats.snapshot()
    assert diagnostic_status(snap, "n", "h", "torch").level == DiagnosticStatus.OK
    assert metric_status(metric.snapshot(), "n", "", input_stale(snap)).level == DiagnosticStatus.OK
    levels = []
    for _ in range(10):  # the camera stalls for 10 s
        clock.t += 1.0
        snap = stats.snapshot()
        depth = diagnostic_status(snap, "n", "h", "torch")
        scale = metric_status(metric.snapshot(), "n", "", input_stale(snap))
        levels.append((depth.level, scale.level))
        assert _values(depth)["seconds_since_image"] == f"{snap.seconds_since_image:.2f}"
    ok, warn, error = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
    assert levels[:2] == [(ok, ok), (ok, ok)]  # 1 s and 2 s: within stale_warn_sec
    assert (warn, warn) in levels and levels[-1] == (error, error)
    assert levels.index((warn, warn)) < levels.index((error, error))
    assert "input stale: no image for 10.0 s" in depth.message and _values(scale)["source"] == "stale"
    stats.frame_received()  # the camera is back
    assert diagnostic_status(stats.snapshot(), "n", "h", "torch").level != DiagnosticStatus.ERROR


def test_input_without_output_is_a_warning():
    clock = FakeClock()
    stats = FrameStats(clock=clock)
    for _ in range(10):
        stats.frame_received()
        clock.t += 0.1
    level, message = level_and_message(stats.snapshot())
    assert level == "WARN" and "images arrive (2.0 Hz) but nothing was published in the last 5 s" in message
    stats.frame_processed(100.0, 90.0)
    assert level_and_message(stats.snapshot())[0] == "OK"


def test_queue_wait_is_reported_beside_latency_and_inference():
    clock = FakeClock()
    stats = FrameStats(clock=clock)
    stats.frame_received()
    stats.frame_processed(300.0, 180.0, 90.0)
    stats.frame_processed(200.0, 170.0, 10.0, batch_size=4)
    snap = stats.snapshot()
    assert (snap.latency_ms, snap.inference_ms, snap.queue_ms, snap.batch_size) == (250.0, 175.0, 50.0, 2.5)
    values = _values(diagnostic_status(snap, "n", "h", "torch"))
    assert (values["queue_ms"], values["batch_size"]) == ("50.0", "2.50")
