"""Test-wide set-up. DDS traffic stays on loopback and each run uses its own ROS domain; the hub is never called."""

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
# torch_threads / onnx_threads 0 (auto) in the nodes the tests start: one thread, as one_torch_thread below
os.environ["OMP_NUM_THREADS"] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL_TINY = FIXTURES / "depthfm-official-tiny"


@pytest.fixture(scope="session")
def official_tiny() -> Path:
    """Folder with the tiny official-format checkpoint, its VAE and the official code's outputs."""
    return OFFICIAL_TINY


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests run torch on one intra-op thread: tiny convolutions are ~10x faster that way on shared cores, OpenMP
    spinning cannot starve the DDS threads of in-process ROS graphs, and float results are reproducible."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model():
    """A small random DepthFM with the real architecture and noise augmentation on (noising_step 400)."""
    from depthfm_ros.models.architectures import build_tiny_depthfm

    return build_tiny_depthfm(seed=0, noising_step=400)


@pytest.fixture
def ros_context():
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)
