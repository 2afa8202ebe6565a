"""Apprenticeship learning with linear features on continuous tasks (Abbeel and Ng 2004).

The projection method of `apprentice.irl.tabular`, with the exact pieces replaced by
estimates, as in the paper's car-driving experiment:

- features phi(s) (K,) = [1, tanh(z), RBF(z)], z the observation standardized by the demos'
  mean and std (std floored at 1e-2 as the project's Normalizer does), the RBF centres
  `num_rbf` demo observations drawn with the run's seed and one bandwidth (the median
  distance between centres). tanh keeps every feature bounded, which the method's guarantee
  needs. The constant feature's expectation is the discounted episode length, so on tasks
  that end when the robot fails (InvertedPendulum) the learned weight on it is the value of
  staying alive, learned from the demos like every other weight;
- mu(pi) = E[sum_t gamma^t phi(s_t)] by Monte-Carlo rollouts (`rollouts` episodes, from
  collection seeds, deterministic actions), the expert's from the demos (each demo one
  episode, discounted from its first step);
- the RL step: stable-baselines3 (PPO by default, SAC with --rl-algo sac) trained for
  `rl_steps` env steps on r(s) = w . phi(s) through a gymnasium reward wrapper, warm-started
  from the previous iteration's policy (its snapshot is kept for the mixture).

Iterations stop when ||mu_E - mu_bar|| <= eps ||mu_E|| (relative, as the scale of mu grows
with 1 / (1 - gamma)), after `max_iters`, or when the env-step budget (RL steps and rollouts
both count) is spent. Each iteration's policy is evaluated on held-out seeds with the task's
own reward; the mixture's return is the lambda-weighted mean of its policies' returns.

A killed run resumes from its last finished iteration (state.json and the policy snapshots
in the run folder): rerun the same command.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from apprentice.algos.run_folder import write_json, write_jsonl
from apprentice.data.source import open_source
from apprentice.errors import ApprenticeError
from apprentice.irl.common import IRLConfig, IRLResult
from apprentice.irl.envs import IRLEnv, evaluate_policy, expert_reference, make_irl_env
from apprentice.irl.tabular import RESUME_FREE, clear_run_files, parse_algo_config
from apprentice.tracking import log_rows

log = logging.getLogger(__name__)

OUTPUTS = ("history.jsonl", "summary.json", "reward.json", "reward.npy", "state.json", "report.png")


@dataclass(frozen=True)
class LinearApprenticeshipConfig:
    """Settings of apprenticeship learning on continuous tasks (`--algo-args key=value`)."""

    eps: float = 0.05
    """Stop when ||mu_E - mu_bar|| <= eps ||mu_E||."""
    max_iters: int = 20
    """Most projection iterations."""
    gamma: float = 0.99
    """Discount of the feature expectations (and of the RL learner)."""
    num_rbf: int = 32
    """RBF features, centred on demo observations."""
    rl_steps: int = 10_000
    """Env steps of RL per iteration."""
    rollouts: int = 5
    """Episodes per Monte-Carlo estimate of a policy's feature expectations."""
    obs_keys: str = ""
    """Comma-separated observation keys the features read (default: all low-dim keys)."""


@dataclass(frozen=True)
class FeatureMap:
    """phi(obs) = [1, tanh(z), exp(-||z - c||^2 / (2 sigma^2))] with z = (obs - mean) / std."""

    keys: tuple[str, ...]
    mean: np.ndarray
    """(D,)"""
    std: np.ndarray
    """(D,)"""
    centres: np.ndarray
    """(M, D) in standardized units."""
    sigma: float

    @property
    def dim(self) -> int:
        return 1 + int(self.mean.shape[0]) + int(self.centres.shape[0])

    @classmethod
    def fit(cls, keys: tuple[str, ...], obs: np.ndarray, num_rbf: int, seed: int) -> FeatureMap:
        """Standardization from the demos' obs (N, D); centres drawn from them."""
        mean = obs.mean(axis=0)
        std = np.maximum(obs.std(axis=0), 1e-2)
        z = (obs - mean) / std  # (N, D)
        rng = np.random.default_rng([seed, 5])
        centres = z[rng.choice(len(z), size=min(num_rbf, len(z)), replace=False)]  # (M, D)
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=2)  # (M, M)
        off_diag = gaps[~np.eye(len(centres), dtype=bool)]
        sigma = float(np.median(off_diag)) if off_diag.size else 1.0
        return cls(keys, mean, std, centres, max(sigma, 1e-3))

    def flatten(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """One observation dict -> (D,) in `keys` order."""
        return np.concatenate([np.asarray(obs[k], dtype=np.float64).reshape(-1) for k in self.keys])

    def __call__(self, flat: np.ndarray) -> np.ndarray:
        """(N, D) flat observations -> (N, K) features."""
        z = (np.atleast_2d(flat) - self.mean) / self.std  # (N, D)
        sq = ((z[:, None, :] - self.centres[None]) ** 2).sum(axis=2)  # (N, M)
        rbf = np.exp(-sq / (2.0 * self.sigma**2))
        return np.concatenate([np.ones((len(z), 1)), np.tanh(z), rbf], axis=1)

    def to_json(self) -> dict[str, Any]:
        return {
            "keys": list(self.keys),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "centres": self.centres.tolist(),
            "sigma": self.sigma,
            "layout": "[1, tanh(z) (D), rbf(z) (M)], z = (obs - mean) / std",
        }


class FeatureReward(
    gym.Wrapper[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray], np.ndarray]
):
    """Replaces the env's reward by w . phi(s_t), s_t the state the action is taken in;
    the task's own reward goes to info["true_reward"]."""

    def __init__(self, env: IRLEnv, features: FeatureMap, w: np.ndarray) -> None:
        super().__init__(env)
        self.features = features
        self.w = np.asarray(w, dtype=np.float64)
        self._phi = np.zeros(features.dim)

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._phi = self.features(self.features.flatten(obs))[0]
        return obs, info

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        learned = float(self._phi @ self.w)
        self._phi = self.features(self.features.flatten(obs))[0]
        return obs, learned, terminated, truncated, {**info, "true_reward": reward}


def demo_observations(path: Path, keys: tuple[str, ...], task: str) -> list[np.ndarray]:
    """Each demo's flat observations (T, D), keys in order; missing keys name themselves."""
    if not path.is_file():
        raise ApprenticeError(f"demos {path} do not exist")
    with open_source(path) as f:
        missing = [k for k in keys if k not in f.obs_keys]
        if missing:
            raise ApprenticeError(
                f"demos {path} have no obs/{missing[0]} (they have: {', '.join(f.obs_keys)}); "
                f"apprenticeship's features on {task} read the observation keys {', '.join(keys)}"
            )
        env_name = f.env_args.get("env_name")
        if env_name != task:
            raise ApprenticeError(f"demos {path} are of task {env_name!r}, not {task!r}")
        episodes = []
        for name in f.demo_names:
            parts = [f.read_obs(name, k).reshape(f.num_samples(name), -1) for k in keys]
            episodes.append(np.concatenate(parts, axis=1).astype(np.float64))
    if not episodes:
        raise ApprenticeError(f"demos {path} hold no demos")
    return episodes


def discounted_features(features: FeatureMap, flat: np.ndarray, gamma: float) -> np.ndarray:
    """sum_t gamma^t phi(s_t) of one episode's flat observations (T, D) -> (K,)."""
    return (gamma ** np.arange(len(flat))) @ features(flat)


def _sb3(cfg: IRLConfig, env: gym.Env[Any, Any], gamma: float) -> Any:
    try:
        import stable_baselines3 as sb3
    except ImportError:
        raise ApprenticeError(
            "apprenticeship on a continuous task needs stable-baselines3: "
            "pip install 'apprentice[interactive]'"
        ) from None
    if cfg.rl_algo == "sac":
        return sb3.SAC("MultiInputPolicy", env, gamma=gamma, seed=cfg.seed, device="cpu", verbose=0)
    return sb3.PPO(
        "MultiInputPolicy",
        env,
        gamma=gamma,
        n_steps=1024,
        batch_size=64,
        seed=cfg.seed,
        device="cpu",
        verbose=0,
    )


def run_linear_apprenticeship(cfg: IRLConfig) -> IRLResult:
    """Apprenticeship learning on a continuous task (see the module docstring)."""
    algo_cfg: LinearApprenticeshipConfig = parse_algo_config(LinearApprenticeshipConfig, cfg)
    if not cfg.demos:
        raise ApprenticeError(
            f"apprenticeship on {cfg.task} needs --demos (record them with an expert, e.g. "
            "apprentice.irl.envs.record_expert_demos); only gridworlds sample their own"
        )
    keys_arg = [k for k in algo_cfg.obs_keys.split(",") if k]
    env = make_irl_env(cfg.task, cfg.seed, keys_arg or None)
    keys = tuple(env.obs_keys)
    demos_path = Path(cfg.demos)
    episodes = demo_observations(demos_path, keys, cfg.task)
    features = FeatureMap.fit(keys, np.concatenate(episodes), algo_cfg.num_rbf, cfg.seed)
    mu_expert = np.mean(
        [discounted_features(features, e, algo_cfg.gamma) for e in episodes], axis=0
    )
    scale = float(np.linalg.norm(mu_expert)) or 1.0
    reference = expert_reference(demos_path)

    from stable_baselines3.common.base_class import BaseAlgorithm

    from apprentice.algos.run_folder import prepare_run_dir

    record = {**dataclasses.asdict(cfg), "algo_config": dataclasses.asdict(algo_cfg)}
    if cfg.overwrite:
        clear_run_files(Path(cfg.out), OUTPUTS)
        for old in (Path(cfg.out) / "policies").glob("iter_*.zip"):
            old.unlink()
    run_dir, _ = prepare_run_dir(
        Path(cfg.out), record, resume=cfg.resume, overwrite=cfg.overwrite, free_fields=RESUME_FREE
    )
    (run_dir / "policies").mkdir(exist_ok=True)
    eval_env = make_irl_env(cfg.task, cfg.seed + 1, keys_arg or None)
    mc_env = make_irl_env(cfg.task, cfg.seed + 2, keys_arg or None)
    train_env = FeatureReward(env, features, np.zeros(features.dim))
    model: BaseAlgorithm = _sb3(cfg, train_env, algo_cfg.gamma)

    def act_of(m: BaseAlgorithm) -> Any:
        return lambda obs: m.predict(obs, deterministic=True)[0]

    def rollout_features(m: BaseAlgorithm) -> tuple[np.ndarray, int]:
        """mu estimate (K,) and the env steps it took."""
        act, total, steps = act_of(m), np.zeros(features.dim), 0
        for _ in range(algo_cfg.rollouts):
            obs, _ = mc_env.reset()
            flat, done = [features.flatten(obs)], False
            while not done:
                obs, _, terminated, truncated, _ = mc_env.step(act(obs))
                done = terminated or truncated
                if not done:  # a step taken from the final state does not happen
                    flat.append(features.flatten(obs))
            steps += len(flat)
            total += discounted_features(features, np.stack(flat), algo_cfg.gamma)
        return total / algo_cfg.rollouts, steps

    # ---- state: fresh, or the last finished iteration of a killed run ----
    state_path = run_dir / "state.json"
    start = time.perf_counter()
    if cfg.resume and state_path.exists():
        state = json.loads(state_path.read_text())
        model = type(model).load(
            run_dir / "policies" / f"iter_{state['iteration']}.zip", env=train_env, device="cpu"
        )
        log.info("resuming %s at iteration %d", run_dir, state["iteration"])
    else:
        mu0, steps = rollout_features(model)
        model.save(run_dir / "policies" / "iter_0.zip")
        score = evaluate_policy(act_of(model), eval_env, cfg.eval_episodes, reference=reference)
        state = {
            "iteration": 0,
            "env_steps": steps,
            "mus": [mu0.tolist()],
            "weights": [1.0],
            "mu_bar": mu0.tolist(),
            "returns": [score["mean_return"]],
            "history": [],
            "wall_offset": 0.0,
        }
        state["history"].append(_row(state, mu_expert, mu0, score, reference, 0.0, scale))
        write_json(state_path, state)
    wall0 = float(state["wall_offset"]) - start
    mu_bar = np.asarray(state["mu_bar"])
    while (
        state["iteration"] < algo_cfg.max_iters
        and state["env_steps"] < cfg.env_steps
        and np.linalg.norm(mu_expert - mu_bar) > algo_cfg.eps * scale
    ):
        w = mu_expert - mu_bar
        train_env.w = w / (float(np.linalg.norm(w)) or 1.0)  # Abbeel and Ng keep ||w|| <= 1
        before = model.num_timesteps
        model.learn(
            min(algo_cfg.rl_steps, cfg.env_steps - state["env_steps"]), reset_num_timesteps=False
        )
        rl_steps = model.num_timesteps - before  # PPO collects whole rollouts of n_steps
        mu, steps = rollout_features(model)
        step = mu - mu_bar
        denom = float(step @ step)
        alpha = 0.0 if denom == 0.0 else float(np.clip(step @ (mu_expert - mu_bar) / denom, 0, 1))
        mu_bar = mu_bar + alpha * step
        state["iteration"] += 1
        state["env_steps"] += rl_steps + steps
        state["mus"].append(mu.tolist())
        state["weights"] = [x * (1 - alpha) for x in state["weights"]] + [alpha]
        state["mu_bar"] = mu_bar.tolist()
        score = evaluate_policy(act_of(model), eval_env, cfg.eval_episodes, reference=reference)
        state["returns"].append(score["mean_return"])
        wall = wall0 + time.perf_counter()
        state["history"].append(_row(state, mu_expert, mu, score, reference, wall, scale))
        state["wall_offset"] = wall
        model.save(run_dir / "policies" / f"iter_{state['iteration']}.zip")
        write_json(state_path, state)  # after the snapshot: a resume always finds it
        log.info("apprenticeship %s", json.dumps(state["history"][-1]))
    history: list[dict[str, Any]] = state["history"]
    w = mu_expert - mu_bar
    w_unit = w / (float(np.linalg.norm(w)) or 1.0)
    final = {
        **history[-1],
        "algo": cfg.algo,
        "task": cfg.task,
        "num_demos": len(episodes),
        "converged": bool(history[-1]["relative_distance"] <= algo_cfg.eps),
        "mixture_weights": state["weights"],
    }
    np.save(run_dir / "reward.npy", w_unit)
    write_json(
        run_dir / "reward.json",
        {"task": cfg.task, "weights": w_unit.tolist(), "features": features.to_json()},
    )
    write_jsonl(run_dir / "history.jsonl", history)
    write_json(run_dir / "summary.json", final)
    log_rows(
        cfg.wandb, run_dir, record, history, step_key="iteration", job_type="irl-apprenticeship"
    )
    _plot(run_dir / "report.png", cfg.task, history)
    for e in (env, eval_env, mc_env):
        e.close()
    return IRLResult(run_dir=run_dir, history=history, final=final)


def _row(
    state: dict[str, Any],
    mu_expert: np.ndarray,
    mu: np.ndarray,
    score: dict[str, float],
    reference: tuple[float, float] | None,
    wall: float,
    scale: float,
) -> dict[str, Any]:
    distance = float(np.linalg.norm(mu_expert - np.asarray(state["mu_bar"])))
    mixture = float(np.dot(state["weights"], state["returns"]))
    row: dict[str, Any] = {
        "iteration": state["iteration"],
        "env_steps": state["env_steps"],
        "distance": distance,
        "relative_distance": distance / scale,
        "policy_distance": float(np.linalg.norm(mu_expert - mu)),
        **score,
        "mixture_return": mixture,
        "wall_s": wall,
    }
    if reference is not None:
        row["mixture_normalized_return"] = (mixture - reference[1]) / (reference[0] - reference[1])
    return row


def _plot(path: Path, task: str, history: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = [h["env_steps"] for h in history]
    axes[0].plot(steps, [h["distance"] for h in history], marker="o")
    axes[0].set_xlabel("env steps")
    axes[0].set_ylabel("||mu_E - mu_bar||")
    axes[0].set_title(f"apprenticeship on {task}")
    axes[1].plot(steps, [h["mean_return"] for h in history], marker="o", label="policy i")
    axes[1].plot(steps, [h["mixture_return"] for h in history], marker="s", label="mixture")
    axes[1].set_xlabel("env steps")
    axes[1].set_ylabel("return (task reward, held-out seeds)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
