"""Diffusion Policy: the schedule math, EMA, receding-horizon execution and seeded sampling.

The shared contract (tests/policies/test_policy_contract.py) trains, acts, saves and loads
both denoisers; these tests check what is particular to diffusion, on tiny networks.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from apprentice.data.dataset import DemoDataset
from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError
from apprentice.policies import CameraConfig, load_policy, save_checkpoint
from apprentice.policies.averaging import ema_decay
from apprentice.policies.chunking import check_horizon
from apprentice.policies.diffusion import DiffusionConfig, DiffusionPolicy, NoiseSchedule

SPEC = ObsActSpec({"qpos": (5,), "cube": (3,)}, action_dim=3)
TINY: dict[str, dict[str, Any]] = {
    "unet": {"unet_channels": (8, 16), "unet_groups": 4, "step_embed_dim": 8},
    "transformer": {"denoiser": "transformer", "embed_dim": 16, "num_layers": 1, "num_heads": 2},
    "mlp": {"denoiser": "mlp", "mlp_hidden_dims": (32, 32)},
}


def _policy(denoiser: str = "unet", **overrides: Any) -> DiffusionPolicy:
    torch.manual_seed(0)
    kwargs = {"seq_len": 8, "action_horizon": 3, "inference_steps": 4, **overrides}
    return DiffusionConfig(**TINY[denoiser], **kwargs).build(SPEC, {})


def _batch(policy: DiffusionPolicy, b: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    cfg = policy.config
    frames = cfg.frame_stack + cfg.seq_len - 1
    return {
        "obs/qpos": torch.randn(b, frames, 5, generator=g),
        "obs/cube": torch.randn(b, frames, 3, generator=g),
        "actions": torch.rand(b, cfg.seq_len, 3, generator=g) * 2 - 1,
        "mask": torch.ones(b, cfg.seq_len),
    }


def _obs_stream(steps: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "qpos": rng.normal(size=5).astype(np.float32),
            "cube": rng.normal(size=3).astype(np.float32),
        }
        for _ in range(steps)
    ]


# ---- schedule ------------------------------------------------------------------------------


def test_cosine_schedule_is_monotone_and_spans_signal_to_noise() -> None:
    schedule = NoiseSchedule(100)
    abar = schedule.alpha_bars
    assert abar.shape == (100,)
    assert torch.all(abar[1:] < abar[:-1])
    assert 0.999 < float(abar[0]) < 1.0 and 0.0 < float(abar[-1]) < 1e-4
    assert float(schedule.betas.max()) <= 0.999


def test_add_noise_has_the_forward_process_statistics() -> None:
    schedule = NoiseSchedule(100)
    g = torch.Generator().manual_seed(0)
    n, value = 200_000, 0.7
    x0 = torch.full((n, 1), value)
    for t in (0, 30, 70, 99):
        xt = schedule.add_noise(x0, torch.randn(n, 1, generator=g), torch.full((n,), t))
        abar = float(schedule.alpha_bars[t])
        assert float(xt.mean()) == pytest.approx(math.sqrt(abar) * value, abs=0.01)
        assert float(xt.std()) == pytest.approx(math.sqrt(1 - abar), abs=0.01)


@pytest.mark.parametrize("steps", [1, 10, 100])
def test_ddim_steps_start_at_pure_noise_and_descend(steps: int) -> None:
    seq = NoiseSchedule(100).ddim_steps(steps)
    assert len(seq) == steps and seq[0] == 99
    assert all(a > b >= 0 for a, b in itertools.pairwise(seq))


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
@pytest.mark.parametrize("steps", [1, 3, 10, 100])
def test_ddim_recovers_x0_exactly_with_an_oracle_denoiser(prediction: str, steps: int) -> None:
    schedule = NoiseSchedule(100)
    g = torch.Generator().manual_seed(steps)
    # float64: at t = K - 1, sqrt(abar) ~ 5e-4 scales float32 rounding of x_t up to ~1e-4.
    x0 = torch.rand(4, 8, 3, generator=g, dtype=torch.float64) * 1.8 - 0.9  # (B, Tp, A)
    x = torch.randn(4, 8, 3, generator=g, dtype=torch.float64)  # x_T
    seq = schedule.ddim_steps(steps)
    for i, t in enumerate(seq):
        abar = float(schedule.alpha_bars[t])
        # The oracle knows x0, so it reports the exact noise that makes x_t from x0.
        out = (x - math.sqrt(abar) * x0) / math.sqrt(1 - abar) if prediction == "epsilon" else x0
        prev = seq[i + 1] if i + 1 < len(seq) else -1
        x = schedule.ddim_step(x, out, t, prev, prediction=prediction)
    torch.testing.assert_close(x, x0, atol=1e-9, rtol=0)


def test_ddim_with_eta_one_is_the_ddpm_posterior() -> None:
    schedule = NoiseSchedule(100)
    g = torch.Generator().manual_seed(0)
    x0, eps, z = (torch.randn(2, 8, 3, generator=g, dtype=torch.float64) for _ in range(3))
    for t in (1, 10, 50, 98):
        abar, abar_prev = float(schedule.alpha_bars[t]), float(schedule.alpha_bars[t - 1])
        beta = float(schedule.betas[t])
        xt = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * eps
        mean = schedule.ddim_step(xt, eps, t, t - 1, eta=1.0, clip=False)
        # Ho et al. eq. 7: the mean and variance of q(x_{t-1} | x_t, x0).
        posterior_mean = (math.sqrt(abar_prev) * beta / (1 - abar)) * x0 + (
            math.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar)
        ) * xt
        torch.testing.assert_close(mean, posterior_mean, atol=1e-10, rtol=1e-8)
        noisy = schedule.ddim_step(xt, eps, t, t - 1, eta=1.0, noise=z, clip=False)
        variance = (1 - abar_prev) / (1 - abar) * beta
        torch.testing.assert_close(noisy - mean, math.sqrt(variance) * z, atol=1e-10, rtol=1e-8)


# ---- EMA -----------------------------------------------------------------------------------


def test_ema_decay_warms_up_as_a_power_law() -> None:
    assert ema_decay(0, 0.75, 0.9999) == 0.0
    assert ema_decay(1, 0.75, 0.9999) == 0.0  # the first two updates copy the weights
    assert ema_decay(2, 0.75, 0.9999) == pytest.approx(1 - 2**-0.75)
    assert ema_decay(10**9, 0.75, 0.9999) == 0.9999


def test_ema_update_math_and_eval_uses_the_average(tmp_path: Path) -> None:
    policy = _policy(ema_power=0.5)
    param_name, param = next(iter(policy.denoiser.named_parameters()))
    assert policy.ema is not None
    assert not any(n.startswith("ema.") for n, _ in policy.named_parameters())
    expected = param.detach().clone()
    for n in range(4):
        with torch.no_grad():
            param.add_(float(n + 1))  # a stand-in optimizer step
        decay = ema_decay(n, 0.5, 0.9999)
        expected = decay * expected + (1 - decay) * param.detach()
        policy.after_optimizer_step()
    shadow = dict(policy.ema["denoiser"].named_buffers())[param_name]
    torch.testing.assert_close(shadow, expected)
    assert int(policy.optimizer_steps) == 4

    batch = _batch(policy)
    with torch.no_grad():
        ema_loss, _ = policy.eval()(batch)
        live_loss, _ = policy.train()(batch)
    assert float(ema_loss) != float(live_loss)  # eval mode runs the average, train the weights

    path = tmp_path / "diffusion.pt"
    save_checkpoint(path, policy, env_args={"env_name": "lift"})
    loaded = load_policy(path)
    assert isinstance(loaded, DiffusionPolicy) and loaded.ema is not None
    torch.testing.assert_close(dict(loaded.ema["denoiser"].named_buffers())[param_name], shadow)
    assert float(loaded(batch)[0]) == float(ema_loss)


def test_training_noise_is_fixed_between_optimizer_steps() -> None:
    policy = _policy()
    batch = _batch(policy)
    with torch.no_grad():
        first, again = float(policy(batch)[0]), float(policy(batch)[0])
        policy.after_optimizer_step()
        after = float(policy(batch)[0])
    assert first == again and after != first


def test_padded_actions_never_reach_the_denoiser() -> None:
    policy = _policy()
    batch = _batch(policy)
    batch["mask"][:, 5:] = 0.0
    with torch.no_grad():
        base = float(policy(batch)[0])
        batch["actions"][:, 5:] = 0.9
        assert float(policy(batch)[0]) == base


# ---- end to end ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [TINY["transformer"], {"unet_channels": (32, 64), "step_embed_dim": 16}],
    ids=["transformer", "unet"],
)
def test_sampled_chunks_follow_the_observations_they_were_trained_on(
    overrides: dict[str, Any],
) -> None:
    """DDPM training, EMA and DDIM sampling together: after a short overfit, the first
    action sampled for each observation is close to the demonstrated one."""
    torch.manual_seed(0)
    config = DiffusionConfig(seq_len=4, action_horizon=4, inference_steps=8, frame_stack=1)
    policy = dataclasses.replace(config, **overrides).build(SPEC, {})
    g = torch.Generator().manual_seed(0)
    qpos = torch.randn(64, 4, 5, generator=g)  # (B, To + Tp - 1, 5)
    ramp = torch.linspace(1.0, 0.25, 4)[None, :, None]  # (1, Tp, 1)
    actions = 0.8 * torch.tanh(qpos[:, :1, :3]) * ramp  # (B, Tp, 3): a function of the obs
    batch = {"obs/qpos": qpos, "obs/cube": torch.zeros(64, 4, 3), "actions": actions}
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(300):
        loss, _ = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        policy.after_optimizer_step()
    first = policy.act_batch({"qpos": qpos[:, 0].numpy(), "cube": np.zeros((64, 3), np.float32)})
    error = np.abs(first - actions[:, 0].numpy()).mean()
    assert error < 0.3 * np.abs(actions[:, 0].numpy()).mean(), error  # vs. acting 0: ~0.42


# ---- networks ------------------------------------------------------------------------------


@pytest.mark.parametrize("denoiser", ["unet", "transformer", "mlp"])
@pytest.mark.parametrize(("frame_stack", "seq_len"), [(1, 4), (2, 8), (3, 16)])
def test_denoiser_output_has_the_chunk_shape(denoiser: str, frame_stack: int, seq_len: int) -> None:
    policy = _policy(denoiser, frame_stack=frame_stack, seq_len=seq_len, action_horizon=2)
    sample = torch.randn(5, seq_len, 3)
    out = policy.denoiser(sample, torch.tensor([0, 1, 50, 98, 99]), torch.randn(5, frame_stack, 8))
    assert out.shape == (5, seq_len, 3) and torch.isfinite(out).all()


# ---- run time ------------------------------------------------------------------------------


@pytest.mark.parametrize("denoiser", ["unet", "transformer", "mlp"])
def test_queue_executes_action_horizon_then_replans(denoiser: str) -> None:
    policy = _policy(denoiser)  # Ta = 3 of Tp = 8
    plans: list[torch.Tensor] = []
    sample_chunk = policy.sample_chunk

    def recording(*args: Any) -> torch.Tensor:
        plans.append(sample_chunk(*args))
        return plans[-1]

    policy.sample_chunk = recording  # type: ignore[method-assign]
    actions = [policy.act(o) for o in _obs_stream(7)]
    assert len(plans) == 3  # planned at steps 0, 3 and 6
    executed = np.stack(actions[:6]).reshape(2, 3, 3)  # (plans, Ta, A)
    planned = torch.stack([p[0, :3] for p in plans[:2]]).numpy()  # first Ta of each chunk
    np.testing.assert_array_equal(executed, planned)
    np.testing.assert_array_equal(actions[6], plans[2][0, 0].numpy())


@pytest.mark.parametrize("denoiser", ["unet", "transformer", "mlp"])
def test_seeded_sampling_replays_after_reset(denoiser: str) -> None:
    policy = _policy(denoiser)
    stream = _obs_stream(7)
    first = np.stack([policy.act(o) for o in stream])
    policy.reset()
    np.testing.assert_array_equal(np.stack([policy.act(o) for o in stream]), first)
    other = _policy(denoiser, sample_seed=1)
    other.load_state_dict(policy.state_dict())
    assert not np.array_equal(np.stack([other.act(o) for o in stream]), first)


def test_stochastic_ddim_is_seeded_too() -> None:
    policy = _policy(ddim_eta=1.0)
    stream = _obs_stream(4)
    first = np.stack([policy.act(o) for o in stream])
    policy.reset()
    np.testing.assert_array_equal(np.stack([policy.act(o) for o in stream]), first)


# ---- configuration errors ------------------------------------------------------------------


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ApprenticeError, match="seq_len=12"):
        DiffusionConfig(seq_len=12, unet_channels=(8, 16, 32, 64))
    with pytest.raises(ApprenticeError, match="action_horizon"):
        DiffusionConfig(seq_len=8, action_horizon=9)
    with pytest.raises(ApprenticeError, match="inference_steps"):
        DiffusionConfig(num_train_steps=10, inference_steps=11)
    with pytest.raises(ApprenticeError, match="denoiser 'gru'"):
        DiffusionConfig(denoiser="gru")
    with pytest.raises(ApprenticeError, match="unet_channels must be integers"):
        DiffusionConfig(unet_channels=("a", "b"))
    assert DiffusionConfig(unet_channels="32,64,128").unet_channels == (32, 64, 128)
    # The U-Net's divisibility rule does not bind the transformer.
    assert DiffusionConfig(denoiser="transformer", seq_len=12).chunk_size == 12


def test_horizon_longer_than_the_median_demo_is_refused(demo_file: Path) -> None:
    dataset = DemoDataset.load(demo_file, with_images=False)
    median = int(np.median(dataset.episode_lengths))
    check_horizon(DiffusionConfig(denoiser="transformer", seq_len=median), dataset)
    with pytest.raises(ApprenticeError, match=f"chunk_size={median + 1} .*median"):
        check_horizon(DiffusionConfig(denoiser="transformer", seq_len=median + 1), dataset)


# ---- integration ---------------------------------------------------------------------------


def test_camera_encoders_are_averaged_too(tmp_path: Path) -> None:
    spec = ObsActSpec({"qpos": (5,), "cam": (16, 16, 3)}, action_dim=3)
    torch.manual_seed(0)
    config = DiffusionConfig(
        **TINY["unet"],
        seq_len=4,
        action_horizon=2,
        inference_steps=2,
        image_keys=("cam",),
        camera=CameraConfig(feature_dim=8, num_keypoints=4, random_shift=0),
    )
    policy = config.build(spec, {})
    g = torch.Generator().manual_seed(0)
    batch = {
        "obs/qpos": torch.randn(4, 5, 5, generator=g),
        "obs/cam": torch.randint(0, 255, (4, 5, 16, 16, 3), generator=g, dtype=torch.uint8),
        "actions": torch.rand(4, 4, 3, generator=g) * 2 - 1,
        "mask": torch.ones(4, 4),
    }
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    for _ in range(3):
        loss, _ = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        policy.after_optimizer_step()
    live = policy.image_encoder("cam")
    assert policy.eval().image_encoder("cam") is not live  # eval mode encodes with the average
    shadow = dict(policy.image_encoder("cam").named_buffers())
    assert any(not torch.equal(shadow[n], p) for n, p in live.named_parameters())
    # The base class's encoding path (obs_windows, act) goes through the swapped encoder.
    frames = {"qpos": batch["obs/qpos"][:, 0], "cam": batch["obs/cam"][:, 0]}
    with torch.no_grad():
        averaged, trained = policy.encode_frames(frames), policy.train().encode_frames(frames)
    assert not torch.equal(averaged, trained)
    policy.eval()
    obs = {"qpos": np.zeros(5, np.float32), "cam": np.full((16, 16, 3), 128, np.uint8)}
    path = tmp_path / "camera.pt"
    save_checkpoint(path, policy, env_args={"env_name": "lift"})
    policy.reset()
    np.testing.assert_array_equal(load_policy(path).act(obs), policy.act(obs))


def test_the_shared_trainer_drives_ema_and_noise(demo_file: Path, tmp_path: Path) -> None:
    from apprentice.algos.trainer import TrainConfig, train

    policy_config = DiffusionConfig(**TINY["transformer"], seq_len=4, action_horizon=2)
    result = train(
        TrainConfig(
            dataset=str(demo_file),
            out=str(tmp_path / "run"),
            policy=policy_config,
            epochs=1,
            steps_per_epoch=6,
            batch_size=8,
            progress=False,
            threads=1,
        )
    )
    policy = load_policy(result.final_checkpoint)
    assert isinstance(policy, DiffusionPolicy) and policy.ema is not None
    assert int(policy.optimizer_steps) == 6 and policy.averaging()
    live = dict(policy.denoiser.named_parameters())
    shadow = dict(policy.ema["denoiser"].named_buffers())
    assert any(not torch.equal(shadow[n], p) for n, p in live.items())
    dataset = DemoDataset.load(demo_file, with_images=False)
    action = policy.act({k: v[0] for k, v in dataset.obs.items()})
    assert action.shape == (dataset.spec.action_dim,) and np.all(np.abs(action) <= 1)


def test_step_counter_and_noise_seed_stay_on_the_host_when_the_policy_moves() -> None:
    # The trainer reads both every step; on a GPU a read would wait for the device. "meta"
    # stands in for the GPU here: everything else moves, the two counters do not.
    policy = _policy()
    seed = int(policy.noise_seed)
    moved = policy.to(torch.device("meta"))
    assert moved is policy and next(policy.parameters()).device.type == "meta"
    assert policy.optimizer_steps.device.type == "cpu" and int(policy.noise_seed) == seed
    assert policy.state_dict()["optimizer_steps"].device.type == "cpu"
