"""Test-wide set-up. DDS traffic stays on loopback and each run uses its own ROS domain; the hub is never called."""

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"


def worker_domain(base: int, worker: str | None) -> int:
    """The ROS domain of one pytest-xdist worker ("gw0", "gw1", ...): base + its index, wrapped into 1..232 (the
    domains Fast DDS maps to ports), so two workers of a run never share a DDS domain; ``base`` without xdist."""
    index = int(worker[2:]) if worker and worker.startswith("gw") else 0
    return 1 + (base - 1 + index) % 232


# the run's base domain: ROS_DOMAIN_ID as given, else one drawn per run; xdist workers inherit the controller's
os.environ.setdefault("DEPTHFM_TEST_BASE_DOMAIN", os.environ.get("ROS_DOMAIN_ID") or str(
    1 + (os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()) % 100))
os.environ["ROS_DOMAIN_ID"] = str(worker_domain(int(os.environ["DEPTHFM_TEST_BASE_DOMAIN"]),
                                                os.environ.get("PYTEST_XDIST_WORKER")))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
# torch_threads / onnx_threads 0 (auto) in the nodes the tests start: one thread, as one_torch_thread below
os.environ["OMP_NUM_THREADS"] = "1"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL_TINY = FIXTURES / "depthfm-official-tiny"


def pytest_addoption(parser, pluginmanager):
    """setup.cfg runs the suite on pytest-xdist workers (``--numprocesses=auto``); without xdist (``-p no:xdist``,
    or not installed) the suite runs in one process and setup.cfg's ``--numprocesses`` is accepted and ignored."""
    if not pluginmanager.has_plugin("xdist"):
        parser.addoption("--numprocesses", action="store", default=None, help="(xdist not loaded: ignored)")
        parser.addoption("--dist", action="store", default=None, help="(xdist not loaded: ignored)")


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
