"""Throttled ERROR lines of depthfm_node: one line per kind of refusal (where and why) per period, whatever the
message text (random encoding names must not flood the log)."""

from __future__ import annotations

import math
import threading
import time

REASON_WORDS = ("stamp", "encoding", "compressed", "decode", "pixels", "step", "size", "data", "field", "point",
                "byte", "endian", "distortion", "calibration", "camera", "K ", "P ", "D ", "aspect", "finite")


def reason_kind(exc: BaseException) -> str:
    """The kind of a refusal: its exception type and the first of :data:`REASON_WORDS` in its message."""
    text = str(exc)
    return type(exc).__name__ + ":" + next((word.strip() for word in REASON_WORDS if word in text), "other")


class ErrorLog:
    """Logs each *kind* of error at most once per ``period_sec``: the caller names the kind with a fixed key (the
    call site and :func:`reason_kind`), never the message text, so random text in bad messages cannot flood the log
    and one frequent error cannot hide a new one the way a single throttled call does."""

    def __init__(self, log_fn, period_sec: float, clock=time.monotonic):
        self._log, self.period_sec, self._clock = log_fn, period_sec, clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, message: str) -> bool:
        """Log ``message`` unless an error of kind ``key`` was logged within the period; True when it was logged."""
        now = self._clock()
        with self._lock:
            if now - self._last.get(key, -math.inf) < self.period_sec:
                return False
            self._last[key] = now
            if len(self._last) > 256:  # forget the oldest kinds
                for old in sorted(self._last, key=self._last.get)[:128]:
                    del self._last[old]
        self._log(message)
        return True


