"""depthfm-predict: depth for image files -> 16-bit PNG and/or .npy, uncertainty, and a labelled preview
(image | relative depth | uncertainty, with colour bars)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import InputError
from ..files import writable_folder
from ..pipeline import DepthPrediction
from ..previews import relative_preview, write_png
from ..processing import read_rgb
from .common import add_model_args, pipeline_from_args, run_cli


def write_outputs(pred: DepthPrediction, rgb: np.ndarray, out_dir: Path, stem: str, formats: set[str]) -> list[Path]:
    """Write ``<stem>_depth.png`` (relative depth, uint16 0..65535), ``<stem>_depth.npz`` (z, depth, std) and
    ``<stem>_preview.png`` (:func:`depthfm_ros.previews.relative_preview`); OSError if a file cannot be written."""
    written = []
    if "png" in formats:
        path = out_dir / f"{stem}_depth.png"
        if not cv2.imwrite(str(path), np.round(pred.relative_depth_hw * 65535).astype(np.uint16)):
            raise OSError(f"could not write {path}")
        written.append(path)
    if "npy" in formats:
        path = out_dir / f"{stem}_depth.npz"
        np.savez_compressed(path, z=pred.z_hw, depth=pred.relative_depth_hw, uncertainty=pred.std_z_hw)
        written.append(path)
    path = out_dir / f"{stem}_preview.png"
    write_png(path, relative_preview(rgb, pred.relative_depth_hw, pred.std_z_hw, pred.ensemble_size))
    written.append(path)
    return written


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="depthfm-predict", description=__doc__)
    parser.add_argument("images", nargs="+", type=Path, help="input image files")
    add_model_args(parser, ensemble=4)
    parser.add_argument("--output", "-o", type=Path, default=Path("depthfm_out"), help="output folder")
    parser.add_argument("--format", default="png,npy", help="comma list of png (16-bit relative depth), npy (npz)")
    args = parser.parse_args(argv)
    formats = set(args.format.split(","))
    if not formats <= {"png", "npy"}:
        parser.error(f"--format takes png and/or npy, got {args.format}")

    writable_folder(args.output, "--output")  # before the model loads: no inference lost to a bad folder
    pipe = pipeline_from_args(args)
    args.output.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in tqdm(args.images, desc="depthfm", unit="img"):
        try:
            rgb = read_rgb(path)
        except InputError as exc:
            tqdm.write(f"skipped {path}: {exc}")
            failed += 1
            continue
        pred = pipe(rgb)
        try:
            files = write_outputs(pred, rgb, args.output, path.stem, formats)
        except OSError as exc:  # the folder was writable at start: a full disk, or it went away
            tqdm.write(f"failed {path}: {exc}")
            failed += 1
            continue
        tqdm.write(f"{path} -> {', '.join(map(str, files))} ({pred.timings_ms['engine']:.0f} ms engine)")
    print(f"{len(args.images) - failed} image(s) written to {args.output}; {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
