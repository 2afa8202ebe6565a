"""Roll out a robomimic 0.3.0 checkpoint on apprentice's own MuJoCo task (held-out seeds).

Run with the robomimic venv (setup_robomimic.sh installs mujoco + gymnasium there):

    .venv-robomimic/bin/python benchmarks/peers/robomimic_rollout.py \
        --checkpoint RUN/models/model_epoch_50.pth --task lift --episodes 50 \
        --json benchmarks/out/peers/rm_rollout.json

The policy is loaded the robomimic way (robomimic.utils.file_utils.policy_from_checkpoint ->
RolloutPolicy; start_episode() before each episode, policy(ob=obs) per step). The environment is
NOT robomimic's: robomimic cannot create it (its env code wants env_meta["type"], see README), so
apprentice's task is built directly from apprentice's source tree (src/ put on sys.path;
apprentice.evaluate.rollout needs only numpy, torch, h5py, tqdm, mujoco and gymnasium at
import). Episodes run through apprentice's own rollout loop (`rollout_batch`, one env at a
time), from the same held-out seeds as `apprentice evaluate` (1_000_000_000 + offset + i), to
success, termination, truncation or task.horizon steps, scored by info["success"].
Observations are passed as the task returns them (robomimic's low-dim BC paper config does no
obs normalization); only the keys the checkpoint was trained on are given to the policy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", "..", "src"))


def load_policy(path: str):
    import robomimic.utils.file_utils as FileUtils
    import torch

    try:
        policy, ckpt = FileUtils.policy_from_checkpoint(ckpt_path=path, device=torch.device("cpu"))
        how = "policy_from_checkpoint(ckpt_path)"
    except Exception:  # torch>=2.6 defaults torch.load to weights_only=True
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        policy, ckpt = FileUtils.policy_from_checkpoint(ckpt_dict=ckpt, device=torch.device("cpu"))
        how = "policy_from_checkpoint(ckpt_dict=torch.load(weights_only=False))"
    return policy, ckpt, how


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--task", default="lift")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed-offset", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", required=True)
    args = p.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, SRC)
    from apprentice.envs import make_task
    from apprentice.envs.seeds import held_out_seeds
    from apprentice.evaluate.metrics import wilson_interval
    from apprentice.evaluate.rollout import rollout_batch

    policy, ckpt, how = load_policy(args.checkpoint)
    obs_keys = list(ckpt["shape_metadata"]["all_obs_keys"])
    task = make_task(args.task)
    horizon = int(task.horizon)
    seeds = held_out_seeds(args.episodes, offset=args.seed_offset)
    per_episode, lengths = [], []
    t0 = time.perf_counter()

    class OneEnv:
        """robomimic's RolloutPolicy as the rollout loop takes it, for a batch of one env."""

        def reset(self) -> None:
            policy.start_episode()

        def act_batch(self, obs: dict) -> np.ndarray:
            ob = {k: np.asarray(obs[k][0], dtype=np.float32) for k in obs_keys}
            return np.asarray(policy(ob=ob))[None]  # (1, A)

    for seed in seeds:
        (episode,) = rollout_batch(OneEnv(), [task], [seed])
        per_episode.append(bool(episode.success))
        lengths.append(int(episode.length))
    seconds = time.perf_counter() - t0
    task.close() if hasattr(task, "close") else None
    k, n = sum(per_episode), len(per_episode)
    lo, hi = wilson_interval(k, n)
    out = {
        "peer": "robomimic",
        "checkpoint": os.path.abspath(args.checkpoint),
        "loaded_with": how,
        "task": args.task,
        "horizon": horizon,
        "obs_keys": obs_keys,
        "episodes": n,
        "successes": k,
        "success_rate": k / n if n else 0.0,
        "ci_low": lo,
        "ci_high": hi,
        "seeds": seeds,
        "per_episode_success": per_episode,
        "episode_lengths": lengths,
        "seconds": seconds,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)
    print(
        json.dumps(
            {x: out[x] for x in ("successes", "episodes", "success_rate", "ci_low", "ci_high")}
        )
    )


if __name__ == "__main__":
    main()
