"""Pinhole camera model shared by fusion, point clouds and the ROS layer (no ROS import)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "none", "")


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of one image size, as in sensor_msgs/CameraInfo (K row-major 3x3, D as OpenCV wants it)."""

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    distortion_model: str = "plumb_bob"

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        D = np.asarray(self.D, dtype=np.float64).ravel()
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"camera size must be positive, got {self.width}x{self.height}")
        if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.all(np.isfinite(K)):
            raise InputError(f"camera K needs positive finite fx, fy; got {K.ravel().tolist()}")
        if self.distortion_model not in DISTORTION_MODELS:
            raise InputError(f"unsupported distortion model {self.distortion_model!r}; use one of {DISTORTION_MODELS}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "D", D)

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def is_distorted(self) -> bool:
        return self.D.size > 0 and bool(np.any(self.D != 0))

    def scaled(self, width: int, height: int) -> "PinholeCamera":
        """The same camera seen through a resize to ``width`` x ``height`` (pixel centres stay aligned)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0, 0] *= sx
        K[0, 1] *= sx
        K[1, 1] *= sy
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return PinholeCamera(width, height, K, self.D.copy(), self.distortion_model)
