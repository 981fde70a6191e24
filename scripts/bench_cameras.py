"""Several cameras, one engine (issue #26): ONE depthfm_node serving N cameras batched against N single-camera
depthfm_node processes, under N camera streams at --rate Hz with independent phases, on loopback.

    python scripts/bench_cameras.py --json bench_cameras.json                   # torch + onnxruntime, 1/2/4 cameras
    python scripts/bench_cameras.py --backend onnxruntime --cameras 4 --seconds 60
    python scripts/bench_cameras.py --backend tensorrt --width 640 --height 480 --processing-resolution 512  # a GPU

Per configuration (backend, number of cameras, batched or separate) it starts the node process(es) -- batched: one
``depthfm_node`` with ``cameras:=[cam0, ...]``; separate: one ``depthfm_node`` per camera in single-camera mode,
its topics remapped onto the same names (``cam0/image`` in, ``depthfm/cam0/relative_depth`` out) -- waits for every
camera's first output, warms up, then measures for --seconds.

Per camera: outputs/s on depthfm/<camera>/relative_depth; end-to-end latency p50 / p95 (the probe's DDS receive
time minus the image's header stamp, which the publisher sets to its wall clock when it publishes; same machine);
images sent, taken in and dropped by the node (its /diagnostics counters, interpolated to the window) and never
output (sent minus outputs); outputs of another camera (``foreign``: a frame_id or stamp this camera never sent;
must be 0). Per configuration: RSS and PSS summed over the node process(es) (psutil memory_full_info), node CPU
seconds per output (user + system over the window / outputs), the node's engine-call time (/diagnostics
inference_ms, p50) and, batched, the mean images per engine call, estimated from the node-side publish times of the
outputs (DDS source timestamps: one batch's outputs go out together, batches at least an engine call apart), beside
the node's own /diagnostics batch_size (the mean per frame: a frame of a batch of 4 counts 4 times, so it is the
larger of the two when batches vary). Prints markdown tables; --json writes everything.

The images are synthetic scenes (sim.synthetic), one per camera, prebuilt once (only the stamp changes), so the
probe's own CPU stays small; it is reported (``rig cores``) beside the rest of the machine's (``other cores``: other
jobs), the hypervisor's steal and the load average, so a noisy run shows as one. Models: the random tiny model
(torch: ``model:=tiny``; onnxruntime and tensorrt: its fused graph exported with depthfm-export into --work, the
TensorRT engine built by the node on its first start and cached next to the graph). DDS stays on loopback
(ROS_LOCALHOST_ONLY=1, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) in the domain --domain-id, for the node processes
too; every process started is stopped (SIGINT, then SIGKILL after 15 s) whatever happens.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import psutil

NAMESPACE = "/bench"
DRAIN_SEC = 2.0  # publishing goes on after the window so the last frames in it are processed under the same load
STOP_TIMEOUT_SEC = 15.0


def ros_env(domain_id: int) -> dict[str, str]:
    """The environment of every process here: DDS on loopback, in ``domain_id``."""
    return {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_LOCALHOST_ONLY": "1",
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def camera_names(n: int) -> list[str]:
    return [f"cam{i}" for i in range(n)]


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores; /proc/stat without idle, iowait, steal and the guest
    times, which user already holds)."""
    times = psutil.cpu_times()
    return sum(times) - sum(getattr(times, key, 0.0) for key in ("idle", "iowait", "steal", "guest", "guest_nice"))


def steal_cpu_seconds() -> float:
    """CPU seconds the hypervisor gave to others while this VM wanted them (/proc/stat steal; 0 on bare metal)."""
    return getattr(psutil.cpu_times(), "steal", 0.0)


def load_1min() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def unavailable(backend: str) -> str:
    """Why ``backend`` cannot run on this machine ("" when it can)."""
    if backend != "tensorrt":
        return ""
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt not installed (pip install '.[tensorrt]')"
    import torch

    return "" if torch.cuda.is_available() else "no CUDA device"


# -- models and node command lines -------------------------------------------------------------------------------

def exported_graph(work: Path, height: int, width: int, num_steps: int, ensemble_size: int, env) -> Path:
    """The tiny model's fused graph at the processing size (depthfm-export --tiny-model), exported once into
    ``work``; the TensorRT backend builds and caches its engine next to it."""
    out = work / f"tiny_{height}x{width}_k{num_steps}_m{ensemble_size}"
    graph = out / f"depthfm_fused_k{num_steps}_m{ensemble_size}.onnx"
    if not graph.exists():
        subprocess.run([shutil.which("depthfm-export") or "depthfm-export", "--tiny-model", "--height", str(height),
                        "--width", str(width), "--num-steps", str(num_steps), "--ensemble-size", str(ensemble_size),
                        "--no-split", "--out", str(out)], check=True, env=env)
    return graph


def node_commands(mode: str, cameras: list[str], backend: str, engine: Path | None, args) -> list[list[str]]:
    """The depthfm_node command line(s) of one configuration: batched, one node for ``cameras``; separate, one
    single-camera node per camera, its inputs and outputs remapped onto the batched node's topic names."""
    from depthfm_ros.ros import outputs as out
    from depthfm_ros.ros.camera import input_topic

    node = shutil.which("depthfm_node") or str(Path(sys.executable).parent / "depthfm_node")
    params = {"processing_resolution": args.processing_resolution, "num_steps": args.num_steps,
              "ensemble_size": args.ensemble_size, "diagnostics_period_sec": 0.5}
    if backend == "torch":
        params["model"] = "tiny"
    else:
        params.update(backend=backend, engine=str(engine))
    if args.threads:
        params.update(torch_threads=args.threads, onnx_threads=args.threads)
    if args.batch_window is not None and mode == "batched":
        params["batch_window_sec"] = args.batch_window
    common = [node, "--ros-args", "-r", f"__ns:={NAMESPACE}",
              *(a for key, value in params.items() for a in ("-p", f"{key}:={value}"))]
    if mode == "batched":
        return [[*common, "-r", "__node:=depthfm", "-p", f"cameras:=[{', '.join(cameras)}]"]]
    outputs = (out.DEPTH_TOPIC, out.UNCERTAINTY_TOPIC, out.RELATIVE_DEPTH_TOPIC, out.RELATIVE_UNCERTAINTY_TOPIC,
               out.CAMERA_INFO_TOPIC, out.COMPLETED_DEPTH_TOPIC, out.POINTS_TOPIC)
    return [[*common, "-r", f"__node:=depthfm_{cam}",
             *(a for name in ("image", "camera_info", "lidar") for a in ("-r", f"{name}:={input_topic(name, cam)}")),
             *(a for topic in outputs for a in ("-r", f"{topic}:={out.output_topic(topic, cam)}"))]
            for cam in cameras]


def status_names(mode: str, cameras: list[str]) -> dict[str, str]:
    """{/diagnostics status name: camera} of the depth statuses of one configuration (ros/camera.py: statuses)."""
    if mode == "batched":
        return {f"{NAMESPACE}/depthfm: {cam}: depth": cam for cam in cameras}
    return {f"{NAMESPACE}/depthfm_{cam}: depth": cam for cam in cameras}


class NodeProcesses:
    """The node processes of one configuration, each logging into its own file; :meth:`stop` ends every one."""

    def __init__(self, env, log_dir: Path, label: str):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.env, self.log_dir, self.label = env, log_dir, label
        self.logs: list[Path] = []
        self.procs: list[subprocess.Popen] = []
        self.ps: list[psutil.Process] = []

    def start(self, commands: list[list[str]]) -> None:
        for command in commands:
            log = self.log_dir / f"{self.label}_{len(self.procs)}.log"
            with open(log, "w") as f:
                f.write(" ".join(command) + "\n\n")
                f.flush()
                self.procs.append(subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=self.env,
                                                   start_new_session=True))
            self.logs.append(log)
            self.ps.append(psutil.Process(self.procs[-1].pid))

    def dead(self) -> list[str]:
        """'<log>: exit <code>' of each process that ended."""
        return [f"{log}: exit {p.returncode}" for p, log in zip(self.procs, self.logs) if p.poll() is not None]

    def cpu_seconds(self) -> float:
        total = 0.0
        for ps in self.ps:
            try:
                times = ps.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def memory_mib(self) -> dict[str, float]:
        """RSS, PSS and USS summed over the processes, MiB."""
        out = {"rss_mib": 0.0, "pss_mib": 0.0, "uss_mib": 0.0}
        for ps in self.ps:
            try:
                info = ps.memory_full_info()
            except psutil.Error:  # ended: the run reports it
                continue
            for key in ("rss", "pss", "uss"):
                out[f"{key}_mib"] += getattr(info, key) / 2**20
        return out

    def gpu_mib(self) -> float | None:
        """GPU memory of the processes (nvidia-smi), None without it."""
        if shutil.which("nvidia-smi") is None:
            return None
        query = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True, timeout=30)
        pids = {p.pid for p in self.procs}
        try:
            return float(sum(float(mem) for pid, mem in (line.split(",") for line in query.stdout.splitlines() if line)
                             if int(pid) in pids))
        except ValueError:  # "[N/A]" on some GPUs
            return None

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_SEC
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# -- the probe: camera streams out, outputs and /diagnostics in ----------------------------------------------------

class Probe:
    """An in-process rclpy node publishing one camera stream per camera (prebuilt image and camera_info, stamped
    with the wall clock at publish) and recording each camera's relative-depth outputs and the node's /diagnostics.
    """

    def __init__(self, cameras: list[str], mode: str, width: int, height: int):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import Header

        from depthfm_ros.ros.camera import input_topic
        from depthfm_ros.ros.conversions import camera_to_camera_info, numpy_to_image
        from depthfm_ros.ros.graph import InProcessGraph
        from depthfm_ros.ros.outputs import RELATIVE_DEPTH_TOPIC, output_topic
        from depthfm_ros.sim.synthetic import make_scene

        self.cameras, self.lock = cameras, threading.Lock()
        self.outputs: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # (stamp, received, source) ns
        self.foreign: dict[str, int] = defaultdict(int)  # outputs carrying another camera's frame_id
        self.diagnostics: list[tuple[int, str, dict[str, str]]] = []  # (received ns, camera, values)
        self.sent: dict[str, list[int]] = defaultdict(list)  # stamps ns
        names = status_names(mode, cameras)
        self.graph = InProcessGraph()
        probe = self.graph.add(rclpy.create_node("bench_cameras_probe", context=self.graph.context))
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.streams = []
        for i, cam in enumerate(cameras):
            scene = make_scene(np.random.default_rng(100 + i), width, height)
            header = Header(frame_id=f"{cam}_optical")
            self.streams.append((cam, probe.create_publisher(Image, f"{NAMESPACE}/{input_topic('image', cam)}",
                                                             qos_profile_sensor_data),
                                 probe.create_publisher(CameraInfo, f"{NAMESPACE}/{input_topic('camera_info', cam)}",
                                                        qos_profile_sensor_data),
                                 numpy_to_image(scene.rgb_hwc_u8, "rgb8", header),
                                 camera_to_camera_info(scene.camera, header)))
            probe.create_subscription(Image, f"{NAMESPACE}/{output_topic(RELATIVE_DEPTH_TOPIC, cam)}",
                                      lambda msg, info, cam=cam: self._on_output(cam, msg, info), reliable)

        def on_diagnostics(msg):
            now = time.time_ns()
            for status in msg.status:
                if status.name in names:
                    with self.lock:
                        self.diagnostics.append((now, names[status.name], {kv.key: kv.value for kv in status.values}))

        probe.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, reliable)
        self.graph.start()

    def _on_output(self, cam: str, msg, info) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        received = info.get("received_timestamp") or time.time_ns()
        with self.lock:
            if msg.header.frame_id != f"{cam}_optical":
                self.foreign[cam] += 1
            self.outputs[cam].append((stamp, received, info.get("source_timestamp") or received))

    def publish(self, index: int) -> None:
        cam, image_pub, info_pub, image, info = self.streams[index]
        stamp = time.time_ns()
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(stamp, 10**9)
        info.header.stamp = image.header.stamp
        info_pub.publish(info)
        image_pub.publish(image)
        self.sent[cam].append(stamp)

    def close(self) -> None:
        self.graph.close()


# -- one configuration --------------------------------------------------------------------------------------------

def percentile(values, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def counter_delta(diagnostics, cam: str, key: str, t_start: int, t_end: int) -> float | None:
    """How much the camera's /diagnostics counter ``key`` grew from ``t_start`` to ``t_end`` (ns), linearly
    interpolated between the statuses (every 0.5 s) by their receive times; None without statuses."""
    rows = [(t, int(values[key])) for t, c, values in diagnostics if c == cam and key in values]
    if len(rows) < 2:
        return None
    ts, counts = np.array(rows, dtype=np.float64).T
    start, end = np.interp([t_start, t_end], ts, counts)
    return float(end - start)


def mean_batch(outputs: dict[str, list[tuple[int, int, int]]], gap_ns: float) -> float:
    """Mean batch size from the node-side publish times of the outputs: one batch's outputs go out within a few ms;
    a new batch starts after a gap of ``gap_ns`` or at a camera already in the current one."""
    events = sorted((source, cam) for cam, rows in outputs.items() for _, _, source in rows)
    batches, current, last = 0, set(), None
    for source, cam in events:
        if last is None or source - last > gap_ns or cam in current:
            batches, current = batches + 1, set()
        current.add(cam)
        last = source
    return len(events) / batches if batches else float("nan")


def run_config(backend: str, mode: str, n: int, engine: Path | None, args, env, bar_position: int = 0) -> dict:
    from tqdm import tqdm

    cameras = camera_names(n)
    label = f"{backend}_{mode}_{n}cam"
    commands = node_commands(mode, cameras, backend, engine, args)
    result = {"backend": backend, "mode": mode, "cameras": n, "processes": len(commands),
              "commands": [" ".join(c) for c in commands]}
    rng = np.random.default_rng(args.seed + n)
    period = 1.0 / args.rate
    phases = np.sort(rng.uniform(0.0, period, n)) if n > 1 else np.zeros(1)
    result["phases_ms"] = [round(1e3 * p, 2) for p in phases]
    # TensorRT: the first node builds the engine (minutes) and caches it, the others start once it serves
    pending = commands[1:] if backend == "tensorrt" else []
    own, probe = psutil.Process(), None
    nodes = NodeProcesses(env, Path(args.work) / "logs", label)
    try:
        probe = Probe(cameras, mode, args.width, args.height)
        nodes.start(commands[:len(commands) - len(pending)])
        t0 = base = time.monotonic()
        start_deadline = t0 + args.start_timeout
        due = [base + p for p in phases]
        stage, t_stage = "start", base
        marks: dict[str, object] = {}
        total = args.warmup + args.seconds + DRAIN_SEC
        with tqdm(total=int(total), unit="s", desc=f"{label} (starting)", position=bar_position, leave=False,
                  mininterval=1.0) as bar:
            while True:
                now = time.monotonic()
                for i in range(n):
                    if now >= due[i]:
                        probe.publish(i)
                        due[i] += period
                        if due[i] < now:  # the probe fell behind: skip, keep the phase
                            due[i] += period * np.ceil((now - due[i]) / period)
                if nodes.dead():
                    raise RuntimeError(f"{label}: a node process ended: {'; '.join(nodes.dead())}")
                if stage == "start":
                    if pending and probe.outputs.get(cameras[0]):
                        nodes.start(pending)
                        pending = []
                    if not pending and all(probe.outputs.get(cam) for cam in cameras):
                        stage, t_stage = "warmup", now
                        result["start_sec"] = round(now - t0, 1)
                        marks["t_ready"] = now
                        bar.set_description(label)
                    elif now > start_deadline:
                        missing = [cam for cam in cameras if not probe.outputs.get(cam)]
                        raise RuntimeError(f"{label}: no output from {missing} within {args.start_timeout:g} s "
                                           f"(logs: {', '.join(map(str, nodes.logs))})")
                elif stage == "warmup" and now - t_stage >= args.warmup:
                    stage, t_stage = "measure", now
                    marks.update(t_start=time.time_ns(), cpu_start=nodes.cpu_seconds(), load_start=load_1min(),
                                 rig_start=sum(own.cpu_times()[:2]), busy_start=busy_cpu_seconds(),
                                 steal_start=steal_cpu_seconds())
                elif stage == "measure" and now - t_stage >= args.seconds:
                    stage, t_stage = "drain", now
                    marks.update(t_end=time.time_ns(), cpu_end=nodes.cpu_seconds(), load_end=load_1min(),
                                 rig_end=sum(own.cpu_times()[:2]), busy_end=busy_cpu_seconds(),
                                 steal_end=steal_cpu_seconds(),
                                 memory=nodes.memory_mib(), gpu_mib=nodes.gpu_mib())
                elif stage == "drain" and now - t_stage >= DRAIN_SEC:
                    break
                if stage != "start" and (done := min(int(total), int(now - marks["t_ready"]))) > bar.n:
                    bar.update(done - bar.n)
                time.sleep(max(0.0, min(due) - time.monotonic()))
        time.sleep(0.5)  # the last outputs in flight
    finally:
        nodes.stop()
        if probe is not None:
            probe.close()
    return {**result, **summarize(probe, cameras, marks, mode)}


def summarize(probe: Probe, cameras: list[str], marks: dict, mode: str) -> dict:
    t_start, t_end = marks["t_start"], marks["t_end"]
    window = (t_end - t_start) / 1e9
    per_camera, outputs_in, inference, batch = [], {}, [], []
    for cam in cameras:
        rows = [r for r in probe.outputs[cam] if t_start <= r[0] < t_end]
        outputs_in[cam] = rows
        sent_stamps = {s for s in probe.sent[cam] if t_start <= s < t_end}
        sent = len(sent_stamps)
        foreign = probe.foreign[cam] + sum(stamp not in sent_stamps for stamp, _, _ in rows)
        lat = [(received - stamp) / 1e6 for stamp, received, _ in rows]
        delta = {key: counter_delta(probe.diagnostics, cam, key, t_start, t_end)
                 for key in ("frames_received", "frames_dropped")}
        window_values = [v for t, c, v in probe.diagnostics if c == cam and t_start <= t <= t_end]
        inference += [float(v["inference_ms"]) for v in window_values if v.get("inference_ms", "nan") != "nan"]
        batch += [float(v["batch_size"]) for v in window_values if v.get("batch_size", "nan") != "nan"]
        per_camera.append({"camera": cam, "sent": sent, "outputs": len(rows), "outputs_per_s": len(rows) / window,
                           "latency_ms_p50": percentile(lat, 50), "latency_ms_p95": percentile(lat, 95),
                           "node_received": delta["frames_received"], "node_dropped": delta["frames_dropped"],
                           "not_output": sent - len(rows), "foreign": foreign})
    outputs = sum(c["outputs"] for c in per_camera)
    cpu = marks["cpu_end"] - marks["cpu_start"]
    inference_ms = statistics.median(inference) if inference else float("nan")
    all_lat = [(received - stamp) / 1e6 for rows in outputs_in.values() for stamp, received, _ in rows]
    out = {"window_sec": window, "per_camera": per_camera, "outputs_per_s": outputs / window,
           "latency_ms_p50": percentile(all_lat, 50), "latency_ms_p95": percentile(all_lat, 95),
           "node_dropped": sum(c["node_dropped"] or 0.0 for c in per_camera), "cpu_sec": cpu,
           "node_cores": cpu / window, "cpu_sec_per_output": cpu / outputs if outputs else float("nan"),
           "inference_ms_p50": inference_ms, **marks["memory"],
           "rig_cores": (marks["rig_end"] - marks["rig_start"]) / window,
           "other_cores": (marks["busy_end"] - marks["busy_start"] - cpu - marks["rig_end"] + marks["rig_start"])
           / window,
           "steal_cores": (marks["steal_end"] - marks["steal_start"]) / window,
           "load_1min": [marks["load_start"], marks["load_end"]]}
    if marks.get("gpu_mib") is not None:
        out["gpu_mib"] = marks["gpu_mib"]
    if mode == "batched":
        gap = 0.5e6 * inference_ms if np.isfinite(inference_ms) else 5e6
        out["mean_batch_estimated"] = mean_batch(outputs_in, gap)
        out["batch_per_frame_node"] = statistics.mean(batch) if batch else float("nan")
    return out


# -- report -------------------------------------------------------------------------------------------------------

def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if not np.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def tables(results: list[dict]) -> str:
    lines = ["| backend | cameras | mode | processes | outputs/s total | latency p50 / p95 ms | node dropped | "
             "engine call ms (p50) | mean batch (est.) | batch per frame (node) | RSS MiB | PSS MiB | "
             "node CPU s / output | node cores | rig cores | other cores | steal cores | load 1 min |",
             "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if "error" in r or "skipped" in r:
            why = f"FAILED: {r['error']}" if "error" in r else f"skipped: {r['skipped']}"
            lines.append(f"| {r['backend']} | {r['cameras']} | {r['mode']} | {r['processes']} | {why} |||||||||||||")
            continue
        gpu = f" (GPU {r['gpu_mib']:.0f})" if "gpu_mib" in r else ""
        lines.append(
            f"| {r['backend']} | {r['cameras']} | {r['mode']} | {r['processes']} | {fmt(r['outputs_per_s'])} | "
            f"{fmt(r['latency_ms_p50'], 0)} / {fmt(r['latency_ms_p95'], 0)} | {fmt(r['node_dropped'], 0)} | "
            f"{fmt(r['inference_ms_p50'])} | {fmt(r.get('mean_batch_estimated'), 2)} | "
            f"{fmt(r.get('batch_per_frame_node'), 2)} | {fmt(r['rss_mib'], 0)} | "
            f"{fmt(r['pss_mib'], 0)}{gpu} | {fmt(r['cpu_sec_per_output'], 3)} | {fmt(r['node_cores'], 2)} | "
            f"{fmt(r['rig_cores'], 2)} | {fmt(r['other_cores'], 2)} | {fmt(r['steal_cores'], 2)} | "
            f"{r['load_1min'][0]:.2f} -> {r['load_1min'][1]:.2f} |")
    lines += ["", "| backend | cameras | mode | camera | sent | outputs | outputs/s | latency p50 / p95 ms | "
              "node received | node dropped | not output | foreign |",
              "|---|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in results:
        for c in r.get("per_camera", []):
            lines.append(f"| {r['backend']} | {r['cameras']} | {r['mode']} | {c['camera']} | {c['sent']} | "
                         f"{c['outputs']} | {fmt(c['outputs_per_s'])} | {fmt(c['latency_ms_p50'], 0)} / "
                         f"{fmt(c['latency_ms_p95'], 0)} | {fmt(c['node_received'], 0)} | "
                         f"{fmt(c['node_dropped'], 0)} | {c['not_output']} | {c['foreign']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--backend", nargs="+", default=["torch", "onnxruntime"],
                        choices=("torch", "onnxruntime", "tensorrt"), help="one row set per backend")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4], help="camera counts")
    parser.add_argument("--modes", nargs="+", default=["batched", "separate"], choices=("batched", "separate"))
    parser.add_argument("--rate", type=float, default=30.0, help="Hz of each camera")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--processing-resolution", type=int, default=128)
    parser.add_argument("--num-steps", type=int, default=2)
    parser.add_argument("--ensemble-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch_threads and onnx_threads of every node "
                        "(0: the node's auto, cores minus one)")
    parser.add_argument("--batch-window", type=float, help="batch_window_sec of the batched node (default: its own)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per configuration")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after every camera's first output")
    parser.add_argument("--start-timeout", type=float, help="s until every camera's first output (default 180; "
                        "tensorrt 900: a first start builds the engine)")
    parser.add_argument("--seed", type=int, default=0, help="camera phases")
    parser.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID") or 61))
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "depthfm_bench_cameras"),
                        help="exported graphs, TensorRT engines, node logs")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args(argv)
    if args.start_timeout is None:
        args.start_timeout = 900.0 if "tensorrt" in args.backend else 180.0
    env = ros_env(args.domain_id)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_LOCALHOST_ONLY", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through run_config's cleanup
    from depthfm_ros.processing import processing_size

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    size = processing_size(args.height, args.width, args.processing_resolution)
    print(f"{args.width}x{args.height} rgb8 cameras at {args.rate:g} Hz, processing {size[1]}x{size[0]} "
          f"(processing_resolution {args.processing_resolution}), k={args.num_steps}, M={args.ensemble_size}, "
          f"tiny random model; {os.cpu_count()} CPUs, ROS_DOMAIN_ID {args.domain_id} on loopback", flush=True)
    results = []
    for backend in args.backend:
        if why := unavailable(backend):
            print(f"{backend}: skipped ({why})", flush=True)
            results += [{"backend": backend, "mode": mode, "cameras": n, "processes": 1 if mode == "batched" else n,
                         "skipped": why} for n in args.cameras for mode in args.modes]
            continue
        engine = None if backend == "torch" else exported_graph(work, *size, args.num_steps, args.ensemble_size, env)
        for n in args.cameras:
            for mode in args.modes:
                try:
                    results.append(run_config(backend, mode, n, engine, args, env))
                except RuntimeError as exc:
                    print(f"FAILED: {exc}", file=sys.stderr, flush=True)
                    results.append({"backend": backend, "mode": mode, "cameras": n,
                                    "processes": 1 if mode == "batched" else n, "error": str(exc)})
                r = results[-1]
                if "error" not in r:
                    print(f"{backend} {n} camera(s) {mode}: {r['outputs_per_s']:.1f} outputs/s, latency p50 "
                          f"{r['latency_ms_p50']:.0f} ms, dropped {r['node_dropped']:.0f}, PSS {r['pss_mib']:.0f} MiB, "
                          f"{r['cpu_sec_per_output']:.3f} CPU s/output", flush=True)
    print()
    print(tables(results))
    if args.json:
        meta = {"argv": sys.argv, "cpus": os.cpu_count(), "processing_size_hw": list(size)}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "args": vars(args), "results": results}, f, indent=2)
    foreign = [f"{r['backend']} {r['mode']} {c['camera']}" for r in results for c in r.get("per_camera", [])
               if c["foreign"]]
    if foreign:
        print(f"\nOUTPUTS OF ANOTHER CAMERA (wrong frame_id or a stamp this camera never sent) on: {foreign}")
    return 1 if foreign or any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
