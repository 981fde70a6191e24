"""A stand-in DepthFM engine that predicts a known scene exactly (tests, soaks, demos of metric depth).

Random-weight models show that the mechanics run, never that an accepted metre is right: a claim about metres is
checked with an engine whose output is the scene's own log depth up to DepthFM's affine ambiguity.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from ..backends.base import Backend


class SceneBackend(Backend):
    """Predicts a known scene exactly up to DepthFM's affine ambiguity: z = (log depth - b)/a at the processing
    size, plus ``member_noise`` times the member's noise (so ensembles have a spread); ``delay_sec``: how long each
    call takes (an engine on a GPU: the CPU is free meanwhile)."""

    name = "scene"
    num_steps = 1

    def __init__(self, depth_hw_m: np.ndarray, a: float = 2.0, b: float | None = None, member_noise: float = 0.01,
                 delay_sec: float = 0.0):
        depth = np.where(np.isfinite(depth_hw_m), depth_hw_m, np.nanmax(depth_hw_m))
        self.log_depth = np.log(depth).astype(np.float32)
        self.a, self.b = a, float(np.median(self.log_depth)) if b is None else b
        self.member_noise, self.delay_sec = member_noise, delay_sec

    def run(self, rgb_bchw, noise):
        t0 = time.perf_counter()
        m = self.check_inputs(rgb_bchw, noise)
        b, _, h, w = rgb_bchw.shape
        z = (cv2.resize(self.log_depth, (w, h), interpolation=cv2.INTER_AREA) - self.b) / self.a
        spread = np.kron(noise[:, 0], np.ones((8, 8), np.float32)).reshape(b, m, h, w)
        out = (z[None, None] + self.member_noise * spread).astype(np.float32)
        time.sleep(max(0.0, self.delay_sec - (time.perf_counter() - t0)))
        return out
