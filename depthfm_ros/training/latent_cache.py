"""On-disk latent cache: the frozen VAE's latents of every training sample, encoded once, memory-mapped, sharded.

The fp32 SD VAE encoding image and depth costs about a UNet forward + backward per sample; an in-memory cache of
every latent has no bound (~8 GB for 63k samples at 512²). This cache keeps them on disk instead:

- ``<dir>/rank<r>/<H>x<W>_<orientation>_shard<k>.npy``: ``shard_size`` samples of (z_img, x1), each (4, h, w)
  float32, as ``.npy`` files opened with ``numpy.lib.format.open_memmap`` (sparse until written: disk is used only
  for cached samples; the OS page cache, not the process, holds what is hot). A ``.filled`` bitmap beside each shard
  says which rows are valid; a row is marked only after its latents are flushed, so an interrupted run never reads a
  half-written row.
- Each rank writes its own folder (no two processes ever write one file); a resumed run reuses it.
- ``<dir>/cache.json`` records what the latents depend on (VAE weights hash, latent scale, dataset length and
  sizes); a cache written for anything else is refused with the reason, never silently reused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..shapes import LATENT_CHANNELS, VAE_DOWNSCALE

CACHE_FORMAT = "depthfm_ros.latent_cache/1"
DEFAULT_SHARD_SIZE = 4096


def vae_fingerprint(model) -> str:
    """16 hex digits over the VAE's weights and the latent scale (what every cached latent depends on)."""
    h = hashlib.sha256(f"{model.latent_scale}".encode())
    for name, tensor in model.vae.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class LatentCache:
    """Latents (z_img, x1) per (sample index, flipped) on disk. ``get`` returns None for a sample not cached yet."""

    def __init__(self, folder: str | Path, meta: dict, rank: int = 0, shard_size: int = DEFAULT_SHARD_SIZE):
        self.folder, self.shard_size = Path(folder), int(shard_size)
        self.meta = json.loads(json.dumps({"format": CACHE_FORMAT, **meta}))  # as read back: tuples become lists
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / "cache.json"
        if meta_path.is_file():
            have = json.loads(meta_path.read_text())
            if have != self.meta:
                diff = sorted(k for k in {*have, *self.meta} if have.get(k) != self.meta.get(k))
                raise InputError(f"latent cache {self.folder} was written for another set-up (differs in {diff}); "
                                 "delete it or give another --latent-cache folder")
        elif rank == 0:
            partial = meta_path.with_suffix(".tmp")
            partial.write_text(json.dumps(self.meta, indent=2, sort_keys=True))
            partial.replace(meta_path)
        self.rank_dir = self.folder / f"rank{rank}"
        self.rank_dir.mkdir(exist_ok=True)
        self._shards: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def _shard(self, shard: int, latent_hw: tuple[int, int], flipped: bool, create: bool):
        key = (shard, latent_hw, flipped)
        if key in self._shards:
            return self._shards[key]
        h, w = latent_hw
        stem = f"{h * VAE_DOWNSCALE}x{w * VAE_DOWNSCALE}_{'flipped' if flipped else 'plain'}_shard{shard}"
        data_path, filled_path = self.rank_dir / f"{stem}.npy", self.rank_dir / f"{stem}.filled.npy"
        if not data_path.is_file():
            if not create:
                return None
            open_memmap = np.lib.format.open_memmap
            open_memmap(data_path, mode="w+", dtype=np.float32, shape=(self.shard_size, 2, LATENT_CHANNELS, h, w))
            open_memmap(filled_path, mode="w+", dtype=np.bool_, shape=(self.shard_size,))
        entry = (np.load(data_path, mmap_mode="r+"), np.load(filled_path, mmap_mode="r+"))
        self._shards[key] = entry
        return entry

    def get(self, index: int, image_hw: tuple[int, int], flipped: bool = False):
        """(z_img, x1) tensors of sample ``index`` at image size ``image_hw``, or None if not cached."""
        latent_hw = (image_hw[0] // VAE_DOWNSCALE, image_hw[1] // VAE_DOWNSCALE)
        entry = self._shard(index // self.shard_size, latent_hw, flipped, create=False)
        if entry is None or not entry[1][index % self.shard_size]:
            return None
        row = np.array(entry[0][index % self.shard_size])  # a copy: the tensor must not alias the mapping
        return torch.from_numpy(row[0]), torch.from_numpy(row[1])

    def put(self, index: int, z_img: torch.Tensor, x1: torch.Tensor, flipped: bool = False) -> None:
        """Store one sample's latents (4, h, w) each; marked valid only after the data is flushed."""
        latent_hw = tuple(int(s) for s in z_img.shape[-2:])
        data, filled = self._shard(index // self.shard_size, latent_hw, flipped, create=True)
        row = index % self.shard_size
        data[row, 0] = z_img.detach().cpu().float().numpy()
        data[row, 1] = x1.detach().cpu().float().numpy()
        data.flush()
        filled[row] = True
        filled.flush()

    def num_cached(self) -> int:
        """Samples cached by this rank (all sizes and orientations)."""
        return int(sum(np.load(p, mmap_mode="r").sum() for p in self.rank_dir.glob("*.filled.npy")))


class MemoryLatentCache:
    """The same ``get``/``put`` in memory (``--cache-latents``): tensors kept where they were encoded."""

    def __init__(self):
        self._rows: dict[tuple[int, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, index: int, image_hw: tuple[int, int], flipped: bool = False):
        return self._rows.get((index, bool(flipped)))

    def put(self, index: int, z_img: torch.Tensor, x1: torch.Tensor, flipped: bool = False) -> None:
        self._rows[(index, bool(flipped))] = (z_img, x1)


__all__ = ["CACHE_FORMAT", "DEFAULT_SHARD_SIZE", "LatentCache", "MemoryLatentCache", "vae_fingerprint"]
