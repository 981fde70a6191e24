"""Frame counters and their DiagnosticStatus: rates over a window, drops, errors, levels."""

from diagnostic_msgs.msg import DiagnosticStatus

from depthfm_ros.ros.diagnostics import RATE_WINDOW_SEC, FrameStats, diagnostic_array, diagnostic_status


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
