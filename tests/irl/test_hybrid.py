"""BC then RL (`irl --algo bc-rl`): pretraining, the decaying BC term, a smoke run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from apprentice.data import DemoWriter, Episode
from apprentice.envs.base import make_task
from apprentice.errors import ApprenticeError
from apprentice.irl.common import IRLConfig
from apprentice.irl.envs import PendulumPDExpert, flatten_obs, load_demo_transitions, make_irl_env
from apprentice.irl.hybrid import (
    BCRLConfig,
    FlatNormalized,
    PPOWithBC,
    demo_action_mse,
    pretrain_bc,
    run_bc_rl,
)
from apprentice.irl.label import strip_actions

PENDULUM = "gym/InvertedPendulum-v5"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def noisy_pd_demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PD law's clean labels on states its noisy execution visits (DART-style): the
    noise-free PD expert stays so close to upright that its actions hardly vary."""
    path = tmp_path_factory.mktemp("hybrid") / "pd_noisy.hdf5"
    task = make_task(PENDULUM)
    expert = PendulumPDExpert(task)
    rng = np.random.default_rng(0)
    with DemoWriter(path, env_args=task.env_args) as writer:
        for seed in range(6):
            obs, _ = task.reset(seed=seed)
            steps: list[tuple[np.ndarray, ...]] = []
            for _ in range(100):
                label = expert.label(obs)
                noisy = np.clip(label + 0.3 * rng.standard_normal(1), -1, 1)
                nxt, reward, terminated, _, _ = task.step(noisy)
                steps.append((obs["state"], nxt["state"], label, np.array([reward], np.float32)))
                obs = nxt
                if terminated:
                    break
            t = len(steps)
            o, n, a, r = (np.stack(x) for x in zip(*steps, strict=True))
            ends = (np.arange(t) == t - 1).astype(np.float32)
            writer.append(
                Episode(
                    obs={"state": o},
                    next_obs={"state": n},
                    actions=a.astype(np.float32),
                    rewards=r[:, 0],
                    dones=ends,
                    states=np.zeros((t, 0)),
                    seed=seed,
                )
            )
        writer.set_data_attrs({"expert_return": 1000.0, "random_return": 4.6})
    return path


def _model(demos: Path, cfg: BCRLConfig) -> tuple[PPOWithBC, np.ndarray, np.ndarray]:
    env = make_irl_env(PENDULUM, 0)
    t = load_demo_transitions(demos, env.obs_keys)
    raw = flatten_obs(t.obs, env.obs_keys)
    mean, std = raw.mean(0), np.maximum(raw.std(0), 1e-2)
    venv = DummyVecEnv([lambda: FlatNormalized(env, mean, std)])
    model = PPOWithBC(
        "MlpPolicy",
        venv,
        n_steps=cfg.n_steps,
        batch_size=cfg.batch_size,
        n_epochs=cfg.n_epochs,
        seed=0,
        policy_kwargs={"net_arch": [32, 32], "log_std_init": -1.0},
    )
    obs = ((raw - mean) / std).astype(np.float32)
    model.setup_bc(
        obs, t.actions, lambda0=cfg.lambda0, lambda1=cfg.lambda1, batch=cfg.bc_batch, seed=0
    )
    return model, obs, t.actions


def test_bc_pretraining_makes_the_actor_reproduce_demo_actions(noisy_pd_demos: Path) -> None:
    model, obs, actions = _model(noisy_pd_demos, BCRLConfig(bc_batch=128))
    log_std = model.policy.log_std.detach().clone()
    before = demo_action_mse(model, obs, actions)
    losses = pretrain_bc(model, 400, 3e-3)
    after = demo_action_mse(model, obs, actions)
    assert after < 0.1 * before, (before, after)
    assert losses[-1] < losses[0]
    assert torch.equal(model.policy.log_std, log_std)  # exploration noise left for RL


def test_bc_weight_decays_per_update(noisy_pd_demos: Path) -> None:
    cfg = BCRLConfig(lambda0=0.2, lambda1=0.5, n_steps=64, batch_size=32, n_epochs=2)
    model, _, _ = _model(noisy_pd_demos, cfg)
    model.learn(3 * 64)
    assert model.bc_weights == pytest.approx([0.2, 0.1, 0.05])
    assert model.bc_weight() == pytest.approx(0.025)


def test_a_frozen_actor_leaves_the_clone_and_trains_the_critic(noisy_pd_demos: Path) -> None:
    cfg = BCRLConfig(lambda0=0.1, lambda1=1.0, n_steps=64, batch_size=32, n_epochs=2)
    model, _, _ = _model(noisy_pd_demos, cfg)
    policy = model.policy

    def snapshot(modules: list[torch.nn.Module]) -> list[torch.Tensor]:
        return [p.detach().clone() for m in modules for p in m.parameters()]

    actor = [policy.mlp_extractor.policy_net, policy.action_net]
    critic = [policy.mlp_extractor.value_net, policy.value_net]
    actor0, critic0 = snapshot(actor), snapshot(critic)
    log_std0 = policy.log_std.detach().clone()
    model.actor_frozen = True
    model.learn(64)
    assert all(torch.equal(a, b) for a, b in zip(snapshot(actor), actor0, strict=True))
    assert torch.equal(policy.log_std, log_std0)
    assert not all(torch.equal(a, b) for a, b in zip(snapshot(critic), critic0, strict=True))
    assert model.bc_weights == []  # no BC term on a frozen actor
    # Unfrozen, the next update moves the actor again (PPO's step and the BC term).
    model.actor_frozen = False
    model.learn(64, reset_num_timesteps=False)
    assert not all(torch.equal(a, b) for a, b in zip(snapshot(actor), actor0, strict=True))
    assert model.bc_weights == [pytest.approx(0.1)]


def test_bc_rl_smoke_run_logs_clone_then_fine_tuning(noisy_pd_demos: Path, tmp_path: Path) -> None:
    cfg = IRLConfig(
        algo="bc-rl",
        task=PENDULUM,
        demos=str(noisy_pd_demos),
        out=str(tmp_path / "run"),
        env_steps=256,
        eval_episodes=1,
        algo_args=("bc_steps=300", "n_steps=128", "batch_size=64", "n_epochs=2", "threads=1"),
    )
    r = run_bc_rl(cfg)
    assert [h["env_steps"] for h in r.history] == [0, 128, 256]
    first = r.history[0]
    assert first["demo_mse"] < 0.2 * first["demo_mse_before_bc"]
    assert [h["bc_weight"] for h in r.history] == pytest.approx([0.1, 0.095, 0.09025])
    assert all("normalized_return" in h for h in r.history)
    assert Path(r.final["policy"]).is_file()
    assert run_bc_rl(cfg).history == r.history  # a finished run resumes to itself


def test_state_only_demos_are_refused(noisy_pd_demos: Path, tmp_path: Path) -> None:
    states = tmp_path / "states.hdf5"
    strip_actions(noisy_pd_demos, states)
    cfg = IRLConfig(algo="bc-rl", task=PENDULUM, demos=str(states), out=str(tmp_path / "r"))
    with pytest.raises(ApprenticeError, match="state-only"):
        run_bc_rl(cfg)
    with pytest.raises(ApprenticeError, match="lambda1"):
        BCRLConfig(lambda1=0.0)


def test_bc_rl_logs_each_evaluation_to_wandb(
    noisy_pd_demos: Path, tmp_path: Path, wandb_offline: Any
) -> None:
    from apprentice.tracking import STEP

    cfg = IRLConfig(
        algo="bc-rl",
        task=PENDULUM,
        demos=str(noisy_pd_demos),
        out=str(tmp_path / "run"),
        env_steps=128,
        eval_episodes=1,
        algo_args=("bc_steps=20", "n_steps=64", "batch_size=32", "n_epochs=1", "threads=1"),
        wandb="proj",
    )
    r = run_bc_rl(cfg)
    (run,) = wandb_offline.read_offline_runs(r.run_dir)
    assert run.project == "proj" and run.job_type == "irl-bc-rl"
    assert run.config["irl"]["algo"] == "bc-rl" and "wandb" not in run.config["irl"]
    assert [row[STEP] for row in run.history] == [h["env_steps"] for h in r.history] == [0, 64, 128]
    for row, h in zip(run.history, r.history, strict=True):
        for key in ("mean_return", "normalized_return", "bc_weight", "demo_mse"):
            assert row[f"epoch/{key}"] == h[key]  # TensorBoard's names
