"""Train stable-baselines3 experts on gymnasium MuJoCo tasks for interactive imitation.

Each expert is saved as benchmarks/out/experts/<env>.zip with a sidecar <env>.json holding
the task it was trained for, the algorithm and budget, and its mean return and a uniform
random policy's mean return over the same evaluation episodes. DAgger's normalized return
is (score - random) / (expert - random) against these two numbers, so an expert need not be
state of the art: it only has to be the teacher.

    .venv/bin/python benchmarks/train_experts.py --env InvertedPendulum-v5 --steps 30000
    .venv/bin/python benchmarks/train_experts.py --env Reacher-v5 --steps 30000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

OUT = Path(__file__).parent / "out" / "experts"

# SAC solves both in tens of thousands of steps on a CPU (10k left InvertedPendulum at a
# return of 94 of 1000; 30k reach 1000); small nets keep a step cheap.
DEFAULTS: dict[str, dict[str, Any]] = {
    "InvertedPendulum-v5": {"algo": "sac", "steps": 30_000},
    "Reacher-v5": {"algo": "sac", "steps": 30_000},
    "Hopper-v5": {"algo": "sac", "steps": 60_000},
    "HalfCheetah-v5": {"algo": "sac", "steps": 60_000},
}


def mean_return(env_id: str, act: Any, episodes: int, seed: int) -> float:
    """Mean undiscounted return of `act(obs) -> env action` over seeded episodes."""
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def train_expert(
    env_id: str, algo: str, steps: int, seed: int, eval_episodes: int, out: Path
) -> dict[str, Any]:
    import gymnasium as gym
    from stable_baselines3 import PPO, SAC

    env = gym.make(env_id)
    policy_kwargs = {"net_arch": [64, 64]}
    t0 = time.perf_counter()
    if algo == "sac":
        model: Any = SAC(
            "MlpPolicy", env, seed=seed, learning_starts=1000, policy_kwargs=policy_kwargs
        )
    elif algo == "ppo":
        model = PPO("MlpPolicy", env, seed=seed, policy_kwargs=policy_kwargs)
    else:
        raise SystemExit(f"unknown --algo {algo!r}: sac or ppo")
    model.learn(total_timesteps=steps)
    train_seconds = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    zip_path = out / f"{env_id}.zip"
    model.save(zip_path)

    def expert(obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    space = env.action_space
    rng = np.random.default_rng(seed)

    def random_policy(obs: np.ndarray) -> np.ndarray:
        del obs
        return rng.uniform(space.low, space.high).astype(np.float32)  # type: ignore[attr-defined]

    # Evaluation seeds far from any the training drew.
    record = {
        "env_name": f"gym/{env_id}",
        "env_id": env_id,
        "algo": algo,
        "steps": steps,
        "seed": seed,
        "train_seconds": train_seconds,
        "eval_episodes": eval_episodes,
        "expert_return": mean_return(env_id, expert, eval_episodes, 10_000),
        "random_return": mean_return(env_id, random_policy, eval_episodes, 10_000),
        "model": zip_path.name,
    }
    (out / f"{env_id}.json").write_text(json.dumps(record, indent=2))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", nargs="+", default=["InvertedPendulum-v5", "Reacher-v5"])
    parser.add_argument("--algo", default=None, help="sac or ppo (default: per env)")
    parser.add_argument("--steps", type=int, default=None, help="env steps (default: per env)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for env_id in args.env:
        d = DEFAULTS.get(env_id, {"algo": "sac", "steps": 50_000})
        record = train_expert(
            env_id,
            args.algo or d["algo"],
            args.steps or d["steps"],
            args.seed,
            args.eval_episodes,
            Path(args.out),
        )
        print(json.dumps(record))


if __name__ == "__main__":
    main()
