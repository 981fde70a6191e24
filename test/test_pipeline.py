import cv2
import numpy as np
import pytest
import torch

from depthfm_ros.backends.base import Backend
from depthfm_ros.backends.torch_backend import TorchBackend
from depthfm_ros.errors import InputError
from depthfm_ros.models.architectures import build_tiny_depthfm
from depthfm_ros.pipeline import DepthFMPipeline
from depthfm_ros.tensor_processing import postprocess_tensor


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_reproduces_the_official_outputs(official_tiny):
    rgb = cv2.cvtColor(cv2.imread(str(official_tiny / "image.png")), cv2.COLOR_BGR2RGB)
    for steps in (1, 2, 4):
        backend = TorchBackend.from_checkpoint(official_tiny / "tiny.ckpt", official_tiny / "vae", num_steps=steps)
        out = DepthFMPipeline(backend, processing_resolution=0)(rgb)
        ref = np.load(official_tiny / f"ref_depth_s{steps}.npy")
        assert out.relative_depth_hw.shape == ref.shape == (128, 192)
        assert np.abs(out.relative_depth_hw - ref).max() < 1e-5, steps


def test_outputs_are_at_input_size_with_ensemble_uncertainty(tiny_model):
    pipe = DepthFMPipeline(TorchBackend(tiny_model, num_steps=1), processing_resolution=128, ensemble_size=3)
    out = pipe(_rgb(97, 131))
    assert out.processing_size == (128, 128)  # 97x131 -> long side 128, short 95: 128 keeps the aspect best
    for arr in (out.z_hw, out.relative_depth_hw, out.std_z_hw):
        assert arr.shape == (97, 131) and arr.dtype == np.float32 and np.isfinite(arr).all()
    assert out.relative_depth_hw.min() == 0.0 and out.relative_depth_hw.max() == pytest.approx(1.0)
    assert out.std_z_hw.min() >= 0 and out.std_z_hw.mean() > 1e-3
    assert set(out.timings_ms) == {"preprocess", "engine", "postprocess"}


def test_single_member_has_zero_uncertainty(tiny_model):
    out = DepthFMPipeline(TorchBackend(tiny_model, num_steps=1), 64, ensemble_size=1)(_rgb(64, 64))
    assert np.all(out.std_z_hw == 0)


def test_seed_makes_runs_reproducible(tiny_model):
    backend = TorchBackend(tiny_model, num_steps=1)
    a = DepthFMPipeline(backend, 64, ensemble_size=2, seed=5)(_rgb(64, 64))
    b = DepthFMPipeline(backend, 64, ensemble_size=2, seed=5)(_rgb(64, 64))
    c = DepthFMPipeline(backend, 64, ensemble_size=2, seed=6)(_rgb(64, 64))
    np.testing.assert_array_equal(a.z_hw, b.z_hw)
    assert np.abs(a.z_hw - c.z_hw).max() > 1e-4


def test_batch_of_images_matches_single_calls_with_the_same_noise(tiny_model):
    backend = TorchBackend(tiny_model, num_steps=2)
    images = [_rgb(64, 128, s) for s in range(2)]
    batched = DepthFMPipeline(backend, 128, ensemble_size=2, seed=1)(images)
    # the same noise draw, split per image, through one-image calls
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((4, 4, 8, 16), dtype=np.float32)
    from depthfm_ros.processing import to_model_input
    for i, rgb in enumerate(images):
        members = backend.run(to_model_input(rgb, 64, 128)[None], noise[2 * i:2 * i + 2])
        np.testing.assert_allclose(batched[i].z_hw, members.mean(axis=1)[0], atol=1e-4)


def test_mixed_sizes_run_one_by_one(tiny_model):
    outs = DepthFMPipeline(TorchBackend(tiny_model, num_steps=1), 128)([_rgb(64, 64), _rgb(32, 48)])
    assert [o.z_hw.shape for o in outs] == [(64, 64), (32, 48)]
    assert [o.processing_size for o in outs] == [(128, 128), (64, 128)]
    assert [o.batch_size for o in outs] == [1, 1]  # two processing sizes: two batches


class CountingBackend(Backend):
    """Records the images per call of the wrapped backend; ``max_batch`` like an engine profile."""

    def __init__(self, inner: Backend, max_batch: int | None = None):
        self.inner, self.max_batch, self.calls = inner, max_batch, []
        self.name, self.num_steps, self.noising_step = "counting", inner.num_steps, inner.noising_step

    def run(self, rgb_bchw, noise):
        self.calls.append(len(rgb_bchw))
        return self.inner.run(rgb_bchw, noise)


def test_cameras_of_one_processing_size_batch_and_each_gets_its_single_run_result(tiny_model):
    """Frames of several cameras (input sizes and aspect ratios differ, processing size the same) run as one batch;
    with each camera's own generator every result equals the camera's frame run alone, noise included."""
    backend = CountingBackend(TorchBackend(tiny_model, num_steps=2))
    images = [_rgb(64, 128, 1), _rgb(80, 160, 2), _rgb(240, 480, 3), _rgb(100, 100, 4)]
    pipe = DepthFMPipeline(backend, 128, ensemble_size=3, seed=5)
    generators = [np.random.default_rng(5) for _ in images]
    outs = pipe(images, generators=generators)
    assert backend.calls == [3, 1]  # the three 2:1 cameras (64x128) in one call, the square one (128x128) alone
    assert [o.batch_size for o in outs] == [3, 3, 3, 1]
    for rgb, out in zip(images, outs):
        alone = DepthFMPipeline(TorchBackend(tiny_model, num_steps=2), 128, ensemble_size=3, seed=5)(rgb)
        assert out.z_hw.shape == rgb.shape[:2] and out.processing_size == alone.processing_size
        np.testing.assert_allclose(out.z_hw, alone.z_hw, atol=1e-4)
        np.testing.assert_allclose(out.std_z_hw, alone.std_z_hw, atol=1e-4)
        assert out.std_z_hw.mean() > 1e-3  # the noise matters: equal only because it is the same noise
    again = pipe(images[:1], generators=generators[:1])[0]  # each generator moved on by one frame's draw
    second = DepthFMPipeline(TorchBackend(tiny_model, num_steps=2), 128, ensemble_size=3, seed=5)
    second(images[0])
    np.testing.assert_allclose(again.z_hw, second(images[0]).z_hw, atol=1e-4)
    with pytest.raises(InputError, match="2 noise generators for 4 images"):
        pipe(images, generators=generators[:2])


def test_batches_never_exceed_the_engines_max_batch(tiny_model):
    backend = CountingBackend(TorchBackend(tiny_model, num_steps=1), max_batch=2)
    outs = DepthFMPipeline(backend, 64)([_rgb(48, 64, s) for s in range(5)])
    assert backend.calls == [2, 2, 1] and len(outs) == 5


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_reduced_precision_stays_close_to_fp32(tiny_model, dtype):
    from depthfm_ros.models.architectures import build_tiny_depthfm
    rgb = _rgb(64, 64)
    ref = DepthFMPipeline(TorchBackend(build_tiny_depthfm(seed=0), num_steps=1), 64)(rgb)
    low = DepthFMPipeline(TorchBackend(build_tiny_depthfm(seed=0), num_steps=1, dtype=dtype), 64)(rgb)
    assert np.isfinite(low.z_hw).all()
    assert np.corrcoef(ref.z_hw.ravel(), low.z_hw.ravel())[0, 1] > 0.98


def test_bad_inputs_raise_typed_errors(tiny_model):
    pipe = DepthFMPipeline(TorchBackend(tiny_model, num_steps=1), 64)
    with pytest.raises(InputError):
        pipe(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(InputError):
        pipe(np.zeros((10, 10), np.float32))
    with pytest.raises(InputError):
        pipe([])
    with pytest.raises(InputError, match="ensemble_size"):
        DepthFMPipeline(TorchBackend(tiny_model, num_steps=1), 64, ensemble_size=0)


def test_noising_step_0_says_the_ensemble_cannot_spread(official_tiny, tmp_path, capsys):
    """The official tiny fixture has noising_step 0: every member is the same, the uncertainty all zero."""
    from depthfm_ros.cli.predict import main
    from depthfm_ros.models.architectures import build_tiny_depthfm

    assert main(["--checkpoint", str(official_tiny / "tiny.ckpt"), "--vae", str(official_tiny / "vae"),
                 "--ensemble-size", "2", "--num-steps", "1", "--processing-resolution", "64", "-o", str(tmp_path),
                 str(official_tiny / "image.png")]) == 0
    assert "ensemble members are identical" in capsys.readouterr().err
    quiet = DepthFMPipeline(TorchBackend(build_tiny_depthfm(noising_step=0), num_steps=1), 64, 2)
    assert "ensemble members are identical" in quiet.identical_members_warning()
    for noising_step, members in ((400, 2), (0, 1)):
        pipe = DepthFMPipeline(TorchBackend(build_tiny_depthfm(noising_step=noising_step), num_steps=1), 64, members)
        assert pipe.identical_members_warning() == ""


def test_tensor_processing_on_cpu_tensors_gives_the_numpy_path_results():
    """The GPU pre/post path (tensor_processing) run on CPU tensors: the same noise, the model input within one
    level where it is resized (OpenCV's fixed-point uint8 resize), the same outputs within float32 rounding for an
    image the model sees as it is, and the same resize back to the input size."""
    backend = TorchBackend(build_tiny_depthfm(seed=0, noising_step=400), num_steps=1, device="cpu")
    rng = np.random.default_rng(3)

    def pipelines():
        return (DepthFMPipeline(backend, processing_resolution=256, ensemble_size=3, seed=7),
                DepthFMPipeline(backend, processing_resolution=256, ensemble_size=3, seed=7, tensor_processing=True))

    plain, tensors = pipelines()
    assert plain.tensor_device is None and tensors.tensor_device == torch.device("cpu")
    rgb = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    (rgb_bchw, noise), (rgb_t, noise_t) = plain.preprocess([rgb], 192, 256), tensors.preprocess([rgb], 192, 256)
    np.testing.assert_array_equal(noise_t.numpy(), noise)
    assert np.abs(rgb_t.numpy() - rgb_bchw).max() * 127.5 <= 1.0 + 1e-4

    plain, tensors = pipelines()
    at_size = rng.integers(0, 256, (192, 256, 3), dtype=np.uint8)
    a, b = plain(at_size), tensors(at_size)
    assert b.z_hw.shape == (192, 256) and b.std_z_hw.std() > 0
    np.testing.assert_allclose(b.z_hw, a.z_hw, atol=2e-6)
    np.testing.assert_allclose(b.std_z_hw, a.std_z_hw, atol=2e-6)
    np.testing.assert_allclose(b.relative_depth_hw, a.relative_depth_hw, atol=2e-6)
    members = backend.run(rgb_bchw, noise)
    for ref, out in zip(plain.postprocess(members, 240, 320), postprocess_tensor(torch.from_numpy(members), 240, 320)):
        np.testing.assert_allclose(out, ref, atol=2e-6)


def test_tensor_processing_needs_a_tensor_backend():
    class NumpyOnly(Backend):
        name, num_steps = "numpy-only", 1

        def run(self, rgb_bchw, noise):
            return np.zeros((rgb_bchw.shape[0], 1, *rgb_bchw.shape[2:]), np.float32)

    assert DepthFMPipeline(NumpyOnly()).tensor_device is None  # auto: numpy path
    with pytest.raises(InputError, match="tensor"):
        DepthFMPipeline(NumpyOnly(), tensor_processing=True)
