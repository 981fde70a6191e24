"""Backends: onnxruntime parity with PyTorch (fused and split graphs), TensorRT pre-build logic, auto selection,
and the bench's FLOP counter. GPU-only TensorRT tests skip without tensorrt + CUDA."""

import dataclasses
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_tensorrt import FakeTensorRT
from onnx_graphs import HEIGHT, WIDTH, exported_graphs, shared_tmp, tiny_model

from depthfm_ros import backends
from depthfm_ros.backends import choose_backend, create_backend
from depthfm_ros.backends.export import read_sidecar
from depthfm_ros.backends.onnx_backend import OnnxBackend
from depthfm_ros.backends.tensorrt_backend import EngineSpec, TensorRTBackend, profile_shapes
from depthfm_ros.errors import BackendError
from depthfm_ros.shapes import latent_noise_shape

TOL_FP32 = 1e-3
HAS_TENSORRT_GPU = backends.tensorrt_importable() and torch.cuda.is_available()


@pytest.fixture(scope="session")
def graphs(tmp_path_factory):
    return exported_graphs(str(shared_tmp(tmp_path_factory) / "onnx_graphs"))


def inputs(batch: int, ensemble_size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    rgb_bchw = rng.uniform(-1, 1, (batch, 3, HEIGHT, WIDTH)).astype(np.float32)
    return rgb_bchw, rng.standard_normal(latent_noise_shape(batch, ensemble_size, HEIGHT, WIDTH), dtype=np.float32)


def reference(rgb_bchw, noise, num_steps):
    with torch.inference_mode():
        return tiny_model()(torch.from_numpy(rgb_bchw), torch.from_numpy(noise), num_steps).numpy()


@pytest.mark.parametrize("num_steps,ensemble_size", [(1, 1), (2, 4)])
def test_fused_graph_matches_torch(graphs, num_steps, ensemble_size):
    backend = OnnxBackend(graphs[(num_steps, ensemble_size)])
    assert (backend.num_steps, backend.fixed_ensemble_size, backend.fixed_size) == (num_steps, ensemble_size,
                                                                                    (HEIGHT, WIDTH))
    for batch in (1, 2):  # dynamic batch axis
        rgb_bchw, noise = inputs(batch, ensemble_size)
        z = backend.run(rgb_bchw, noise)
        assert z.shape == (batch, ensemble_size, HEIGHT, WIDTH)
        assert np.abs(z - reference(rgb_bchw, noise, num_steps)).max() < TOL_FP32


@pytest.mark.parametrize("num_steps,ensemble_size", [(1, 4), (3, 2)])
def test_split_graphs_match_torch_for_any_k(graphs, num_steps, ensemble_size):
    backend = create_backend("onnxruntime", engine=graphs["split"], num_steps=num_steps)
    assert backend.fixed_ensemble_size is None and backend.noising_step == tiny_model().noising_step
    rgb_bchw, noise = inputs(2, ensemble_size, seed=num_steps)
    z = backend.run(rgb_bchw, noise)
    assert np.abs(z - reference(rgb_bchw, noise, num_steps)).max() < TOL_FP32


def test_any_split_file_selects_the_split_set(graphs):
    assert not OnnxBackend(graphs["step"], num_steps=3).fused


def test_fused_graph_refuses_other_k_m_and_size(graphs):
    path = graphs[(2, 4)]
    with pytest.raises(BackendError, match="num_steps=2, asked for num_steps=1"):
        OnnxBackend(path, num_steps=1)
    backend = OnnxBackend(path, num_steps=2)
    with pytest.raises(BackendError, match="ensemble size 4"):
        backend.run(*inputs(1, 2))
    with pytest.raises(BackendError, match="built for 64x128"):
        backend.run(np.zeros((1, 3, 128, 128), np.float32), np.zeros((4, 4, 16, 16), np.float32))
    with pytest.raises(BackendError, match="noise must be"):
        backend.run(inputs(1, 4)[0], np.zeros((4, 4, 8, 8), np.float32))


def test_split_graphs_from_different_models_are_refused(graphs, tmp_path):
    import shutil

    for p in graphs["split"].iterdir():
        shutil.copy(p, tmp_path / p.name)
    info = read_sidecar(tmp_path / "depthfm_step.onnx")
    (tmp_path / "depthfm_step.json").write_text(dataclasses.replace(info, model_hash="f" * 16).to_json())
    with pytest.raises(BackendError, match="model_hash"):
        OnnxBackend(tmp_path)
    (tmp_path / "depthfm_decoder.onnx").unlink()
    with pytest.raises(BackendError, match="lacks split graphs"):
        OnnxBackend(tmp_path)
    with pytest.raises(BackendError, match="not found"):
        OnnxBackend(tmp_path / "nothing.onnx")


# ------------------------------------------------------------------------------------ TensorRT before build
SPEC = EngineSpec("0123456789abcdef", "fused", 2, 4, 512, 640, "fp16", "10.3.0", 1, "Orin sm87", 400)


def test_engine_cache_key_changes_with_every_field():
    keys = {SPEC.cache_key()}
    changes = {"model_hash": "fedcba9876543210", "kind": "step", "num_steps": 1, "ensemble_size": 1, "height": 448,
               "width": 512, "precision": "fp32", "tensorrt_version": "10.4.0", "max_batch": 2, "device": "x sm89",
               "noising_step": 200, "max_members": 16, "graph_hash": "0123456789abcdef",
               "size_range": (256, 256, 768, 1024), "opt_batch": 2}
    assert set(changes) == {f.name for f in dataclasses.fields(EngineSpec)}
    for field, value in changes.items():
        keys.add(dataclasses.replace(SPEC, **{field: value}).cache_key())
    assert len(keys) == 1 + len(changes)
    assert SPEC.cache_key() == dataclasses.replace(SPEC).cache_key()
    assert SPEC.engine_name().startswith("depthfm_fused_512x640_k2_m4_fp16_")
    with pytest.raises(BackendError, match="precision"):
        dataclasses.replace(SPEC, precision="bf16")


def test_profile_shapes():
    spec = dataclasses.replace(SPEC, max_batch=3)
    assert profile_shapes(spec, opt_batch=2) == {
        "image": ((1, 3, 512, 640), (2, 3, 512, 640), (3, 3, 512, 640)),
        "noise": ((4, 4, 64, 80), (8, 4, 64, 80), (12, 4, 64, 80))}
    step = profile_shapes(dataclasses.replace(spec, kind="step", num_steps=None))
    assert step["t"] == ((1,), (4,), (24,)) and step["x_t"][2] == (24, 4, 64, 80) == step["z_img"][2]
    assert profile_shapes(dataclasses.replace(spec, kind="decoder"))["x_1"][0] == (1, 4, 64, 80)
    assert profile_shapes(dataclasses.replace(spec, kind="encoder"))["image"][2] == (3, 3, 512, 640)
    dynamic = dataclasses.replace(spec, size_range=(256, 320, 768, 1024))  # the export size is the optimum
    assert profile_shapes(dynamic, opt_batch=2)["image"] == ((1, 3, 256, 320), (2, 3, 512, 640), (3, 3, 768, 1024))
    assert profile_shapes(dataclasses.replace(dynamic, kind="step"))["x_t"] == (
        (1, 4, 32, 40), (4, 4, 64, 80), (24, 4, 96, 128))
    assert dynamic.engine_name().startswith("depthfm_fused_256x320-768x1024_k2_m4_fp16_")


@pytest.mark.skipif(HAS_TENSORRT_GPU, reason="TensorRT with a GPU is present")
def test_tensorrt_backend_without_tensorrt_says_how_to_get_it(graphs):
    with pytest.raises(BackendError, match="TensorRT is not installed|needs a CUDA device"):
        TensorRTBackend(graphs[(2, 4)], num_steps=2)
    with pytest.raises(BackendError, match="not bf16"):
        TensorRTBackend(graphs[(2, 4)], precision="bf16")


@pytest.mark.skipif(not HAS_TENSORRT_GPU, reason="needs the tensorrt extra and a CUDA GPU")
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-3), ("fp16", 5e-2)])
def test_tensorrt_matches_torch(graphs, tmp_path, precision, tol):
    for engine, num_steps in [(graphs[(2, 4)], 2), (graphs["split"], 3)]:
        backend = TensorRTBackend(engine, num_steps=num_steps, precision=precision, ensemble_size=4,
                                  cache_dir=tmp_path)
        rgb_bchw, noise = inputs(1, 4)
        assert np.abs(backend.run(rgb_bchw, noise) - reference(rgb_bchw, noise, num_steps)).max() < tol


# -------------------------------------------------------------------------------------------- auto selection
@pytest.mark.parametrize("engine,trt,cuda,ort_cuda,expected,why", [
    (None, True, True, True, "torch", "no engine"),
    ("m.onnx", True, True, False, "tensorrt", "TensorRT is installed"),
    ("m.engine", True, True, False, "tensorrt", "TensorRT is installed"),
    ("m.onnx", False, True, True, "onnxruntime", "not installed; .* CUDA provider"),
    ("m.onnx", True, False, False, "onnxruntime", "no CUDA device .* CPU provider"),
    ("split_dir", False, False, False, "onnxruntime", "CPU provider"),
])
def test_choose_backend(engine, trt, cuda, ort_cuda, expected, why):
    name, reason = choose_backend(engine, trt, cuda, ort_cuda)
    assert name == expected
    assert re.search(why, reason), reason


def test_choose_backend_refuses_engine_without_tensorrt():
    with pytest.raises(BackendError, match="give the .onnx"):
        choose_backend("m.engine", False, True, True)


def test_create_backend_auto_logs_its_choice(graphs, monkeypatch, caplog):
    monkeypatch.setattr(backends, "tensorrt_importable", lambda: False)
    monkeypatch.setattr(backends, "onnxruntime_cuda_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="depthfm_ros.backends"):
        backend = create_backend("auto", engine=graphs[(1, 1)], num_steps=1)
    assert isinstance(backend, OnnxBackend)
    assert "auto -> onnxruntime" in caplog.text and "TensorRT is not installed" in caplog.text
    monkeypatch.setattr(backends, "tensorrt_importable", lambda: True)
    monkeypatch.setattr(backends, "cuda_available", lambda: True)
    calls = {}
    monkeypatch.setattr("depthfm_ros.backends.tensorrt_backend.TensorRTBackend",
                        lambda engine, **kw: calls.setdefault("trt", (engine, kw)))
    create_backend("auto", engine="m.onnx", num_steps=2, dtype="fp16")
    assert calls["trt"] == ("m.onnx", {"num_steps": 2, "precision": "fp16"})
    with pytest.raises(BackendError, match="needs an exported graph"):
        create_backend("onnxruntime")


# ---------------------------------------------------------------------------------------------- bench helpers
def test_stage_flops_positive_and_growing_with_k():
    from depthfm_ros.evaluation.benchmark import stage_flops

    model = tiny_model()
    one, two = (stage_flops(model, 64, 64, num_steps=k, ensemble_size=2) for k in (1, 2))
    assert all(v > 0 for v in one.values())
    assert two["steps"] == 2 * one["steps"] > 0
    assert (two["encode"], two["decode"]) == (one["encode"], one["decode"])
    assert sum(two.values()) > sum(one.values())
    assert stage_flops(model, 64, 64, 1, ensemble_size=4)["steps"] > one["steps"]


@pytest.mark.parametrize("noising_step", [0, 400])
def test_exported_fused_and_split_graphs_run_for_any_noising_step(tmp_path, request, noising_step):
    """noising_step 0 (the official tiny fixture): the exporter drops the unused noise input; onnxruntime refused
    the graph ("has inputs ('image',), expected ('image', 'noise')"). Both graphs now run and match torch.
    noising_step 400 (the default) uses the run's shared k=1 M=2 graphs (dynamic sizes; 64x64 is in their range)."""
    from depthfm_ros.backends.export import export_onnx
    from depthfm_ros.backends.onnx_backend import OnnxBackend
    from depthfm_ros.backends.torch_backend import TorchBackend
    from depthfm_ros.models.architectures import build_tiny_depthfm

    if noising_step == 0:
        model = build_tiny_depthfm(seed=2, noising_step=noising_step)
        engines = (export_onnx(model, tmp_path / "graphs", 64, 64, 1, 2, progress=False)["fused"], tmp_path / "graphs")
    else:
        dynamic = request.getfixturevalue("dynamic")
        model, engines = dynamic["model"], (dynamic["fused"], dynamic["split"])
    assert model.noising_step == noising_step
    rng = np.random.default_rng(0)
    rgb = rng.uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    noise = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    expected = TorchBackend(model, num_steps=1).run(rgb, noise)
    for engine in engines:
        out = OnnxBackend(engine, num_steps=1).run(rgb, noise)
        np.testing.assert_allclose(out, expected, atol=1e-4)
    if noising_step == 0:  # no noise, no spread: every member is the same
        np.testing.assert_allclose(expected[:, 0], expected[:, 1], atol=1e-6)


@pytest.mark.parametrize("version, fp16_flag", [("10.9.0", True), ("8.6.2", True), ("11.0.0", False)])
def test_engine_build_drives_the_tensorrt_api_and_guards_the_fp16_flag(monkeypatch, tmp_path, graphs, version,
                                                                       fp16_flag):
    """tensorrt>=10 installed 11.x, where BuilderFlag.FP16 is gone: the fp16 build failed with a bare
    AttributeError. Now: a clear BackendError; the extra pins tensorrt<11; the timing cache is written atomically."""
    import sys

    from depthfm_ros.backends import tensorrt_backend
    from depthfm_ros.backends.export import read_sidecar
    from depthfm_ros.backends.tensorrt_backend import EngineSpec, build_engine

    fake = FakeTensorRT(version, with_fp16=fp16_flag)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    onnx_path = graphs[(1, 1)]
    info = read_sidecar(onnx_path)
    spec = EngineSpec(info.model_hash, "fused", 1, 1, info.height, info.width, "fp16", version)
    engine, cache = tmp_path / "fused.engine", tmp_path / "timing.cache"
    if not fp16_flag:
        with pytest.raises(BackendError, match="no FP16 builder flag"):
            build_engine(onnx_path, spec, engine, cache)
        assert ("build",) not in fake.calls
        return
    assert build_engine(onnx_path, spec, engine, cache) == engine
    assert json.loads(engine.read_bytes())["onnx"] == str(onnx_path) and cache.read_bytes() == b"timing-cache"
    assert not list(tmp_path.glob("*.tmp"))
    assert ("flag", "FP16") in fake.calls and ("parse", str(onnx_path)) in fake.calls
    assert ("ignore_mismatch", False) in fake.calls  # a cache of another GPU / version is not silently used
    # JetPack 6.0's TensorRT 8.6 needs the explicit-batch network flag; 10 has no other mode (flag 0)
    assert ("network flags", 1 if version.startswith("8.") else 0) in fake.calls
    profile = next(c[1] for c in fake.calls if c[0] == "profile")
    assert profile["image"][1] == (1, 3, info.height, info.width) and set(profile) == {"image", "noise"}
    assert tensorrt_backend.read_engine_spec(engine) == spec


def test_tensorrt_extra_is_pinned_to_the_tested_range():
    text = (Path(__file__).resolve().parents[1] / "setup.py").read_text()
    assert '"tensorrt": ["tensorrt>=10,<11"]' in text and "cuda-python" not in text


# ------------------------------------------------------------------ TensorRT runtime through the stand-in module
@pytest.fixture
def fake_trt(monkeypatch):
    import sys

    def install(**kwargs):
        fake = FakeTensorRT(**kwargs)
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
        return fake

    return install


def _inputs(b=1, m=1, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (b, 3, HEIGHT, WIDTH)).astype(np.float32),
            rng.standard_normal((b * m, 4, HEIGHT // 8, WIDTH // 8)).astype(np.float32))


@pytest.mark.parametrize("which", ["fused", "split"])
def test_tensorrt_backend_runs_engines_by_name_and_caches_them(fake_trt, graphs, tmp_path, which):
    """engine_for -> TrtEngine -> TensorRTBackend.run with the stand-in runtime executing each engine's graph through
    the bound addresses: the same z as onnxruntime on the same graphs; a second backend reuses every engine."""
    from depthfm_ros.backends.onnx_backend import OnnxBackend
    from depthfm_ros.backends.tensorrt_backend import TensorRTBackend

    fake = fake_trt()
    source = graphs[(2, 4)] if which == "fused" else graphs["split"]
    rgb, noise = _inputs(1, 4)
    backend = TensorRTBackend(source, num_steps=2, ensemble_size=4, cache_dir=tmp_path, device="cpu")
    builds = [c for c in fake.calls if c[0] == "build"]
    assert len(builds) == (1 if which == "fused" else 3)
    z = backend.run(rgb, noise)
    expected = OnnxBackend(source, num_steps=2).run(rgb, noise)
    assert z.shape == (1, 4, HEIGHT, WIDTH) and z.dtype == np.float32
    np.testing.assert_allclose(z, expected, atol=1e-5)
    executes = [c for c in fake.calls if c[0] == "execute"]
    assert len(executes) == (1 if which == "fused" else 1 + 2 + 1)  # encoder, k steps, decoder
    assert {name for _, name, _ in (c for c in fake.calls if c[0] == "shape")} <= {"image", "noise", "x_t", "t",
                                                                                  "z_img", "x_1"}
    again = TensorRTBackend(source, num_steps=2, ensemble_size=4, cache_dir=tmp_path, device="cpu")
    assert len([c for c in fake.calls if c[0] == "build"]) == len(builds)  # cache hits
    np.testing.assert_allclose(again.run(rgb, noise), z, atol=0)
    assert len(fake.loggers) == 1  # one TensorRT logger for builders and runtimes
    timing = list(tmp_path.glob("timing_*.cache"))
    assert len(timing) == 1 and "tensorrt[fp16" in backend.describe()
    # the member profile is sized for this M (it is in the key), not for 8 members whatever M is
    assert all(e.spec.max_members == 4 for e in backend.engines.values())


def test_fp16_io_engines_are_fed_and_read_in_their_dtype(fake_trt, graphs, tmp_path):
    """Outputs were always allocated float32 and inputs never cast: an fp16-IO engine read garbage. Now the dtypes
    come from the engine."""
    from depthfm_ros.backends.onnx_backend import OnnxBackend
    from depthfm_ros.backends.tensorrt_backend import TensorRTBackend

    fake_trt(io_dtype="float16")
    rgb, noise = _inputs(1, 1, seed=3)
    backend = TensorRTBackend(graphs[(1, 1)], num_steps=1, cache_dir=tmp_path, device="cpu")
    assert set(backend.engines["fused"].dtypes.values()) == {torch.float16}
    z = backend.run(rgb, noise)
    expected = OnnxBackend(graphs[(1, 1)], num_steps=1).run(rgb, noise)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z, expected, atol=2e-2)  # fp16 rounding of inputs and output, not garbage
    assert np.abs(z - expected).mean() < 3e-3


def test_engine_cache_follows_the_graph_the_tensorrt_version_and_the_gpu(fake_trt, graphs, tmp_path):
    """The key covered the weights, not the graph: a re-export reused a stale engine. The timing cache was one file
    for every GPU and version."""
    import shutil

    from depthfm_ros.backends import tensorrt_backend as trt_backend

    onnx = tmp_path / "g" / "fused.onnx"
    onnx.parent.mkdir()
    shutil.copy(graphs[(1, 1)], onnx)
    shutil.copy(trt_backend.sidecar_path(graphs[(1, 1)]), trt_backend.sidecar_path(onnx))
    fake_trt(version="10.9.0")
    first = trt_backend.engine_for(onnx, cache_dir=tmp_path / "cache", device="cpu")
    assert trt_backend.engine_for(onnx, cache_dir=tmp_path / "cache", device="cpu") == first
    import onnx as onnx_lib

    graph = onnx_lib.load(str(onnx))
    graph.doc_string = "re-exported"  # same weights (the model hash), another graph file
    onnx_lib.save(graph, str(onnx))
    second = trt_backend.engine_for(onnx, cache_dir=tmp_path / "cache", device="cpu")
    assert second != first
    fake_trt(version="10.10.0")
    third = trt_backend.engine_for(onnx, cache_dir=tmp_path / "cache", device="cpu")
    assert third not in (first, second)
    assert len(list((tmp_path / "cache").glob("timing_*.cache"))) == 2
    a = trt_backend.timing_cache_path("c", "10.9.0", "Orin sm87 16SM 61GiB")
    assert a != trt_backend.timing_cache_path("c", "10.9.0", "Orin sm87 8SM 30GiB")


def test_prebuilt_engine_is_checked_against_this_tensorrt_and_gpu(fake_trt, graphs, tmp_path, monkeypatch):
    from depthfm_ros.backends import tensorrt_backend as trt_backend

    fake_trt(version="10.9.0")
    engine = trt_backend.engine_for(graphs[(1, 1)], precision="fp32", cache_dir=tmp_path, device="cpu")
    backend = trt_backend.TensorRTBackend(engine, device="cpu")
    assert backend.precision == "fp32" and "prebuilt .engine" in backend.describe()  # the engine's, not the default
    rgb, noise = _inputs()
    assert backend.run(rgb, noise).shape == (1, 1, HEIGHT, WIDTH)
    fake_trt(version="10.10.0")
    with pytest.raises(BackendError, match="built with TensorRT 10.9.0"):
        trt_backend.TensorRTBackend(engine, device="cpu")
    fake_trt(version="10.9.0")
    monkeypatch.setattr(trt_backend, "cuda_device_name", lambda device="cuda": "Orin sm87 8SM 30GiB")
    with pytest.raises(BackendError, match="not portable across GPUs"):
        trt_backend.TensorRTBackend(engine, device="cpu")


@pytest.mark.parametrize("fail, message", [("shape", "set_input_shape"), ("execute", "execute_async_v3"),
                                           ("context", "execution context"), ("deserialize", "deserialize")])
def test_every_failing_tensorrt_call_is_a_backend_error(fake_trt, graphs, tmp_path, fail, message):
    from depthfm_ros.backends.tensorrt_backend import TensorRTBackend

    fake_trt(fail=fail)
    with pytest.raises(BackendError, match=message):
        TensorRTBackend(graphs[(1, 1)], num_steps=1, cache_dir=tmp_path, device="cpu").run(*_inputs())


def test_engine_inputs_are_bound_by_name_all_or_none(fake_trt, graphs, tmp_path):
    from depthfm_ros.backends.tensorrt_backend import TensorRTBackend

    fake_trt()
    engine = TensorRTBackend(graphs[(1, 1)], num_steps=1, cache_dir=tmp_path, device="cpu").engines["fused"]
    image, noise = (torch.from_numpy(a) for a in _inputs())
    with pytest.raises(BackendError, match="takes inputs"):
        engine(image)  # zip() used to drop the missing input silently
    with pytest.raises(BackendError, match="takes inputs"):
        engine(image=image, noise=noise, extra=noise)
    np.testing.assert_allclose(engine(noise=noise, image=image).numpy(), engine(image, noise).numpy())


# ------------------------------------------------------------------------------------ dynamic spatial axes
@pytest.fixture(scope="session")
def dynamic(tmp_path_factory):
    from onnx_graphs import dynamic_graphs

    return dynamic_graphs(str(shared_tmp(tmp_path_factory) / "onnx_dynamic"))


def _sized_inputs(h, w, m, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32),
            rng.standard_normal((m, 4, h // 8, w // 8)).astype(np.float32))


@pytest.mark.parametrize("which", ["fused", "split"])
def test_onnxruntime_runs_a_dynamic_size_graph_at_every_size_in_its_range(dynamic, which):
    from onnx_graphs import SIZE_RANGE

    backend = OnnxBackend(dynamic[which], num_steps=1)
    assert backend.fixed_size is None and backend.size_range == SIZE_RANGE
    assert "64x64..192x256 (opt 64x128)" in backend.describe()
    for h, w in ((64, 64), (192, 256), (128, 192)):
        rgb, noise = _sized_inputs(h, w, 2)
        with torch.no_grad():
            expected = dynamic["model"](torch.from_numpy(rgb), torch.from_numpy(noise), 1).numpy()
        np.testing.assert_allclose(backend.run(rgb, noise), expected, atol=2e-5)
    for h, w in ((256, 128), (64, 320), (96, 128)):  # too tall, too wide, not a multiple of 64
        with pytest.raises(BackendError, match="64x64 to 192x256"):
            backend.run(*_sized_inputs(h, w, 2))


def test_pipeline_follows_the_processing_resolution_within_a_dynamic_engine(dynamic):
    from depthfm_ros.errors import InputError
    from depthfm_ros.pipeline import DepthFMPipeline

    backend = OnnxBackend(dynamic["fused"], num_steps=1)
    rgb = np.random.default_rng(1).integers(0, 255, (120, 160, 3), np.uint8)
    for resolution, size in ((128, (128, 128)), (256, (192, 256))):  # one graph, two processing sizes
        out = DepthFMPipeline(backend, resolution, ensemble_size=2)(rgb)
        assert out.processing_size == size and out.z_hw.shape == (120, 160) and np.isfinite(out.z_hw).all()
    with pytest.raises(InputError, match="outside the engine's 64x64 to 192x256"):
        DepthFMPipeline(backend, 512, ensemble_size=2)(rgb)


def test_tensorrt_builds_one_engine_for_a_size_range_and_runs_it_at_every_size(fake_trt, dynamic, tmp_path):
    """The optimisation profile spans the exported range: one build, any size in it, no rebuild (the reference
    TensorRT depth node's open request); a size outside is refused by the backend and by the engine itself."""
    from depthfm_ros.backends.tensorrt_backend import TensorRTBackend

    fake = fake_trt()
    backend = TensorRTBackend(dynamic["fused"], num_steps=1, cache_dir=tmp_path, device="cpu")
    (profile,) = [c[1] for c in fake.calls if c[0] == "profile"]
    assert profile["image"] == ((1, 3, 64, 64), (1, 3, 64, 128), (1, 3, 192, 256))
    assert backend.fixed_size is None and "64x64..192x256" in backend.describe()
    reference = OnnxBackend(dynamic["fused"], num_steps=1)
    for h, w in ((64, 64), (192, 256), (128, 192)):
        rgb, noise = _sized_inputs(h, w, 2, seed=h)
        np.testing.assert_allclose(backend.run(rgb, noise), reference.run(rgb, noise), atol=1e-5)
    assert len([c for c in fake.calls if c[0] == "build"]) == 1
    assert ("deserialize", "mmap") in fake.calls  # the plan is memory-mapped, not read into a bytes copy
    with pytest.raises(BackendError, match="64x64 to 192x256"):
        backend.run(*_sized_inputs(256, 256, 2))
    image, noise = (torch.from_numpy(a) for a in _sized_inputs(256, 256, 2))
    with pytest.raises(BackendError, match="outside the engine's optimisation profile"):
        backend.engines["fused"](image=image, noise=noise)
    static = TensorRTBackend(dynamic["split"], num_steps=1, ensemble_size=2, cache_dir=tmp_path, device="cpu")
    rgb, noise = _sized_inputs(192, 128, 2, seed=9)
    np.testing.assert_allclose(static.run(rgb, noise), OnnxBackend(dynamic["split"], num_steps=1).run(rgb, noise),
                               atol=1e-5)


def test_split_stages_exported_for_different_size_ranges_are_refused(dynamic, graphs, tmp_path):
    import shutil

    from depthfm_ros.backends.export import sidecar_path

    folder = tmp_path / "mixed"
    shutil.copytree(dynamic["split"], folder)
    for name in ("depthfm_step.onnx",):  # a static step graph beside dynamic encoder/decoder
        shutil.copy(graphs["split"] / name, folder / name)
        shutil.copy(sidecar_path(graphs["split"] / name), sidecar_path(folder / name))
    with pytest.raises(BackendError, match="export the split stages together"):
        OnnxBackend(folder, num_steps=1)


def test_cuda_graph_replay_needs_a_cuda_device(fake_trt, graphs, tmp_path):
    from depthfm_ros.backends.tensorrt_backend import TensorRTBackend

    fake_trt()
    with pytest.raises(BackendError, match="cuda_graph needs a CUDA device"):
        TensorRTBackend(graphs[(1, 1)], num_steps=1, cache_dir=tmp_path, device="cpu", cuda_graph=True)


def test_tensorrt_older_than_8_6_is_refused_with_the_reason(fake_trt, graphs, tmp_path):
    from depthfm_ros.backends.tensorrt_backend import engine_for

    fake_trt(version="8.5.3")
    with pytest.raises(BackendError, match="older than 8.6"):
        engine_for(graphs[(1, 1)], cache_dir=tmp_path, device="cpu")


# ------------------------------------------------------------------ several cameras: batches of cameras x members


def test_a_four_camera_node_sizes_the_tensorrt_profile_for_four_images_of_m_members(fake_trt, graphs, tmp_path):
    """cameras [4 names] with max_batch 0 -> engines whose profile runs 1..4 images (optimum 4) of M members; one
    call of 4 cameras gives what onnxruntime gives for them, and 5 images are split by the pipeline, never sent."""
    from depthfm_ros.backends.tensorrt_backend import TensorRTBackend
    from depthfm_ros.pipeline import DepthFMPipeline
    from depthfm_ros.ros.params import validate

    config = validate({"model": "checkpoint", "engine": str(graphs[(2, 4)]), "backend": "tensorrt",
                       "ensemble_size": 4, "num_steps": 2, "cameras": ["front", "left", "rear", "right"]})
    settings = config.model_settings()
    assert settings.max_batch == 4
    fake = fake_trt()
    backend = TensorRTBackend(settings.engine, num_steps=2, ensemble_size=4, max_batch=settings.max_batch,
                              cache_dir=tmp_path, device="cpu")
    (profile,) = [c[1] for c in fake.calls if c[0] == "profile"]
    lh, lw = HEIGHT // 8, WIDTH // 8
    assert profile["image"] == ((1, 3, HEIGHT, WIDTH), (4, 3, HEIGHT, WIDTH), (4, 3, HEIGHT, WIDTH))
    assert profile["noise"] == ((4, 4, lh, lw), (16, 4, lh, lw), (16, 4, lh, lw))
    assert backend.max_batch == 4
    rgb, noise = _inputs(4, 4, seed=7)
    np.testing.assert_allclose(backend.run(rgb, noise), OnnxBackend(graphs[(2, 4)], num_steps=2).run(rgb, noise),
                               atol=1e-5)
    executes = len([c for c in fake.calls if c[0] == "execute"])
    images = [np.random.default_rng(s).integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8) for s in range(5)]
    outs = DepthFMPipeline(backend, max(HEIGHT, WIDTH), ensemble_size=4)(images)
    assert [o.batch_size for o in outs] == [4, 4, 4, 4, 1]
    assert len([c for c in fake.calls if c[0] == "execute"]) - executes == 2
    with pytest.raises(BackendError, match="allows 4 image"):
        backend.run(*_inputs(5, 4))


def test_onnxruntime_runs_any_number_of_cameras_in_one_call(graphs):
    """The exported graphs' batch axis is dynamic: 1..6 cameras x M members through the fused and split graphs
    give each camera the result of its own call."""
    for source, m in ((graphs[(1, 1)], 1), (graphs["split"], 2)):
        backend = OnnxBackend(source, num_steps=1)
        rgb, noise = _inputs(6, m, seed=3)
        together = backend.run(rgb, noise)
        assert together.shape == (6, m, HEIGHT, WIDTH)
        for i in range(6):
            alone = backend.run(rgb[i:i + 1], noise[m * i:m * (i + 1)])
            np.testing.assert_allclose(together[i:i + 1], alone, atol=1e-5)
