"""Tiny-model ONNX graphs shared by test_export.py and test_backends.py, exported once per test session."""

from __future__ import annotations

import functools
from pathlib import Path

from depthfm_ros.backends.export import export_graph, export_onnx, model_hash
from depthfm_ros.models.architectures import build_tiny_depthfm

HEIGHT, WIDTH = 64, 128
FUSED_CASES = ((1, 1), (2, 4))  # (num_steps k, ensemble_size M); split graphs cover the rest


@functools.lru_cache(maxsize=None)
def tiny_model(seed: int = 0):
    return build_tiny_depthfm(seed)


@functools.lru_cache(maxsize=None)
def exported_graphs(root: str) -> dict:
    """{'split': folder, (k, M): fused path} under ``root`` for the seed-0 tiny model at HEIGHT x WIDTH."""
    model, root = tiny_model(0), Path(root)
    mhash = model_hash(model)
    paths = export_onnx(model, root / "split", HEIGHT, WIDTH, fused=False, split=True, progress=False)
    out = {"split": root / "split", **{kind: p for kind, p in paths.items()}}
    for k, m in FUSED_CASES:
        out[(k, m)] = export_graph(model, "fused", root / f"fused_k{k}_m{m}.onnx", HEIGHT, WIDTH, k, m, mhash=mhash)
    return out


SIZE_RANGE = (64, 64, 192, 256)  # dynamic spatial axes: (min_h, min_w, max_h, max_w), HEIGHT x WIDTH the optimum


@functools.lru_cache(maxsize=None)
def dynamic_graphs(root: str, rescale_attention: bool = False) -> dict:
    """{'split': folder, 'fused': k=1 M=2 path} with dynamic spatial axes over SIZE_RANGE (seed-0 tiny model, or its
    copy on the official non-xformers attention path)."""
    model = build_tiny_depthfm(0).set_rescale_attention(rescale_attention)
    root = Path(root) / ("rescaled" if rescale_attention else "plain")
    paths = export_onnx(model, root / "split", HEIGHT, WIDTH, fused=False, split=True, progress=False,
                        size_range=SIZE_RANGE)
    fused = export_graph(model, "fused", root / "fused_k1_m2.onnx", HEIGHT, WIDTH, 1, 2, size_range=SIZE_RANGE)
    return {"split": root / "split", "fused": fused, "model": model, **{f"split_{k}": p for k, p in paths.items()}}
