"""The managed node (ros/lifecycle.py) driven over its real lifecycle services (change_state, get_state) from another
node: configure loads the engine, activate publishes, deactivate stops publishing and keeps the engine, cleanup
releases it, a bad parameter fails configure and leaves the node unconfigured."""

from __future__ import annotations

import gc
import time
import weakref

import pytest
import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_graph import TIMEOUT, image_msg, stamp_ns
from sensor_msgs.msg import Image

from depthfm_ros.ros.graph import InProcessGraph
from depthfm_ros.ros.lifecycle import DepthFMLifecycleNode, warm_up_size

PARAMS = {"model": "tiny", "processing_resolution": 64, "num_steps": 1, "diagnostics_period_sec": 0.2}
CONFIGURE_TIMEOUT = 120.0  # loads the tiny model on a shared 2-core machine


class LifecycleGraph(InProcessGraph):
    """The managed node and a probe that drives it through its services and records depthfm/relative_depth."""

    def __init__(self, parameters: dict):
        super().__init__()
        self.node = self.add(DepthFMLifecycleNode(
            context=self.context, parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()]))
        self.probe = self.add(rclpy.create_node("lifecycle_probe", context=self.context))
        self.change = self.probe.create_client(ChangeState, "/depthfm/change_state")
        self.get = self.probe.create_client(GetState, "/depthfm/get_state")
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.outputs: list[Image] = []
        self.probe.create_subscription(Image, "/depthfm/relative_depth", self.outputs.append, reliable)
        self.images = self.probe.create_publisher(Image, "/image", reliable)
        self.start()

    def _call(self, client, request, timeout: float):
        assert client.wait_for_service(timeout_sec=TIMEOUT), client.srv_name
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            assert time.monotonic() < deadline, f"no answer from {client.srv_name}"
            time.sleep(0.01)
        return future.result()

    def transition(self, transition_id: int, timeout: float = TIMEOUT) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition_id
        return self._call(self.change, request, timeout).success

    def state(self) -> str:
        return self._call(self.get, GetState.Request(), TIMEOUT).current_state.label

    def send(self, stamp: int) -> None:
        self.images.publish(image_msg(stamp, stamp))

    def wait_for(self, predicate, what: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    def subscribed(self) -> bool:
        return any(s.topic_name == "/image" for s in self.node.subscriptions)


@pytest.fixture
def graphs():
    made = []

    def make(parameters):
        made.append(LifecycleGraph(parameters))
        return made[-1]

    yield make
    for g in made:
        g.close()


def test_configure_activate_deactivate_cleanup_over_the_lifecycle_services(graphs):
    g = graphs(PARAMS)
    assert g.state() == "unconfigured" and g.node.backend is None and not g.subscribed()

    assert g.transition(Transition.TRANSITION_CONFIGURE, CONFIGURE_TIMEOUT)
    assert g.state() == "inactive" and g.subscribed()
    backend = g.node.backend
    assert backend is not None and g.node.get_parameter("num_steps").value == 1
    g.wait_for(lambda: g.images.get_subscription_count() > 0, "the node's image subscription")
    for stamp in (1, 2):  # inactive: ignored, nothing published
        g.send(stamp)
    g.wait_for(lambda: g.node.frames_ignored == 2, "frames 1 and 2 to reach the inactive node")

    assert g.transition(Transition.TRANSITION_ACTIVATE) and g.state() == "active"
    g.wait_for(lambda: g.node.publishers and all(p.get_subscription_count() > 0 for p in g.node.publishers
                                                  if p.topic_name == "/depthfm/relative_depth"), "discovery")
    g.send(10)
    g.wait_for(lambda: any(stamp_ns(m) == 10 for m in g.outputs), "the output of frame 10")

    assert g.transition(Transition.TRANSITION_DEACTIVATE) and g.state() == "inactive"
    for stamp in (20, 21):
        g.send(stamp)
    g.wait_for(lambda: g.node.frames_ignored == 4, "frames 20 and 21 to reach the deactivated node")
    assert g.transition(Transition.TRANSITION_ACTIVATE)
    assert g.node.backend is backend  # deactivate kept the engine loaded
    g.send(30)
    g.wait_for(lambda: any(stamp_ns(m) == 30 for m in g.outputs), "the output of frame 30")
    # frames 1, 2 (before activation) and 20, 21 (deactivated) reached the node and made nothing
    assert sorted({stamp_ns(m) for m in g.outputs}) == [10, 30]
    assert g.node.stats.received == 2

    assert g.transition(Transition.TRANSITION_DEACTIVATE) and g.transition(Transition.TRANSITION_CLEANUP)
    assert g.state() == "unconfigured" and g.node.backend is None and not g.subscribed()
    assert not [p for p in g.node.publishers if p.topic_name.startswith("/depthfm/")]
    released = weakref.ref(backend)
    del backend
    gc.collect()
    assert released() is None  # nothing holds the engine any more: its memory (and GPU memory) is free

    assert g.transition(Transition.TRANSITION_CONFIGURE, CONFIGURE_TIMEOUT) and g.state() == "inactive"
    assert g.node.backend is not None and g.subscribed()
    assert g.transition(Transition.TRANSITION_INACTIVE_SHUTDOWN) and g.state() == "finalized"
    assert g.node.backend is None and not g.subscribed()


def test_a_bad_parameter_fails_configure_and_the_node_stays_unconfigured(graphs):
    g = graphs({**PARAMS, "processing_resolution": 100})
    assert not g.transition(Transition.TRANSITION_CONFIGURE, CONFIGURE_TIMEOUT)
    assert g.state() == "unconfigured" and g.node.backend is None and not g.subscribed()
    assert not [p for p in g.node.publishers if p.topic_name.startswith("/depthfm/")]


def test_warm_up_frame_size_follows_the_engine():
    class Pipe:
        def __init__(self, fixed, resolution):
            self.backend = type("B", (), {"fixed_size": fixed})()
            self.processing_resolution = resolution

    assert warm_up_size(Pipe((256, 320), 512)) == (256, 320)
    assert warm_up_size(Pipe(None, 512)) == (384, 512)
    assert warm_up_size(Pipe(None, 0)) == (480, 640)


def test_a_managed_node_serving_two_cameras_warms_up_one_batch_and_serves_each(graphs, capfd):
    g = graphs({**PARAMS, "cameras": ["left", "right"]})
    outputs: dict[str, list] = {"left": [], "right": []}
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    for camera, received in outputs.items():
        g.probe.create_subscription(Image, f"/depthfm/{camera}/relative_depth", received.append, reliable)
    publishers = {camera: g.probe.create_publisher(Image, f"/{camera}/image", reliable) for camera in outputs}
    assert g.transition(Transition.TRANSITION_CONFIGURE, CONFIGURE_TIMEOUT) and g.state() == "inactive"
    assert [c.name for c in g.node.cameras] == ["left", "right"]
    assert g.transition(Transition.TRANSITION_ACTIVATE) and g.state() == "active"
    g.wait_for(lambda: all(p.get_subscription_count() > 0 for p in publishers.values()) and
               all(p.get_subscription_count() > 0 for p in g.node.publishers if "relative_depth" in p.topic_name),
               "discovery")
    for k, (camera, publisher) in enumerate(publishers.items()):
        publisher.publish(image_msg(k, 1_000 + k))
        g.wait_for(lambda: len(outputs[camera]) == 1, f"{camera}'s relative depth")
    assert [stamp_ns(outputs[c][0]) for c in outputs] == [1_000, 1_001]
    assert "warm-up batch of 2 frames" in capfd.readouterr().err
    assert g.transition(Transition.TRANSITION_DEACTIVATE) and g.transition(Transition.TRANSITION_CLEANUP)
    assert g.state() == "unconfigured" and g.node.cameras == [] and g.node.stats is None
