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

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import OUT, add_out, parser, write_json

EXPERTS = OUT / "experts"

# SAC solves both in tens of thousands of steps on a CPU (10k left InvertedPendulum at a
# return of 94 of 1000; 30k reach 1000); small nets keep a step cheap.
DEFAULTS: dict[str, dict[str, Any]] = {
    "InvertedPendulum-v5": {"algo": "sac", "steps": 30_000},
    "Reacher-v5": {"algo": "sac", "steps": 30_000},
    # Hopper's SAC with 64x64 nets stalled (60k steps: return 732; 200k: 513); 256x256 is
    # SB3's default size. Locomotion returns swing between evaluations, so the expert kept
    # is the best of the periodic evaluations (--eval-every), not the last weights.
    "Hopper-v5": {"algo": "sac", "steps": 100_000, "net_arch": [256, 256], "eval_every": 10_000},
    "HalfCheetah-v5": {"algo": "sac", "steps": 60_000},
}


def mean_return(env_id: str, act: Any, episodes: int, seed: int) -> float:
    """Mean undiscounted return of `act(obs) -> env action` over seeded episodes.

    Its own loop rather than the library's `apprentice.irl.envs.evaluate_policy`: it runs
    the bare gymnasium environment the SB3 expert was trained on, from gym seeds `seed..`
    (the records use 10_000..), where `evaluate_policy` runs the `gym/<id>` task from the
    held-out seeds (10^9..). The recorded expert and random returns are the references every
    normalized return divides by (DAgger reads this record; `record_expert_demos` copies it
    into the IRL and LfO demo files): a switch would move them and make the figures in
    results/dagger.md and irl.md incomparable with new ones.
    """
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
    env_id: str,
    algo: str,
    steps: int,
    seed: int,
    eval_episodes: int,
    out: Path,
    net_arch: list[int] | None = None,
    eval_every: int = 0,
) -> dict[str, Any]:
    import gymnasium as gym
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.monitor import Monitor

    env = gym.make(env_id)
    policy_kwargs = {"net_arch": net_arch or [64, 64]}
    t0 = time.perf_counter()
    if algo == "sac":
        model: Any = SAC(
            "MlpPolicy", env, seed=seed, learning_starts=1000, policy_kwargs=policy_kwargs
        )
    elif algo == "ppo":
        model = PPO("MlpPolicy", env, seed=seed, policy_kwargs=policy_kwargs)
    else:
        raise SystemExit(f"unknown --algo {algo!r}: sac or ppo")
    callback = None
    best_dir = out / f".best_{env_id}"
    if eval_every:
        # Seeds of the selection episodes are apart from the record's (10_000..) below.
        eval_env = Monitor(gym.make(env_id))
        eval_env.reset(seed=50_000)
        callback = EvalCallback(
            eval_env,
            n_eval_episodes=5,
            eval_freq=eval_every,
            best_model_save_path=str(best_dir),
            deterministic=True,
            verbose=0,
        )
    model.learn(total_timesteps=steps, callback=callback)
    train_seconds = time.perf_counter() - t0
    if callback is not None and (best_dir / "best_model.zip").exists():
        model = type(model).load(best_dir / "best_model.zip")
    out.mkdir(parents=True, exist_ok=True)
    zip_path = out / f"{env_id}.zip"
    model.save(zip_path)
    shutil.rmtree(best_dir, ignore_errors=True)

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
        "net_arch": policy_kwargs["net_arch"],
        "kept": f"best of evaluations every {eval_every} steps" if eval_every else "last",
        "seed": seed,
        "train_seconds": train_seconds,
        "eval_episodes": eval_episodes,
        "expert_return": mean_return(env_id, expert, eval_episodes, 10_000),
        "random_return": mean_return(env_id, random_policy, eval_episodes, 10_000),
        "model": zip_path.name,
    }
    write_json(out / f"{env_id}.json", record, quiet=True)
    return record


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--env", nargs="+", default=["InvertedPendulum-v5", "Reacher-v5"])
    p.add_argument("--algo", default=None, help="sac or ppo (default: per env)")
    p.add_argument("--steps", type=int, default=None, help="env steps (default: per env)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, default=20)
    add_out(p, EXPERTS, help="folder of the experts (<env>.zip) and their records (<env>.json)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--eval-every", type=int, default=None, help="keep the best of evaluations every N steps"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for env_id in args.env:
        d = DEFAULTS.get(env_id, {"algo": "sac", "steps": 50_000})
        record = train_expert(
            env_id,
            args.algo or d["algo"],
            args.steps or d["steps"],
            args.seed,
            args.eval_episodes,
            args.out,
            net_arch=d.get("net_arch"),
            eval_every=d.get("eval_every", 0) if args.eval_every is None else args.eval_every,
        )
        print(json.dumps(record))


if __name__ == "__main__":
    main()
