"""Trainer: the loss falls, resume replays the run, SD conv_in widening, official/diffusers export round trips."""

import numpy as np
import pytest
import torch

from depthfm_ros.errors import InputError
from depthfm_ros.models.architectures import TINY_LDM_HPARAMS, build_tiny_depthfm
from depthfm_ros.models.depthfm import DepthFM
from depthfm_ros.models.ldm import unet_config_from_ldm, widen_conv_in
from depthfm_ros.training.checkpoints import TRAINER_STATE_FILE, export_model
from depthfm_ros.training.data import ArrayDepthDataset, collate
from depthfm_ros.training.initialisation import depthfm_from_sd
from depthfm_ros.training.optimisation import EMA
from depthfm_ros.training.trainer import TrainConfig, Trainer


def tiny_dataset(n: int = 4) -> ArrayDepthDataset:
    rgbs, depths = [], []
    for i in range(n):
        rng = np.random.default_rng(i)
        ramp = np.exp(np.linspace(0.0, np.log(8.0), 64))[:, None] * np.ones((1, 64))
        depths.append((ramp * rng.uniform(0.7, 1.3) + (np.arange(64) > 32 + i) * 2.0).astype(np.float32))
        rgbs.append((np.clip(np.log(depths[-1])[..., None] / 2.5, 0, 1) * [200, 120, 60]
                     + rng.random((64, 64, 3)) * 40).astype(np.uint8))
    return ArrayDepthDataset(rgbs, depths)


def config(tmp_path, **kw) -> TrainConfig:
    base = dict(max_steps=6, batch_size=2, lr=1e-3, ema_decay=0.9, progress=False, tensorboard=False,
                output_dir=str(tmp_path))
    return TrainConfig(**{**base, **kw})


def test_loss_falls_on_a_fixed_batch(tmp_path):
    ds = tiny_dataset(4)
    trainer = Trainer(build_tiny_depthfm(seed=0, noising_step=400), ds, config(tmp_path, max_steps=25, batch_size=4))
    batch = collate([ds[i] for i in range(4)])

    def fixed_loss() -> float:  # the same t and noise draw before and after
        return float(trainer.loss_on(batch, torch.Generator().manual_seed(123), grad=False))

    before = fixed_loss()
    losses = trainer.train()
    after = fixed_loss()
    assert len(losses) == 25 and trainer.step == 25
    assert after < 0.7 * before, (before, after)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_resume_replays_the_same_run(tmp_path):
    ds = tiny_dataset(5)  # odd size: batches cross epoch boundaries
    full = Trainer(build_tiny_depthfm(seed=1), ds, config(tmp_path / "a", grad_accum_steps=2))
    losses_full = full.train(3)
    full.save_checkpoint()
    losses_full += full.train(6)

    resumed = Trainer(build_tiny_depthfm(seed=1), ds, config(tmp_path / "b", grad_accum_steps=2))
    assert resumed.load_checkpoint(tmp_path / "a" / "last") == 3
    assert (tmp_path / "a" / "last" / TRAINER_STATE_FILE).is_file()
    losses_resumed = resumed.train(6)
    assert losses_resumed == pytest.approx(losses_full[3:], rel=1e-6, abs=0)
    for (name, p), q in zip(full.model.unet.named_parameters(), resumed.model.unet.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)
    for k, v in full.ema.shadow.items():
        torch.testing.assert_close(v, resumed.ema.shadow[k], rtol=1e-6, atol=1e-7)


def test_widening_with_halved_weights_reproduces_the_sd_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    sd_unet = UNet2DConditionModel(**{**unet_config_from_ldm(TINY_LDM_HPARAMS), "in_channels": 4}).eval()
    z = torch.randn(2, 4, 8, 8)
    t = torch.tensor([10.0, 500.0])
    ctx = torch.randn(2, 77, 32)
    with torch.no_grad():
        before = sd_unet(z, t, encoder_hidden_states=ctx).sample
        widen_conv_in(sd_unet, 8, "repeat_halve")
        after = sd_unet(torch.cat([z, z], 1), t, encoder_hidden_states=ctx).sample
    assert sd_unet.config.in_channels == 8 and sd_unet.conv_in.weight.shape[1] == 8
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)

    # zero widening (completion) keeps the output whatever the new channels hold
    with torch.no_grad():
        widen_conv_in(sd_unet, 13, "zero")
        extra = sd_unet(torch.cat([z, z, torch.randn(2, 5, 8, 8)], 1), t, encoder_hidden_states=ctx).sample
    torch.testing.assert_close(extra, before, rtol=1e-5, atol=1e-5)


def test_depthfm_from_sd_builds_an_8_channel_model(tmp_path):
    from diffusers import UNet2DConditionModel

    tiny = build_tiny_depthfm(seed=0)
    sd_unet = UNet2DConditionModel(**{**unet_config_from_ldm(TINY_LDM_HPARAMS), "in_channels": 4})
    sd_unet.save_pretrained(tmp_path / "sd" / "unet")
    tiny.vae.save_pretrained(tmp_path / "sd" / "vae")
    np.save(tmp_path / "empty.npy", np.zeros((1, 77, 32), np.float32))
    model = depthfm_from_sd(tmp_path / "sd", None, tmp_path / "empty.npy", noising_step=400)
    assert isinstance(model, DepthFM) and model.unet.config.in_channels == 8
    w = sd_unet.conv_in.weight
    torch.testing.assert_close(model.unet.conv_in.weight, torch.cat([w, w], 1) / 2)


def test_official_and_diffusers_export_reload_with_identical_outputs(tmp_path):
    ds = tiny_dataset(2)
    trainer = Trainer(build_tiny_depthfm(seed=2), ds, config(tmp_path, max_steps=2))
    trainer.train()
    paths = trainer.export(tmp_path / "export")
    trained = trainer.ema_model()
    from_official = DepthFM.from_official_checkpoint(paths["official"], paths["diffusers"] / "vae")
    from_folder = DepthFM.from_pretrained(paths["diffusers"])
    x_t, z_img = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        ref = trained.velocity(x_t, 0.3, z_img)
        torch.testing.assert_close(from_official.velocity(x_t, 0.3, z_img), ref, rtol=0, atol=0)
        torch.testing.assert_close(from_folder.velocity(x_t, 0.3, z_img), ref, rtol=0, atol=0)
    # the EMA weights are what gets exported, and they differ from the raw weights after training
    assert not torch.equal(trained.unet.conv_in.weight, trainer.model.unet.conv_in.weight)


def test_export_model_writes_both_formats(tmp_path):
    paths = export_model(build_tiny_depthfm(seed=0), tmp_path)
    assert paths["official"].is_file() and (paths["diffusers"] / "unet").is_dir()


def test_ema_tracks_with_warmup():
    lin = torch.nn.Linear(2, 2)
    ema = EMA(lin, decay=0.999)
    with torch.no_grad():
        lin.weight.add_(1.0)
    ema.update(lin)  # first update: decay min(0.999, 1/10) = 0.1
    torch.testing.assert_close(ema.shadow["weight"], lin.weight - 0.1, rtol=1e-6, atol=1e-6)


def test_mixed_precision_resolution():
    from depthfm_ros.training.optimisation import resolve_mixed_precision

    assert resolve_mixed_precision("no") == "no"
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning):
            assert resolve_mixed_precision("fp16") == "bf16"


def test_train_cli_trains_resumes_and_exports(tmp_path, capsys):
    from depthfm_ros.cli.train import main
    from depthfm_ros.training.data import write_folder_dataset

    write_folder_dataset(tmp_path / "data", tiny_dataset(2))
    argv = ["--init", "tiny", "--data", str(tmp_path / "data"), "--batch-size", "2", "--lr", "1e-3",
            "--output", str(tmp_path / "run"), "--quiet", "--no-tensorboard", "--cache-latents"]
    assert main(argv + ["--steps", "2"]) == 0
    assert main(argv + ["--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "resuming from step 2" in out and "over steps 3..3" in out
    assert (tmp_path / "run" / "export" / "depthfm.ckpt").is_file()
    assert (tmp_path / "run" / "init" / "depthfm.json").is_file()
    DepthFM.from_pretrained(tmp_path / "run" / "export" / "diffusers")


def test_two_processes_share_one_schedule_one_init_and_one_vae_warmup(tmp_path):
    """torchrun, 2 CPU processes (gloo on loopback): the LR scheduler steps once per optimizer step (accelerate's
    prepared scheduler stepped once per process: last_epoch 8 after 4 steps), rank 0 alone writes init/ and runs the
    tiny-VAE warm-up, and both ranks train the same weights."""
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "depthfm_ros.cli.train", "--init", "tiny", "--synthetic", "8", "--size", "64", "64", "--steps", "4",
           "--batch-size", "2", "--lr", "1e-3", "--lr-warmup-steps", "8", "--vae-warmup-steps", "2",
           "--vae-warmup-batch-size", "2", "--output", str(out), "--quiet", "--no-tensorboard"]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("2 process(es)") == 1
    assert result.stdout.count("tiny VAE warm-up") == 1  # rank 0 only; rank 1 loaded its result
    state = torch.load(out / "last" / TRAINER_STATE_FILE, weights_only=False)
    assert state["step"] == 4 and state["scheduler"]["last_epoch"] == 4
    assert state["scheduler"]["_last_lr"][0] == pytest.approx(1e-3 * 5 / 8)
    assert (out / "init" / "depthfm.json").is_file() and (out / "export" / "depthfm.ckpt").is_file()


def test_accelerate_cpu_launch_of_several_processes_is_refused_not_run_as_one():
    from depthfm_ros.errors import DepthFMError
    from depthfm_ros.training.run import check_world_size, launcher_processes

    parent = ["/venv/bin/python", "/venv/bin/accelerate", "launch", "--cpu", "--num_processes", "2", "-m",
              "depthfm_ros.cli.train"]
    assert launcher_processes(parent) == 2
    assert launcher_processes(["/venv/bin/accelerate", "launch", "--num_processes=4", "x.py"]) == 4
    assert launcher_processes(["python", "-m", "torch.distributed.run", "--nproc_per_node", "2"]) is None
    with pytest.raises(DepthFMError, match="torchrun --standalone --nproc_per_node 2"):
        check_world_size(1, parent)
    check_world_size(2, parent)  # a launcher that did start 2 processes
    check_world_size(1, ["bash"])


def test_invalid_ground_truth_is_left_out_of_the_loss():
    """Sky / holes used to be trained as "farthest" (+1); latent cells without full ground truth are now masked
    (Marigold's rule): changing the target there leaves the loss unchanged, changing it elsewhere does not."""
    from depthfm_ros.training.loss import FlowMatchingLoss, latent_valid_mask

    class ZeroVelocity(torch.nn.Module):
        noising_step = 400

        def velocity(self, x_t, t, cond):
            return torch.zeros_like(x_t)

    valid = torch.ones(2, 32, 32, dtype=torch.bool)
    valid[0, :9, :] = False  # rows 0-8: latent rows 0 and 1 touch invalid pixels
    mask = latent_valid_mask(valid)
    assert mask.shape == (2, 1, 4, 4) and mask[0, 0, :2].sum() == 0 and mask[0, 0, 2:].all() and mask[1].all()
    g = torch.Generator().manual_seed(0)
    z_img, x1 = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    t, eps_aug, eps_path = torch.rand(2, generator=g), torch.randn(2, 4, 4, 4, generator=g), torch.zeros(2, 4, 4, 4)
    loss = FlowMatchingLoss(ZeroVelocity(), 0.0)
    base = loss(z_img, x1, z_img, t, eps_aug, eps_path, mask)
    far = x1.clone()
    far[0, :, :2] = 50.0  # the "farthest" fill in invalid cells
    assert torch.equal(loss(z_img, far, z_img, t, eps_aug, eps_path, mask), base)
    assert loss(z_img, far, z_img, t, eps_aug, eps_path, None) > 10 * base  # unmasked, it dominated
    near = x1.clone()
    near[0, :, 3] += 1.0
    assert loss(z_img, near, z_img, t, eps_aug, eps_path, mask) != base


def test_hflip_mirrors_every_map_of_the_chosen_samples_together():
    from depthfm_ros.training.batches import hflip_batch

    batch = collate([tiny_dataset(2)[i] for i in range(2)])
    flipped = hflip_batch(batch, torch.tensor([True, False]))
    for key in ("rgb_chw", "depth_norm_hw", "valid_hw"):
        assert torch.equal(flipped[key][0], batch[key][0].flip(-1)) and torch.equal(flipped[key][1], batch[key][1])
    assert flipped["flipped"].tolist() == [True, False]


def test_grouped_sampler_draws_whole_batches_by_weight_and_replays_from_any_step():
    from depthfm_ros.training.batches import GroupedStepBatchSampler

    sampler = GroupedStepBatchSampler([10, 30], [1.0, 3.0], batch_size=4, seed=0)
    batches = [sampler.indices(m) for m in range(2000)]
    groups = [0 if all(i < 10 for i in b) else 1 if all(i >= 10 for i in b) else -1 for b in batches]
    assert -1 not in groups  # one dataset (one size) per batch
    assert 0.22 < groups.count(0) / len(groups) < 0.28  # weight 1 : 3 (0.25 +- 3 sigma)
    resumed = GroupedStepBatchSampler([10, 30], [1.0, 3.0], batch_size=4, seed=0, start_micro_step=1250)
    assert [b for _, b in zip(range(750), resumed)] == batches[1250:]
    first_epoch = [i for b, g in zip(batches, groups) if g == 0 for i in b][:10]
    assert sorted(first_epoch) == list(range(10))  # every sample of a dataset once per epoch


def test_train_cli_combines_synthetic_and_folders_of_different_sizes(tmp_path, capsys):
    from depthfm_ros.cli.train import main
    from depthfm_ros.training.data import write_folder_dataset

    write_folder_dataset(tmp_path / "a", tiny_dataset(2))
    write_folder_dataset(tmp_path / "b", tiny_dataset(3))
    argv = ["--init", "tiny", "--synthetic", "2", "--size", "64", "64", "--data", str(tmp_path / "a"),
            "--data", f"{tmp_path / 'b'}:64x128:2", "--batch-size", "2", "--steps", "6", "--hflip",
            "--output", str(tmp_path / "run"), "--quiet", "--no-tensorboard", "--latent-cache", str(tmp_path / "lc")]
    assert main(argv) == 0
    assert "over steps 1..6" in capsys.readouterr().out
    shards = {p.name.split("_shard")[0] for p in (tmp_path / "lc" / "rank0").glob("*_shard0.npy")}
    assert {"64x64_plain", "64x64_flipped"} <= shards and any(s.startswith("64x128") for s in shards)


def test_official_export_keeps_upcast_attention(tmp_path):
    from diffusers import UNet2DConditionModel

    from depthfm_ros.models.ldm import unet_config_from_ldm

    model = build_tiny_depthfm(seed=0)
    torch.manual_seed(0)
    model.unet = UNet2DConditionModel(**{**unet_config_from_ldm(TINY_LDM_HPARAMS), "upcast_attention": True}).eval()
    paths = export_model(model, tmp_path)
    assert torch.load(paths["official"], weights_only=False)["upcast_attention"] is True
    back = DepthFM.from_official_checkpoint(paths["official"], paths["diffusers"] / "vae")
    assert back.unet.config.upcast_attention is True
    assert all(m.upcast_attention for m in back.unet.modules() if hasattr(m, "upcast_attention"))
    plain = export_model(build_tiny_depthfm(seed=0), tmp_path / "plain")
    assert DepthFM.from_official_checkpoint(plain["official"], plain["diffusers"] / "vae").unet.config \
        .upcast_attention is False


def test_completion_export_writes_no_official_checkpoint_and_tiny_vae_models_are_not_trained(tmp_path):
    from depthfm_ros.models.completion import DepthCompletionFM
    from depthfm_ros.models.tiny_vae import TINY_TEST_CONFIG, build_tiny_vae
    from depthfm_ros.training.initialisation import initial_model

    completion = DepthCompletionFM.from_depthfm(build_tiny_depthfm(seed=0), 0.02)
    paths = export_model(completion, tmp_path / "completion")
    assert set(paths) == {"diffusers"} and not (tmp_path / "completion" / "depthfm.ckpt").exists()
    assert isinstance(initial_model("depthfm", checkpoint=paths["diffusers"]), DepthCompletionFM)
    tiny = build_tiny_depthfm(seed=0).set_tiny_vae(build_tiny_vae(TINY_TEST_CONFIG))
    with pytest.raises(InputError, match="tiny VAE"):
        Trainer(tiny, tiny_dataset(2), config(tmp_path))
    folder = tiny.save_pretrained(tmp_path / "with_tiny")
    with pytest.warns(UserWarning, match="saved with a tiny VAE"):
        model = initial_model("depthfm", checkpoint=folder)
    assert model.tiny_vae is None  # trains on SD-VAE latents


def test_gradient_checkpointing_gives_the_same_gradients_and_the_optimizer_is_checked(tmp_path):
    """Checkpointing recomputes activations in backward: same loss and gradients, less memory."""
    batch = collate([tiny_dataset(2)[i] for i in range(2)])
    grads = []
    for checkpointing in (False, True):
        trainer = Trainer(build_tiny_depthfm(seed=3), tiny_dataset(2),
                          config(tmp_path, gradient_checkpointing=checkpointing))
        assert trainer.model.unet.is_gradient_checkpointing is checkpointing
        loss = trainer.loss_on(batch, torch.Generator().manual_seed(0))
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in trainer.model.unet.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)
    with pytest.raises(InputError, match="optimizer"):
        Trainer(build_tiny_depthfm(seed=3), tiny_dataset(2), config(tmp_path, optimizer="sgd"))


def test_tiny_init_can_be_widened():
    from depthfm_ros.training.initialisation import initial_model

    assert initial_model("tiny").unet.config.block_out_channels[0] == 32
    wide = initial_model("tiny", tiny_channels=64)
    assert tuple(wide.unet.config.block_out_channels) == (64, 128) and wide.unet.config.in_channels == 8
