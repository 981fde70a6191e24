"""The one interface every engine implements: images in [-1, 1] + explicit noise -> ensemble members of z."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..errors import BackendError, InputError
from ..shapes import ensemble_size_of, size_in_range, size_range_text


class Backend(ABC):
    """An engine that runs encode -> ``num_steps`` Euler steps -> decode -> channel mean.

    ``run`` takes images (b, 3, h, w) float32 in [-1, 1] and noise (b*M, 4, h/8, w/8) float32 and returns the
    decoded log-depth value of every member, (b, M, h, w) float32. Engines built for one shape (TensorRT, a static
    ONNX graph) report it in ``fixed_size``/``fixed_ensemble_size`` and refuse others with a BackendError; graphs
    exported with dynamic spatial axes report ``size_range`` (min_h, min_w, max_h, max_w) instead of a fixed size.
    An engine whose profile caps the images per call reports it in ``max_batch`` (the pipeline splits batches).
    """

    name: str = "base"
    num_steps: int
    noising_step: int = 0
    fixed_size: tuple[int, int] | None = None
    fixed_ensemble_size: int | None = None
    size_range: tuple[int, int, int, int] | None = None
    max_batch: int | None = None  # images per call the engine takes at most (a TensorRT profile); None: any

    @abstractmethod
    def run(self, rgb_bchw: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """z members (b, M, h, w) for images (b, 3, h, w) and noise (b*M, 4, h/8, w/8)."""

    @property
    def tensor_device(self):
        """The torch device of an engine that also takes and returns torch tensors there (``run_tensors(rgb_bchw,
        noise)``, as :meth:`run` on tensors), else None: the pipeline then pre/post-processes with numpy."""
        return None

    def check_inputs(self, rgb_bchw: np.ndarray, noise: np.ndarray) -> int:
        """Validate shapes against this engine; return the ensemble size M."""
        if rgb_bchw.ndim != 4 or rgb_bchw.shape[1] != 3:
            raise BackendError(f"{self.name}: images must be (b, 3, h, w), got {rgb_bchw.shape}")
        b, _, h, w = rgb_bchw.shape
        if self.fixed_size is not None and (h, w) != tuple(self.fixed_size):
            raise BackendError(f"{self.name}: engine was built for {self.fixed_size[0]}x{self.fixed_size[1]}, "
                               f"got {h}x{w}; rebuild it or set the processing resolution to match")
        if self.size_range is not None and not size_in_range(h, w, self.size_range):
            raise BackendError(f"{self.name}: engine takes {size_range_text(self.size_range)} (multiples of 64), got "
                               f"{h}x{w}; change the processing resolution or re-export with a wider --size-range")
        try:
            m = ensemble_size_of(noise.shape, b, h, w)
        except InputError as exc:
            raise BackendError(f"{self.name}: {exc}") from exc
        if self.fixed_ensemble_size is not None and m != self.fixed_ensemble_size:
            raise BackendError(f"{self.name}: engine was built for ensemble size {self.fixed_ensemble_size}, got {m}")
        return m

    def describe(self) -> str:
        return f"{self.name} (steps={self.num_steps})"
