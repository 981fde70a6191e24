"""The replay's recorder: what was sent and what came back (outputs, points, /diagnostics), written by the
publishing loop and the executor thread, and the conditions the replay waits on."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, defaultdict

from .conversions import image_to_array, stamp_ns


def numeric_values(key_values) -> dict[str, float]:
    """The finite numeric values of diagnostic_msgs/KeyValue pairs, by key (text values are skipped)."""
    out = {}
    for kv in key_values:
        try:
            value = float(kv.value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            out[kv.key] = value
    return out


class ReplayRecorder:
    """What the replay sent and what came back; written by the publishing loop and the executor thread."""

    def __init__(self, num_images: int, num_previews: int, diagnostics_prefix: str):
        self.num_images = max(num_images, 1)
        self.num_previews = num_previews
        self.diagnostics_prefix = diagnostics_prefix
        self.cond = threading.Condition()
        self.sent_wall: dict[int, float] = {}  # image stamp -> wall time it was published
        self.sent_index: dict[int, int] = {}
        self.depth_wall: dict[int, float] = {}  # image stamp -> wall time its depth arrived
        self.counts: Counter[str] = Counter()
        self.points_per_cloud: list[int] = []
        self.diagnostics: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.latest_diagnostics: dict[str, float] = {}
        self.latest_diagnostics_wall = 0.0
        self.previews: dict[int, dict] = {}  # slot -> {"stamp": ns, kind: array}

    def image_sent(self, stamp_ns: int) -> None:
        with self.cond:
            self.sent_index.setdefault(stamp_ns, len(self.sent_index))
            self.sent_wall[stamp_ns] = time.perf_counter()

    def _preview_slot(self, stamp_ns: int) -> int | None:
        """Slot of an output: the images split into ``num_previews`` runs; the first output of each run is kept."""
        index = self.sent_index.get(stamp_ns)
        if index is None or not self.num_previews:
            return None
        slot = min(index * self.num_previews // self.num_images, self.num_previews - 1)
        kept = self.previews.get(slot)
        return slot if kept is None or kept["stamp"] == stamp_ns else None

    def on_image_output(self, kind: str, msg) -> None:
        now = time.perf_counter()
        stamp = stamp_ns(msg.header.stamp)
        with self.cond:
            self.counts[kind] += 1
            if kind == "relative_depth" and stamp in self.sent_wall and stamp not in self.depth_wall:
                self.depth_wall[stamp] = now
            slot = self._preview_slot(stamp)
            if slot is not None:
                self.previews.setdefault(slot, {"stamp": stamp})[kind] = image_to_array(msg)
            self.cond.notify_all()

    def on_points(self, msg) -> None:
        with self.cond:
            self.counts["points"] += 1
            self.points_per_cloud.append(int(msg.width) * int(msg.height))

    def on_camera_info(self, msg) -> None:
        with self.cond:
            self.counts["camera_info"] += 1

    def on_diagnostics(self, msg) -> None:
        with self.cond:
            latest = {}
            for status in msg.status:
                if not status.name.startswith(self.diagnostics_prefix):
                    continue
                values = numeric_values(status.values)
                for key, value in values.items():
                    self.diagnostics[status.name][key].append(value)
                latest.update(values)
            if latest:
                self.latest_diagnostics = latest  # the node's statuses of one period, merged
                self.latest_diagnostics_wall = time.perf_counter()
            self.cond.notify_all()

    # -- conditions, called with self.cond held ---------------------------------------------------------------

    def errors_reported(self) -> float:
        return sum(v for k, v in self.latest_diagnostics.items() if k.endswith("errors"))

    def node_settled(self, frames_in: int, since_wall: float) -> bool:
        """Every image sent has an output, or the node's newest diagnostics account for all of them."""
        if len(self.depth_wall) >= frames_in:
            return True
        diag = self.latest_diagnostics
        keys = ("frames_received", "frames_processed", "frames_dropped")
        if self.latest_diagnostics_wall <= since_wall or not all(k in diag for k in keys):
            return False
        received, processed, dropped = (diag[k] for k in keys)
        return received >= frames_in and processed + dropped + self.errors_reported() >= received \
            and len(self.depth_wall) >= processed


def wait_for(recorder: ReplayRecorder, predicate, timeout_sec: float) -> bool:
    """Wait (the recorder's lock held while ``predicate`` runs) until ``predicate()`` or ``timeout_sec``."""
    deadline = time.monotonic() + timeout_sec
    with recorder.cond:
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            recorder.cond.wait(min(left, 0.05))
    return True
