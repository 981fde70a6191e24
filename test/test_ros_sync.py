"""ros.sync: ApproximateTimeSync (matching within slop, ordering, bounded queues, callbacks, bad arguments) and the
node's CloudBuffer (each image bound to the cloud nearest in time, time jumps, refused stamps)."""

import threading

import numpy as np
import pytest

from depthfm_ros.errors import InputError
from depthfm_ros.ros.sync import ApproximateTimeSync


def test_matches_within_slop_and_not_beyond():
    sync = ApproximateTimeSync(2, slop_sec=0.02)
    assert sync.add(0, 1.000, "img1") is None
    assert sync.add(1, 1.030, "scan_far") is None  # 30 ms apart: no set
    assert sync.add(1, 1.010, "scan1") == ("img1", "scan1")
    assert sync.pending() == [0, 1]  # the newer scan still waits for its image


def test_camera_30hz_lidar_10hz_pairs_each_scan_with_nearest_image():
    sync = ApproximateTimeSync(2, slop_sec=0.01)
    out = []
    events = [(0, k / 30.0 + 0.001, f"img{k}") for k in range(30)] + [(1, k / 10.0, f"scan{k}") for k in range(10)]
    for stream, stamp, msg in sorted(events, key=lambda e: e[1]):
        matched = sync.add(stream, stamp, msg)
        if matched:
            out.append(matched)
    assert out == [(f"img{3 * k}", f"scan{k}") for k in range(10)]


def test_three_streams_arrival_order_does_not_matter():
    rng = np.random.default_rng(0)
    stamps = {0: [0.0, 0.1, 0.2], 1: [0.003, 0.104, 0.198], 2: [0.001, 0.097, 0.205]}
    events = [(s, t, f"{s}@{t}") for s, ts in stamps.items() for t in ts]
    for perm in range(5):
        order = rng.permutation(len(events)) if perm else np.arange(len(events))
        sync = ApproximateTimeSync(3, slop_sec=0.01)
        out = [m for i in order if (m := sync.add(*events[i])) is not None]
        assert len(out) >= 1
        for matched in out:
            times = [float(m.split("@")[1]) for m in matched]
            assert max(times) - min(times) <= 0.01
            assert [m.split("@")[0] for m in matched] == ["0", "1", "2"]


def test_queue_is_bounded_and_drops_oldest():
    sync = ApproximateTimeSync(2, slop_sec=0.001, queue_size=3)
    for k in range(10):
        sync.add(0, float(k), k)
    assert sync.pending() == [3, 0]
    assert sync.num_dropped == 7
    assert sync.add(1, 2.0, "old") is None  # its partner was dropped
    assert sync.add(1, 8.0, "s") == (8, "s")


def test_no_reuse_and_stale_messages_dropped():
    sync = ApproximateTimeSync(2, slop_sec=0.05)
    assert sync.add(0, 1.0, "a") is None
    assert sync.add(1, 1.0, "b") == ("a", "b")
    assert sync.add(1, 1.01, "c") is None  # "a" was used already
    assert sync.add(0, 0.99, "late") is None  # older than the last match of stream 0
    assert sync.num_dropped >= 1


def test_callback_and_threads():
    got = []
    sync = ApproximateTimeSync(2, slop_sec=0.004, queue_size=100, callback=lambda a, b: got.append((a, b)))

    def feed(stream):
        for k in range(200):
            sync.add(stream, k * 0.01, (stream, k))

    threads = [threading.Thread(target=feed, args=(s,)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) >= 100  # at worst one thread runs first and the queue keeps its last 100
    assert all(a[1] == b[1] for a, b in got)
    assert [a[1] for a, _ in got] == sorted(a[1] for a, _ in got)


@pytest.mark.parametrize("kwargs", [dict(num_streams=1, slop_sec=0.1), dict(num_streams=2, slop_sec=-1.0),
                                    dict(num_streams=2, slop_sec=0.1, queue_size=0)])
def test_bad_arguments(kwargs):
    with pytest.raises(InputError):
        ApproximateTimeSync(**kwargs)
    with pytest.raises(InputError):
        ApproximateTimeSync(2, 0.1).add(2, 0.0, None)


class _Stamped:
    def __init__(self, stamp_s: float):
        from std_msgs.msg import Header

        self.header = Header()
        self.header.stamp.sec, self.header.stamp.nanosec = divmod(int(round(stamp_s * 1e9)), 10**9)


def test_each_image_gets_the_cloud_nearest_in_time_before_or_after_it():
    """A 30 Hz camera and a 10 Hz LiDAR: every image within the slop of a cloud gets the nearest one, whether the
    cloud came before or after it, and knows when no nearer cloud can come any more."""
    from depthfm_ros.ros.sync import CloudBuffer

    buffer = CloudBuffer(slop_sec=0.05, queue_size=10)
    with buffer.changed:
        assert buffer.nearest(1.0) == (None, False)  # nothing yet: a cloud may still come
    buffer.add(1.00, "c0")
    with buffer.changed:
        entry, decided = buffer.nearest(1.033)  # 33 ms after the cloud: a nearer one (<= 1.066) may still come
        assert entry[1] == "c0" and not decided
    buffer.add(1.10, "c1")
    with buffer.changed:
        assert buffer.nearest(1.033)[0][1] == "c0" and buffer.nearest(1.033)[1]  # 1.10 is farther: decided
        assert buffer.nearest(1.067)[0][1] == "c1"  # the later cloud is nearer (33 vs 67 ms)
        assert buffer.nearest(1.2) == (None, False)  # 100 ms from both: none within the slop (yet)
        assert buffer.bind(1.033) == ("c0", False) and buffer.bind(1.0) == ("c0", True)  # shared: second use
    for k in range(2, 14):
        buffer.add(1.0 + 0.1 * k, f"c{k}")
    assert buffer.unused == 3  # c1..c3 left the queue of 10 without a frame bound to them; c0 had one


def test_a_backwards_jump_resets_and_binding_resumes_at_once():
    """A bag loop / simulator restart 30 s back used to stop all pairing for good (0 of 49 pairs)."""
    from depthfm_ros.ros.sync import CloudBuffer

    buffer = CloudBuffer(slop_sec=0.05, queue_size=10)
    for k in range(5):
        buffer.add(100.0 + 0.1 * k, k)
    with buffer.changed:  # the first image after the jump comes before its cloud: that cloud may still come
        assert buffer.nearest(70.0) == (None, False)  # (it used to be decided: no cloud, no metres, under load)
    for k in range(3):  # 30 s back
        buffer.add(70.0 + 0.1 * k + 0.01, 10 + k)
        with buffer.changed:
            assert buffer.bind(70.0 + 0.1 * k)[0] == 10 + k  # every frame after the jump gets its cloud
    assert buffer.resets == 1


def test_negative_and_far_future_stamps_are_refused():
    from depthfm_ros.ros.sync import check_stamp

    assert check_stamp(_Stamped(999.5).header, 1000.0, 10.0) == pytest.approx(999.5)
    with pytest.raises(InputError, match="ahead of the clock"):
        check_stamp(_Stamped(5000.0).header, 1000.0, 10.0)
    assert check_stamp(_Stamped(5000.0).header, 0.0, 10.0) == 5000.0  # no clock yet (before /clock): not judged
    negative = _Stamped(1.0)
    negative.header.stamp.sec = -1
    with pytest.raises(InputError, match="negative header stamp"):
        check_stamp(negative.header, 1000.0, 10.0)
