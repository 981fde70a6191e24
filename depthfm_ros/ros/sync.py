"""Image + cloud synchronization of depthfm_node.

:class:`CloudBuffer` keeps the recent clouds; each image, once its depth is computed, is bound to the cloud nearest
to it in time within a slop, whether that cloud came before or after it. The camera never waits for the LiDAR: a
frame's relative depth goes out at once, and only its metric depth waits (at most a bounded time) for its cloud.

:class:`ApproximateTimeSync` is a pure-Python matcher of N streams (message_filters' ApproximateTimeSynchronizer
semantics): messages are opaque, the caller gives each a stamp in seconds. A set (one message per stream) is emitted
as soon as every stream holds a message within ``slop_sec`` of each other; matched and older messages are then
dropped, so sets come out in time order and no message is used twice.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Sequence

from ..errors import InputError


class ApproximateTimeSync:
    """Match messages of ``num_streams`` streams whose stamps differ by at most ``slop_sec`` seconds.

    Each stream keeps at most ``queue_size`` messages (oldest dropped first). :meth:`add` returns the matched
    tuple (ordered by stream) or None, and calls ``callback(*messages)`` when one is given. Thread-safe.
    """

    def __init__(
        self,
        num_streams: int,
        slop_sec: float,
        queue_size: int = 10,
        callback: Callable[..., Any] | None = None,
    ):
        if num_streams < 2:
            raise InputError(f"need at least two streams to synchronize, got {num_streams}")
        if not slop_sec >= 0:
            raise InputError(f"slop_sec must be >= 0 seconds, got {slop_sec}")
        if queue_size < 1:
            raise InputError(f"queue_size must be >= 1, got {queue_size}")
        self.num_streams = num_streams
        self.slop_sec = float(slop_sec)
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
        if max(stamps) - min(stamps) > self.slop_sec:
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


def check_stamp(header, now_sec: float, max_future_sec: float) -> float:
    """The header's stamp in seconds, or InputError for a negative stamp or one more than ``max_future_sec`` ahead
    of ``now_sec`` (the node's clock; not checked while it reads 0, before /clock)."""
    if header.stamp.sec < 0:
        raise InputError(f"negative header stamp ({header.stamp.sec} s) cannot be synchronized")
    stamp = stamp_seconds(header)
    if now_sec > 0 and stamp > now_sec + max_future_sec:
        raise InputError(f"header stamp {stamp:.3f} s is {stamp - now_sec:.1f} s ahead of the clock ({now_sec:.3f} s): "
                         "refused and forgotten")
    return stamp


class CloudBuffer:
    """The clouds of the last moments, for binding each image to the one nearest in time within ``slop_sec``.

    Clouds are kept in stamp order, at most ``queue_size`` of them; one that leaves without having been bound to an
    image is counted in ``unused``. :meth:`nearest` says which cloud an image stamped ``t`` gets and whether that is
    decided: clouds arrive in stamp order, so once the newest cloud lies at least as far after ``t`` as the best
    candidate lies from it (or beyond ``t + slop``) no nearer cloud can come, unless ``t`` lies before every cloud
    held. A cloud stamped more than ``slop_sec`` before the newest one means time jumped back (a bag loop, a
    simulator restart): the buffer starts over (``resets``). Thread-safe: the executor adds, the fusion worker
    binds; ``changed`` is notified on every cloud.
    """

    def __init__(self, slop_sec: float, queue_size: int):
        self.slop_sec, self.queue_size = slop_sec, queue_size
        self.changed = threading.Condition()
        self._clouds: deque[list] = deque()  # [stamp, msg, bound]
        self.unused = self.resets = 0

    def add(self, stamp_s: float, msg) -> None:
        with self.changed:
            if self._clouds and stamp_s < self._clouds[-1][0] - self.slop_sec:  # time jumped back: start over
                self._drop(len(self._clouds))
                self.resets += 1
            self._clouds.append([stamp_s, msg, False])
            if len(self._clouds) > 1 and self._clouds[-2][0] > stamp_s:  # slightly out of order: keep them sorted
                self._clouds = deque(sorted(self._clouds, key=lambda item: item[0]))
            self._drop(len(self._clouds) - self.queue_size)
            self.changed.notify_all()

    def _drop(self, count: int) -> None:
        for _ in range(max(count, 0)):
            if not self._clouds.popleft()[2]:
                self.unused += 1

    def nearest(self, stamp_s: float) -> tuple[list | None, bool]:
        """(the entry [stamp, cloud, bound] nearest to ``stamp_s`` within the slop or None, whether a nearer one
        can no longer come); the caller holds ``changed``."""
        best, best_gap = None, self.slop_sec
        for item in self._clouds:
            gap = abs(item[0] - stamp_s)
            if gap <= best_gap:
                best, best_gap = item, gap
        newest = self._clouds[-1][0] if self._clouds else -float("inf")
        # an image older than every cloud here: time may have jumped back (a bag loop), and its own cloud, stamped
        # before the buffer's, may still come and start the buffer over; an image that is merely late waits in vain
        # until its deadline
        before_all = best is None and bool(self._clouds) and stamp_s < self._clouds[0][0] - self.slop_sec
        return best, newest >= stamp_s + best_gap and not before_all

    def bind(self, stamp_s: float) -> tuple[object | None, bool]:
        """The cloud nearest to ``stamp_s`` within the slop (None if there is none) and whether another frame was
        bound to it before; the caller holds ``changed``."""
        best, _ = self.nearest(stamp_s)
        if best is None:
            return None, False
        used, best[2] = best[2], True
        return best[1], used

    def newest_stamp(self) -> float:
        with self.changed:
            return self._clouds[-1][0] if self._clouds else -float("inf")


def stamp_seconds(header) -> float:
    return header.stamp.sec + 1e-9 * header.stamp.nanosec
