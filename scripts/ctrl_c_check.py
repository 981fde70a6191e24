"""Stop depthfm_node N times the way a terminal does and report how each run ended (docs/ros.md, "Stopping").

    python scripts/ctrl_c_check.py --runs 20                       # the node alone: Ctrl-C, then SIGINT again
    python scripts/ctrl_c_check.py --runs 20 --sequence INT,TERM   # Ctrl-C, then SIGTERM
    python scripts/ctrl_c_check.py --runs 20 --launch              # under `ros2 launch depth.launch.py`

Each run starts the node (tiny random model) in its own process group, waits for its start line and a random idle
time, then sends the first signal to the whole group, as Ctrl-C in a terminal does, and the next ones to the node
only, ``--gap`` seconds apart. Under ``--launch`` launch itself forwards the Ctrl-C to the node (its second SIGINT)
and, 5 s later if the node is still there, SIGTERM; ``--sequence`` then lists what follows that. A run is clean
when the process exits 0 and nothing printed a traceback, "process has died" or "exit code -2"/"-15".
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time

NODE = [sys.executable, "-c", "import sys; from depthfm_ros.ros.entry_points import depthfm_node; "
        "sys.exit(depthfm_node())"]
PARAMS = ["model:=tiny", "processing_resolution:=64", "torch_threads:=1"]
BAD = ("Traceback", "process has died", "failed to terminate", "exit code -2", "exit code -15", "KeyboardInterrupt")


def one_run(args, rng: random.Random) -> dict:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOCALHOST_ONLY="1", HF_HUB_OFFLINE="1",
               PYTHONUNBUFFERED="1")
    if args.launch:
        command = ["ros2", "launch", "depthfm_ros", "depth.launch.py", *PARAMS]
    else:
        command = [*NODE, "--ros-args", *[a for p in PARAMS for a in ("-p", p)]]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    lines, t0, node_pid = [], time.monotonic(), process.pid
    for line in process.stdout:
        lines.append(line)
        if "process started with pid [" in line:  # launch's line for the node
            node_pid = int(line.rsplit("[", 1)[1].split("]")[0])
        if "DepthFM on" in line:
            break
    start_s = time.monotonic() - t0
    time.sleep(rng.uniform(0.0, args.idle))
    sequence = args.sequence.split(",")
    t_signal = time.monotonic()
    os.killpg(process.pid, getattr(signal, "SIG" + sequence[0]))  # the terminal: every process of the group
    for name in sequence[1:]:
        time.sleep(args.gap)
        try:
            os.kill(node_pid, getattr(signal, "SIG" + name))
        except ProcessLookupError:
            break
    try:
        rest, _ = process.communicate(timeout=args.timeout)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        rest, _ = process.communicate()
        hung = True
    text = "".join(lines) + rest
    exit_s = time.monotonic() - t_signal
    died = [word for word in BAD if word in text]
    return {"rc": process.returncode, "start_s": start_s, "exit_s": exit_s, "hung": hung, "bad": died,
            "clean": process.returncode == 0 and not died and not hung, "text": text}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sequence", default=None, help="signals, the first to the process group, the others to the "
                        "node (default INT,INT; INT under --launch, which sends the second itself)")
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between the signals (default 0.01)")
    parser.add_argument("--idle", type=float, default=2.0, help="random idle time before Ctrl-C, up to (s)")
    parser.add_argument("--timeout", type=float, default=30.0, help="a run that has not exited by then hung (s)")
    parser.add_argument("--launch", action="store_true", help="run under `ros2 launch depthfm_ros depth.launch.py`")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.launch and shutil.which("ros2") is None:
        parser.error("--launch needs the ros2 command (ROS 2 launch and ros2launch installed)")
    args.sequence = args.sequence or ("INT" if args.launch else "INT,INT")
    rng = random.Random(args.seed)
    results = []
    for i in range(args.runs):
        result = one_run(args, rng)
        results.append(result)
        print(f"run {i + 1:2d}: exit {result['rc']} after {result['exit_s']:.2f} s (start {result['start_s']:.1f} s)"
              f"{' HUNG' if result['hung'] else ''}{' ' + ', '.join(result['bad']) if result['bad'] else ''}",
              flush=True)
        if not result["clean"]:
            print(result["text"][-2000:])
    clean = sum(r["clean"] for r in results)
    exits = sorted(r["exit_s"] for r in results)
    print(f"{clean} of {len(results)} clean ({args.sequence}, gap {args.gap} s, "
          f"{'ros2 launch' if args.launch else 'node alone'}); exit after the first signal: median "
          f"{exits[len(exits) // 2]:.2f} s, max {exits[-1]:.2f} s")
    return 0 if clean == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
