"""Tabular IRL checked against exact solutions, the continuous apprenticeship run, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apprentice.data.episode import Episode
from apprentice.data.store import DemoWriter
from apprentice.errors import ApprenticeError
from apprentice.irl.common import IRLConfig
from apprentice.irl.gridworld import (
    GRIDWORLDS,
    TabularMDP,
    feature_expectations,
    make_gridworld,
    occupancy,
    optimal_policy,
    policy_value,
    sample_episode,
    soft_value_iteration,
    value_iteration,
)
from apprentice.irl.tabular import (
    apprenticeship_projection,
    demo_feature_expectations,
    mixture_value,
    record_gridworld_demos,
    run_tabular,
)


def _two_state() -> tuple[np.ndarray, np.ndarray]:
    """Action 0 stays, action 1 switches state; r = [0, 1]."""
    P = np.zeros((2, 2, 2))
    P[0, 0, 0] = P[1, 0, 1] = 1.0
    P[0, 1, 1] = P[1, 1, 0] = 1.0
    return P, np.array([0.0, 1.0])


def test_value_iteration_matches_the_hand_solved_two_state_mdp() -> None:
    P, r = _two_state()
    V, policy = value_iteration(P, r, gamma=0.9)
    # Stay in state 1 forever: V(1) = 1 / (1 - 0.9) = 10; from 0 switch: V(0) = 0.9 V(1) = 9.
    np.testing.assert_allclose(V, [9.0, 10.0], atol=1e-8)
    np.testing.assert_array_equal(policy, [[0.0, 1.0], [1.0, 0.0]])


def test_soft_value_iteration_is_the_soft_bellman_fixed_point() -> None:
    P, r = _two_state()
    V, policy = soft_value_iteration(P, r, gamma=0.9)
    # V(s) = r(s) + log sum_a exp(gamma V(s'_a)); policy(a | s) = exp(Q(s, a) - V(s)).
    Q = r[:, None] + 0.9 * np.array([[V[0], V[1]], [V[1], V[0]]])
    np.testing.assert_allclose(V, np.log(np.exp(Q).sum(axis=1)), atol=1e-8)
    np.testing.assert_allclose(policy, np.exp(Q - V[:, None]), atol=1e-8)
    assert policy[0, 1] > 0.5 and policy[1, 0] > 0.5  # the soft policy leans to the reward


def test_occupancy_sums_to_the_horizon_and_matches_monte_carlo() -> None:
    mdp = make_gridworld("gridworld/5x5")
    policy = optimal_policy(mdp)
    d = occupancy(mdp.P, policy, mdp.p0, mdp.gamma)
    assert d.sum() == pytest.approx(1.0 / (1.0 - mdp.gamma), rel=1e-9)
    rng = np.random.default_rng(0)
    episodes = 600
    mc = np.zeros(mdp.num_states)
    for _ in range(episodes):
        states, _ = sample_episode(mdp, policy, rng)
        np.add.at(mc, states[:-1], mdp.gamma ** np.arange(mdp.horizon))
    mc /= episodes
    assert np.max(np.abs(mc - d)) < 0.12  # MC standard error here is ~0.03 per state
    assert policy_value(mdp, policy) == pytest.approx(float(d @ mdp.reward))


@pytest.mark.parametrize("name", list(GRIDWORLDS))
def test_every_gridworld_is_a_valid_mdp(name: str) -> None:
    mdp = make_gridworld(name)
    S, A, K = mdp.num_states, mdp.num_actions, mdp.num_features
    assert mdp.P.shape == (S, A, S) and mdp.phi.shape == (S, K) and mdp.w_true.shape == (K,)
    np.testing.assert_allclose(mdp.P.sum(axis=2), 1.0)
    assert mdp.p0.sum() == pytest.approx(1.0)
    # The optimal policy beats the uniform one under the true reward.
    uniform = np.full((S, A), 1.0 / A)
    assert policy_value(mdp, optimal_policy(mdp)) > policy_value(mdp, uniform) + 0.5


def test_maxent_matches_the_expert_feature_counts_and_recovers_the_reward(tmp_path: Path) -> None:
    mdp = make_gridworld("gridworld/objectworld-10")
    result = run_tabular(
        IRLConfig(
            algo="maxent",
            task=mdp.name,
            out=str(tmp_path / "run"),
            algo_args=("exact_expert=true", "tol=0.01"),
        )
    )
    # Recompute the learned policy's feature expectations from the saved policy, exactly.
    policy = np.load(result.run_dir / "policy.npy")
    mu_expert = feature_expectations(mdp, optimal_policy(mdp))
    mu = feature_expectations(mdp, policy)
    assert np.linalg.norm(mu - mu_expert) <= 0.01 * np.linalg.norm(mu_expert) + 1e-9
    assert result.final["converged"] is True
    assert result.final["reward_correlation"] > 0.8
    reward = np.load(result.run_dir / "reward.npy")
    assert np.corrcoef(reward, mdp.reward)[0, 1] == pytest.approx(
        result.final["reward_correlation"]
    )
    assert result.final["normalized_return"] > 0.95
    for name in ("config.json", "history.jsonl", "reward.json", "summary.json", "report.png"):
        assert (result.run_dir / name).is_file(), name


def _check_projection_theorem(mdp: TabularMDP, eps: float) -> None:
    expert = optimal_policy(mdp)
    mu_expert = feature_expectations(mdp, expert)
    proj = apprenticeship_projection(mdp, mu_expert, eps=eps, max_iters=200)
    assert proj.distances[-1] <= eps
    assert proj.weights.sum() == pytest.approx(1.0) and np.all(proj.weights >= 0)
    # The mixture's feature expectations are mu_bar ...
    mixed = sum(w * mu for w, mu in zip(proj.weights, proj.mus, strict=True))
    np.testing.assert_allclose(mixed, proj.mu_bar, atol=1e-9)
    # ... so its value under the TRUE reward is within eps ||w_true|| of the expert's.
    gap = abs(mixture_value(mdp, proj) - policy_value(mdp, expert))
    assert gap <= proj.distances[-1] * np.linalg.norm(mdp.w_true) + 1e-9


def test_apprenticeship_projection_converges_and_obeys_the_theorem() -> None:
    _check_projection_theorem(make_gridworld("gridworld/5x5"), eps=0.05)
    _check_projection_theorem(make_gridworld("gridworld/16x16"), eps=0.05)


def test_sampled_demos_estimate_the_expert_feature_expectations(tmp_path: Path) -> None:
    mdp = make_gridworld("gridworld/5x5")
    path = record_gridworld_demos(mdp.name, tmp_path / "demos.hdf5", n=100, seed=1)
    mu_demo, n = demo_feature_expectations(path, mdp, "maxent")
    mu_exact = feature_expectations(mdp, optimal_policy(mdp))
    assert n == 100
    assert np.linalg.norm(mu_demo - mu_exact) < 0.1 * np.linalg.norm(mu_exact)
    result = run_tabular(
        IRLConfig(
            algo="apprenticeship",
            task=mdp.name,
            demos=str(path),
            out=str(tmp_path / "r"),
            algo_args=("max_iters=15",),
        )
    )
    assert result.final["num_demos"] == 100
    assert result.final["mixture_normalized_return"] > 0.9
    assert result.history[-1]["mixture_return"] == pytest.approx(result.final["mixture_value"])
    rows = [json.loads(x) for x in (result.run_dir / "history.jsonl").read_text().splitlines()]
    assert rows == json.loads(json.dumps(result.history))


# ---- bad input --------------------------------------------------------------------------------


def test_unknown_gridworld_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ApprenticeError, match=r"gridworld/5x5.*objectworld-10"):
        run_tabular(IRLConfig(algo="maxent", task="gridworld/9x9", out=str(tmp_path)))


def test_maxent_on_a_continuous_task_says_it_is_discrete_only(tmp_path: Path) -> None:
    with pytest.raises(ApprenticeError, match=r"tabular.*apprenticeship.*gail, airl"):
        run_tabular(IRLConfig(algo="maxent", task="gym/InvertedPendulum-v5", out=str(tmp_path)))


def _write(path: Path, env_name: str, obs_key: str, dim: int) -> Path:
    T = 5
    obs = {obs_key: np.zeros((T, dim), dtype=np.float32)}
    episode = Episode(
        obs=obs,
        next_obs=obs,
        actions=np.zeros((T, 1), dtype=np.float32),
        rewards=np.zeros(T, dtype=np.float32),
        dones=np.zeros(T, dtype=np.float32),
        states=np.zeros((T, 1)),
    )
    env_args = {"env_name": env_name, "env_type": "test", "env_kwargs": {}}
    with DemoWriter(path, env_args=env_args) as w:
        w.append(episode)
    return path


def test_demos_without_the_state_index_name_it(tmp_path: Path) -> None:
    demos = _write(tmp_path / "d.hdf5", "gridworld/5x5", "position", 2)
    with pytest.raises(ApprenticeError, match=r"no obs/state_index \(they have: position\)"):
        run_tabular(
            IRLConfig(
                algo="apprenticeship",
                task="gridworld/5x5",
                demos=str(demos),
                out=str(tmp_path / "r"),
            )
        )


def test_continuous_demos_without_the_observation_key_name_it(tmp_path: Path) -> None:
    demos = _write(tmp_path / "d.hdf5", "gym/InvertedPendulum-v5", "qpos", 2)
    with pytest.raises(ApprenticeError, match=r"no obs/state \(they have: qpos\)"):
        run_tabular(
            IRLConfig(
                algo="apprenticeship",
                task="gym/InvertedPendulum-v5",
                demos=str(demos),
                out=str(tmp_path / "r"),
            )
        )


def test_unknown_algo_arg_is_named(tmp_path: Path) -> None:
    with pytest.raises(ApprenticeError, match=r"'lr_typo'.*known: eps"):
        run_tabular(
            IRLConfig(
                algo="maxent", task="gridworld/5x5", out=str(tmp_path), algo_args=("lr_typo=1",)
            )
        )


# ---- the continuous version -------------------------------------------------------------------


def test_linear_apprenticeship_runs_and_resumes(tmp_path: Path) -> None:
    import torch

    from apprentice.irl.envs import record_expert_demos

    torch.set_num_threads(1)
    demos = record_expert_demos("gym/InvertedPendulum-v5", "pd", 2, tmp_path / "d.hdf5")
    cfg = IRLConfig(
        algo="apprenticeship",
        task="gym/InvertedPendulum-v5",
        demos=str(demos),
        out=str(tmp_path / "run"),
        env_steps=1024,
        eval_episodes=1,
        algo_args=("rl_steps=1024", "rollouts=1", "num_rbf=4"),
    )
    first = run_tabular(cfg)
    assert [h["iteration"] for h in first.history] == [0, 1]
    assert first.history[-1]["env_steps"] >= 1024
    assert first.final["distance"] == pytest.approx(first.history[-1]["distance"])
    assert "normalized_return" in first.final  # the demo file carries the expert reference
    reward = json.loads((first.run_dir / "reward.json").read_text())
    assert len(reward["weights"]) == 1 + 4 + 4  # [1, tanh(z) (D=4), rbf (M=4)]
    assert (first.run_dir / "policies" / "iter_1.zip").is_file()
    # Rerunning the finished run resumes it: nothing left to do, the same history.
    again = run_tabular(cfg)
    assert again.history == first.history


def test_maxent_logs_its_history_to_wandb(tmp_path: Path, wandb_offline: Any) -> None:
    from apprentice.tracking import STEP

    cfg = IRLConfig(
        algo="maxent",
        task="gridworld/5x5",
        out=str(tmp_path / "run"),
        algo_args=("max_iters=3", "num_demos=5"),
        wandb="proj",
    )
    result = run_tabular(cfg)
    (run,) = wandb_offline.read_offline_runs(result.run_dir)
    assert run.job_type == "irl-maxent" and run.config["algo"] == "maxent"
    assert [row[STEP] for row in run.history] == [h["iteration"] for h in result.history]
    for row, h in zip(run.history, result.history, strict=True):
        assert row["iteration/distance"] == h["distance"]
        assert row["iteration/mean_return"] == h["mean_return"]
    # A rerun under another project is the same run: its config is free in that.
    assert run_tabular(dataclasses.replace(cfg, wandb=None)).history == result.history
