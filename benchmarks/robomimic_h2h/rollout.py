"""Roll out one checkpoint, apprentice's or robomimic's, on a robosuite task's held-out seeds.

Both sides of the head-to-head are scored by this one loop, so they see the same environment
(apprentice's robosuite Task: the robosuite env that robomimic's env_args name, OSC_POSE, the
same observation keys), the same initial states (seeds 1e9 + i, never used for collection) and
the same success rule (info["success"] at any step, then the episode ends).

    # apprentice checkpoint, in the project's robosuite venv
    .venv-robosuite/bin/python benchmarks/robomimic_h2h/rollout.py --kind apprentice \\
        --checkpoint RUN/final.pt --task Lift --episodes 50 --json out.json
    # robomimic checkpoint, in robomimic's venv (apprentice's src/ goes on sys.path)
    .venv-robomimic-rs/bin/python benchmarks/robomimic_h2h/rollout.py --kind robomimic \\
        --checkpoint RUN/models/model_epoch_50.pth --task Lift --episodes 50 --json out.json

`--stop-below 0.9` ends the evaluation as soon as the success rate over all --episodes can no
longer reach 0.9 (used to find the first checkpoint that reaches it without 50 rollouts of each
weaker one); the JSON then says `stopped_early` and counts only the episodes run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[2] / "src"


class _Apprentice:
    def __init__(self, path: str) -> None:
        from apprentice.policies import load_policy

        self.policy = load_policy(path)

    def start(self) -> None:
        self.policy.reset()

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.policy.act(obs)


class _Robomimic:
    def __init__(self, path: str) -> None:
        import robomimic.utils.file_utils as FileUtils
        import torch

        # robomimic's checkpoint is a pickled dict: torch >= 2.6 needs weights_only=False.
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        self.policy, ckpt = FileUtils.policy_from_checkpoint(
            ckpt_dict=ckpt, device=torch.device("cpu")
        )
        self.keys = list(ckpt["shape_metadata"]["all_obs_keys"])

    def start(self) -> None:
        self.policy.start_episode()

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.policy(ob={k: np.asarray(obs[k], dtype=np.float32) for k in self.keys})


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--kind", choices=["apprentice", "robomimic"], required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--task", required=True, help="Lift, PickPlaceCan, NutAssemblySquare, Stack")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--stop-below", type=float, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", required=True)
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(SRC))
    from apprentice.envs import make_task
    from apprentice.envs.seeds import HELD_OUT_SEED_BASE

    policy = (_Apprentice if args.kind == "apprentice" else _Robomimic)(args.checkpoint)
    task = make_task(args.task)
    allowed_failures = (
        None
        if args.stop_below is None
        else args.episodes - math.ceil(args.stop_below * args.episodes - 1e-9)
    )
    outcomes: list[bool] = []
    lengths: list[int] = []
    t0 = time.perf_counter()
    for i in range(args.episodes):
        obs, _ = task.reset(seed=HELD_OUT_SEED_BASE + i)
        policy.start()
        success, steps = False, 0
        for _ in range(int(task.horizon)):
            obs, _, terminated, truncated, info = task.step(policy(obs))
            steps += 1
            success = bool(info.get("success", False))
            if success or terminated or truncated:
                break
        outcomes.append(success)
        lengths.append(steps)
        if allowed_failures is not None and outcomes.count(False) > allowed_failures:
            break
    task.close()
    k, n = sum(outcomes), len(outcomes)
    out = {
        "kind": args.kind,
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "task": args.task,
        "episodes": n,
        "episodes_asked": args.episodes,
        "successes": k,
        "success_rate": k / n if n else 0.0,
        "stopped_early": n < args.episodes,
        "reaches_threshold": None
        if args.stop_below is None
        else (n == args.episodes and k >= args.stop_below * args.episodes - 1e-9),
        "per_episode_success": outcomes,
        "episode_lengths": lengths,
        "seconds": time.perf_counter() - t0,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(json.dumps({x: out[x] for x in ("successes", "episodes", "stopped_early")}))


if __name__ == "__main__":
    main()
