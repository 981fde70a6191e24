"""Test-wide set-up. DDS traffic stays on loopback and each run uses its own ROS domain; the hub is never called."""

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL_TINY = FIXTURES / "depthfm-official-tiny"


@pytest.fixture(scope="session")
def official_tiny() -> Path:
    """Folder with the tiny official-format checkpoint, its VAE and the official code's outputs."""
    return OFFICIAL_TINY


@pytest.fixture(scope="session")
def tiny_model():
    """A small random DepthFM with the real architecture and noise augmentation on (noising_step 400)."""
    from depthfm_ros.model import build_tiny_depthfm

    return build_tiny_depthfm(seed=0, noising_step=400)
