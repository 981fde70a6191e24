"""depthfm-replay: play a rosbag2 (sqlite3 or MCAP) of a camera (+ LiDAR) through depthfm_node, in this process, in
a real ROS 2 graph, and report what came out: frames in/out, dropped frames, latency, fit residual, point counts.

The bag's recorded CDR bytes are published unchanged on the node's inputs (``image``, ``camera_info``, ``lidar`` in
the namespace /depthfm_replay) at the recorded timing divided by ``--rate`` (``--rate 0``: each image waits for
the previous one's depth, so nothing is dropped). Latency is wall time from publishing an image to receiving the
depth with its header stamp. The report (report.md, report.json) and colour-mapped previews go to ``--output``.

    depthfm-replay --make-synthetic-bag /tmp/synthetic_bag --tiny-model --processing-resolution 256 --rate 0 \
        -o /tmp/replay   # try it in one command: every frame, processing latency
    depthfm-replay robot_bag/ --checkpoint depthfm-v1.ckpt --vae sd-vae --ensemble-size 2 --rate 1 -o replay_report
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from ..files import writable_folder
from ..ros import bag as bagio
from ..ros.replay import ReplayOptions, replay
from ..ros.synthetic_bag import write_synthetic_bag
from .common import add_model_args, run_cli, settings_from_args


def _parse(argv):
    parser = argparse.ArgumentParser(prog="depthfm-replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", nargs="?", type=Path, help="rosbag2 folder (metadata.yaml + .db3 or .mcap)")
    add_model_args(parser)
    g = parser.add_argument_group("replay")
    g.add_argument("--output", "-o", type=Path, default=Path("depthfm_replay"), help="folder for the report")
    g.add_argument("--rate", type=float, default=1.0,
                   help="playback speed: 1 = as recorded, 2 = twice as fast, 0 = as fast as the node takes")
    g.add_argument("--image-topic", help="bag topic of the camera (default: the only Image/CompressedImage topic)")
    g.add_argument("--camera-info-topic", help="bag topic of the CameraInfo (default: the image's sibling)")
    g.add_argument("--lidar-topic", help="bag topic of the PointCloud2 (default: the only one, if any)")
    g.add_argument("--no-lidar", action="store_true", help="do not feed the bag's LiDAR to the node")
    g.add_argument("--no-points", action="store_true", help="do not ask the node for depthfm/points")
    g.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="any other depthfm_node parameter (repeatable), e.g. --param seed:=-1")
    g.add_argument("--previews", type=int, default=3, help="frames to write colour-mapped PNGs for")
    g.add_argument("--frame-timeout", type=float, default=60.0,
                   help="with --rate 0: seconds to wait for one frame's depth before sending the next")
    g.add_argument("--drain-timeout", type=float, default=30.0,
                   help="seconds to wait for outstanding outputs after the last message")
    g.add_argument("--make-synthetic-bag", type=Path, metavar="PATH",
                   help="write a synthetic camera + LiDAR bag to PATH first (and replay it if no bag is given)")
    g.add_argument("--synthetic-frames", type=int, default=30, help="frames of the synthetic bag")
    g.add_argument("--synthetic-size", default="320x240", help="WIDTHxHEIGHT of the synthetic camera")
    g.add_argument("--synthetic-storage", choices=bagio.STORAGES, default="mcap")
    args = parser.parse_args(argv)
    if args.bag is None and args.make_synthetic_bag is None:
        parser.error("give a bag folder, or --make-synthetic-bag PATH")
    if args.rate < 0 or args.previews < 0 or args.frame_timeout <= 0 or args.drain_timeout < 0:
        parser.error("--rate, --previews, --drain-timeout must be >= 0 and --frame-timeout > 0")
    return args


def _main(argv=None) -> int:
    args = _parse(argv)
    if args.make_synthetic_bag is not None:
        if args.make_synthetic_bag.exists():
            raise InputError(f"--make-synthetic-bag {args.make_synthetic_bag} exists already: replay it with "
                             f"depthfm-replay {args.make_synthetic_bag} ..., or give a new path")
        writable_folder(args.make_synthetic_bag.parent, "--make-synthetic-bag")
        writable_folder(args.output, "--output")
        width, _, height = args.synthetic_size.partition("x")
        made = write_synthetic_bag(args.make_synthetic_bag, args.synthetic_frames, int(width), int(height),
                                         storage=args.synthetic_storage)
        print(f"depthfm-replay: wrote {len(made.stamps_ns)} synthetic frame(s) to {made.path}", file=sys.stderr)
    options = ReplayOptions(
        args.bag if args.bag is not None else args.make_synthetic_bag, settings_from_args(args), args.output,
        args.rate, args.image_topic, args.camera_info_topic, args.lidar_topic, args.no_lidar, args.no_points,
        tuple(args.param), args.previews, args.frame_timeout, args.drain_timeout)
    return 0 if replay(options)["frames_out"] > 0 else 1


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
