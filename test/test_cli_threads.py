"""Thread defaults: 0 (auto) is OMP_NUM_THREADS, else the cores minus one (a core for the ROS executor and fusion);
every tool says at start how many threads its engine runs on."""

import os

import torch

from depthfm_ros.settings import ModelSettings, auto_threads


def test_auto_threads_leave_one_core_to_the_graph_unless_omp_num_threads_says(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert auto_threads() == max(1, cores - 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert auto_threads() == 15
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert auto_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert auto_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert auto_threads() == 1
    assert ModelSettings().threads() == (1, 1) and ModelSettings(torch_threads=2, onnx_threads=4).threads() == (2, 4)


def test_apply_sets_the_resolved_torch_threads_and_describe_names_them(monkeypatch):
    from depthfm_ros.backends import load_backend

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert ModelSettings().apply_torch_threads() == 2 and torch.get_num_threads() == 2
        assert ModelSettings(torch_threads=1).apply_torch_threads() == 1 and torch.get_num_threads() == 1
        backend = load_backend(ModelSettings(tiny_model=True, num_steps=1))
        assert "1 thread(s)" in backend.describe()
    finally:
        torch.set_num_threads(before)


def test_predict_prints_the_engine_and_its_threads_at_start(tmp_path, capsys, official_tiny):
    from depthfm_ros.cli.predict import main

    assert main([str(official_tiny / "image.png"), "--tiny-model", "--num-steps", "1", "--ensemble-size", "1",
                 "--processing-resolution", "64", "-o", str(tmp_path)]) == 0
    assert "depthfm: torch[cpu, fp32, 1 thread(s)]" in capsys.readouterr().err  # auto: OMP_NUM_THREADS=1 (conftest)


def test_the_thread_flags_reach_the_settings():
    import argparse

    from depthfm_ros.cli.common import add_model_args, settings_from_args

    parser = argparse.ArgumentParser()
    add_model_args(parser)
    settings = settings_from_args(parser.parse_args(["--tiny-model", "--torch-threads", "2", "--onnx-threads", "3"]))
    assert settings.threads() == (2, 3)
    assert settings_from_args(parser.parse_args(["--tiny-model"])).threads() == (auto_threads(), auto_threads())
