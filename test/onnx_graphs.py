"""Tiny-model ONNX graphs shared by test_export.py, test_backends.py and test_settings.py, exported once per test
run: under pytest-xdist the first worker to ask exports them into the run's shared temporary folder (a file lock
keeps the others waiting) and every other worker loads the same files."""

from __future__ import annotations

import functools
from pathlib import Path

from filelock import FileLock

from depthfm_ros.backends.export import SPLIT_FILES, export_graph, export_onnx, model_hash
from depthfm_ros.models.architectures import build_tiny_depthfm

HEIGHT, WIDTH = 64, 128
FUSED_CASES = ((1, 1), (2, 4))  # (num_steps k, ensemble_size M); split graphs cover the rest


@functools.lru_cache(maxsize=None)
def tiny_model(seed: int = 0):
    return build_tiny_depthfm(seed)


def shared_tmp(tmp_path_factory) -> Path:
    """The temporary folder every worker of this run sees (xdist gives each worker its own under it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if base.name.startswith("popen-gw") else base


def exported_once(root: Path, export) -> None:
    """Run ``export()`` (which writes under ``root``) unless another worker of this run already did."""
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".lock")):
        if not (root / ".done").exists():
            export()
            (root / ".done").touch()


def split_paths(folder: Path) -> dict[str, Path]:
    return {kind: folder / SPLIT_FILES[kind] for kind in ("encoder", "step", "decoder")}


@functools.lru_cache(maxsize=None)
def exported_graphs(root: str) -> dict:
    """{'split': folder, (k, M): fused path} under ``root`` for the seed-0 tiny model at HEIGHT x WIDTH."""
    root = Path(root)
    out = {"split": root / "split", **split_paths(root / "split"),
           **{(k, m): root / f"fused_k{k}_m{m}.onnx" for k, m in FUSED_CASES}}

    def export():
        model = tiny_model(0)
        mhash = model_hash(model)
        export_onnx(model, root / "split", HEIGHT, WIDTH, fused=False, split=True, progress=False, mhash=mhash)
        for k, m in FUSED_CASES:
            export_graph(model, "fused", out[(k, m)], HEIGHT, WIDTH, k, m, mhash=mhash)

    exported_once(root, export)
    return out


SIZE_RANGE = (64, 64, 192, 256)  # dynamic spatial axes: (min_h, min_w, max_h, max_w), HEIGHT x WIDTH the optimum


@functools.lru_cache(maxsize=None)
def dynamic_graphs(root: str, rescale_attention: bool = False) -> dict:
    """{'split': folder, 'fused': k=1 M=2 path} with dynamic spatial axes over SIZE_RANGE (seed-0 tiny model, or its
    copy on the official non-xformers attention path)."""
    model = build_tiny_depthfm(0).set_rescale_attention(rescale_attention)
    root = Path(root) / ("rescaled" if rescale_attention else "plain")
    fused = root / "fused_k1_m2.onnx"

    def export():
        export_onnx(model, root / "split", HEIGHT, WIDTH, fused=False, split=True, progress=False,
                    size_range=SIZE_RANGE)
        export_graph(model, "fused", fused, HEIGHT, WIDTH, 1, 2, size_range=SIZE_RANGE)

    exported_once(root, export)
    return {"split": root / "split", "fused": fused, "model": model,
            **{f"split_{k}": p for k, p in split_paths(root / "split").items()}}
