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
