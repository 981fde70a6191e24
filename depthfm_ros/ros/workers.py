"""The two worker threads of depthfm_node, so that the executor never runs a model and the camera never waits for
the LiDAR.

- :class:`CameraSlots`: the inference worker's input. Each camera's slot holds only its newest frame; a frame
  replaced before the worker took it is dropped (counted for that camera), so latency stays within one inference.
  Frames of several cameras that arrive within a short window are taken together, to run as one batch.
- :class:`MetricWorker`: the metric step of each frame after its relative outputs went out: binding its cloud
  (which may still be on its way), the fit, the scale and the metric outputs. It runs beside the inference worker,
  so the fusion of frame n never delays the inference of frame n + 1; it runs at a lower CPU priority (``nice``,
  Linux threads) so that on a busy CPU the camera path goes first. Frames wait in order; when more than
  ``max_pending`` wait, the oldest is skipped (``on_skipped``).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import deque
from typing import Any, Callable


class CameraSlots:
    """The inference worker's input: one newest-frame slot per camera, and when to run them as one batch.

    ``put(camera, item)`` replaces that camera's waiting frame (the one replaced is dropped: ``on_dropped[camera]``,
    that camera's count only). :meth:`take` waits for a frame, then at most ``window_sec`` after the oldest waiting
    frame arrived for the frames of the other cameras expected by then, and returns every waiting frame, one per
    camera. A camera is expected when it is live (its last frame came within two of its periods, the median of its
    last intervals) and its next frame is due before the window closes; a stalled camera, or one whose next frame
    comes after the window, is not waited for. With one camera, :meth:`take` returns its frame at once.
    """

    def __init__(self, on_dropped: list[Callable[[], None]], window_sec: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        self._on_dropped, self.window_sec, self._clock = list(on_dropped), window_sec, clock
        n = len(self._on_dropped)
        self._items: list[Any] = [None] * n
        self._arrived = [0.0] * n  # when the waiting frame arrived (the first of those replaced in between)
        self._last: list[float | None] = [None] * n  # when the camera's last frame arrived
        self._intervals = [deque(maxlen=8) for _ in range(n)]
        self._cond = threading.Condition()
        self.running = True

    def put(self, camera: int, item) -> None:
        with self._cond:
            now = self._clock()
            if self._last[camera] is not None:
                self._intervals[camera].append(now - self._last[camera])
            self._last[camera] = now
            if self._items[camera] is not None:
                self._on_dropped[camera]()
            else:
                self._arrived[camera] = now
            self._items[camera] = item
            self._cond.notify()

    def _expected_until(self, camera: int, now: float, deadline: float) -> float | None:
        """When camera stops being expected (its stream counts as stalled), if it has no frame waiting but one is
        due before ``deadline`` from a live stream; else None."""
        last, intervals = self._last[camera], self._intervals[camera]
        if self._items[camera] is not None or last is None or not intervals:
            return None
        period = statistics.median(intervals)
        live_until = last + 2 * period
        return live_until if now < live_until and last + period <= deadline else None

    def take(self) -> list[tuple[int, Any]] | None:
        """[(camera, item), ...] of every camera with a frame waiting, waiting first as the class says; None once
        stopped."""
        with self._cond:
            while self.running:
                waiting = [c for c, item in enumerate(self._items) if item is not None]
                if not waiting:  # nothing yet, or cleared while the window was open
                    self._cond.wait()
                    continue
                now = self._clock()
                deadline = min(self._arrived[c] for c in waiting) + self.window_sec
                expected = [t for c in range(len(self._items))
                            if (t := self._expected_until(c, now, deadline)) is not None]
                if now >= deadline or not expected:
                    batch = [(c, self._items[c]) for c in waiting]
                    self._items = [None] * len(self._items)
                    return batch
                self._cond.wait(min(deadline, max(expected)) - now)  # a frame, the window's end, or a stall
            return None

    def waiting(self) -> list[int]:
        """The cameras with a frame waiting."""
        with self._cond:
            return [c for c, item in enumerate(self._items) if item is not None]

    def clear(self) -> None:
        """Forget the frames waiting (not counted as dropped: the caller decided it)."""
        with self._cond:
            self._items = [None] * len(self._items)

    def stop(self) -> None:
        with self._cond:
            self.running = False
            self._cond.notify_all()


class MetricWorker:
    """A thread running ``process(frame, behind)`` on each submitted frame, in order; ``behind`` is True while more
    frames wait (the caller may skip optional work then)."""

    def __init__(self, process: Callable[[Any, bool], None], on_skipped: Callable[[], None], max_pending: int = 4,
                 name: str = "depthfm-metric", nice: int = 10):
        self._process, self._on_skipped, self.max_pending, self.nice = process, on_skipped, max_pending, nice
        self._queue: deque = deque()
        self._cond = threading.Condition()
        self._running = True
        self._busy = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, frame) -> None:
        with self._cond:
            self._queue.append(frame)
            while len(self._queue) > self.max_pending:
                self._queue.popleft()
                self._on_skipped()
            self._cond.notify()

    def clear(self) -> None:
        """Forget the frames waiting (not the one in progress; not counted as skipped: the caller decided it)."""
        with self._cond:
            self._queue.clear()

    def idle(self) -> bool:
        """Nothing waiting or running."""
        with self._cond:
            return not self._queue and not self._busy

    def _run(self) -> None:
        if self.nice:
            try:  # this thread only (Linux: a thread is a schedulable task of its own)
                thread = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + self.nice)
            except (AttributeError, OSError):  # not Linux, or not allowed: the same priority as the camera path
                pass
        while True:
            with self._cond:
                while not self._queue and self._running:
                    self._cond.wait()
                if not self._running:
                    return
                frame = self._queue.popleft()
                behind = bool(self._queue)
                self._busy = True
            try:
                self._process(frame, behind)
            finally:
                with self._cond:
                    self._busy = False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the frame in progress."""
        with self._cond:
            self._running = False
            self._cond.notify_all()
        self._thread.join(timeout=timeout)
