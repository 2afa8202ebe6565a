"""GAIL / AIRL / GAIfO: the discriminators separate expert from random data, divergence is
caught, and AIRL's state-only reward trains a fresh learner (the reason AIRL exists)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from apprentice.data.episode import Episode
from apprentice.data.store import DemoWriter
from apprentice.envs import base as envs_base
from apprentice.envs.base import register_task
from apprentice.errors import ApprenticeError
from apprentice.irl.adversarial import load_generator, run_adversarial
from apprentice.irl.common import IRLConfig
from apprentice.irl.diagnostics import DivergenceMonitor
from apprentice.irl.discriminators import Batch, Discriminator, discriminator_loss, load_reward
from apprentice.irl.envs import (
    evaluate_policy,
    flatten_obs,
    load_demo_transitions,
    make_irl_env,
    record_expert_demos,
)

PENDULUM = "gym/InvertedPendulum-v5"


@pytest.fixture(scope="session")
def pendulum_demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The PD law, not an SB3 expert: CI has no trained experts (benchmarks/out is not kept).
    path = tmp_path_factory.mktemp("irl") / "pendulum.hdf5"
    return record_expert_demos(PENDULUM, "pd", 3, path, seed=0)


# ---- the discriminator ---------------------------------------------------------------------


def _toy_batch(rng: np.random.Generator, expert: bool, n: int = 256) -> Batch:
    """Expert: states near +1 moving right with action +0.5; random: uniform everywhere."""
    if expert:
        obs = rng.normal(1.0, 0.1, (n, 2))
        actions = rng.normal(0.5, 0.05, (n, 1))
        next_obs = obs + 0.1
    else:
        obs = rng.uniform(-2, 2, (n, 2))
        actions = rng.uniform(-1, 1, (n, 1))
        next_obs = obs + rng.uniform(-0.2, 0.2, (n, 2))
    t = torch.as_tensor
    return Batch(
        obs=t(obs, dtype=torch.float32),
        actions=t(actions, dtype=torch.float32),
        next_obs=t(next_obs, dtype=torch.float32),
        dones=torch.zeros(n),
        log_pi=torch.full((n,), math.log(0.5)),  # uniform policy on [-1, 1]
    )


@pytest.mark.parametrize("kind", ["gail", "airl", "gaifo"])
def test_discriminator_separates_expert_from_random(kind: str) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    disc = Discriminator(kind, np.zeros(2), np.ones(2), act_dim=1, hidden=(32, 32))
    opt = torch.optim.Adam(disc.parameters(), lr=3e-3)
    for _ in range(300):
        loss, _ = discriminator_loss(disc, _toy_batch(rng, True), _toy_batch(rng, False))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        _, stats = discriminator_loss(disc, _toy_batch(rng, True), _toy_batch(rng, False))
    assert stats["acc_expert"] > 0.95
    assert stats["acc_generator"] > 0.8  # uniform data overlaps the expert's a little
    assert stats["disc_loss"] < 0.6


def test_gradient_penalty_adds_to_the_loss() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    disc = Discriminator("gail", np.zeros(2), np.ones(2), act_dim=1, hidden=(16,))
    exp, gen = _toy_batch(rng, True), _toy_batch(rng, False)
    plain, _ = discriminator_loss(disc, exp, gen)
    torch.manual_seed(0)
    penalized, _ = discriminator_loss(disc, exp, gen, grad_penalty=10.0)
    # A fresh network's input gradients are far from norm 1: the penalty is large.
    assert float(penalized.detach()) > float(plain.detach()) + 1.0


@pytest.mark.parametrize("kind", ["gail", "gaifo"])
def test_gradient_penalty_is_taken_on_the_normalized_inputs(kind: str) -> None:
    """A feature stored at 1e-4 times the scale (its demo std too) gives D the same inputs,
    so the same penalty: the penalty must not grow as 1 / std^2 on a barely varying feature."""
    rng = np.random.default_rng(2)
    exp, gen = _toy_batch(rng, True), _toy_batch(rng, False)
    scale = torch.tensor([1e-4, 1.0])

    def shrunk(b: Batch) -> Batch:
        return Batch(b.obs * scale, b.actions, b.next_obs * scale, b.dones, b.log_pi)

    losses = []
    for std, e, g in [(np.ones(2), exp, gen), (scale.numpy(), shrunk(exp), shrunk(gen))]:
        torch.manual_seed(0)
        disc = Discriminator(kind, np.zeros(2), std, act_dim=1, hidden=(16,))
        torch.manual_seed(1)  # the same interpolation draws
        loss, _ = discriminator_loss(disc, e, g, grad_penalty=10.0)
        losses.append(float(loss.detach()))
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


# ---- divergence --------------------------------------------------------------------------------


def test_divergence_monitor_raises_on_nan_and_on_a_pinned_discriminator() -> None:
    ok = {"disc_loss": 1.2, "acc_expert": 0.7, "acc_generator": 0.6, "d_generator": 0.4}
    pinned = {"disc_loss": 1e-4, "acc_expert": 1.0, "acc_generator": 1.0, "d_generator": 1e-4}
    monitor = DivergenceMonitor(rounds=2)
    monitor.check("gail", 1, pinned)
    monitor.check("gail", 2, ok)  # a normal round resets the count
    monitor.check("gail", 3, pinned)
    with pytest.raises(ApprenticeError, match=r"gail: .*diverged at round 4: accuracy 1\.000"):
        monitor.check("gail", 4, pinned)
    with pytest.raises(ApprenticeError, match=r"diverged at round 7 \(not finite: disc_loss nan"):
        DivergenceMonitor(rounds=5).check("airl", 7, {**ok, "disc_loss": float("nan")})


def test_a_runaway_discriminator_is_reported(pendulum_demos: Path, tmp_path: Path) -> None:
    # A discriminator trained hard against a random generator separates it perfectly in one
    # round: with divergence_rounds=1 that is reported, with the round and the numbers.
    cfg = IRLConfig(
        algo="gail",
        task=PENDULUM,
        demos=str(pendulum_demos),
        out=str(tmp_path / "run"),
        env_steps=1024,
        eval_episodes=1,
        algo_args=(
            "rollout_steps=512",
            "n_envs=1",
            "disc_updates=300",
            "disc_lr=0.01",
            "divergence_rounds=1",
        ),
    )
    with pytest.raises(
        ApprenticeError, match=r"diverged at round 1: accuracy (0\.99\d|1\.000) / .*mean D"
    ):
        run_adversarial(cfg)


# ---- AIRL's reward transfers ---------------------------------------------------------------------

GOAL = 0.5


class PointMass(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """x' = x + 0.2 a on [-1, 1]; reward -|x - 0.5|; 20 steps; starts uniform on [-1, 1]."""

    name = "test/point-mass-1d"
    horizon = 20

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Dict(
            {"pos": gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)}
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.x = np.zeros(1, dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self.x = np.random.default_rng(seed).uniform(-1, 1, 1).astype(np.float32)
        return {"pos": self.x.copy()}, {}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        a = np.clip(action, -1, 1)
        self.x = np.clip(self.x + 0.2 * a, -1, 1).astype(np.float32)
        return {"pos": self.x.copy()}, -abs(float(self.x[0]) - GOAL), False, False, {}

    def get_state(self) -> np.ndarray:
        return self.x.astype(np.float64)

    @property
    def env_args(self) -> dict[str, Any]:
        return {"env_name": self.name, "env_type": "test", "env_kwargs": {}}


@pytest.fixture
def point_mass_task() -> Iterator[str]:
    """PointMass in the task registry for this test only (a registry-wide contract test
    collected later must not meet it)."""
    register_task(PointMass.name, "1-D point mass to x = 0.5 (tests only)")(PointMass)
    yield PointMass.name
    envs_base._REGISTRY.pop(PointMass.name, None)


def _point_mass_demos(path: Path, episodes: int) -> Path:
    """An expert that heads for the goal at full speed and then holds."""
    task = PointMass()
    with DemoWriter(path, env_args=task.env_args) as writer:
        for seed in range(episodes):
            obs, _ = task.reset(seed=seed)
            steps: dict[str, list[Any]] = {k: [] for k in ("obs", "next", "act", "rew")}
            for _ in range(task.horizon):
                action = np.clip([(GOAL - obs["pos"][0]) / 0.2], -1, 1).astype(np.float32)
                nxt, r, *_ = task.step(action)
                for key, value in zip(steps, (obs["pos"], nxt["pos"], action, r), strict=True):
                    steps[key].append(value)
                obs = nxt
            t = len(steps["act"])
            writer.append(
                Episode(
                    obs={"pos": np.stack(steps["obs"])},
                    next_obs={"pos": np.stack(steps["next"])},
                    actions=np.stack(steps["act"]),
                    rewards=np.asarray(steps["rew"], dtype=np.float32),
                    dones=(np.arange(t) == t - 1).astype(np.float32),
                    states=np.zeros((t, 1)),
                    seed=seed,
                )
            )
    return path


@pytest.mark.slow
def test_airl_state_only_reward_trains_a_fresh_learner(
    tmp_path: Path, point_mass_task: str
) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from apprentice.irl.reward_env import LearnedRewardVecEnv

    demos = _point_mass_demos(tmp_path / "demos.hdf5", 20)
    result = run_adversarial(
        IRLConfig(
            algo="airl",
            task=PointMass.name,
            demos=str(demos),
            out=str(tmp_path / "airl"),
            env_steps=8192,
            eval_episodes=5,
            algo_args=(
                "rollout_steps=512",
                "n_envs=4",
                "policy_hidden=[32]",
                "disc_hidden=[32]",
                "disc_updates=16",
                "disc_lr=0.001",
            ),
        )
    )
    # The saved run's policy, loaded on its own, is the policy the run scored last.
    saved = evaluate_policy(load_generator(result.run_dir), make_irl_env(PointMass.name, 0), 5)
    assert saved["mean_return"] == pytest.approx(result.history[-1]["mean_return"])
    with pytest.raises(ApprenticeError, match=r"not a finished .* run folder .*vecnormalize\.pkl"):
        load_generator(tmp_path)

    reward = load_reward(result.final["reward"])
    keys = reward.obs_keys

    def learned(obs: Any, actions: Any, next_obs: Any, dones: Any) -> np.ndarray:
        return reward(flatten_obs(obs, keys), actions, flatten_obs(next_obs, keys), dones)

    # A fresh PPO, from scratch, that sees only g(s) (never the env's reward).
    base = DummyVecEnv([lambda i=i: make_irl_env(PointMass.name, 100 + i) for i in range(4)])
    venv = VecNormalize(LearnedRewardVecEnv(base, keys, learned), norm_obs=False)
    fresh = PPO(
        "MultiInputPolicy",
        venv,
        n_steps=64,
        seed=3,
        device="cpu",
        policy_kwargs={"net_arch": [32]},
    )
    fresh.learn(8192)
    env = make_irl_env(PointMass.name, 7)

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(fresh.predict({k: v[None] for k, v in obs.items()}, True)[0][0])

    rng = np.random.default_rng(0)
    transferred = evaluate_policy(act, env, 20)["mean_return"]
    random = evaluate_policy(lambda _: rng.uniform(-1, 1, 1), env, 20)["mean_return"]
    expert = evaluate_policy(lambda o: np.clip([(GOAL - o["pos"][0]) / 0.2], -1, 1), env, 20)
    # The transferred learner, which never saw the env's reward, closes a clear part of the
    # gap from random to the expert (-9.2 and -0.5 here). The bar is a quarter of the gap:
    # at this budget PPO on the *true* reward reaches about 70% of it (-2.7), and on the
    # learned reward about 35-40% (-6.0 and -5.7 in two runs).
    gap = expert["mean_return"] - random
    assert transferred > random + 0.25 * gap, (transferred, random, expert["mean_return"])


# ---- a cloned start --------------------------------------------------------------------------


def _gail_cfg(demos: Path, out: Path, steps: int, *extra: str, **kw: Any) -> IRLConfig:
    return IRLConfig(
        algo=kw.pop("algo", "gail"),
        task=PENDULUM,
        demos=str(demos),
        out=str(out),
        env_steps=steps,
        eval_episodes=2,
        algo_args=("rollout_steps=512", "n_envs=1", *extra),
        **kw,
    )


def test_a_cloned_generator_starts_from_the_demos_and_resumes(
    pendulum_demos: Path, tmp_path: Path
) -> None:
    import pickle

    from apprentice.irl.adversarial import FixedStats

    out = tmp_path / "run"
    extra = ("bc_steps=400", "bc_lr=3e-3", "log_std_init=-1", "bc_weight=0.1")
    run_adversarial(_gail_cfg(pendulum_demos, out, 512, *extra))
    state = json.loads((out / "state.json").read_text())
    bc = state["bc"]
    assert bc["demo_mse"] < 0.1 * bc["demo_mse_before_bc"], bc
    # The clone alone is scored before the first round: the PD demos balance for 1000 steps.
    first = state["history"][0]
    assert first["env_steps"] == 0 and first["normalized_return"] > 0.5, first

    # The generator reads the demos' fixed statistics, not running ones that drift.
    demos = load_demo_transitions(pendulum_demos, make_irl_env(PENDULUM, 0).obs_keys)
    with open(out / "vecnormalize.pkl", "rb") as f:
        stats = pickle.load(f).obs_rms
    for key, rms in stats.items():
        assert isinstance(rms, FixedStats)
        np.testing.assert_allclose(rms.mean, demos.obs[key].mean(0), rtol=1e-5, atol=1e-6)

    # Resume for a second round: the BC-term learner reloads and trains on.
    run_adversarial(_gail_cfg(pendulum_demos, out, 1024, *extra, resume=True))
    state = json.loads((out / "state.json").read_text())
    assert state["rounds_done"] == 2 and "bc" in state


@pytest.mark.parametrize(
    ("algo", "rl_algo"), [("gaifo", "auto"), ("gail", "sac")], ids=["gaifo", "sac"]
)
def test_a_cloned_start_is_refused_where_it_cannot_apply(
    pendulum_demos: Path, tmp_path: Path, algo: str, rl_algo: str
) -> None:
    cfg = _gail_cfg(pendulum_demos, tmp_path / "r", 512, "bc_steps=10", algo=algo, rl_algo=rl_algo)
    with pytest.raises(ApprenticeError, match=f"irl --algo {algo}: bc_steps/bc_weight"):
        run_adversarial(cfg)


# ---- the generator in the demos' action units ----------------------------------------------


def test_action_normalized_expresses_the_env_range_in_demo_units() -> None:
    from apprentice.irl.envs import ActionNormalized, ActionStats

    demo_actions = np.array([[0.1, 0.0], [0.3, 0.0], [0.2, 0.0]], np.float32)  # dim 1 never moves
    stats = ActionStats.fit(demo_actions)
    np.testing.assert_allclose(stats.mean, [0.2, 0.0], atol=1e-7)
    assert stats.std[1] == pytest.approx(1e-2)  # floored, as the data layer's
    env = ActionNormalized(make_irl_env(PENDULUM, 0), ActionStats(stats.mean[:1], stats.std[:1]))
    space = env.action_space
    assert isinstance(space, gym.spaces.Box)
    # The box's corners are the env's -1 and +1; one demo std is one unit.
    np.testing.assert_allclose(env.action(space.low), [-1.0], atol=1e-6)
    np.testing.assert_allclose(env.action(space.high), [1.0], atol=1e-6)
    np.testing.assert_allclose(env.action(np.array([1.0])), stats.mean[:1] + stats.std[:1])
    np.testing.assert_allclose(stats.normalize(demo_actions).mean(0), [0.0, 0.0], atol=1e-6)


def test_a_generator_in_demo_units_acts_in_env_units_when_reloaded(
    pendulum_demos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    extra = ("bc_steps=400", "bc_lr=3e-3", "log_std_init=-1", "normalize_actions=true")
    result = run_adversarial(_gail_cfg(pendulum_demos, out, 512, *extra))
    stats = json.loads((out / "action_stats.json").read_text())
    demos = load_demo_transitions(pendulum_demos, make_irl_env(PENDULUM, 0).obs_keys)
    np.testing.assert_allclose(stats["mean"], demos.actions.mean(0), rtol=1e-5, atol=1e-6)
    # The clone was fit in demo units, and balances when its actions are mapped back.
    state = json.loads((out / "state.json").read_text())
    assert state["bc"]["demo_mse"] < 0.1 * state["bc"]["demo_mse_before_bc"], state["bc"]
    assert state["history"][0]["normalized_return"] > 0.5, state["history"][0]
    # The saved policy, reloaded, is the one the run scored: same held-out episodes, same return.
    saved = evaluate_policy(load_generator(out), make_irl_env(PENDULUM, 0), 2)
    assert saved["mean_return"] == pytest.approx(result.history[-1]["mean_return"])
    # Sampled actions (deterministic=False) spread around the mean action, in env units.
    obs, _ = make_irl_env(PENDULUM, 0).reset(seed=0)
    mean_action = load_generator(out)(obs)
    sample = load_generator(out, deterministic=False)
    sampled = np.stack([sample(obs) for _ in range(20)])
    assert np.all(np.abs(sampled) <= 1.0) and sampled.std() > 0
    assert abs(sampled.mean() - mean_action[0]) < 3 * sampled.std()


def test_demo_action_units_need_demo_actions(pendulum_demos: Path, tmp_path: Path) -> None:
    cfg = _gail_cfg(pendulum_demos, tmp_path / "r", 512, "normalize_actions=true", algo="gaifo")
    with pytest.raises(ApprenticeError, match="gaifo: normalize_actions"):
        run_adversarial(cfg)


def test_a_critic_warmup_needs_a_clone_to_warm_up_to(pendulum_demos: Path, tmp_path: Path) -> None:
    cfg = _gail_cfg(pendulum_demos, tmp_path / "r", 512, "critic_warmup_rounds=2")
    with pytest.raises(ApprenticeError, match="bc_steps > 0 with critic_warmup_rounds"):
        run_adversarial(cfg)
    assert not (tmp_path / "r" / "state.json").exists()
