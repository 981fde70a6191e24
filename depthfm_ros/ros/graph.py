"""An in-process ROS 2 graph for the command-line tools: one rclpy Context, its nodes spun on a background thread."""

from __future__ import annotations

import threading

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor


class InProcessGraph:
    """A private rclpy Context whose nodes a SingleThreadedExecutor spins on a daemon thread.

    Use as a context manager: create nodes with ``context=graph.context``, :meth:`add` them, :meth:`start`
    spinning; leaving the block stops the executor, destroys the nodes and shuts the context down.
    """

    def __init__(self):
        self.context = Context()
        rclpy.init(context=self.context, args=[])
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes = []
        self._spinner: threading.Thread | None = None

    def add(self, node):
        """Spin ``node`` with the others (and destroy it on close); returns it."""
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def start(self) -> None:
        self._spinner = threading.Thread(target=self.executor.spin, name="ros-graph", daemon=True)
        self._spinner.start()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        if self._spinner is not None:
            self._spinner.join(timeout=5.0)
        for node in self.nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> "InProcessGraph":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
