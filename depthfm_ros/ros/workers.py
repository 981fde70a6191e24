"""The two worker threads of depthfm_node, so that the executor never runs a model and the camera never waits for
the LiDAR.

- :class:`NewestOnly`: the inference worker's slot. It holds only the newest frame; a frame replaced before the
  worker took it is dropped (``on_dropped``), so latency stays within one inference.
- :class:`MetricWorker`: the metric step of each frame after its relative outputs went out: binding its cloud
  (which may still be on its way), the fit, the scale and the metric outputs. It runs beside the inference worker,
  so the fusion of frame n never delays the inference of frame n + 1; it runs at a lower CPU priority (``nice``,
  Linux threads) so that on a busy CPU the camera path goes first. Frames wait in order; when more than
  ``max_pending`` wait, the oldest is skipped (``on_skipped``).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import Any, Callable


class NewestOnly:
    """A one-frame slot between a producer (the executor) and one consumer thread."""

    def __init__(self, on_dropped: Callable[[], None]):
        self._on_dropped = on_dropped
        self._item: Any = None
        self._cond = threading.Condition()
        self.running = True

    def put(self, item) -> None:
        with self._cond:
            if self._item is not None:
                self._on_dropped()
            self._item = item
            self._cond.notify()

    def take(self):
        """The newest item, waiting for one; None once stopped."""
        with self._cond:
            while self._item is None and self.running:
                self._cond.wait()
            if not self.running:
                return None
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        """Forget the frame waiting, if any (not counted as dropped: the caller decided it)."""
        with self._cond:
            self._item = None

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
