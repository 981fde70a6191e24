"""Pinhole camera model shared by fusion, point clouds and the ROS layer (no ROS import)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "none", "")


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of one image size, as in sensor_msgs/CameraInfo (K row-major 3x3, D as OpenCV wants it, P the
    3x4 projection of the rectified image, or None when unknown)."""

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    distortion_model: str = "plumb_bob"
    P: np.ndarray | None = None

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
        if self.P is not None:
            P = np.asarray(self.P, dtype=np.float64).reshape(3, 4)
            valid = np.all(np.isfinite(P)) and P[0, 0] > 0 and P[1, 1] > 0
            object.__setattr__(self, "P", P if valid else None)  # an all-zero P (uncalibrated) is no P

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

    def rectified(self) -> "PinholeCamera":
        """The camera of the rectified image, as image_geometry's PinholeCameraModel sees it: fx, fy, cx, cy from
        P (K when there is no P), no distortion. Use it for an image that is rectified (image_rect)."""
        K = self.K if self.P is None else self.P[:, :3]
        return PinholeCamera(self.width, self.height, K, np.zeros(5), "plumb_bob",
                             np.hstack([K, np.zeros((3, 1))]) if self.P is None else self.P)

    def scaled(self, width: int, height: int) -> "PinholeCamera":
        """The same camera seen through a resize to ``width`` x ``height`` (pixel centres stay aligned)."""
        sx, sy = width / self.width, height / self.height

        def scale(M: np.ndarray) -> np.ndarray:
            M = M.copy()
            M[0, :] *= sx  # fx, skew, cx·(stereo Tx)
            M[1, :] *= sy
            M[0, 2] += 0.5 * sx - 0.5
            M[1, 2] += 0.5 * sy - 0.5
            return M

        return PinholeCamera(width, height, scale(self.K), self.D.copy(), self.distortion_model,
                             None if self.P is None else scale(self.P))

    def undistorted_rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Normalized image coordinates (x/z, y/z) of every pixel centre, each (H, W) float32, through K and D
        (OpenCV's iterative undistortPoints, run to 1e-10)."""
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        if not self.is_distorted:
            xn = (u - self.cx - self.K[0, 1] * (v - self.cy) / self.fy) / self.fx
            return xn.astype(np.float32), ((v - self.cy) / self.fy).astype(np.float32)
        import cv2

        pts = np.stack([u.ravel(), v.ravel()], 1).reshape(-1, 1, 2)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-10)
        xy = cv2.undistortPoints(pts, self.K, self.D, criteria=criteria).reshape(self.height, self.width, 2)
        return xy[..., 0].astype(np.float32), xy[..., 1].astype(np.float32)
