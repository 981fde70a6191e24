"""Approximate time synchronizer in pure Python, for when ``message_filters`` is not importable.

Messages are opaque; the caller gives each a stamp in seconds. A set (one message per stream) is emitted as soon
as every stream holds a message within ``slop_s`` of each other; matched and older messages are then dropped, so
sets come out in time order and no message is used twice.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Sequence

from .errors import InputError


class ApproximateTimeSync:
    """Match messages of ``num_streams`` streams whose stamps differ by at most ``slop_s`` seconds.

    Each stream keeps at most ``queue_size`` messages (oldest dropped first). :meth:`add` returns the matched
    tuple (ordered by stream) or None, and calls ``callback(*messages)`` when one is given. Thread-safe.
    """

    def __init__(
        self,
        num_streams: int,
        slop_s: float,
        queue_size: int = 10,
        callback: Callable[..., Any] | None = None,
    ):
        if num_streams < 2:
            raise InputError(f"need at least two streams to synchronize, got {num_streams}")
        if not slop_s >= 0:
            raise InputError(f"slop_s must be >= 0 seconds, got {slop_s}")
        if queue_size < 1:
            raise InputError(f"queue_size must be >= 1, got {queue_size}")
        self.num_streams = num_streams
        self.slop_s = float(slop_s)
        self.queue_size = int(queue_size)
        self.callback = callback
        self._queues: list[deque[tuple[float, Any]]] = [deque() for _ in range(num_streams)]
        self._last_matched_s = [float("-inf")] * num_streams
        self._lock = threading.Lock()
        self.num_dropped = 0

    def add(self, stream: int, stamp_s: float, msg: Any) -> tuple[Any, ...] | None:
        """Queue ``msg`` of stream ``stream`` stamped ``stamp_s``; return the matched set if this completes one."""
        if not 0 <= stream < self.num_streams:
            raise InputError(f"stream index {stream} out of range for {self.num_streams} streams")
        stamp_s = float(stamp_s)
        with self._lock:
            matched = self._add_locked(stream, stamp_s, msg)
        if matched is not None and self.callback is not None:
            self.callback(*matched)
        return matched

    def _add_locked(self, stream: int, stamp_s: float, msg: Any) -> tuple[Any, ...] | None:
        if stamp_s <= self._last_matched_s[stream]:  # not newer than this stream's last match: sets stay in order
            self.num_dropped += 1
            return None
        queue = self._queues[stream]
        queue.append((stamp_s, msg))
        if len(queue) > 1 and queue[-2][0] > stamp_s:  # arrived out of order: keep the queue sorted
            self._queues[stream] = queue = deque(sorted(queue, key=lambda item: item[0]))
        while len(queue) > self.queue_size:
            queue.popleft()
            self.num_dropped += 1

        # The new message anchors a candidate set: from every other stream take the closest stamp.
        picks: list[int] = []
        for k, other in enumerate(self._queues):
            if k == stream:
                own = [i for i, item in enumerate(queue) if item[1] is msg]
                if not own:  # trimmed right away (older than a full queue)
                    return None
                picks.append(own[0])
                continue
            if not other:
                return None
            best = min(range(len(other)), key=lambda i: abs(other[i][0] - stamp_s))
            picks.append(best)
        stamps = [self._queues[k][i][0] for k, i in enumerate(picks)]
        if max(stamps) - min(stamps) > self.slop_s:
            return None
        matched = tuple(self._queues[k][i][1] for k, i in enumerate(picks))
        for k, i in enumerate(picks):  # drop the matched message and everything older in each stream
            for _ in range(i + 1):
                self._queues[k].popleft()
            self.num_dropped += i
        self._last_matched_s = stamps
        return matched

    def pending(self) -> Sequence[int]:
        """Number of queued messages per stream."""
        with self._lock:
            return [len(q) for q in self._queues]
