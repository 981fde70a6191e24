"""test/conftest.py's ROS domains: each pytest-xdist worker of a run on its own DDS domain."""

import os

from conftest import worker_domain


def test_workers_of_one_run_never_share_a_domain():
    assert worker_domain(140, None) == 140  # no xdist: the domain given
    assert [worker_domain(140, f"gw{i}") for i in range(4)] == [140, 141, 142, 143]
    assert [worker_domain(231, f"gw{i}") for i in range(4)] == [231, 232, 1, 2]  # wrapped into 1..232
    assert len({worker_domain(base, f"gw{i}") for base in (1, 99) for i in range(2)}) == 4


def test_this_process_runs_on_its_worker_domain():
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    domain = int(os.environ["ROS_DOMAIN_ID"])
    assert 1 <= domain <= 232
    if worker:  # the controller's domain (the run's base) plus this worker's index
        assert domain == worker_domain(int(os.environ["DEPTHFM_TEST_BASE_DOMAIN"]), worker)
