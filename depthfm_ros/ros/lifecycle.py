"""depthfm_node as a managed (lifecycle) node, for Nav2-style bring-ups: ``depthfm_lifecycle_node``.

The same node as :class:`depthfm_ros.ros.node.DepthFMNode`, started in steps by lifecycle services
(``<node>/change_state``, ``<node>/get_state``; a lifecycle manager, launch or ``ros2 lifecycle set``):

* **configure**: read and check the parameters, load the engine and warm it with one frame (minutes on a first
  TensorRT build; the library's progress lines go to the node's log), create publishers and subscriptions.
  A bad parameter or a model that does not load fails the transition with an ERROR line saying why; the node stays
  unconfigured.
* **activate**: images are processed and every output is published (publishers are lifecycle publishers).
* **deactivate**: images are ignored and nothing is published; the engine stays loaded, so activate is instant.
* **cleanup**: the worker stops, publishers, subscriptions and timers are destroyed, the engine is released (and
  torch's CUDA cache emptied); configure loads it again. **shutdown** from any state cleans up too.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from contextlib import contextmanager

import numpy as np
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from ..backends import Backend
from ..errors import DepthFMError
from .entry_points import NODE_NAME, run
from .node import DepthFMNode
from .params import declare_and_read


class _NodeLogHandler(logging.Handler):
    """Python logging records (the library's, e.g. a TensorRT build's progress) as lines of the node's log."""

    def __init__(self, node_logger):
        super().__init__(logging.INFO)
        self.node_logger = node_logger

    def emit(self, record: logging.LogRecord) -> None:
        level = ("error" if record.levelno >= logging.ERROR else "warning" if record.levelno >= logging.WARNING
                 else "info")
        getattr(self.node_logger, level)(record.getMessage())


@contextmanager
def library_log_to(node_logger):
    """While the block runs, the ``depthfm_ros`` library's INFO+ log lines go to ``node_logger``."""
    library = logging.getLogger("depthfm_ros")
    handler, level = _NodeLogHandler(node_logger), library.level
    library.addHandler(handler)
    library.setLevel(min(level or logging.INFO, logging.INFO))
    try:
        yield
    finally:
        library.removeHandler(handler)
        library.setLevel(level)


def warm_up_size(pipeline) -> tuple[int, int]:
    """(height, width) of the warm-up frame: the engine's fixed size, else a 4:3 frame whose longest side is the
    processing resolution (640 when that is 0, the input size)."""
    if pipeline.backend.fixed_size is not None:
        return tuple(pipeline.backend.fixed_size)
    width = pipeline.processing_resolution or 640
    return max(1, round(width * 3 / 4)), width


class DepthFMLifecycleNode(DepthFMNode, LifecycleNode):
    """depthfm_node as a lifecycle node (module docstring: what each transition does).

    Args:
        backend: an engine to use instead of the one the parameters describe (tests); configure uses it, cleanup
            drops the node's reference.
        **node_kwargs: passed to ``rclpy.lifecycle.LifecycleNode`` (``context``, ``namespace``,
            ``parameter_overrides``, ...).
    """

    _lifecycle_publishers = False  # True while configure creates the outputs

    def __init__(self, *, backend: Backend | None = None, **node_kwargs):
        LifecycleNode.__init__(self, node_kwargs.pop("node_name", NODE_NAME), **node_kwargs)
        self._given_backend = backend
        self._active = False
        self._managed: dict[str, list] = {}  # what configure created, by kind, for cleanup
        self.frames_ignored = 0  # images that arrived while configured but not active
        self.backend = self.pipeline = None
        self.get_logger().info("unconfigured: configure loads the engine, activate starts publishing")

    def create_publisher(self, *args, **kwargs):
        """Publishers made while configuring are lifecycle publishers: they publish only while the node is active."""
        if self._lifecycle_publishers:
            return self.create_lifecycle_publisher(*args, **kwargs)
        return super().create_publisher(*args, **kwargs)

    # -- transitions --------------------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        t0 = time.perf_counter()
        before = self._entities()
        try:
            self.config = config = declare_and_read(self)
            model = config.engine or config.checkpoint or f"the {config.model} model"
            log.info(f"configuring: loading {model} (backend {config.backend}); a first TensorRT build takes minutes")
            self._lifecycle_publishers = True
            with library_log_to(log):
                self._start(self._given_backend)
        except Exception as exc:  # a bad parameter, a missing file, a backend whose runtime is missing, ...
            reason = str(exc) if isinstance(exc, DepthFMError) else f"{type(exc).__name__}: {exc}"
            log.error(f"configure failed: {reason}")
            self._managed = self._created_since(before)
            self._release()
            return TransitionCallbackReturn.FAILURE
        finally:
            self._lifecycle_publishers = False
        self._managed = self._created_since(before)
        loaded = time.perf_counter()
        log.info(f"engine loaded in {loaded - t0:.1f} s; warming up")
        self._warm_up()
        log.info(f"inactive (configured in {time.perf_counter() - t0:.1f} s): activate to publish")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = LifecycleNode.on_activate(self, state)  # enables the lifecycle publishers
        self._active = result == TransitionCallbackReturn.SUCCESS
        self.get_logger().info("active: processing images")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._slots.clear()  # a frame waiting for the worker is not published later
        for camera in self.cameras:
            if camera.metric_worker is not None:
                camera.metric_worker.clear()
        self.get_logger().info("inactive: images ignored, engine kept loaded")
        return LifecycleNode.on_deactivate(self, state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("unconfigured: engine released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._release()
        return TransitionCallbackReturn.SUCCESS

    # -- steps --------------------------------------------------------------------------------------------------

    def _on_image(self, msg, camera=None) -> None:
        if self._active:
            super()._on_image(msg, camera)
        else:
            self.frames_ignored += 1

    def _warm_up(self) -> None:
        """One gray frame per camera (one batch, up to max_batch) through the engine, so the first camera frames do
        not pay for lazy initialisation; the cameras' noise generators are not used."""
        height, width = warm_up_size(self.pipeline)
        batch = min(len(self.cameras), self.config.batch_limit)
        t0 = time.perf_counter()
        try:
            self.pipeline([np.full((height, width, 3), 128, np.uint8)] * batch)
        except Exception as exc:  # the engine may refuse this size (a size range); real frames are checked each
            self.get_logger().warning(f"warm-up frame {width}x{height} failed: {type(exc).__name__}: {exc}")
            return
        self.get_logger().info(f"warm-up {'frame' if batch == 1 else f'batch of {batch} frames'} {width}x{height}: "
                               f"{1e3 * (time.perf_counter() - t0):.0f} ms")

    def _entities(self) -> dict[str, set]:
        return {"publishers": set(self.publishers), "subscriptions": set(self.subscriptions),
                "timers": set(self.timers)}

    def _created_since(self, before: dict[str, set]) -> dict[str, list]:
        now = self._entities()
        return {kind: [e for e in now[kind] if e not in before[kind]] for kind in now}

    def _release(self) -> None:
        """Undo configure: stop the worker, destroy what configure created, drop the engine."""
        self._stop_worker()
        self._worker = None
        for publisher in self._managed.get("publishers", []):
            self.destroy_lifecycle_publisher(publisher)
        for subscription in self._managed.get("subscriptions", []):
            self.destroy_subscription(subscription)
        for timer in self._managed.get("timers", []):
            self.destroy_timer(timer)
        self._managed = {}
        for attribute in ("_depthfm_tf_listener", "_depthfm_tf_buffer"):  # tf2's subscriptions went above
            self.__dict__.pop(attribute, None)
        self.backend = self.pipeline = None
        self.cameras = []
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def destroy_node(self) -> None:
        self._active = False
        self._stop_worker()
        LifecycleNode.destroy_node(self)


def main(args: list[str] | None = None) -> int:
    """``ros2 run depthfm_ros depthfm_lifecycle_node`` (the console script is
    :func:`depthfm_ros.ros.entry_points.depthfm_lifecycle_node`)."""
    return run(DepthFMLifecycleNode, args)


if __name__ == "__main__":
    sys.exit(main())
