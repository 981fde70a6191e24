"""The console scripts ``depthfm_node`` and ``depthfm_lifecycle_node``: one node per process, stopped cleanly.

This module imports nothing heavy: the SIGINT/SIGTERM handlers are in place before torch and rclpy load (seconds),
so Ctrl-C ends the process quietly at any moment, the start-up included. Under ``ros2 launch`` a Ctrl-C in the
terminal reaches the node twice (from the terminal and again from launch), and launch sends SIGTERM if the process
is still there after 5 s: the first signal stops the node, the later ones are ignored, the exit status is 0, no
traceback is printed, and the process is gone well within those 5 s (test/test_ros_entry_points.py runs those
sequences on a real process; scripts/ctrl_c_check.py repeats them).
"""

from __future__ import annotations

import gc
import signal
import sys
import time
from typing import Callable

from ..errors import DepthFMError  # light: the exception types only

NODE_NAME = "depthfm"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Handler of SIGINT and SIGTERM: the first signal interrupts (KeyboardInterrupt where Python runs; rclpy's own
    handler, which calls this one after shutting its context down, makes spin return); later ones, and any signal
    once :attr:`stopping` is set, are only counted."""

    def __init__(self):
        self.received: list[int] = []
        self.stopping = False

    def __call__(self, signum, frame) -> None:
        self.received.append(signum)
        if len(self.received) == 1 and not self.stopping:
            raise KeyboardInterrupt

    def install(self) -> "StopSignals":
        for signum in STOP_SIGNALS:
            signal.signal(signum, self)
        return self


def fatal(text: str) -> None:
    """One FATAL line in the ROS log format (rclpy's logging may not be up)."""
    print(f"[FATAL] [{time.time():.9f}] [{NODE_NAME}]: {text}", file=sys.stderr, flush=True)


def _init_failure(exc: Exception, args: list[str] | None) -> str:
    """Why rclpy.init refused the command line, naming a parameter file that is missing or not YAML (rcl's own
    message would come with a traceback and positions in rcl's C sources)."""
    from .params import ParameterError, check_params_file

    argv = sys.argv if args is None else args
    for flag, path in zip(argv, argv[1:]):
        if flag == "--params-file":
            try:
                check_params_file(path)
            except ParameterError as problem:
                return str(problem)
    return " ".join(str(exc).split(", at ")[0].split())


def run(make_node: Callable, args: list[str] | None = None, signals: StopSignals | None = None) -> int:
    """Init rclpy with ``args``, spin the node ``make_node()`` builds until a signal or shutdown, clean up.

    Exit status 0 for a stop by signal or shutdown (a signal repeated while stopping is ignored); 2 when the node
    refuses to start, with one FATAL line saying why (a bad parameter or parameter file, a missing model file, a
    backend whose runtime is missing, ...).
    """
    signals = signals or StopSignals().install()  # before rclpy.init, whose handlers call these ones
    node = None
    try:
        import rclpy
        from rclpy.executors import ExternalShutdownException

        try:
            rclpy.init(args=args)
        except Exception as exc:
            fatal(f"not starting: {_init_failure(exc, args)}")
            return 2
        try:
            node = make_node()
        except Exception as exc:
            reason = str(exc) if isinstance(exc, DepthFMError) else f"{type(exc).__name__}: {exc}"
            rclpy.logging.get_logger(NODE_NAME).fatal(f"not starting: {reason}")
            return 2
        try:
            rclpy.spin(node)
        except ExternalShutdownException:
            pass
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        signals.stopping = True  # from here on a signal is counted, never raised
        _stop(node)
        _quiet_quick_exit()


def _quiet_quick_exit() -> None:
    """Ignore further signals, and spare the interpreter's exit its last garbage collection over everything torch
    and diffusers built (2-7 s on a busy 2-core machine, past launch's 5 s before SIGTERM): what is left is freed
    with the process; atexit handlers still run."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    gc.freeze()


def _stop(node) -> None:
    """Destroy ``node`` and shut rclpy down (which puts the handlers back that rclpy.init replaced)."""
    rclpy = sys.modules.get("rclpy")
    try:
        if node is not None:
            node.destroy_node()
    except Exception as exc:
        fatal(f"while stopping: {type(exc).__name__}: {exc}")
    if rclpy is not None:
        rclpy.try_shutdown()


def depthfm_node(args: list[str] | None = None) -> int:
    """``ros2 run depthfm_ros depthfm_node --ros-args -p checkpoint:=... -p vae:=...``"""
    signals = StopSignals().install()
    try:
        from .node import DepthFMNode
    except KeyboardInterrupt:
        return _stopped_while_importing()
    return run(DepthFMNode, args, signals)


def depthfm_lifecycle_node(args: list[str] | None = None) -> int:
    """``ros2 run depthfm_ros depthfm_lifecycle_node``: the managed node (ros/lifecycle.py), unconfigured until a
    lifecycle manager, launch or ``ros2 lifecycle set`` configures it."""
    signals = StopSignals().install()
    try:
        from .lifecycle import DepthFMLifecycleNode
    except KeyboardInterrupt:
        return _stopped_while_importing()
    return run(DepthFMLifecycleNode, args, signals)


def _stopped_while_importing() -> int:
    _quiet_quick_exit()
    return 0
