"""Rectify images of a raw, distorted camera (pure numpy + OpenCV), as image_proc's rectify node does.

A depth image + CameraInfo is read by every ROS consumer (depth_image_proc, image_geometry's PinholeCameraModel,
RViz, Nav2's depth layers) with P and no distortion: pixel (u, v) at depth z is ((u - cx)·z/fx, (v - cy)·z/fy, z).
That is only true of a rectified image, so depth of a raw distorted camera is remapped to the camera's rectified
view (:meth:`PinholeCamera.rectified`: P's fx, fy, cx, cy, D = 0) before it is published. The undistort map is
built once per calibration (``cv2.initUndistortRectifyMap``) and each image costs one ``cv2.remap``.

The rectification rotation R of a stereo calibration is not applied: the rectified image stays in the camera's own
optical frame, so back-projected points are in the image's ``frame_id`` (image_proc's rectified stereo images are
rotated by R but keep the frame_id).
"""

from __future__ import annotations

import cv2
import numpy as np

from .camera import PinholeCamera


class Rectifier:
    """Remaps images of one raw camera to its rectified camera; the maps are rebuilt only when the calibration or
    the image size changes (:attr:`builds` counts them)."""

    def __init__(self):
        self._key: bytes | None = None
        self._maps: tuple[np.ndarray, np.ndarray] | None = None
        self.camera: PinholeCamera | None = None
        self.builds = 0

    def use(self, raw: PinholeCamera) -> PinholeCamera:
        """Prepare for images of ``raw`` (at its size); returns the rectified camera that describes the results."""
        key = np.array([raw.width, raw.height], np.float64).tobytes() + raw.K.tobytes() + raw.D.tobytes() + (
            b"" if raw.P is None else raw.P.tobytes())
        if key != self._key:
            rectified = raw.rectified()
            self._maps = cv2.initUndistortRectifyMap(raw.K, raw.D, None, rectified.K, (raw.width, raw.height),
                                                     cv2.CV_32FC1)
            self._key, self.camera = key, rectified
            self.builds += 1
        return self.camera

    def __call__(self, image: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """``image`` (H, W) or (H, W, C) of the raw camera given to :meth:`use`, as the rectified camera sees it
        (bilinear; pixels whose ray misses the raw image get ``fill``: NaN, unknown, for float maps)."""
        if self._maps is None:
            raise RuntimeError("Rectifier.use(camera) first")
        map_x, map_y = self._maps
        if image.shape[:2] != map_x.shape:
            raise ValueError(f"image {image.shape[:2]} is not the camera's {map_x.shape}")
        if image.dtype == np.uint8:
            fill = 0
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=fill)
