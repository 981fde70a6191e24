"""Image + cloud synchronization of depthfm_node.

:class:`CloudImageSync` pairs images with clouds within a slop (message_filters' ApproximateTimeSynchronizer when
importable, else :class:`ApproximateTimeSync`) and counts messages that can no longer find a partner.

:class:`ApproximateTimeSync` is the pure-Python matcher: messages are opaque, the caller gives each a stamp in
seconds. A set (one message per stream) is emitted as soon as every stream holds a message within ``slop_sec`` of
each other; matched and older messages are then dropped, so sets come out in time order and no message is used
twice.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Sequence

from ..errors import InputError

try:
    import message_filters as _MESSAGE_FILTERS
except ImportError:
    _MESSAGE_FILTERS = None

IMAGE, CLOUD = 0, 1


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


def stamp_seconds(header) -> float:
    return header.stamp.sec + 1e-9 * header.stamp.nanosec


class CloudImageSync:
    """Pairs (image, cloud) whose stamps differ by at most ``slop_sec``; ``on_pair(image, cloud)`` gets each pair.

    A message is counted in ``on_unsynchronized`` once it can no longer be paired: it is more than ``slop_sec`` older
    than the newest message of the other stream (streams arrive in stamp order), it fell out of a full queue, or a
    newer message of its stream was paired first. With a 30 Hz camera and a 10 Hz LiDAR two of three images are
    counted: that is expected. A message with a negative stamp raises InputError (and is not queued).

    Time that jumps: a stamp more than ``slop_sec`` older than the newest of its stream (a bag loop, a simulator
    restart) *resets* the synchronizer, so pairing resumes at once in the new time. A stamp more than
    ``max_future_sec`` ahead of ``now_sec()`` (the node's clock; skipped while it reads 0, before /clock) raises
    InputError and is forgotten, so one wrongly stamped message cannot block every later pair.
    """

    def __init__(self, slop_sec: float, queue_size: int, on_pair: Callable[[Any, Any], None],
                 on_unsynchronized: Callable[[], None], use_message_filters: bool = True,
                 now_sec: Callable[[], float] | None = None, max_future_sec: float = 10.0):
        self.slop_sec, self.queue_size = slop_sec, queue_size
        self._on_pair, self._on_unsynchronized = on_pair, on_unsynchronized
        self._now_sec, self.max_future_sec = now_sec, max_future_sec
        self._use_message_filters = use_message_filters and _MESSAGE_FILTERS is not None
        self.implementation = "message_filters" if self._use_message_filters else "depthfm_ros.ros.sync"
        self._lock = threading.Lock()
        self.resets = 0
        self._reset()

    def _reset(self) -> None:
        """Forget every queued message (the caller holds the lock or is the constructor)."""
        self._pending: list[deque[float]] = [deque(), deque()]  # stamps that may still pair, per stream
        self._newest = [float("-inf"), float("-inf")]
        self._matched_now: tuple | None = None
        if self._use_message_filters:
            self._inputs = [_MESSAGE_FILTERS.SimpleFilter(), _MESSAGE_FILTERS.SimpleFilter()]
            sync = _MESSAGE_FILTERS.ApproximateTimeSynchronizer(self._inputs, self.queue_size, self.slop_sec)
            sync.registerCallback(self._matched)
        else:
            self._inputs = None
            self._sync = ApproximateTimeSync(2, self.slop_sec, self.queue_size, callback=self._matched)

    def _matched(self, image, cloud) -> None:
        self._matched_now = (image, cloud)

    def add_image(self, msg) -> None:
        self._add(IMAGE, msg)

    def add_cloud(self, msg) -> None:
        self._add(CLOUD, msg)

    def _add(self, stream: int, msg) -> None:
        if msg.header.stamp.sec < 0:  # message_filters (rclpy Time) raises on it: refuse it the same way here
            raise InputError(f"negative header stamp ({msg.header.stamp.sec} s) cannot be synchronized")
        stamp = stamp_seconds(msg.header)
        now = self._now_sec() if self._now_sec is not None else 0.0
        if now > 0 and stamp > now + self.max_future_sec:
            raise InputError(f"header stamp {stamp:.3f} s is {stamp - now:.1f} s ahead of the clock ({now:.3f} s): "
                             "refused and forgotten")
        with self._lock:
            if stamp < self._newest[stream] - self.slop_sec:  # time jumped back: start pairing in the new time
                self._reset()
                self.resets += 1
            self._matched_now = None
            if self._inputs is not None:
                self._inputs[stream].signalMessage(msg)
            else:
                self._sync.add(stream, stamp, msg)
            pair, self._matched_now = self._matched_now, None
            lost = self._account(stream, stamp, msg, pair)
        for _ in range(lost):
            self._on_unsynchronized()
        if pair is not None:
            self._on_pair(*pair)

    def _account(self, stream: int, stamp: float, msg, pair) -> int:
        """Update the stamps that may still pair; return how many messages just lost every chance."""
        self._newest[stream] = max(self._newest[stream], stamp)
        pending = self._pending
        lost = 0
        if pair is None or all(m is not msg for m in pair):  # message_filters may pair older messages
            pending[stream].append(stamp)
            if len(pending[stream]) > 1 and pending[stream][-2] > stamp:
                pending[stream] = deque(sorted(pending[stream]))
        if pair is not None:  # the pair and everything older leave both queues
            for k, paired_msg in enumerate(pair):
                paired = stamp_seconds(paired_msg.header)
                while pending[k] and pending[k][0] <= paired:
                    if pending[k].popleft() < paired:
                        lost += 1
        for k in (IMAGE, CLOUD):
            while len(pending[k]) > self.queue_size:
                pending[k].popleft()
                lost += 1
            horizon = self._newest[1 - k] - self.slop_sec
            while pending[k] and pending[k][0] < horizon:
                pending[k].popleft()
                lost += 1
        return lost
