"""DepthFM pipeline: RGB uint8 in, log-depth z, relative depth and uncertainty out, at the input resolution."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .backends.base import Backend
from .errors import InputError
from .processing import check_rgb, members_to_input_size, processing_size, relative_depth, to_model_input
from .settings import ModelSettings
from .shapes import latent_noise_shape, size_in_range, size_range_text
from .tensor_processing import postprocess_tensor, to_model_input_tensor


@dataclass
class DepthPrediction:
    """One image's result. All maps are (H, W) float32 at the input resolution.

    ``z_hw``: decoded log-depth value (ensemble mean), affine in log metric depth (log d = a·z + b).
    ``relative_depth_hw``: the official relative depth, per-image min-max of exp(z) in [0, 1] (0 near, 1 far).
    ``std_z_hw``: per-pixel ensemble standard deviation of z (0 for one member), in z units.
    ``processing_size``: (h, w) the engine ran at; ``ensemble_size``: M; ``num_steps``: k.
    ``timings_ms``: preprocess / engine / postprocess wall times of the batch this image came in;
    ``batch_size``: images in that batch.
    """

    z_hw: np.ndarray
    relative_depth_hw: np.ndarray
    std_z_hw: np.ndarray
    processing_size: tuple[int, int]
    ensemble_size: int
    num_steps: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    batch_size: int = 1


class DepthFMPipeline:
    """Run a :class:`Backend` on RGB images.

    Args:
        backend: the engine (torch, onnxruntime, tensorrt).
        processing_resolution: longest side the model sees (multiple of 64; 0 keeps the input size rounded to 64).
            An engine built for a fixed size overrides it.
        ensemble_size: members per image, run as one batch; their std is the uncertainty.
        seed: seed of the noise generator (reproducible runs); None draws fresh entropy.
        tensor_processing: pre/post-process on the engine's torch device (:mod:`depthfm_ros.tensor_processing`);
            None (default) does so when the engine runs on a CUDA device, else with numpy/OpenCV on the CPU.
    """

    def __init__(self, backend: Backend, processing_resolution: int = 512, ensemble_size: int = 1,
                 seed: int | None = 0, tensor_processing: bool | None = None):
        if ensemble_size < 1:
            raise InputError(f"ensemble_size must be >= 1, got {ensemble_size}")
        processing_size(64, 64, processing_resolution)  # validates the resolution
        if backend.fixed_ensemble_size is not None and backend.fixed_ensemble_size != ensemble_size:
            raise InputError(f"backend was built for ensemble size {backend.fixed_ensemble_size}, "
                             f"asked for {ensemble_size}")
        self.backend = backend
        self.processing_resolution = processing_resolution
        self.ensemble_size = ensemble_size
        self.rng = np.random.default_rng(seed)
        device = backend.tensor_device
        if tensor_processing is None:
            tensor_processing = device is not None and device.type == "cuda"
        if tensor_processing and device is None:
            raise InputError(f"{backend.name} does not compute on torch tensors: tensor_processing needs one that does")
        self.tensor_device = device if tensor_processing else None

    def identical_members_warning(self) -> str:
        """Why the ensemble std will be zero everywhere ("" when it will not): noising_step 0 adds no noise."""
        if self.ensemble_size > 1 and self.backend.noising_step == 0:
            return (f"the model's noising_step is 0: no noise augmentation, so the {self.ensemble_size} ensemble "
                    "members are identical and the uncertainty is zero everywhere; ensemble_size 1 costs less")
        return ""

    @classmethod
    def from_settings(cls, settings: ModelSettings, backend: Backend) -> "DepthFMPipeline":
        """The pipeline ``settings`` describe around ``backend`` (:func:`depthfm_ros.backends.load_backend`)."""
        return cls(backend, settings.processing_resolution, settings.ensemble_size, seed=settings.seed)

    def size_for(self, height: int, width: int) -> tuple[int, int]:
        """Processing size for an input of ``height`` x ``width``."""
        if self.backend.fixed_size is not None:
            return tuple(self.backend.fixed_size)
        size = processing_size(height, width, self.processing_resolution)
        size_range = self.backend.size_range
        if size_range is not None and not size_in_range(*size, size_range):
            raise InputError(f"processing size {size[0]}x{size[1]} (processing_resolution "
                             f"{self.processing_resolution} for a {height}x{width} image) is outside the engine's "
                             f"{size_range_text(size_range)}; change "
                             "processing_resolution or re-export with a wider --size-range")
        return size

    def __call__(self, images: np.ndarray | list[np.ndarray],
                 generators: list[np.random.Generator] | None = None) -> DepthPrediction | list[DepthPrediction]:
        """Predict depth for one RGB uint8 HxWx3 image, or a list of them: images with the same processing size run
        as one batch (their input sizes may differ; each result is at its own input size; at most the engine's
        ``max_batch`` images per batch), the others in batches of their own.

        ``generators``: one noise generator per image (a camera's own, so that its frames get the noise a
        single-camera run of them would get); None draws every image's noise from this pipeline's generator.
        """
        single = isinstance(images, np.ndarray)
        batch = [images] if single else list(images)
        if not batch:
            raise InputError("no images given")
        if generators is not None and len(generators) != len(batch):
            raise InputError(f"{len(generators)} noise generators for {len(batch)} images")
        for rgb in batch:
            check_rgb(rgb)
        sizes = [self.size_for(*rgb.shape[:2]) for rgb in batch]
        out: list[DepthPrediction | None] = [None] * len(batch)
        limit = self.backend.max_batch or len(batch)
        for size in dict.fromkeys(sizes):  # one batch per processing size (and engine profile), in order
            same = [i for i, s in enumerate(sizes) if s == size]
            for index in (same[k:k + limit] for k in range(0, len(same), limit)):
                group = self._run_batch([batch[i] for i in index], size,
                                        None if generators is None else [generators[i] for i in index])
                for i, prediction in zip(index, group):
                    out[i] = prediction
        return out[0] if single else out

    def preprocess(self, batch: list[np.ndarray], height: int, width: int,
                   generators: list[np.random.Generator] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Engine inputs for RGB images at the processing size: images (b, 3, h, w) in [-1, 1] and the ensemble
        noise (b*M, 4, h/8, w/8), from this pipeline's generator or each image's own ``generators`` entry (torch
        tensors on the engine's device with ``tensor_processing``; the noise is the same either way)."""
        if generators is None:
            noise = self.rng.standard_normal(latent_noise_shape(len(batch), self.ensemble_size, height, width),
                                             dtype=np.float32)
        else:  # each image's members from its own generator: what a batch of one would draw
            one = latent_noise_shape(1, self.ensemble_size, height, width)
            noise = np.concatenate([g.standard_normal(one, dtype=np.float32) for g in generators])
        if self.tensor_device is not None:
            rgb_bchw = torch.stack([to_model_input_tensor(rgb, height, width, self.tensor_device) for rgb in batch])
            return rgb_bchw, torch.from_numpy(noise).to(self.tensor_device, non_blocking=True)
        rgb_bchw = np.empty((len(batch), 3, height, width), np.float32)
        for rgb, out in zip(batch, rgb_bchw):
            to_model_input(rgb, height, width, out)
        return rgb_bchw, noise

    @staticmethod
    def postprocess(members_bmhw: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Engine output (b, M, h, w) -> z, its ensemble std and the relative depth, each (b, height, width)."""
        z_bhw, std_bhw = members_to_input_size(members_bmhw, height, width)
        return z_bhw, std_bhw, relative_depth(z_bhw)

    def _run_batch(self, batch: list[np.ndarray], size: tuple[int, int],
                   generators: list[np.random.Generator] | None = None) -> list[DepthPrediction]:
        t0 = time.perf_counter()
        h, w = size
        rgb_bchw, noise = self.preprocess(batch, h, w, generators)
        t1 = time.perf_counter()
        post = postprocess_tensor if self.tensor_device is not None else self.postprocess
        if self.tensor_device is not None:
            members = self.backend.run_tensors(rgb_bchw, noise)
        else:
            members = self.backend.run(rgb_bchw, noise)
        t2 = time.perf_counter()
        shapes = [rgb.shape[:2] for rgb in batch]
        if len(set(shapes)) == 1:
            z_bhw, std_bhw, depth_bhw = post(members, *shapes[0])
        else:  # input sizes differ (cameras of one processing size): each back to its own
            maps = [post(members[i:i + 1], *shape) for i, shape in enumerate(shapes)]
            z_bhw, std_bhw, depth_bhw = ([m[k][0] for m in maps] for k in range(3))
        t3 = time.perf_counter()
        timings = {"preprocess": 1e3 * (t1 - t0), "engine": 1e3 * (t2 - t1), "postprocess": 1e3 * (t3 - t2)}
        return [DepthPrediction(z, d, s, (h, w), self.ensemble_size,
                                self.backend.num_steps, dict(timings), len(batch))
                for z, d, s in zip(z_bhw, depth_bhw, std_bhw)]
