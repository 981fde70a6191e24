"""ONNX export: fused graph = DepthFM.forward, sidecars, parser-ready op set and opset, simplification."""

import json

import numpy as np
import onnx
import pytest
import torch
from onnx_graphs import HEIGHT, WIDTH, exported_graphs, shared_tmp, tiny_model

from depthfm_ros.backends.export import (
    OPSET,
    FusedGraph,
    GraphInfo,
    export_graph,
    graph_op_types,
    graph_opset,
    model_hash,
    read_sidecar,
    sidecar_path,
)
from depthfm_ros.backends.tensorrt_backend import TENSORRT_ONNX_OPS, check_parser_ready, tensorrt_unsupported_ops
from depthfm_ros.errors import BackendError


@pytest.fixture(scope="session")
def graphs(tmp_path_factory):
    return exported_graphs(str(shared_tmp(tmp_path_factory) / "onnx_graphs"))


def test_fused_wrapper_is_the_model_forward():
    model = tiny_model()
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, HEIGHT, WIDTH, generator=g) * 2 - 1
    noise = torch.randn(2 * 3, 4, HEIGHT // 8, WIDTH // 8, generator=g)
    with torch.no_grad():
        assert torch.equal(FusedGraph(model, 2, 3)(image, noise), model(image, noise, 2))


def test_fused_graph_io_opset_and_sidecar(graphs):
    path = graphs[(2, 4)]
    onnx.checker.check_model(str(path))
    graph = onnx.load(str(path)).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*graph.input, *graph.output)}
    assert dims == {"image": ["batch", 3, HEIGHT, WIDTH], "noise": ["batch_members", 4, HEIGHT // 8, WIDTH // 8],
                    "z": ["batch", 4, HEIGHT, WIDTH]}
    assert graph_opset(path) == OPSET == 17
    info = read_sidecar(path)
    assert info == GraphInfo("fused", HEIGHT, WIDTH, 2, 4, 17, model_hash(tiny_model()), 400)


@pytest.mark.parametrize("kind", ["fused", "encoder", "step", "decoder"])
def test_graphs_use_only_tensorrt_ops(graphs, kind):
    path = graphs[(1, 1)] if kind == "fused" else graphs[kind]
    assert graph_op_types(path) <= TENSORRT_ONNX_OPS, tensorrt_unsupported_ops(path)
    assert check_parser_ready(path).kind == kind


def test_parser_check_refuses_foreign_ops_and_new_opsets(tmp_path, graphs):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    info = read_sidecar(graphs["encoder"])
    for name, node, opset in [("hardmax", onnx.helper.make_node("Hardmax", ["x"], ["y"]), 17),
                              ("contrib", onnx.helper.make_node("FastGelu", ["x"], ["y"], domain="com.microsoft"), 17),
                              ("opset19", onnx.helper.make_node("Relu", ["x"], ["y"]), 19)]:
        model = onnx.helper.make_model(onnx.helper.make_graph([node], name, [x], [y]),
                                       opset_imports=[onnx.helper.make_opsetid("", opset)])
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        sidecar_path(path).write_text(info.to_json())
        with pytest.raises(BackendError, match="opset 19" if opset == 19 else "does not support"):
            check_parser_ready(path)


def test_sidecar_checks_name_the_mismatched_field(graphs, tmp_path):
    info = read_sidecar(graphs[(2, 4)])
    info.check(kind="fused", num_steps=2, ensemble_size=4, size=(HEIGHT, WIDTH))
    for field, kwargs in [("num_steps", {"num_steps": 1}), ("ensemble_size", {"ensemble_size": 1}),
                          ("size", {"size": (128, 128)}), ("model_hash", {"model_hash": "0" * 16}),
                          ("kind", {"kind": "step"})]:
        with pytest.raises(BackendError, match=field):
            info.check(**kwargs)
    with pytest.raises(BackendError, match="no sidecar"):
        read_sidecar(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    sidecar_path(bad).write_text(json.dumps({"kind": "fused"}))
    with pytest.raises(BackendError, match="lacks"):
        read_sidecar(bad)
    sidecar_path(bad).write_text("{not json")
    with pytest.raises(BackendError, match="cannot read"):
        read_sidecar(bad)


def test_model_hash_follows_weights_and_noising_step():
    a, b = tiny_model(0), tiny_model(1)
    assert model_hash(a) == model_hash(tiny_model(0)) != model_hash(b)
    from depthfm_ros.models.depthfm import DepthFM

    other_step = DepthFM(a.unet, a.vae, a.empty_text_embedding, noising_step=200)
    assert model_hash(other_step) != model_hash(a)


def test_simplified_encoder_matches(tmp_path, graphs):
    pytest.importorskip("onnxslim")
    import onnxruntime as ort

    model = tiny_model()
    path = export_graph(model, "encoder", tmp_path / "enc.onnx", HEIGHT, WIDTH, simplify=True)
    image = np.random.default_rng(0).uniform(-1, 1, (2, 3, HEIGHT, WIDTH)).astype(np.float32)
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": image})[0]
    with torch.no_grad():
        ref = model.encode(torch.from_numpy(image)).numpy()
    assert np.abs(out - ref).max() < 1e-4
    assert len(onnx.load(str(path)).graph.node) < len(onnx.load(str(graphs["encoder"])).graph.node)
    assert graph_op_types(path) <= TENSORRT_ONNX_OPS


def test_export_refuses_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="multiple of 64"):
        export_graph(tiny_model(), "encoder", tmp_path / "x.onnx", 100, 64)
    with pytest.raises(ValueError, match="num_steps"):
        export_graph(tiny_model(), "fused", tmp_path / "x.onnx", 64, 64, num_steps=0, ensemble_size=1)


# ---------------------------------------------------------------------------------- dynamic spatial axes
@pytest.fixture(scope="session")
def dynamic(tmp_path_factory):
    from onnx_graphs import dynamic_graphs

    root = str(shared_tmp(tmp_path_factory) / "onnx_dynamic")
    return {rescale: dynamic_graphs(root, rescale) for rescale in (False, True)}


@pytest.mark.parametrize("rescale", [False, True], ids=["xformers-path", "rescaled-path"])
def test_dynamic_size_graph_equals_the_model_at_every_size_in_its_range(dynamic, rescale):
    """One graph for every multiple of 64 in the range; on the non-xformers path the attention rescale follows n
    (it was a constant of the traced size: 1e-3 off at any other size)."""
    import onnxruntime as ort
    from onnx_graphs import SIZE_RANGE

    graphs = dynamic[rescale]
    info = read_sidecar(graphs["fused"])
    assert info.size_range == SIZE_RANGE and info.size == (HEIGHT, WIDTH) and info.rescale_attention is rescale
    graph = onnx.load(str(graphs["fused"])).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*graph.input, *graph.output)}
    assert dims == {"image": ["batch", 3, "height", "width"], "noise": ["batch_members", 4, "latent_height",
                                                                        "latent_width"], "z": ["batch", 2, "height",
                                                                                               "width"]}
    assert graph_op_types(graphs["fused"]) <= TENSORRT_ONNX_OPS
    session = ort.InferenceSession(str(graphs["fused"]), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(5)
    for h, w in ((64, 128), (192, 256), (128, 64)):
        image = torch.rand(1, 3, h, w, generator=g) * 2 - 1
        noise = torch.randn(2, 4, h // 8, w // 8, generator=g)
        with torch.no_grad():
            expected = graphs["model"](image, noise, 1).numpy()
        z = session.run(None, {"image": image.numpy(), "noise": noise.numpy()})[0]
        assert z.shape == (1, 2, h, w)
        np.testing.assert_allclose(z, expected, atol=2e-5)


def test_size_range_is_checked_and_parsed():
    from depthfm_ros.backends.export import check_size_range, parse_size_range
    from depthfm_ros.errors import InputError

    assert parse_size_range("256x320:768X1024") == (256, 320, 768, 1024)
    for bad in ("256x256", "256:768", "axb:cxd", "256x256:768x1024:1"):
        with pytest.raises(InputError, match="size range"):
            parse_size_range(bad)
    assert check_size_range((64, 64, 256, 256), 128, 128) == (64, 64, 256, 256)
    with pytest.raises(InputError, match="outside size_range"):
        check_size_range((64, 64, 128, 128), 192, 128)
    with pytest.raises(InputError, match="multiple of 64"):
        check_size_range((64, 64, 100, 128), 64, 64)
    assert GraphInfo.from_dict({**json.loads(GraphInfo("fused", 64, 64, 1, 1, 17, "h", 0).to_json()),
                                "size_range": [64, 64, 128, 128]}).size_range == (64, 64, 128, 128)


def test_export_cli_writes_dynamic_size_graphs_and_refuses_a_bad_range(tmp_path, capsys):
    from depthfm_ros.cli import export as export_cli

    out = tmp_path / "dyn"
    assert export_cli.main(["--tiny-model", "--height", "64", "--width", "128", "--size-range", "64x64:128x192",
                            "--no-fused", "--no-simplify", "--out", str(out)]) == 0
    info = read_sidecar(out / "depthfm_step.onnx")
    assert info.size_range == (64, 64, 128, 192) and info.size == (64, 128)
    assert export_cli.main(["--tiny-model", "--height", "256", "--width", "128", "--size-range", "64x64:128x192",
                            "--no-fused", "--out", str(tmp_path / "bad")]) == 2
    assert "outside size_range" in capsys.readouterr().err
