"""On-disk latent cache: memory-mapped shards, valid rows only after a flush, refused for another set-up, and a
trainer using it trains exactly as without it while encoding each sample once across runs."""

import numpy as np
import pytest
import torch
from test_training_trainer import config, tiny_dataset

from depthfm_ros.errors import InputError
from depthfm_ros.models.architectures import build_tiny_depthfm
from depthfm_ros.training import trainer as trainer_module
from depthfm_ros.training.latent_cache import LatentCache, vae_fingerprint
from depthfm_ros.training.trainer import Trainer


def test_rows_round_trip_through_sparse_memory_mapped_shards(tmp_path):
    cache = LatentCache(tmp_path, {"vae": "x"}, shard_size=4)
    z, x1 = torch.randn(4, 8, 16), torch.randn(4, 8, 16)
    assert cache.get(5, (64, 128)) is None
    cache.put(5, z, x1)
    got = cache.get(5, (64, 128))
    assert torch.equal(got[0], z) and torch.equal(got[1], x1)
    assert cache.get(5, (64, 128), flipped=True) is None and cache.get(4, (64, 128)) is None  # same shard, not filled
    assert cache.get(5, (64, 64)) is None  # another size is another shard file
    shard = tmp_path / "rank0" / "64x128_plain_shard1.npy"
    assert np.load(shard, mmap_mode="r").shape == (4, 2, 4, 8, 16)
    again = LatentCache(tmp_path, {"vae": "x"}, shard_size=4)  # a resumed run
    assert torch.equal(again.get(5, (64, 128))[1], x1) and again.num_cached() == 1
    with pytest.raises(InputError, match=r"another set-up \(differs in \['vae'\]\)"):
        LatentCache(tmp_path, {"vae": "y"})


def test_trainer_with_the_disk_cache_trains_as_without_it_and_encodes_once_across_runs(tmp_path, monkeypatch):
    calls = []
    real = trainer_module.encode_batch

    def counting(model, batch):
        calls.append(len(batch["rgb_chw"]))
        return real(model, batch)

    monkeypatch.setattr(trainer_module, "encode_batch", counting)
    plain = Trainer(build_tiny_depthfm(seed=4), tiny_dataset(3), config(tmp_path / "a", max_steps=5, ema_decay=0))
    uncached = plain.train()
    in_memory = Trainer(build_tiny_depthfm(seed=4), tiny_dataset(3),
                        config(tmp_path / "m", max_steps=5, ema_decay=0, cache_latents=True))
    expected = in_memory.train()
    # encoding a sub-batch instead of the whole batch moves the latents by float rounding only
    np.testing.assert_allclose(expected, uncached, rtol=1e-5)
    cache_dir = tmp_path / "latents"
    first = Trainer(build_tiny_depthfm(seed=4), tiny_dataset(3),
                    config(tmp_path / "b", max_steps=5, ema_decay=0, latent_cache_dir=str(cache_dir)))
    calls.clear()
    np.testing.assert_array_equal(first.train(), expected)  # the same latents as the in-memory cache, bit for bit
    assert sum(calls) == 3 and first.disk_cache.num_cached() == 3  # each of the 3 samples encoded once
    second = Trainer(build_tiny_depthfm(seed=4), tiny_dataset(3),
                     config(tmp_path / "c", max_steps=5, ema_decay=0, latent_cache_dir=str(cache_dir)))
    calls.clear()
    np.testing.assert_array_equal(second.train(), expected)
    assert calls == []  # everything came from disk
    other_vae = build_tiny_depthfm(seed=5)
    assert vae_fingerprint(other_vae) != vae_fingerprint(build_tiny_depthfm(seed=4))
    with pytest.raises(InputError, match="another set-up"):
        Trainer(other_vae, tiny_dataset(3), config(tmp_path / "d", latent_cache_dir=str(cache_dir)))
