"""Peer: imitation 1.0.1's GAIL or AIRL on the same expert demos and env-step budget as ours.

Runs in its own venv (imitation pins gymnasium~=0.29 and stable-baselines3~=2.2.1):

    bash benchmarks/peers/setup_imitation.sh
    OMP_NUM_THREADS=1 .venv-imitation/bin/python benchmarks/peers/imitation_run.py \
        --demos benchmarks/out/irl/demos_InvertedPendulum-v5_10.hdf5 --algo gail \
        --env-steps 200000 --eval-every 16384 --seed 0

The demos are apprentice's HDF5 (robomimic layout, read with h5py alone): obs/state,
next_obs/state, actions in [-1, 1], one demo per episode. Each demo becomes one imitation
`Trajectory` (obs = the T observations plus the last next_obs, acts scaled back onto the
env's action box, terminal = False: the expert's episodes end at the time limit, not by
falling). gymnasium 0.29 has InvertedPendulum only up to -v4; -v4 and -v5 share the model,
observation and action spaces; -v5 gives no reward on the step the pole falls, -v4 gives 1,
so a return differs by at most 1 out of 1000. InvertedPendulum ends an episode when the pole
falls, so its episodes vary in length; imitation refuses that unless told
(`allow_variable_horizon=True`, set here) because a positive learned reward then doubles as
a bonus for surviving (its docs: "variable horizon tasks"), which flatters any adversarial
method on this task, ours included.

Settings are imitation's own documented ones (its GAIL and AIRL tutorials for seals MuJoCo
tasks): 8 envs, PPO (batch 64, 5 epochs, gamma 0.95, lr 4e-4 / 5e-4 for AIRL), a
BasicRewardNet (GAIL) or BasicShapedRewardNet (AIRL) with a RunningNorm input layer.
Every `--eval-every` env steps (checked after each generator round of n_steps x n_envs
steps), the PPO policy acts deterministically for `--eval-episodes` episodes from held-out
seeds 10^9 + i (apprentice's evaluation seeds), and the normalized return uses the expert
and random returns stored in the demo file (`expert_return`, `random_return`).

Writes benchmarks/out/irl/imitation_<env>_<algo>_s<seed>.json: {"rows": [{env_steps,
mean_return, normalized_return, wall_s}], ...}, where <env> is the demos' task label
(InvertedPendulum-v5) so that bench_irl.py puts it beside ours; wall_s counts training and
evaluation from the start of training.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "out" / "irl"
HELD_OUT_SEED_BASE = 10**9
"""apprentice's `apprentice.envs.seeds.HELD_OUT_SEED_BASE`, copied: this script runs in the
imitation venv (gymnasium 0.29), which has no apprentice installed. tests/test_benchmarks.py
checks that the two agree."""
PEER_ENVS = {"InvertedPendulum-v5": "InvertedPendulum-v4"}
"""Our task -> the version gymnasium 0.29 has."""


def load_trajectories(
    path: Path, act_low: np.ndarray, act_high: np.ndarray
) -> tuple[list[Any], dict[str, Any]]:
    """apprentice demos -> imitation Trajectories (actions back in the env's units)."""
    from imitation.data.types import Trajectory

    trajs = []
    with h5py.File(path, "r") as f:
        data = f["data"]
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in data.attrs.items()}
        names = sorted((n for n in data if n.startswith("demo_")), key=lambda n: int(n[5:]))
        for name in names:
            g = data[name]
            obs = np.asarray(g["obs/state"][()], dtype=np.float32)  # (T, D)
            last = np.asarray(g["next_obs/state"][-1:], dtype=np.float32)  # (1, D)
            unit = np.asarray(g["actions"][()], dtype=np.float32)  # (T, A) in [-1, 1]
            acts = act_low + (unit + 1.0) * 0.5 * (act_high - act_low)
            trajs.append(
                Trajectory(
                    obs=np.concatenate([obs, last]),
                    acts=acts.astype(np.float32),
                    infos=None,
                    terminal=False,
                )
            )
    return trajs, attrs


def evaluate(model: Any, env_id: str, episodes: int) -> float:
    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=HELD_OUT_SEED_BASE + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, terminated, truncated, _ = env.step(action)
            total += float(r)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demos", type=Path, required=True)
    p.add_argument("--algo", choices=("gail", "airl"), default="gail")
    p.add_argument("--env", default="InvertedPendulum-v5", help="our task label (file names)")
    p.add_argument("--env-steps", type=int, default=200_000)
    p.add_argument("--eval-every", type=int, default=16_384)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from imitation.algorithms.adversarial.airl import AIRL
    from imitation.algorithms.adversarial.gail import GAIL
    from imitation.data.wrappers import RolloutInfoWrapper
    from imitation.rewards.reward_nets import BasicRewardNet, BasicShapedRewardNet
    from imitation.util.networks import RunningNorm
    from imitation.util.util import make_vec_env
    from stable_baselines3 import PPO
    from stable_baselines3.ppo import MlpPolicy

    peer_env = PEER_ENVS.get(args.env, args.env)
    rng = np.random.default_rng(args.seed)
    venv = make_vec_env(
        peer_env,
        rng=rng,
        n_envs=args.n_envs,
        post_wrappers=[lambda env, _: RolloutInfoWrapper(env)],
    )
    box = venv.action_space
    trajs, attrs = load_trajectories(args.demos, np.asarray(box.low), np.asarray(box.high))
    expert_r, random_r = float(attrs["expert_return"]), float(attrs["random_return"])

    # imitation's documented example settings for each algorithm (PPO, reward net, trainer).
    gail = args.algo == "gail"
    ppo_extra: dict[str, Any] = (
        {"learning_rate": 4e-4}
        if gail
        else {"learning_rate": 5e-4, "clip_range": 0.1, "vf_coef": 0.1}
    )
    learner = PPO(
        env=venv,
        policy=MlpPolicy,
        batch_size=64,
        ent_coef=0.0,
        gamma=0.95,
        n_epochs=5,
        seed=args.seed,
        **ppo_extra,
    )
    reward_net = (BasicRewardNet if gail else BasicShapedRewardNet)(
        venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm
    )
    trainer: Any = (GAIL if gail else AIRL)(
        demonstrations=trajs,
        demo_batch_size=1024 if gail else 2048,
        gen_replay_buffer_capacity=512,
        n_disc_updates_per_round=8 if gail else 16,
        venv=venv,
        gen_algo=learner,
        reward_net=reward_net,
        allow_variable_horizon=True,
    )

    rows: list[dict[str, float]] = []
    start = time.perf_counter()
    eval_s = 0.0

    def record(steps: int) -> None:
        nonlocal eval_s
        t = time.perf_counter()
        mean = evaluate(learner, peer_env, args.eval_episodes)
        eval_s += time.perf_counter() - t
        rows.append(
            {
                "env_steps": int(steps),
                "mean_return": mean,
                "normalized_return": (mean - random_r) / (expert_r - random_r),
                "wall_s": time.perf_counter() - start,
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    record(0)
    next_eval = args.eval_every

    def callback(_round: int) -> None:
        nonlocal next_eval
        if learner.num_timesteps >= next_eval:
            record(learner.num_timesteps)
            while next_eval <= learner.num_timesteps:
                next_eval += args.eval_every

    trainer.train(args.env_steps, callback=callback)
    if rows[-1]["env_steps"] != learner.num_timesteps:
        record(learner.num_timesteps)
    import imitation
    import stable_baselines3

    out = args.out or OUT / f"imitation_{args.env}_{args.algo}_s{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "rows": rows,
        "algo": args.algo,
        "env": args.env,
        "peer_env": peer_env,
        "demos": str(args.demos),
        "num_demos": len(trajs),
        "seed": args.seed,
        "env_steps": int(learner.num_timesteps),
        "eval_episodes": args.eval_episodes,
        "eval_wall_s": eval_s,
        "expert_return": expert_r,
        "random_return": random_r,
        "versions": {
            "imitation": imitation.__version__,
            "gymnasium": gym.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__,
        },
        "threads": args.threads,
        "load_avg_end": list(os.getloadavg()),
    }
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
