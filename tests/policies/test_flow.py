"""Flow matching policy: the training interpolant and target, Euler sampling, time sampling,
seeded act-time noise, export of the queue, and config errors.

The shared contract (tests/policies/test_policy_contract.py) trains, acts, saves and loads the
policy; the EMA and training inputs it shares with diffusion are tested in test_diffusion.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from apprentice.data.spec import ObsActSpec
from apprentice.deploy.export import export_policy
from apprentice.deploy.runtime import load_exported
from apprentice.errors import ApprenticeError
from apprentice.policies import FlowConfig, FlowPolicy
from apprentice.policies.generative import seeded_generator

SPEC = ObsActSpec({"qpos": (5,), "cube": (3,)}, action_dim=3)


def _policy(**overrides: Any) -> FlowPolicy:
    torch.manual_seed(0)
    kwargs = {"seq_len": 8, "action_horizon": 3, "inference_steps": 3, **overrides}
    return FlowConfig.tiny(**kwargs).build(SPEC, {})


def _batch(policy: FlowPolicy, b: int = 6) -> dict[str, torch.Tensor]:
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


class _Recorder(torch.nn.Module):
    """A stand-in network: records its inputs, returns `fn(sample, step)`."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, sample: torch.Tensor, step: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        self.calls.append((sample.clone(), step.clone()))
        return self.fn(sample, step)


# ---- training ------------------------------------------------------------------------------


@pytest.mark.parametrize("time_sampling", ["uniform", "beta"])
def test_loss_regresses_the_straight_line_velocity(time_sampling: str) -> None:
    """x_t = (1 - t) x0 + t x1 goes in with step t * 1000, and the loss is the masked MSE of
    the output to x1 - x0 (here the network outputs 0, so the loss is |x1 - x0|^2)."""
    policy = _policy(time_sampling=time_sampling, ema=False)
    net = _Recorder(lambda sample, step: torch.zeros_like(sample))
    policy.denoiser = net
    batch = _batch(policy)
    batch["mask"][:, 6:] = 0.0
    loss, _ = policy(batch)
    gen = policy.training_generator()
    x1 = batch["actions"].clone()
    x1[:, 6:] = x1[:, 5:6]  # padded steps hold the last real action
    x0 = torch.randn(x1.shape, generator=gen)
    t = policy.sample_times(x1.shape[0], gen)
    (sample, step), *more = net.calls
    assert not more
    torch.testing.assert_close(step, t * 1000)
    tt = t[:, None, None]
    torch.testing.assert_close(sample, (1 - tt) * x0 + tt * x1)
    per_step = (x1 - x0).pow(2).mean(-1)[:, :6]  # (B, 6): the unmasked steps
    torch.testing.assert_close(loss, per_step.mean())


def test_time_sampling_distributions() -> None:
    gen = torch.Generator().manual_seed(0)
    uniform = _policy(time_sampling="uniform").sample_times(200_000, gen)
    beta = _policy(time_sampling="beta").sample_times(200_000, gen)
    assert 0.0 <= float(uniform.min()) and float(uniform.max()) <= 1.0
    assert float(uniform.mean()) == pytest.approx(0.5, abs=0.005)
    # pi0: t = 0.999 (1 - u), u ~ Beta(1.5, 1): E[u] = 0.6, P(u <= x) = x^1.5.
    assert 0.0 <= float(beta.min()) and float(beta.max()) <= 0.999
    assert float(beta.mean()) == pytest.approx(0.999 * 0.4, abs=0.005)
    noisy_half = float((beta < 0.999 * 0.5).float().mean())
    assert noisy_half == pytest.approx(1 - 0.5**1.5, abs=0.005)  # ~0.65 of times noisier than 1/2


def test_training_noise_is_fixed_between_optimizer_steps() -> None:
    policy = _policy()
    batch = _batch(policy)
    with torch.no_grad():
        first, again = float(policy(batch)[0]), float(policy(batch)[0])
        policy.after_optimizer_step()
        after = float(policy(batch)[0])
    assert first == again and after != first


# ---- sampling ------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_euler_reaches_the_target_with_the_exact_velocity(steps: int) -> None:
    """The velocity of the straight path to a point c is (c - x) / (1 - t): Euler steps at
    t = 0, 1/S, ..., 1 - 1/S land on c exactly, whatever S."""
    policy = _policy(inference_steps=steps, ema=False).eval()
    target = torch.linspace(-0.8, 0.8, 8 * 3).reshape(1, 8, 3)  # (1, Tp, A)
    net = _Recorder(lambda x, step: (target - x) / (1 - step / 1000)[:, None, None])
    policy.denoiser = net
    noise = torch.randn(2, 8, 3, generator=torch.Generator().manual_seed(0))
    chunk = policy.sample_chunk(torch.zeros(2, 2, 8), noise)
    torch.testing.assert_close(chunk, target.expand(2, -1, -1))
    times = [float(step[0]) / 1000 for _, step in net.calls]
    assert times == pytest.approx([i / steps for i in range(steps)])


def test_flow_learns_a_constant_chunk() -> None:
    """Loss falls by far on a target that ignores the observations, and chunks sampled from
    different noise all come out close to that one chunk."""
    policy = _policy(embed_dim=32, num_layers=2, inference_steps=4)
    target = 0.7 * torch.sin(torch.linspace(0, 3, 8))[:, None] * torch.tensor([1.0, -0.5, 0.3])
    batch = _batch(policy, b=32)
    batch["actions"] = target.expand(32, -1, -1).clone()  # (B, Tp, A)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        loss, _ = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        policy.after_optimizer_step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-20:]) < 0.05 * np.mean(losses[:5]), (losses[:5], losses[-20:])
    policy.eval()
    noise = torch.randn(16, 8, 3, generator=torch.Generator().manual_seed(3))
    obs = torch.randn(16, 2, 8, generator=torch.Generator().manual_seed(4))
    chunks = policy.sample_chunk(obs, noise)  # (16, Tp, A)
    error = (chunks - target).abs()
    assert float(error.mean()) < 0.05 and float(error.max()) < 0.2, error.mean()
    # Acting gives the chunk's first action, then the next ones from the queue.
    acted = np.stack([policy.act(o) for o in _obs_stream(3)])
    np.testing.assert_allclose(acted, target[:3].numpy(), atol=0.2)


# ---- run time ------------------------------------------------------------------------------


def test_queue_executes_action_horizon_then_replans_from_the_next_noise() -> None:
    policy = _policy()  # Ta = 3 of Tp = 8
    noises: list[torch.Tensor] = []
    sample_chunk = policy.sample_chunk

    def recording(obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        noises.append(noise)
        return sample_chunk(obs, noise)

    policy.sample_chunk = recording  # type: ignore[method-assign]
    for o in _obs_stream(7):
        policy.act(o)
    assert len(noises) == 3  # planned at steps 0, 3 and 6
    bank = torch.randn((64, 8, 3), generator=seeded_generator(policy.config.sample_seed))
    for n, noise in enumerate(noises):
        torch.testing.assert_close(noise, bank[n : n + 1], rtol=0, atol=0)


def test_seeded_sampling_replays_after_reset_and_depends_on_the_seed() -> None:
    policy = _policy()
    stream = _obs_stream(7)
    first = np.stack([policy.act(o) for o in stream])
    policy.reset()
    np.testing.assert_array_equal(np.stack([policy.act(o) for o in stream]), first)
    other = _policy(sample_seed=1)
    other.load_state_dict(policy.state_dict())
    assert not np.array_equal(np.stack([other.act(o) for o in stream]), first)


def test_act_batch_rows_equal_separate_act_streams() -> None:
    """Rows at different points of their plans (row 1 reset mid-way) act as separate
    `act` streams; the noise of plan n is the same in both."""
    policy = _policy()
    streams = [_obs_stream(8, seed) for seed in (0, 1)]
    single = []
    for stream in (streams[0], streams[1][2:]):
        policy.reset()
        single.append(np.stack([policy.act(o) for o in stream]))
    policy.reset()
    batched = []
    for t in range(8):
        if t == 2:
            policy.reset(rows=[1])
        batched.append(
            policy.act_batch({k: np.stack([s[t][k] for s in streams]) for k in SPEC.obs_shapes})
        )
    rows = np.stack(batched, 1)  # (2, T, A)
    np.testing.assert_allclose(rows[0], single[0], atol=1e-5)
    np.testing.assert_allclose(rows[1, 2:], single[1], atol=1e-5)


def test_noise_of_plan_n_repeats_every_64_plans() -> None:
    policy = _policy().eval()
    obs = torch.randn(1, 2, 8).expand(3, -1, -1)
    chunks = policy.plan_chunk(obs, torch.tensor([0, 64, 1]))
    torch.testing.assert_close(chunks[0], chunks[1], rtol=0, atol=0)
    assert not torch.equal(chunks[0], chunks[2])


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_replans_from_the_same_noise_past_the_bank(fmt: str, tmp_path: Path) -> None:
    """Planning every step (Ta = 1), 140 steps use the bank of 64 noises twice over: the
    exported step, whose queue is explicit state, acts exactly as the policy throughout."""
    policy = _policy(action_horizon=1, frame_stack=1).eval()
    result = export_policy(policy, tmp_path / f"flow.{fmt}", fmt=fmt, check_samples=10)
    assert [s.name for s in result.meta.state] == ["chunk", "step"]
    assert result.meta.state[0].shape == (1, 1, 3)
    runtime = load_exported(result.path)
    stream = _obs_stream(140, seed=5)
    policy.reset()
    want = np.stack([policy.act(o) for o in stream])
    got = np.stack([runtime.act(o) for o in stream])
    np.testing.assert_allclose(got, want, atol=1e-5)


# ---- configuration errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"inference_steps": 0}, "inference_steps"),
        ({"time_sampling": "lognormal"}, "time_sampling 'lognormal'"),
        ({"action_horizon": 17}, "action_horizon"),
        ({"denoiser": "gru"}, "denoiser 'gru'"),
        ({"denoiser": "unet", "seq_len": 10, "unet_channels": (8, 16, 32)}, "seq_len=10"),
        ({"unet_channels": ("a", "b")}, "unet_channels must be integers"),
        ({"embed_dim": 30, "num_heads": 4}, "embed_dim=30"),
        ({"dropout": 1.0}, "dropout"),
        ({"ema_power": 0.0}, "ema_power"),
        ({"seq_len": 0}, "seq_len"),
    ],
)
def test_config_errors_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ApprenticeError, match=rf"^flow policy: .*{field}") as info:
        FlowConfig(**overrides)
    assert "\n" not in str(info.value)


def test_defaults() -> None:
    config = FlowConfig()
    assert (config.seq_len, config.frame_stack, config.action_horizon) == (16, 2, 8)
    assert config.denoiser == "transformer" and config.inference_steps == 4
    assert FlowConfig(unet_channels="32,64").unet_channels == (32, 64)


# ---- integration ---------------------------------------------------------------------------


def test_trained_checkpoint_acts_with_the_average_and_exports(
    demo_file: Path, tmp_path: Path
) -> None:
    """The trainer drives the EMA; the checkpoint acts with it (the step count is loaded) and
    `apprentice export` writes a step that acts as the loaded policy."""
    from apprentice.algos.trainer import TrainConfig, train
    from apprentice.cli.main import main
    from apprentice.data.dataset import DemoDataset
    from apprentice.policies import load_policy

    result = train(
        TrainConfig(
            dataset=str(demo_file),
            out=str(tmp_path / "run"),
            policy=FlowConfig.tiny(seq_len=4, action_horizon=2),
            epochs=1,
            steps_per_epoch=6,
            batch_size=8,
            progress=False,
            threads=1,
        )
    )
    policy = load_policy(result.final_checkpoint)
    assert isinstance(policy, FlowPolicy) and policy.ema is not None
    assert int(policy.optimizer_steps) == 6 and policy.eval().averaging()
    out = tmp_path / "flow.torchscript.pt"
    export = ["export", str(result.final_checkpoint), "--format", "torchscript", "--out", str(out)]
    assert main(export) == 0
    dataset = DemoDataset.load(demo_file, with_images=False)
    stream = [{k: v[t] for k, v in dataset.obs.items()} for t in range(7)]
    runtime = load_exported(out)
    policy.reset()
    want = np.stack([policy.act(o) for o in stream])
    np.testing.assert_allclose(np.stack([runtime.act(o) for o in stream]), want, atol=1e-5)
