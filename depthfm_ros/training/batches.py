"""The order training sees its data in: per-rank batches that are pure functions of ``(seed, micro step, rank)``,
so a resumed run replays exactly the run it continues, and the random horizontal flip."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import InputError
from .data import GroupedDataset


def seed_of(*parts: int) -> int:
    """One 63-bit seed from integers (seed, micro step, rank, ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


class _MicroStepSampler(Sampler):
    """Infinite batches ``indices(m)`` for micro steps m = start, start + 1, ... (subclasses define ``indices``)."""

    start: int = 0

    def indices(self, micro_step: int) -> list[int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        m = self.start
        while True:
            yield self.indices(m)
            m += 1

    def __len__(self) -> int:  # DataLoader asks; the sampler is infinite
        return 2 ** 31


class StepBatchSampler(_MicroStepSampler):
    """Infinite per-rank batches; micro step m of rank r takes the samples ``(m·P + r)·B ...`` of a seeded
    per-epoch permutation, so any micro step's batch is known without replaying the ones before it."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, start_micro_step: int = 0,
                 rank: int = 0, world_size: int = 1):
        if num_samples < 1:
            raise InputError("the training dataset is empty")
        self.n, self.b, self.seed = num_samples, batch_size, seed
        self.start, self.rank, self.world = start_micro_step, rank, world_size
        self._perms: dict[int, np.ndarray] = {}

    def indices(self, micro_step: int) -> list[int]:
        first = (micro_step * self.world + self.rank) * self.b
        out = []
        for g in range(first, first + self.b):
            epoch, pos = divmod(g, self.n)
            if epoch not in self._perms:
                self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
            out.append(int(self._perms[epoch][pos]))
        return out


class GroupedStepBatchSampler(_MicroStepSampler):
    """Infinite per-rank batches from a :class:`~depthfm_ros.training.data.GroupedDataset`: micro step m of rank r
    draws a dataset by weight from ``(seed, m, r)``, then its next batch from a seeded per-epoch permutation of that
    dataset. A pure function of the micro step (the choices before it are replayed as integers), so a resumed run
    replays the uninterrupted one."""

    def __init__(self, sizes: list[int], weights: list[float], batch_size: int, seed: int,
                 start_micro_step: int = 0, rank: int = 0):
        self.sizes, self.b, self.seed, self.start, self.rank = list(sizes), batch_size, seed, start_micro_step, rank
        p = np.asarray(weights, dtype=np.float64)
        self.p = p / p.sum()
        self.offsets = np.cumsum([0] + self.sizes)
        self._counts, self._next = [0] * len(self.sizes), 0  # batches each dataset gave before micro step _next
        self._perms: dict[int, tuple[int, np.ndarray]] = {}

    def _group(self, micro_step: int) -> int:
        return int(np.random.default_rng([self.seed, micro_step, self.rank, 7]).choice(len(self.p), p=self.p))

    def indices(self, micro_step: int) -> list[int]:
        if micro_step < self._next:
            self._counts, self._next = [0] * len(self.sizes), 0
        while self._next < micro_step:
            self._counts[self._group(self._next)] += 1
            self._next += 1
        g = self._group(micro_step)
        n = self.sizes[g]
        out = []
        for k in range(self._counts[g] * self.b, (self._counts[g] + 1) * self.b):
            epoch, pos = divmod(k, n)
            if self._perms.get(g, (None,))[0] != epoch:  # one permutation per dataset and epoch, kept
                self._perms[g] = epoch, np.random.default_rng([self.seed, g, self.rank, epoch]).permutation(n)
            out.append(int(self.offsets[g] + self._perms[g][1][pos]))
        return out


def step_batch_sampler(dataset: Dataset, batch_size: int, seed: int, start_micro_step: int, rank: int,
                       world_size: int) -> _MicroStepSampler:
    """The sampler for ``dataset``: by weight over a GroupedDataset's members (one member per micro batch), else
    one permutation of the whole dataset."""
    if isinstance(dataset, GroupedDataset):
        return GroupedStepBatchSampler([len(d) for d in dataset.datasets], dataset.weights, batch_size, seed,
                                       start_micro_step, rank)
    return StepBatchSampler(len(dataset), batch_size, seed, start_micro_step, rank, world_size)


class IndexedDataset(Dataset):
    """Adds each sample's dataset index (the latent cache key)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "index": torch.tensor(index)}


def hflip_batch(batch: dict, flip_b: torch.Tensor) -> dict:
    """``batch`` with the samples where ``flip_b`` is True mirrored left-right (every (…, h, w) map alike)."""
    out = {}
    for key, value in batch.items():
        if value.ndim >= 3:  # (b, h, w) or (b, c, h, w)
            view = flip_b.view(-1, *([1] * (value.ndim - 1)))
            value = torch.where(view, value.flip(-1), value)
        out[key] = value
    out["flipped"] = flip_b
    return out
