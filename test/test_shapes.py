"""shapes.py: the latent and noise shape rules (a leaf module)."""

import ast
from pathlib import Path

import numpy as np
import pytest

from depthfm_ros import shapes
from depthfm_ros.errors import InputError


def test_noise_shape_and_its_inverse():
    assert shapes.latent_noise_shape(2, 3, 128, 192) == (6, 4, 16, 24)
    assert shapes.ensemble_size_of((6, 4, 16, 24), 2, 128, 192) == 3
    with pytest.raises(InputError, match="noise must be"):
        shapes.ensemble_size_of((5, 4, 16, 24), 2, 128, 192)
    with pytest.raises(InputError, match="noise must be"):
        shapes.ensemble_size_of((2, 4, 16, 16), 2, 128, 192)


def test_image_batch_check():
    shapes.check_image_batch(np.zeros((1, 3, 64, 128)))
    for bad in (np.zeros((3, 64, 64)), np.zeros((1, 4, 64, 64)), np.zeros((1, 3, 64, 96))):
        with pytest.raises(InputError):
            shapes.check_image_batch(bad)


def test_no_package_module_imports_its_own_package_inside_a_function():
    """The import cycle model <-> sampler <-> tiny_vae is gone: package modules import each other at the top only
    (function-level imports are left for optional heavy dependencies and the ROS-only modules)."""
    root = Path(shapes.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.level > 0 or (inner.module or "").startswith(
                            "depthfm_ros")):
                        offenders.append(f"{path.relative_to(root)}:{inner.lineno} {inner.module}")
    # allowed: the command-line tools (fast start), the in-process ROS graphs (they need rclpy), the backends
    # whose runtimes are optional (onnxruntime, tensorrt), and the torch paths of the numpy completion and points
    # (torch is imported only for tensor inputs)
    lazy_ok = ("cli/", "ros/replay.py", "ros/demo.py")
    assert [o for o in offenders if not o.startswith(lazy_ok) and not o.endswith(("onnx_backend", "tensorrt_backend",
                                                                                  "completion_torch",
                                                                                  "points_torch"))] == []
