"""Training data: image/depth pairs with a valid mask, log-depth normalisation, datasets and the paper's mixture.

Every dataset returns the same sample dict (see :func:`make_sample`):

    ``rgb_chw``        float32 (3, h, w) in [-1, 1]  (the model's image scaling, ``x/127.5 - 1``)
    ``depth_norm_hw``  float32 (h, w) normalised log depth in [-1, 1]; invalid pixels filled with +1 (far)
    ``valid_hw``       bool (h, w)
    ``depth_hw_m``     float32 (h, w) metric (or teacher-scale) depth, NaN where invalid

Normalisation is per sample and percentile based: log depth at the ``low_pct`` / ``high_pct`` percentiles of the
valid pixels maps to -1 / +1, values outside are clipped. Depth latents are the VAE encoding of that map
replicated to three channels (:func:`encode_batch`).

The mixture follows DepthFM's part(D^u, k): the labelled set D plus k·|D| samples of an unlabelled image pool
D^u labelled by a teacher depth model (:class:`TeacherDepthDataset`, :func:`mixture_dataset`).
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from ..errors import InputError
from ..processing import check_rgb, normalize_log_depth, read_rgb, to_model_input
from ..sim.synthetic import make_scene

RGB_SUFFIXES = (".png", ".jpg", ".jpeg")
DEPTH_SUFFIXES = (".npy", ".png")
TEACHER_OUTPUTS = ("depth", "disparity", "affine_disparity", "log_depth")
DEFAULT_DISPARITY_RANGE = 20.0  # affine_disparity: far/near depth ratio at the disparity percentiles


def affine_disparity_to_depth(disparity_hw: np.ndarray, depth_range: float = DEFAULT_DISPARITY_RANGE,
                              low_pct: float = 2.0, high_pct: float = 98.0) -> np.ndarray:
    """Depth (up to scale) from a disparity known only up to scale AND shift (Depth Anything, MiDaS).

    1/disparity is wrong there: with d' = s/depth + t the unknown shift t bends the depth non-linearly. The
    ambiguity is resolved in disparity space instead: the ``low_pct``/``high_pct`` percentiles of d' map to
    inverse depths 1/``depth_range`` and 1 (clipped), so depth runs from 1 (near) to ``depth_range`` (far). Exact
    (up to scale) when ``depth_range`` is the scene's true far/near ratio at those percentiles; otherwise a
    documented assumption rather than a silent distortion.
    """
    if not depth_range > 1.0:
        raise InputError(f"depth_range must be > 1 (far/near), got {depth_range}")
    disp = np.asarray(disparity_hw, dtype=np.float64)
    valid = np.isfinite(disp)
    if not valid.any():
        raise InputError("teacher disparity has no finite pixels")
    lo, hi = np.percentile(disp[valid], [low_pct, high_pct])
    u = np.clip((disp - lo) / max(hi - lo, 1e-12), 0.0, 1.0)  # 0 far .. 1 near
    inv = 1.0 / depth_range + u * (1.0 - 1.0 / depth_range)
    return np.where(valid, 1.0 / inv, np.nan)


def center_crop_to_aspect(arrays: list[np.ndarray], size_hw: tuple[int, int]) -> list[np.ndarray]:
    """The largest centred window of each (H, W, ...) array with the aspect ratio of ``size_hw`` (no squashing)."""
    h0, w0 = arrays[0].shape[:2]
    h, w = size_hw
    if w0 * h > w * h0:  # wider than the target: crop columns
        wc = max(1, round(h0 * w / h))
        x = (w0 - wc) // 2
        return [a[:, x:x + wc] for a in arrays]
    hc = max(1, round(w0 * h / w))
    y = (h0 - hc) // 2
    return [a[y:y + hc] for a in arrays]


def make_sample(rgb_hwc_u8: np.ndarray, depth_hw_m: np.ndarray, valid_hw: np.ndarray | None = None,
                size_hw: tuple[int, int] | None = None, low_pct: float = 2.0,
                high_pct: float = 98.0, crop: bool = False) -> dict[str, torch.Tensor]:
    """One training sample dict from RGB uint8 and depth (resized to ``size_hw``: area for RGB, nearest for depth;
    with ``crop`` the centred window of that aspect ratio first, so nothing is squashed)."""
    check_rgb(rgb_hwc_u8)
    depth = np.asarray(depth_hw_m, dtype=np.float32)
    if depth.shape != rgb_hwc_u8.shape[:2]:
        raise InputError(f"depth {depth.shape} and image {rgb_hwc_u8.shape[:2]} differ in size")
    valid = np.isfinite(depth) & (depth > 0)
    if valid_hw is not None:
        if np.shape(valid_hw) != depth.shape:
            raise InputError(f"mask {np.shape(valid_hw)} and depth {depth.shape} differ in size")
        valid &= np.asarray(valid_hw, dtype=bool)
    if crop and size_hw is not None:
        rgb_hwc_u8, depth, valid = center_crop_to_aspect([rgb_hwc_u8, depth, valid], size_hw)
        rgb_hwc_u8 = np.ascontiguousarray(rgb_hwc_u8)
    h, w = size_hw if size_hw is not None else depth.shape
    rgb_chw = to_model_input(rgb_hwc_u8, h, w)
    if (h, w) != depth.shape:
        depth = cv2.resize(np.where(valid, depth, 0.0).astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
        valid = depth > 0
    depth_norm, _, _ = normalize_log_depth(depth, valid, low_pct, high_pct)
    return {"rgb_chw": torch.from_numpy(rgb_chw), "depth_norm_hw": torch.from_numpy(depth_norm),
            "valid_hw": torch.from_numpy(valid), "depth_hw_m": torch.from_numpy(np.where(valid, depth, np.nan))}


@torch.no_grad()
def encode_batch(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_img, x1): VAE latents of the images and of the normalised log depth replicated to 3 channels."""
    vae_param = next(model.vae.parameters())
    rgb = batch["rgb_chw"].to(vae_param.device)
    depth3 = batch["depth_norm_hw"].to(vae_param.device)[:, None].expand(-1, 3, -1, -1)
    return model.encode(rgb).float(), model.encode(depth3).float()


# --------------------------------------------------------------------------------------------- datasets
class PairDataset(Dataset):
    """Base class: subclasses implement ``__len__`` and ``pair(i) -> (rgb_hwc_u8, depth_hw_m, valid_hw | None)``."""

    def __init__(self, size_hw: tuple[int, int] | None = None, low_pct: float = 2.0, high_pct: float = 98.0,
                 crop: bool = False):
        self.size_hw, self.crop = size_hw, bool(crop)
        self.low_pct, self.high_pct = low_pct, high_pct

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        rgb, depth, valid = self.pair(index % len(self))
        return make_sample(rgb, depth, valid, self.size_hw, self.low_pct, self.high_pct, self.crop)


def read_depth_m(path: Path, png_depth_scale_m: float = 1e-3) -> np.ndarray:
    """Depth in metres from ``.npy`` (float, metres) or 16-bit ``.png`` (integer units of ``png_depth_scale_m``)."""
    if path.suffix == ".npy":
        depth = np.load(path)
        if depth.ndim != 2:
            raise InputError(f"{path}: depth .npy must be (H, W), got {depth.shape}")
        return depth.astype(np.float32)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2 or raw.dtype != np.uint16:
        raise InputError(f"{path}: depth .png must be single-channel 16-bit, got "
                         f"{None if raw is None else (raw.dtype, raw.shape)}")
    return np.where(raw > 0, raw.astype(np.float32) * png_depth_scale_m, np.nan).astype(np.float32)


class FolderDepthDataset(PairDataset):
    """``root/rgb/<name>.png|jpg``, ``root/depth/<name>.npy|png``, optional ``root/mask/<name>.png`` (nonzero = valid).

    Depth ``.npy`` is float metres; depth ``.png`` is 16-bit in units of ``png_depth_scale_m`` (default mm);
    0 / NaN / inf are invalid.
    """

    def __init__(self, root: str | Path, size_hw: tuple[int, int] | None = None, png_depth_scale_m: float = 1e-3,
                 low_pct: float = 2.0, high_pct: float = 98.0, crop: bool = False):
        super().__init__(size_hw, low_pct, high_pct, crop)
        self.root = Path(root)
        self.png_depth_scale_m = png_depth_scale_m
        rgb_dir, depth_dir = self.root / "rgb", self.root / "depth"
        if not rgb_dir.is_dir() or not depth_dir.is_dir():
            raise InputError(f"{self.root} needs rgb/ and depth/ folders")
        self.items: list[tuple[Path, Path, Path | None]] = []
        for rgb_path in sorted(p for p in rgb_dir.iterdir() if p.suffix.lower() in RGB_SUFFIXES):
            depth_path = next((depth_dir / (rgb_path.stem + s) for s in DEPTH_SUFFIXES
                               if (depth_dir / (rgb_path.stem + s)).is_file()), None)
            if depth_path is None:
                raise InputError(f"no depth for {rgb_path.name} in {depth_dir} (expected .npy or .png)")
            mask_path = self.root / "mask" / (rgb_path.stem + ".png")
            self.items.append((rgb_path, depth_path, mask_path if mask_path.is_file() else None))
        if not self.items:
            raise InputError(f"no images in {rgb_dir}")

    def __len__(self) -> int:
        return len(self.items)

    def pair(self, index):
        rgb_path, depth_path, mask_path = self.items[index]
        mask = None
        if mask_path is not None:
            raw = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise InputError(f"cannot read mask {mask_path}")
            mask = (raw if raw.ndim == 2 else raw[..., 0]) > 0
        return read_rgb(rgb_path), read_depth_m(depth_path, self.png_depth_scale_m), mask


class SyntheticDepthDataset(PairDataset):
    """``num_scenes`` scenes from :mod:`depthfm_ros.sim.synthetic` (exact depth); scene i is fixed by ``(seed, i)``."""

    def __init__(self, num_scenes: int, height: int = 64, width: int = 64, seed: int = 0,
                 low_pct: float = 2.0, high_pct: float = 98.0, cache: bool = True):
        super().__init__(None, low_pct, high_pct)
        if num_scenes < 1:
            raise InputError(f"num_scenes must be >= 1, got {num_scenes}")
        self.num_scenes, self.height, self.width, self.seed = num_scenes, height, width, seed
        self._cache: dict[int, tuple] | None = {} if cache else None

    def __len__(self) -> int:
        return self.num_scenes

    def pair(self, index):
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        scene = make_scene(np.random.default_rng([self.seed, index]), self.width, self.height)
        out = (scene.rgb_hwc_u8, scene.depth_hw_m, None)
        if self._cache is not None:
            self._cache[index] = out
        return out


class ArrayDepthDataset(PairDataset):
    """In-memory pairs: lists of RGB uint8 HxWx3 and depth (H, W) arrays (+ optional masks)."""

    def __init__(self, rgbs: Sequence[np.ndarray], depths_m: Sequence[np.ndarray],
                 masks: Sequence[np.ndarray] | None = None, size_hw: tuple[int, int] | None = None,
                 low_pct: float = 2.0, high_pct: float = 98.0):
        super().__init__(size_hw, low_pct, high_pct)
        if len(rgbs) != len(depths_m) or (masks is not None and len(masks) != len(rgbs)):
            raise InputError("rgbs, depths and masks must have the same length")
        self.rgbs, self.depths_m, self.masks = list(rgbs), list(depths_m), masks

    def __len__(self) -> int:
        return len(self.rgbs)

    def pair(self, index):
        return self.rgbs[index], self.depths_m[index], None if self.masks is None else self.masks[index]


class TeacherDepthDataset(PairDataset):
    """Unlabelled images labelled by any teacher ``depth_model(rgb_hwc_u8) -> (H, W) array`` (cached per image).

    ``teacher_output`` says what the teacher returns: ``depth`` (any positive scale), ``disparity`` (inverse depth
    up to scale: inverted), ``affine_disparity`` (inverse depth up to scale and shift, e.g. Depth Anything and
    MiDaS: aligned in disparity space by :func:`affine_disparity_to_depth` with ``disparity_range``) or
    ``log_depth``. Everything is normalised in log space afterwards, so the teacher's scale (and, for ``log_depth``,
    shift) does not matter.
    """

    def __init__(self, images: Sequence[np.ndarray] | str | Path, depth_model: Callable[[np.ndarray], np.ndarray],
                 teacher_output: str = "depth", size_hw: tuple[int, int] | None = None,
                 low_pct: float = 2.0, high_pct: float = 98.0, disparity_range: float = DEFAULT_DISPARITY_RANGE):
        super().__init__(size_hw, low_pct, high_pct)
        self.disparity_range = float(disparity_range)
        if teacher_output not in TEACHER_OUTPUTS:
            raise InputError(f"teacher_output must be one of {TEACHER_OUTPUTS}, got {teacher_output!r}")
        if isinstance(images, (str, Path)):
            folder = Path(images)
            paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in RGB_SUFFIXES) if folder.is_dir() else []
            if not paths:
                raise InputError(f"no images in {folder}")
            self.images: list = paths
        else:
            self.images = list(images)
        self.depth_model, self.teacher_output = depth_model, teacher_output
        self._labels: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.images)

    def pair(self, index):
        item = self.images[index]
        rgb = read_rgb(item) if isinstance(item, Path) else item
        if index not in self._labels:
            out = np.asarray(self.depth_model(rgb), dtype=np.float64)
            if out.shape != rgb.shape[:2]:
                raise InputError(f"teacher returned {out.shape} for an image of {rgb.shape[:2]}")
            if self.teacher_output == "disparity":
                out = np.where(out > 0, 1.0 / np.where(out > 0, out, 1.0), np.nan)
            elif self.teacher_output == "affine_disparity":
                out = affine_disparity_to_depth(out, self.disparity_range, self.low_pct, self.high_pct)
            elif self.teacher_output == "log_depth":
                out = np.exp(out - np.nanmax(out))  # shift-free in log space: only relative depth matters
            self._labels[index] = out.astype(np.float32)
        return rgb, self._labels[index], None


def mixture_dataset(labelled: Dataset, unlabelled_teacher: Dataset, k: float, seed: int = 0) -> Dataset:
    """part(D^u, k): ``labelled`` plus round(k·|D|) samples drawn without replacement from the teacher pool."""
    if k < 0:
        raise InputError(f"k must be >= 0, got {k}")
    n_extra = int(round(k * len(labelled)))
    if n_extra > len(unlabelled_teacher):
        raise InputError(f"k={k} needs {n_extra} teacher samples, the pool has {len(unlabelled_teacher)}")
    if n_extra == 0:
        return labelled
    pick = np.random.default_rng(seed).choice(len(unlabelled_teacher), size=n_extra, replace=False)
    return ConcatDataset([labelled, Subset(unlabelled_teacher, sorted(pick.tolist()))])


class GroupedDataset(Dataset):
    """Several datasets in one run, each with its own size and a sampling ``weight`` (default: its length, i.e.
    uniform over all samples). Every micro batch comes from one dataset (sizes may differ between datasets); the
    trainer's :class:`~depthfm_ros.training.batches.GroupedStepBatchSampler` picks which by weight."""

    def __init__(self, datasets: Sequence[Dataset], weights: Sequence[float | None] | None = None):
        if not datasets:
            raise InputError("GroupedDataset needs at least one dataset")
        self.datasets = list(datasets)
        weights = list(weights) if weights is not None else [None] * len(self.datasets)
        if len(weights) != len(self.datasets):
            raise InputError(f"{len(weights)} weights for {len(self.datasets)} datasets")
        self.weights = [float(len(d)) if w is None else float(w) for d, w in zip(self.datasets, weights)]
        if any(len(d) == 0 for d in self.datasets) or any(not w > 0 for w in self.weights):
            raise InputError(f"every dataset needs samples and a positive weight, got sizes "
                             f"{[len(d) for d in self.datasets]} and weights {self.weights}")
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        group = int(np.searchsorted(self.offsets, index, side="right") - 1)
        if not 0 <= group < len(self.datasets):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return self.datasets[group][index - int(self.offsets[group])]


def dataset_identity(dataset) -> object:
    """A JSON-able description of what a dataset yields (kind, source, sizes, seeds, length): what an on-disk latent
    cache depends on besides the VAE."""
    if isinstance(dataset, GroupedDataset):
        return {"grouped": [dataset_identity(d) for d in dataset.datasets]}
    if isinstance(dataset, ConcatDataset):
        return {"concat": [dataset_identity(d) for d in dataset.datasets]}
    if isinstance(dataset, Subset):
        return {"subset": dataset_identity(dataset.dataset), "indices": hash_ints(dataset.indices)}
    out = {"kind": type(dataset).__name__, "len": len(dataset), "size_hw": getattr(dataset, "size_hw", None),
           "crop": getattr(dataset, "crop", False)}
    if isinstance(dataset, FolderDepthDataset):
        names = "\n".join(str(p.relative_to(dataset.root)) for item in dataset.items for p in item if p is not None)
        out.update(root=str(dataset.root.resolve()), files=hashlib.sha256(names.encode()).hexdigest()[:16])
    elif isinstance(dataset, SyntheticDepthDataset):
        out.update(height=dataset.height, width=dataset.width, seed=dataset.seed)
    for name in ("low_pct", "high_pct"):
        if hasattr(dataset, name):
            out[name] = getattr(dataset, name)
    return out


def hash_ints(values) -> str:
    return hashlib.sha256(np.asarray(list(values), np.int64).tobytes()).hexdigest()[:16]


def parse_data_spec(text: str) -> tuple[Path, tuple[int, int] | None, float | None, bool]:
    """``FOLDER[:HxW][:WEIGHT][:crop]`` (e.g. ``hypersim:480x640:0.9``, ``vkitti:352x1216:0.1:crop``) -> (folder,
    size or None, weight or None, crop): ``crop`` takes the centred window of the size's aspect ratio before
    resizing instead of squashing the image."""
    parts = str(text).split(":")
    folder, size, weight, crop = Path(parts[0]), None, None, False
    try:
        for part in parts[1:]:
            if part.lower() == "crop":
                crop = True
            elif "x" in part.lower():
                h, w = (int(v) for v in part.lower().split("x"))
                size = (h, w)
            elif part:
                weight = float(part)
    except ValueError as exc:
        raise InputError(f"data spec must be FOLDER[:HxW][:WEIGHT][:crop], got {text!r}") from exc
    return folder, size, weight, crop


def write_folder_dataset(root: str | Path, dataset: PairDataset, png_depth: bool = False) -> Path:
    """Write a dataset's raw pairs in the :class:`FolderDepthDataset` layout (depth .npy metres or 16-bit mm .png)."""
    root = Path(root)
    for sub in ("rgb", "depth", "mask"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(len(dataset)):
        rgb, depth, mask = dataset.pair(i)
        name = f"{i:06d}"
        cv2.imwrite(str(root / "rgb" / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if png_depth:
            mm = np.where(np.isfinite(depth), np.round(depth * 1000.0), 0).clip(0, 65535).astype(np.uint16)
            cv2.imwrite(str(root / "depth" / f"{name}.png"), mm)
        else:
            np.save(root / "depth" / f"{name}.npy", depth.astype(np.float32))
        if mask is not None:
            cv2.imwrite(str(root / "mask" / f"{name}.png"), mask.astype(np.uint8) * 255)
    return root


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack sample dicts into a batch dict (all samples must share one size)."""
    shapes = {tuple(s["rgb_chw"].shape) for s in samples}
    if len(shapes) > 1:
        raise InputError(f"samples of different sizes {sorted(shapes)} in one batch: give the dataset a size_hw")
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def load_callable(spec: str):
    """``package.module:function`` -> the function (e.g. a teacher depth model)."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise InputError(f"teacher must be given as module:callable, got {spec!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"cannot import {spec}: {exc}") from exc
