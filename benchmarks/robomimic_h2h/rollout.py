"""Roll out one checkpoint, apprentice's or robomimic's, on a robosuite task's held-out seeds.

Both sides of the head-to-head are scored by the library's rollout loop
(`apprentice.evaluate.rollout.rollout_batch`, one env at a time), so they see the same
environment (apprentice's robosuite Task: the robosuite env that robomimic's env_args name,
OSC_POSE, the same observation keys), the same initial states (the held-out seeds 1e9 + i,
never used for collection) and the same success rule (info["success"] at any step, then the
episode ends) as `apprentice eval`.

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


class _OneEnv:
    """A checkpoint's policy as the rollout loop takes it (`BatchPolicy`), for a batch of
    one env: `reset` at each episode's start, `act` on one observation."""

    def reset(self) -> None:
        raise NotImplementedError

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def act_batch(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.act({k: v[0] for k, v in obs.items()}))[None]  # (1, A)


class _Apprentice(_OneEnv):
    def __init__(self, path: str) -> None:
        from apprentice.policies import load_policy

        self.policy = load_policy(path)

    def reset(self) -> None:
        self.policy.reset()

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.policy.act(obs)


class _Robomimic(_OneEnv):
    def __init__(self, path: str) -> None:
        import robomimic.utils.file_utils as FileUtils
        import torch

        # robomimic's checkpoint is a pickled dict: torch >= 2.6 needs weights_only=False.
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        self.policy, ckpt = FileUtils.policy_from_checkpoint(
            ckpt_dict=ckpt, device=torch.device("cpu")
        )
        self.keys = list(ckpt["shape_metadata"]["all_obs_keys"])

    def reset(self) -> None:
        self.policy.start_episode()

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
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
    from apprentice.envs.seeds import held_out_seeds
    from apprentice.evaluate.rollout import rollout_batch

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
    for seed in held_out_seeds(args.episodes):
        (episode,) = rollout_batch(policy, [task], [seed])
        outcomes.append(bool(episode.success))
        lengths.append(int(episode.length))
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
