"""Synthetic scenes with known metric depth, a simulated LiDAR and a simulated DepthFM prediction.

Everything lives in the camera optical frame (x right, y down, z forward), metres. Scenes are a slanted floor,
a back wall, optional side walls and boxes, ray-cast in numpy. Every random draw comes from the
``numpy.random.Generator`` passed in, so a seed fixes a scene, its LiDAR scan and its prediction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InputError
from ..geometry.camera import PinholeCamera

# Elevation rings in degrees: Velodyne VLP-16, HDL-32E, Ouster OS1-64; "random2pct" samples 2% of pixels.
LIDAR_ELEVATIONS_DEG = {
    "vlp16": np.linspace(-15.0, 15.0, 16),
    "hdl32": np.linspace(-30.67, 10.67, 32),
    "os64": np.linspace(-22.5, 22.5, 64),
}
LIDAR_PATTERNS = (*LIDAR_ELEVATIONS_DEG, "random2pct")

# LiDAR frame (x forward, y left, z up, REP-103) seen from the camera optical frame; mounted 10 cm above and
# 5 cm behind the camera.
T_CAM_LIDAR_DEFAULT = np.array(
    [
        [0.0, -1.0, 0.0, 0.0],
        [0.0, 0.0, -1.0, -0.10],
        [1.0, 0.0, 0.0, -0.05],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


@dataclass(frozen=True)
class Plane:
    """Infinite plane ``normal · X = offset`` with an RGB albedo in [0, 1]."""

    normal: tuple[float, float, float]
    offset: float
    albedo: tuple[float, float, float]


@dataclass(frozen=True)
class Box:
    """Box with centre, half sizes (x, y, z) and a yaw about the camera's vertical (y) axis in radians."""

    center: tuple[float, float, float]
    half_size: tuple[float, float, float]
    yaw: float
    albedo: tuple[float, float, float]


@dataclass(frozen=True)
class SceneSpec:
    """Geometry of one scene; surface ids are plane indices, then box indices offset by ``len(planes)``."""

    planes: tuple[Plane, ...]
    boxes: tuple[Box, ...]


@dataclass(frozen=True)
class SyntheticScene:
    """A rendered scene: ``depth_hw_m`` float32 z-depth, ``rgb_hwc_u8``, ``surface_id_hw`` int32 (-1 = miss)."""

    spec: SceneSpec
    camera: PinholeCamera
    depth_hw_m: np.ndarray
    rgb_hwc_u8: np.ndarray
    surface_id_hw: np.ndarray


@dataclass(frozen=True)
class LidarScan:
    """Points ``points_n3`` (float32, LiDAR frame) and the extrinsic ``T_cam_lidar`` (4x4) that maps them."""

    points_n3: np.ndarray
    T_cam_lidar: np.ndarray
    is_outlier_n: np.ndarray


@dataclass(frozen=True)
class SimulatedPrediction:
    """DepthFM-like output: ``z_hw`` with ``log depth ≈ a·z + b`` up to shape distortion, and ``std_z_hw``."""

    z_hw: np.ndarray
    std_z_hw: np.ndarray
    a: float
    b: float
    distortion_log_hw: np.ndarray


def default_camera(width: int = 320, height: int = 240, hfov_deg: float = 70.0) -> PinholeCamera:
    """Undistorted pinhole camera with square pixels and the principal point at the image centre."""
    f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
    K = np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])
    return PinholeCamera(width, height, K, np.zeros(5), "plumb_bob")


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def cast_rays(spec: SceneSpec, origins_n3: np.ndarray,
              dirs_n3: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit along ``origin + t·dir`` (t > 0): returns ``t_n`` (inf on miss), surface ids, unit normals."""
    o = np.broadcast_to(np.asarray(origins_n3, dtype=np.float64), np.shape(dirs_n3))
    d = np.asarray(dirs_n3, dtype=np.float64)
    n = len(d)
    t_best = np.full(n, np.inf)
    ids = np.full(n, -1, dtype=np.int32)
    normals = np.zeros((n, 3))
    eps = 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, plane in enumerate(spec.planes):
            nrm = np.asarray(plane.normal, dtype=np.float64)
            nrm = nrm / np.linalg.norm(nrm)
            off = plane.offset / np.linalg.norm(plane.normal)
            t = (off - o @ nrm) / (d @ nrm)
            hit = (t > eps) & (t < t_best)
            t_best[hit], ids[hit] = t[hit], k
            normals[hit] = nrm
        for k, box in enumerate(spec.boxes):
            R = _yaw_matrix(box.yaw)
            hs = np.asarray(box.half_size)
            ol = (o - np.asarray(box.center)) @ R  # box frame: R^T (o - c)
            dl = d @ R
            t1, t2 = (-hs - ol) / dl, (hs - ol) / dl
            t_near, t_far = np.fmin(t1, t2), np.fmax(t1, t2)
            t_in = np.max(t_near, axis=1)
            t_out = np.min(t_far, axis=1)
            hit = (t_out >= t_in) & (t_in > eps) & (t_in < t_best)
            t_best[hit], ids[hit] = t_in[hit], len(spec.planes) + k
            axis = np.argmax(t_near[hit], axis=1)
            local = np.zeros((int(hit.sum()), 3))
            local[np.arange(len(axis)), axis] = -np.sign(dl[hit][np.arange(len(axis)), axis])
            normals[hit] = local @ R.T
    return t_best, ids, normals


def random_scene_spec(rng: np.random.Generator) -> SceneSpec:
    """Slanted floor, back wall at 7–15 m, side walls with probability 1/2 each, 2–5 boxes on the floor."""
    cam_height = rng.uniform(1.0, 1.6)
    slope, roll = rng.uniform(-0.05, 0.12), rng.uniform(-0.05, 0.05)
    wall_dist, wall_yaw = rng.uniform(7.0, 15.0), rng.uniform(-0.25, 0.25)

    def albedo() -> tuple[float, float, float]:
        return tuple(float(c) for c in rng.uniform(0.2, 0.9, 3))

    planes = [
        Plane((roll, 1.0, slope), cam_height, albedo()),  # floor: y + roll·x + slope·z = height
        Plane((np.sin(wall_yaw), 0.0, np.cos(wall_yaw)), wall_dist, albedo()),
    ]
    for side in (-1.0, 1.0):
        if rng.random() < 0.5:
            planes.append(Plane((side, 0.0, 0.0), rng.uniform(2.5, 5.0), albedo()))
    boxes = []
    for _ in range(int(rng.integers(2, 6))):
        hs = rng.uniform([0.2, 0.2, 0.2], [1.0, 1.0, 0.8])
        x, z = rng.uniform(-3.0, 3.0), rng.uniform(1.8, wall_dist - 1.5)
        floor_y = cam_height - roll * x - slope * z
        boxes.append(Box((x, floor_y - hs[1], z), tuple(hs), rng.uniform(-0.8, 0.8), albedo()))
    return SceneSpec(tuple(planes), tuple(boxes))


def _texture(points_n3: np.ndarray, ids: np.ndarray, rng_phase: np.ndarray) -> np.ndarray:
    """Procedural texture in [0, 1]: a 3-D checker plus two sinusoids per surface."""
    p = points_n3
    checker = (np.floor(p[:, 0] / 0.4) + np.floor(p[:, 1] / 0.4) + np.floor(p[:, 2] / 0.4)) % 2
    ph = rng_phase[np.maximum(ids, 0)]
    waves = np.sin(p @ np.array([7.0, 3.0, 5.0]) + ph[:, 0]) * np.sin(p @ np.array([-2.0, 11.0, 4.0]) + ph[:, 1])
    return 0.55 + 0.3 * checker - 0.15 + 0.15 * waves


def render_scene(spec: SceneSpec, camera: PinholeCamera, rng: np.random.Generator | None = None) -> SyntheticScene:
    """Ray-cast ``spec`` through ``camera``: z-depth in metres, textured shaded RGB, surface ids. A distorted camera
    (D != 0) renders the raw image: each pixel's ray through K and D."""
    rng = rng if rng is not None else np.random.default_rng(0)
    h, w = camera.height, camera.width
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    xn = (u - camera.cx - camera.K[0, 1] * (v - camera.cy) / camera.fy) / camera.fx
    yn = (v - camera.cy) / camera.fy
    if camera.is_distorted:
        xn, yn = (r.astype(np.float64) for r in camera.undistorted_rays())
    dirs = np.stack([xn, yn, np.ones_like(u)], -1).reshape(-1, 3)
    t, ids, normals = cast_rays(spec, np.zeros(3), dirs)  # dirs have z = 1, so t is z-depth
    points = dirs * np.where(np.isfinite(t), t, 0.0)[:, None]
    albedos = np.array([s.albedo for s in (*spec.planes, *spec.boxes)])
    phases = rng.uniform(0, 2 * np.pi, (len(albedos), 2))
    light = np.array([0.3, -0.8, -0.5]) / np.linalg.norm([0.3, -0.8, -0.5])
    shade = 0.45 + 0.55 * np.abs(normals @ light)
    rgb = albedos[np.maximum(ids, 0)] * (_texture(points, ids, phases) * shade)[:, None]
    rgb[ids < 0] = 0.0
    rgb_hwc_u8 = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(h, w, 3)
    depth = np.where(ids >= 0, t, np.nan).astype(np.float32).reshape(h, w)
    return SyntheticScene(spec, camera, depth, rgb_hwc_u8, ids.reshape(h, w))


def make_scene(rng: np.random.Generator, width: int = 320, height: int = 240) -> SyntheticScene:
    """A random scene rendered through :func:`default_camera` of the given size."""
    return render_scene(random_scene_spec(rng), default_camera(width, height), rng)


def moved_scene(spec: SceneSpec, offset_xyz: np.ndarray) -> SceneSpec:
    """The scene seen from a camera displaced by ``offset_xyz`` (optical frame, metres), same orientation."""
    planes = tuple(dataclasses.replace(p, offset=p.offset - float(np.dot(p.normal, offset_xyz))) for p in spec.planes)
    boxes = tuple(dataclasses.replace(b, center=tuple(np.asarray(b.center) - offset_xyz)) for b in spec.boxes)
    return SceneSpec(planes, boxes)


def camera_path(k: int) -> np.ndarray:
    """Camera position of frame ``k`` of a drive: forward 0.15 m a frame with a gentle sideways sway."""
    return np.array([0.4 * np.sin(0.3 * k), 0.0, 0.15 * k])


def _corrupt_ranges(
    range_n: np.ndarray, rng: np.random.Generator, range_noise_m: float, outlier_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    noisy = range_n + rng.normal(0.0, range_noise_m, len(range_n))
    outlier = rng.random(len(range_n)) < outlier_fraction
    noisy[outlier] = rng.uniform(1.0, 20.0, int(outlier.sum()))  # gross errors: multipath, dust, glass
    return np.maximum(noisy, 0.05), outlier


def simulate_lidar(
    scene: SyntheticScene,
    pattern: str,
    rng: np.random.Generator,
    *,
    T_cam_lidar: np.ndarray | None = None,
    azimuth_step_deg: float = 0.2,
    range_noise_m: float = 0.02,
    outlier_fraction: float = 0.0,
    max_range_m: float = 100.0,
) -> LidarScan:
    """A LiDAR scan of ``scene`` in the LiDAR frame.

    Spinning patterns (``vlp16``, ``hdl32``, ``os64``) cast a full 360° sweep of elevation rings every
    ``azimuth_step_deg`` from the LiDAR origin; ``random2pct`` returns 2% of the camera pixels (uniformly at
    random) at their true depth. Ranges get Gaussian noise (``range_noise_m``) along the ray and a fraction
    ``outlier_fraction`` is replaced by uniform ranges in 1–20 m.
    """
    T = np.asarray(T_CAM_LIDAR_DEFAULT if T_cam_lidar is None else T_cam_lidar, dtype=np.float64)
    R, t_cl = T[:3, :3], T[:3, 3]
    if pattern == "random2pct":
        cam = scene.camera
        valid = np.flatnonzero(np.isfinite(scene.depth_hw_m.ravel()))
        pick = rng.choice(valid, size=int(round(0.02 * cam.width * cam.height)), replace=False)
        rows, cols = np.divmod(pick, cam.width)
        depth = scene.depth_hw_m.ravel()[pick].astype(np.float64)
        dirs_cam = np.stack([(cols - cam.cx) / cam.fx, (rows - cam.cy) / cam.fy, np.ones(len(pick))], 1)
        ray_len = np.linalg.norm(dirs_cam, axis=1)
        rng_m, outlier = _corrupt_ranges(depth * ray_len, rng, range_noise_m, outlier_fraction)
        points_cam = dirs_cam / ray_len[:, None] * rng_m[:, None]
        points_lidar = (points_cam - t_cl) @ R  # R^T (p - t)
        return LidarScan(points_lidar.astype(np.float32), T, outlier)
    if pattern not in LIDAR_ELEVATIONS_DEG:
        raise InputError(f"unknown LiDAR pattern {pattern!r}; use one of {LIDAR_PATTERNS}")
    elev = np.radians(LIDAR_ELEVATIONS_DEG[pattern])
    azim = np.radians(np.arange(-180.0, 180.0, azimuth_step_deg))
    el, az = np.meshgrid(elev, azim, indexing="ij")
    dirs_lidar = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
    t, _, _ = cast_rays(scene.spec, t_cl, dirs_lidar @ R.T)
    hit = np.isfinite(t) & (t <= max_range_m)
    rng_m, outlier = _corrupt_ranges(t[hit], rng, range_noise_m, outlier_fraction)
    points_lidar = dirs_lidar[hit] * rng_m[:, None]
    return LidarScan(points_lidar.astype(np.float32), T, outlier)


def _wave_field(rng: np.random.Generator, h: int, w: int, num_waves: int, wavelengths: tuple[float, float]):
    """Zero-mean unit-std sum of ``num_waves`` random cosines with wavelengths in ``wavelengths`` (image widths)."""
    v, u = np.mgrid[0:h, 0:w] / float(max(h, w))
    field = np.zeros((h, w))
    for _ in range(num_waves):
        theta, wavelength = rng.uniform(0, np.pi), rng.uniform(*wavelengths)
        field += np.cos(2 * np.pi * (u * np.cos(theta) + v * np.sin(theta)) / wavelength + rng.uniform(0, 2 * np.pi))
    field -= field.mean()
    return field / max(field.std(), 1e-9)


def _smooth_field(rng: np.random.Generator, h: int, w: int, num_waves: int = 4) -> np.ndarray:
    """Low-frequency field: wavelengths 0.7–3 image widths."""
    return _wave_field(rng, h, w, num_waves, (0.7, 3.0))


def _mid_field(rng: np.random.Generator, h: int, w: int, num_waves: int = 12) -> np.ndarray:
    """Mid-frequency field: wavelengths 0.05–0.2 image widths (texture-scale bumps)."""
    return _wave_field(rng, h, w, num_waves, (0.05, 0.2))


#: prediction error models (simulate_prediction keyword arguments) for evaluations that are not tuned to one kind
ERROR_MODELS = {
    "smooth": {},  # low-frequency shape error, small per-object offsets, a bend: what completion removes best
    "mid-frequency": {"mid_frequency_log": 0.08},  # plus texture-scale bumps (wavelength 5-20 % of the image)
    "per-object": {"object_offset_log": 0.15},  # objects misplaced in depth by ~15 % each
    "mixed": {"mid_frequency_log": 0.06, "object_offset_log": 0.12, "distortion_log": 0.1},
}


def simulate_prediction(
    scene: SyntheticScene,
    rng: np.random.Generator,
    *,
    distortion_log: float = 0.08,
    object_offset_log: float = 0.06,
    curvature_log: float = 0.05,
    mid_frequency_log: float = 0.0,
    noise_z: float = 0.003,
    a: float | None = None,
) -> SimulatedPrediction:
    """A DepthFM-like ``z`` with ``log d_true + distortion = a·z + b`` and an ensemble std that tracks the error.

    The log-depth distortion sums a low-frequency field (std ``distortion_log``), a per-surface offset (std
    ``object_offset_log``), a quadratic bend in log depth (up to ``curvature_log``), a mid-frequency field (std
    ``mid_frequency_log``, :data:`ERROR_MODELS`) and a 1-px edge blur; then ``z`` gets i.i.d. noise (std
    ``noise_z``). ``std_z`` is about a third of the distortion magnitude plus a floor. ``a`` fixes the scale (else
    uniform in 1.5-3).
    """
    depth = scene.depth_hw_m
    h, w = depth.shape
    log_d = np.log(np.where(np.isfinite(depth), depth, np.nanmax(depth))).astype(np.float64)
    smooth = distortion_log * _smooth_field(rng, h, w)
    offsets = rng.normal(0.0, object_offset_log, len(scene.spec.planes) + len(scene.spec.boxes) + 1)
    per_surface = offsets[scene.surface_id_hw]
    centred = (log_d - log_d.mean()) / max(log_d.std(), 1e-6)
    bend = rng.uniform(-curvature_log, curvature_log) * (centred**2 - 1.0)
    log_pred = cv2.GaussianBlur(log_d + per_surface + bend, (0, 0), 1.0) + smooth
    if mid_frequency_log > 0:
        log_pred = log_pred + mid_frequency_log * _mid_field(rng, h, w)
    distortion = log_pred - log_d
    a = float(rng.uniform(1.5, 3.0)) if a is None else float(a)
    b = float(np.median(log_d))
    z = (log_pred - b) / a + rng.normal(0.0, noise_z, (h, w))
    wobble = 1.0 + 0.3 * _smooth_field(rng, h, w).clip(-2, 2) / 2
    std_z = (0.02 + 0.35 * np.abs(distortion) * wobble) / a + 0.5 * noise_z
    return SimulatedPrediction(
        z.astype(np.float32), std_z.astype(np.float32), a, b, distortion.astype(np.float32)
    )
