"""Messages a newcomer meets: each names what to change on the surface in use (flag and node parameter), and says
what it means."""

import pytest

from depthfm_ros.backends.export import GraphInfo
from depthfm_ros.errors import BackendError, InputError
from depthfm_ros.processing import read_rgb


def graph(**fields) -> GraphInfo:
    return GraphInfo(**{"kind": "fused", "height": 64, "width": 64, "num_steps": 1, "ensemble_size": 1, "opset": 17,
                        "model_hash": "abc", "noising_step": 400, **fields})


@pytest.mark.parametrize("asked, words", [
    ({"num_steps": 2}, ["num_steps=1, asked for num_steps=2", "--num-steps", "num_steps:=", "depthfm-export"]),
    ({"ensemble_size": 4}, ["ensemble_size=1", "--ensemble-size", "ensemble_size:=", "split graphs"]),
    ({"size": (128, 64)}, ["size=(64, 64)", "--processing-resolution", "processing_resolution:=", "--size-range"]),
    ({"model_hash": "other"}, ["another checkpoint", "depthfm-export"]),
])
def test_a_graph_mismatch_names_the_flag_and_the_node_parameter(asked, words):
    with pytest.raises(BackendError) as info:
        graph().check(**asked)
    assert all(word in str(info.value) for word in words), str(info.value)
    assert "change the node parameter" not in str(info.value)


def test_a_missing_and_a_corrupt_image_get_different_messages(tmp_path):
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(InputError, match="no such file"):
        read_rgb(tmp_path / "missing.png")
    with pytest.raises(InputError, match=r"not an image OpenCV can decode \(corrupt, truncated or another format; 48 "
                                         "bytes\\)"):
        read_rgb(tmp_path / "corrupt.png")
    with pytest.raises(InputError, match="it is a folder"):
        read_rgb(tmp_path)


def test_train_says_what_a_single_process_run_is():
    from depthfm_ros.training.run import run_description

    assert run_description(1, "NO") == "1 process(es), not distributed (no DDP)"  # accelerate's bare "NO" before
    assert run_description(2, "MULTI_CPU") == "2 process(es), distributed (MULTI_CPU)"
