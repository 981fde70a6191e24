"""Projection and back-projection between the camera and 3-D points (pure numpy, REP-103/REP-118).

Camera optical frame: x right, y down, z forward; depth is the optical-axis z in metres; pixel centres at integer
coordinates (OpenCV). A *sparse depth image* is ``(H, W) float32`` metres with NaN where there is no return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import InputError
from ..processing import check_rgb
from .camera import PinholeCamera
from .masks import combined_mask, finite_depth_mask


class CameraPoints(NamedTuple):
    """Back-projected points. ``xyz`` float32 metres, (N, 3) dense or (h, w, 3) organized with NaN where invalid;
    ``rgb`` uint8 with the same leading shape, or None when no image was given."""

    xyz: np.ndarray
    rgb: np.ndarray | None


def transform_from_xyz_quat(xyz_3, quat_xyzw_4) -> np.ndarray:
    """4x4 homogeneous transform from a translation (x, y, z) and a unit quaternion (x, y, z, w), ROS order."""
    xyz = np.asarray(xyz_3, dtype=np.float64).ravel()
    quat = np.asarray(quat_xyzw_4, dtype=np.float64).ravel()
    if xyz.shape != (3,) or quat.shape != (4,) or not (np.all(np.isfinite(xyz)) and np.all(np.isfinite(quat))):
        raise InputError(f"need finite xyz (3,) and quaternion xyzw (4,), got shapes {xyz.shape} and {quat.shape}")
    norm = float(np.linalg.norm(quat))
    if norm < 1e-9:
        raise InputError("quaternion has zero norm")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(quat / norm).as_matrix()
    T[:3, 3] = xyz
    return T


def _check_transform(T_44) -> np.ndarray:
    T = np.asarray(T_44, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)) or not np.allclose(T[3], [0, 0, 0, 1]):
        raise InputError(f"transform must be a finite 4x4 homogeneous matrix, got shape {T.shape}")
    return T


def _max_monotonic_radius(D: np.ndarray) -> float:
    """Largest undistorted radius r = |(x/z, y/z)| up to which the radial distortion r·f(r) still increases.

    Beyond it the polynomial folds back and far off-axis points would land inside the image.
    """
    k = np.zeros(8)
    k[: min(len(D), 8)] = D[:8]
    k1, k2, _, _, k3, k4, k5, k6 = k
    r = np.linspace(0.0, 20.0, 4001)
    r2 = r * r
    rho = r * (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    bad = np.flatnonzero((np.diff(rho) <= 0) | ~np.isfinite(rho[1:]))
    return float(r[bad[0]]) if len(bad) else np.inf


def project_points(
    points_n3,
    camera: PinholeCamera,
    T_cam_lidar=None,
    *,
    size_wh: tuple[int, int] | None = None,
    min_depth_m: float = 0.1,
    max_depth_m: float = np.inf,
) -> np.ndarray:
    """Project LiDAR points into the camera as a sparse depth image ``(H, W) float32`` metres, NaN where empty.

    ``points_n3`` are in the LiDAR frame, ``T_cam_lidar`` maps them to the camera optical frame (identity if
    None). ``size_wh`` re-targets ``camera`` to a processing resolution with :meth:`PinholeCamera.scaled`.
    Distortion (plumb_bob / rational_polynomial) goes through ``cv2.projectPoints``. Points that are non-finite,
    closer than ``min_depth_m`` (or behind), farther than ``max_depth_m`` or outside the image are dropped; when
    several points hit one pixel the nearest wins (occlusion). Depth is the optical-axis z (REP-118).
    """
    points = np.asarray(points_n3)
    if points.ndim != 2 or points.shape[1] < 3 or not np.issubdtype(points.dtype, np.number):
        raise InputError(f"points must be a numeric (N, 3) array, got {points.dtype} {points.shape}")
    if size_wh is not None:
        camera = camera.scaled(int(size_wh[0]), int(size_wh[1]))
    w, h = camera.width, camera.height
    depth_hw_m = np.full((h, w), np.nan, dtype=np.float32)

    xyz = points[:, :3].astype(np.float64)
    if T_cam_lidar is not None:
        T = _check_transform(T_cam_lidar)
        xyz = xyz @ T[:3, :3].T + T[:3, 3]
    z = xyz[:, 2]
    keep = np.isfinite(xyz[:, 0]) & np.isfinite(xyz[:, 1]) & (z > max(min_depth_m, 1e-9)) & (z <= max_depth_m)
    xyz = np.compress(keep, xyz, axis=0)
    z = xyz[:, 2]
    if len(z) == 0:
        return depth_hw_m

    distorted = camera.is_distorted and camera.distortion_model not in ("none", "")
    if distorted:
        # Far outside the field of view the polynomial folds back into the image; drop those first.
        inside = np.hypot(xyz[:, 0], xyz[:, 1]) / z < _max_monotonic_radius(camera.D)
        xyz, z = xyz[inside], z[inside]
        if len(z) == 0:
            return depth_hw_m
        uv = cv2.projectPoints(xyz.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), camera.K, camera.D)[0].reshape(-1, 2)
        u, v = uv[:, 0], uv[:, 1]
    else:
        K = camera.K
        u = (K[0, 0] * xyz[:, 0] + K[0, 1] * xyz[:, 1]) / z + K[0, 2]
        v = K[1, 1] * xyz[:, 1] / z + K[1, 2]

    col = np.floor(u + 0.5)
    row = np.floor(v + 0.5)
    inside = np.isfinite(col) & np.isfinite(row) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    flat = row[inside].astype(np.int64) * w + col[inside].astype(np.int64)
    z = z[inside]
    nearest = np.full(h * w, np.inf)
    np.minimum.at(nearest, flat, z)  # several points on one pixel: the nearest wins (occlusion)
    hit = nearest < np.inf
    depth_hw_m.ravel()[hit] = nearest[hit]
    return depth_hw_m


_RAYS_CACHE: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}


def _undistorted_rays(camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`PinholeCamera.undistorted_rays`, cached per camera (a node sees one camera: the undistortion of every
    pixel is computed once)."""
    key = np.array([camera.width, camera.height], np.float64).tobytes() + camera.K.tobytes() + camera.D.tobytes()
    if key not in _RAYS_CACHE:
        if len(_RAYS_CACHE) >= 4:
            _RAYS_CACHE.pop(next(iter(_RAYS_CACHE)))
        _RAYS_CACHE[key] = camera.undistorted_rays()
    return _RAYS_CACHE[key]


def _check_points_inputs(depth_hw_m: np.ndarray, camera: PinholeCamera, stride, rgb_hwc_u8) -> np.ndarray:
    depth_hw_m = np.asarray(depth_hw_m)
    if depth_hw_m.ndim != 2 or depth_hw_m.shape != (camera.height, camera.width):
        raise InputError(f"depth shape {depth_hw_m.shape} does not match the camera's {camera.height}x{camera.width};"
                         " use camera.scaled(width, height)")
    if not (isinstance(stride, (int, np.integer)) and stride >= 1):
        raise InputError(f"stride must be a positive integer, got {stride!r}")
    if rgb_hwc_u8 is not None and check_rgb(rgb_hwc_u8).shape[:2] != depth_hw_m.shape:
        raise InputError(f"rgb shape {rgb_hwc_u8.shape[:2]} does not match depth shape {depth_hw_m.shape}")
    return depth_hw_m


def _strided_points(z: np.ndarray, keep: np.ndarray, camera: PinholeCamera, stride: int, rgb: np.ndarray | None,
                    organized: bool) -> CameraPoints:
    """Points of the strided depth ``z`` (every ``stride``-th pixel of ``camera``'s image) where ``keep``."""
    if camera.is_distorted:  # per-pixel rays (H, W)
        ray_x, ray_y = (r[::stride, ::stride] for r in _undistorted_rays(camera))
    else:  # separable: one ray_x per column, one ray_y per row
        ray_x = ((np.arange(0, camera.width, stride) - camera.cx) / camera.fx).astype(np.float32)[None, :]
        ray_y = ((np.arange(0, camera.height, stride) - camera.cy) / camera.fy).astype(np.float32)[:, None]
    z = z.astype(np.float32, copy=False)
    if organized:
        xyz = np.empty((*z.shape, 3), np.float32)
        np.multiply(ray_x, z, out=xyz[..., 0])
        np.multiply(ray_y, z, out=xyz[..., 1])
        xyz[..., 2] = z
        xyz[~keep] = np.nan
        return CameraPoints(xyz, None if rgb is None else np.ascontiguousarray(rgb))
    xyz = cv2.merge([np.multiply(ray_x, z), np.broadcast_to(np.multiply(ray_y, z), z.shape), np.ascontiguousarray(z)])
    rgb = None if rgb is None else np.ascontiguousarray(rgb)
    if keep.all():  # every pixel is a point (a metric depth without filters): no gather
        return CameraPoints(xyz.reshape(-1, 3), None if rgb is None else rgb.reshape(-1, 3))
    # Dense: the kept rows of the interleaved planes, each point's 12 (rgb: 3) bytes gathered as one item
    kept = keep.reshape(-1)
    xyz = xyz.reshape(-1, 3).view(np.dtype((np.void, 12))).reshape(-1)[kept].view(np.float32).reshape(-1, 3)
    if rgb is not None:
        rgb = rgb.reshape(-1, 3).view(np.dtype((np.void, 3))).reshape(-1)[kept].view(np.uint8).reshape(-1, 3)
    return CameraPoints(xyz, rgb)


def depth_to_points(depth_hw_m: np.ndarray, camera: PinholeCamera, stride: int = 1,
                    rgb_hwc_u8: np.ndarray | None = None, organized: bool = False,
                    valid_hw: np.ndarray | None = None) -> CameraPoints:
    """Back-project a metric depth map through a pinhole camera.

    Pixel (u, v) with depth z becomes ``((u - cx) z / fx, (v - cy) z / fy, z)`` (integer u, v are pixel centres).
    Every ``stride``-th pixel of every ``stride``-th row is used. A pixel is a point when its depth is finite and
    > 0 and ``valid_hw`` (full resolution, e.g. the filters above and-ed) is True there.

    Dense (default): ``xyz`` (N, 3) in row-major pixel order. Organized: ``xyz`` (ceil(H/stride), ceil(W/stride), 3)
    with NaN at invalid pixels. The camera must describe the depth's size. A distorted camera (a raw image) is
    undistorted: each pixel's ray comes from :meth:`PinholeCamera.undistorted_rays` (K and D).
    """
    depth_hw_m = _check_points_inputs(depth_hw_m, camera, stride, rgb_hwc_u8)
    if valid_hw is not None and valid_hw.shape != depth_hw_m.shape:
        raise InputError(f"valid mask shape {valid_hw.shape} does not match depth shape {depth_hw_m.shape}")
    z = depth_hw_m[::stride, ::stride]
    keep = finite_depth_mask(z)
    if valid_hw is not None:
        keep &= valid_hw[::stride, ::stride]
    rgb = None if rgb_hwc_u8 is None else rgb_hwc_u8[::stride, ::stride]
    return _strided_points(z, keep, camera, stride, rgb, organized)


@dataclass(frozen=True)
class PointsOptions:
    """Which pixels become points: every ``stride``-th; ``organized`` keeps the grid (NaN where filtered); ``rgb``
    adds colour; depth within [``min_range_m``, ``max_range_m``] (0 = no limit); std at most ``max_std_m`` and
    ``max_relative_std`` of depth (0 = off); flying pixels across a neighbour ratio ``edge_ratio`` (0 = off)."""

    stride: int = 1
    organized: bool = False
    rgb: bool = True
    min_range_m: float = 0.0
    max_range_m: float = 0.0
    max_std_m: float = 0.0
    max_relative_std: float = 0.0
    edge_ratio: float = 0.0


def points_from_depth(depth_hw_m: np.ndarray, std_hw_m: np.ndarray | None, camera: PinholeCamera,
                      options: PointsOptions, rgb_hwc_u8: np.ndarray | None = None) -> CameraPoints:
    """Metric depth -> filtered points in the camera optical frame (``camera`` at the depth's size, rectified).

    The stride comes first: the filters see every ``stride``-th pixel of every ``stride``-th row, and the flying-pixel
    test compares neighbours of that grid (``stride`` pixels apart, as they are in the cloud). A torch depth tensor
    (a CUDA engine's) is filtered and back-projected on its device (:mod:`.points_torch`); the points come back as
    numpy arrays either way.
    """
    if type(depth_hw_m).__module__.startswith("torch"):  # metric depth on a CUDA engine's device
        from .points_torch import points_from_depth_tensor

        return points_from_depth_tensor(depth_hw_m, std_hw_m, camera, options, rgb_hwc_u8)
    s = options.stride
    depth_hw_m = _check_points_inputs(depth_hw_m, camera, s, rgb_hwc_u8 if options.rgb else None)
    if std_hw_m is not None and np.shape(std_hw_m) != depth_hw_m.shape:
        raise InputError(f"std shape {np.shape(std_hw_m)} does not match depth shape {depth_hw_m.shape}")
    z = depth_hw_m[::s, ::s]
    keep = combined_mask(z, None if std_hw_m is None else std_hw_m[::s, ::s], min_range_m=options.min_range_m,
                         max_range_m=options.max_range_m, max_std_m=options.max_std_m,
                         max_relative_std=options.max_relative_std, edge_ratio=options.edge_ratio)
    rgb = rgb_hwc_u8[::s, ::s] if options.rgb and rgb_hwc_u8 is not None else None
    return _strided_points(z, keep, camera, s, rgb, options.organized)
