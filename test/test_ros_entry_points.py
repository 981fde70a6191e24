"""depthfm_node as a real process (the console script's code, tiny model), stopped the way a terminal and
``ros2 launch`` stop it: Ctrl-C reaches it twice (the terminal's and launch's SIGINT), or SIGINT then SIGTERM, or
Ctrl-C while it is still starting. Each ends with exit 0, no traceback, and well before launch's SIGTERM at 5 s.
scripts/ctrl_c_check.py repeats these 20 times (docs/ros.md reports the runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE = [sys.executable, "-c", "import sys; from depthfm_ros.ros.entry_points import depthfm_node; "
        "sys.exit(depthfm_node())", "--ros-args", "-p", "model:=tiny", "-p", "processing_resolution:=64",
        "-p", "torch_threads:=1"]
START_TIMEOUT = 120.0  # imports torch and builds the tiny model on a shared 2-core machine
LAUNCH_SIGTERM_AFTER = 5.0  # launch's sigterm_timeout: a node still there gets SIGTERM and an ERROR line


def _start(command=NODE) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONUNBUFFERED="1")
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


class Run:
    """One node process: waits for its start line (or not), sends the signals, collects how it ended."""

    def __init__(self, signals: list[int], gap_sec: float, wait_for_start: bool = True):
        self.signals, self.gap_sec, self.wait_for_start = signals, gap_sec, wait_for_start
        self.process = _start()
        self.output: list[str] = []
        self.exit_sec = float("nan")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self.wait_for_start:
            deadline = time.monotonic() + START_TIMEOUT
            for line in self.process.stdout:
                self.output.append(line)
                if "DepthFM on" in line or time.monotonic() > deadline:
                    break
            time.sleep(0.2)
        else:
            time.sleep(1.0)  # importing torch: the node is not up yet
        t0 = time.monotonic()
        os.killpg(self.process.pid, self.signals[0])  # a terminal's Ctrl-C: the whole process group
        for signum in self.signals[1:]:
            time.sleep(self.gap_sec)
            try:
                self.process.send_signal(signum)
            except ProcessLookupError:
                break
        try:
            self.output.append(self.process.communicate(timeout=30.0)[0])
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.output.append(self.process.communicate()[0] + "\n<killed: did not exit in 30 s>")
        self.exit_sec = time.monotonic() - t0

    def result(self) -> tuple[int, str, float]:
        self._thread.join(START_TIMEOUT + 60.0)
        return self.process.returncode, "".join(self.output), self.exit_sec


def test_ctrl_c_twice_sigint_then_sigterm_and_ctrl_c_while_starting_exit_0_quietly():
    """12 of 18 runs under ros2 launch ended with a traceback and exit -2 (the second SIGINT in destroy_node), and
    the interpreter's exit outlasted launch's 5 s before SIGTERM."""
    runs = {"SIGINT twice": Run([signal.SIGINT, signal.SIGINT], 0.01),
            "SIGINT, SIGTERM": Run([signal.SIGINT, signal.SIGTERM], 0.05),
            "SIGINT twice while starting": Run([signal.SIGINT, signal.SIGINT], 0.01, wait_for_start=False)}
    for what, run in runs.items():
        rc, output, exit_sec = run.result()
        assert rc == 0, f"{what}: exit {rc}\n{output[-3000:]}"
        assert "Traceback" not in output and "KeyboardInterrupt" not in output, f"{what}:\n{output[-3000:]}"
        if run.wait_for_start:
            assert "DepthFM on" in output, f"{what}: never started\n{output[-3000:]}"
            assert exit_sec < LAUNCH_SIGTERM_AFTER, f"{what}: took {exit_sec:.1f} s to exit"


def test_a_parameter_file_that_is_not_yaml_is_one_fatal_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("depthfm: [ros__parameters\n  : x\n")
    process = _start([*NODE, "--params-file", str(bad)])
    output = process.communicate(timeout=START_TIMEOUT)[0]
    assert process.returncode == 2 and "Traceback" not in output, output
    assert f"not starting: params_file {bad} is not YAML" in output
