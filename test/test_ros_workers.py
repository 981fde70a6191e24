"""CameraSlots: newest frame per camera, and which frames of several cameras are taken together for one batch.

The streams' timing comes from a fake clock; the worker's waits are real but bounded by windows far longer than
any test step, so a test that waited for a frame it should not wait for times out instead of passing."""

from __future__ import annotations

import threading

import pytest

from depthfm_ros.ros.workers import CameraSlots

LONG_WINDOW = 30.0  # a take that waits this long fails the test's join timeout


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def slots_for(cameras: int, window: float = LONG_WINDOW):
    clock, dropped = Clock(), [0] * cameras

    def counter(c):
        def count():
            dropped[c] += 1
        return count

    return CameraSlots([counter(c) for c in range(cameras)], window, clock=clock), clock, dropped


def take_in_thread(slots):
    result, done = [], threading.Event()

    def run():
        result.append(slots.take())
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return result, done


def stream(slots, clock, cameras, start: float, period: float, frames: int) -> None:
    """``frames`` frames of each camera, ``period`` apart, each set taken as one batch."""
    for k in range(frames):
        clock.now = start + k * period
        for c in cameras:
            slots.put(c, f"{c}@{k}")
        assert [c for c, _ in slots.take()] == list(cameras)


def test_one_camera_is_taken_at_once_and_only_its_newest_frame():
    slots, clock, dropped = slots_for(1)
    slots.put(0, "a")
    slots.put(0, "b")
    assert slots.take() == [(0, "b")] and dropped == [1]


def test_a_live_camera_due_within_the_window_is_waited_for():
    slots, clock, _ = slots_for(2)
    stream(slots, clock, (0, 1), start=0.0, period=0.1, frames=3)
    clock.now = 0.3
    slots.put(0, "a")
    result, done = take_in_thread(slots)
    assert not done.wait(0.2)  # camera 1 is live and due now: the worker waits for it
    slots.put(1, "b")
    assert done.wait(10.0) and result == [[(0, "a"), (1, "b")]]


def test_a_stalled_camera_is_not_waited_for():
    slots, clock, _ = slots_for(2)
    stream(slots, clock, (0, 1), start=0.0, period=0.1, frames=3)
    clock.now = 5.0  # camera 1 sent nothing for 4.8 s, 48 of its periods
    slots.put(0, "a")
    result, done = take_in_thread(slots)
    assert done.wait(10.0) and result == [[(0, "a")]]


def test_a_camera_whose_next_frame_comes_after_the_window_is_not_waited_for():
    slots, clock, _ = slots_for(2, window=0.5)
    stream(slots, clock, (0, 1), start=0.0, period=2.0, frames=3)  # 0.5 Hz cameras
    clock.now = 4.5  # camera 1 is live (last frame 0.5 s ago) but due at 6.0, after the window closes at 5.0
    slots.put(0, "a")
    clock.now = 4.6
    result, done = take_in_thread(slots)
    assert done.wait(10.0) and result == [[(0, "a")]]


def test_a_camera_that_never_sent_a_frame_is_not_waited_for():
    slots, clock, _ = slots_for(3)
    stream(slots, clock, (0, 1), start=0.0, period=0.1, frames=3)
    clock.now = 0.3
    slots.put(0, "a")
    slots.put(1, "b")
    result, done = take_in_thread(slots)
    assert done.wait(10.0) and result == [[(0, "a"), (1, "b")]]


def test_a_camera_that_stalls_while_the_worker_waits_ends_the_wait():
    """The worker waits for a live camera, which then stalls: the wait ends when it counts as stalled (two of its
    periods), not at the end of the window."""
    slots, clock, _ = slots_for(2)
    stream(slots, clock, (0, 1), start=0.0, period=0.05, frames=3)  # real 50 ms periods: live until last + 0.1 s
    slots._clock = __import__("time").monotonic
    slots._last[1] = slots._clock()  # camera 1's last frame: now, on the real clock
    slots.put(0, "a")
    result, done = take_in_thread(slots)
    assert done.wait(10.0) and result == [[(0, "a")]]


def test_frames_replaced_before_the_worker_took_them_are_counted_per_camera():
    slots, clock, dropped = slots_for(3)
    for k in range(4):
        slots.put(0, f"a{k}")
    slots.put(2, "c")
    assert slots.take() == [(0, "a3"), (2, "c")] and dropped == [3, 0, 0]


def test_clear_forgets_and_stop_releases_the_worker():
    slots, clock, dropped = slots_for(2)
    slots.put(0, "a")
    slots.clear()
    result, done = take_in_thread(slots)
    assert not done.wait(0.1)
    slots.stop()
    assert done.wait(10.0) and result == [None] and dropped == [0, 0]


@pytest.mark.parametrize("window", [0.0, LONG_WINDOW])
def test_every_waiting_frame_is_taken_in_camera_order(window):
    slots, clock, _ = slots_for(4, window)
    for c in (3, 1, 0, 2):
        slots.put(c, c)
    assert slots.take() == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_frames_cleared_while_the_worker_waits_leave_it_waiting_for_the_next():
    """A managed node deactivated while the worker waits for a due camera clears the slots: the worker goes back to
    waiting (it used to die on the empty slots) and takes the next frame."""
    slots, clock, _ = slots_for(2)
    stream(slots, clock, (0, 1), start=0.0, period=0.1, frames=3)
    clock.now = 0.3
    slots.put(0, "a")
    result, done = take_in_thread(slots)
    assert not done.wait(0.2)  # waiting for camera 1, due now
    slots.clear()
    assert not done.wait(0.2)
    clock.now = 0.4
    slots.put(0, "after")
    slots.put(1, "b")
    assert done.wait(10.0) and result == [[(0, "after"), (1, "b")]]
