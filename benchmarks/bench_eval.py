"""Evaluation throughput: pooled rollouts against the single-process rate.

Target: rollouts/s with W workers >= 0.8 x W x the single-process rate. Both are measured in
one run, alternating, on the same checkpoint (a freshly initialized BC-RNN by default: the
policy's quality does not matter for throughput, only its cost per step, so every episode
runs to the horizon, which is the worst case). The pool is timed twice: steady state (its
workers already started, as when evaluations share a pool) and end to end (spawning the
workers, whose torch import costs a few seconds, inside the timing).

    .venv/bin/python benchmarks/bench_eval.py --task lift --episodes 20 --workers 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import Executor
from pathlib import Path

import torch

from apprentice.data.normalize import Normalizer
from apprentice.envs import make_task
from apprentice.envs.base import task_spec
from apprentice.envs.pool import make_pool
from apprentice.evaluate.rollout import EvalConfig, evaluate
from apprentice.policies.base import policy_config_from_dict
from apprentice.policies.checkpoint import save_checkpoint


def make_checkpoint(task_name: str, policy: str, path: Path) -> None:
    task = make_task(task_name)
    spec = task_spec(task)
    normalizer = Normalizer.identity(spec)
    cfg = policy_config_from_dict({"name": policy})
    save_checkpoint(path, cfg.build(spec, normalizer.state_dict()), env_args=task.env_args)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="lift")
    p.add_argument("--policy", default="rnn")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default="benchmarks/out/eval.json")
    args = p.parse_args()
    # The single-process rate is one process on one core, as each pool worker is.
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "policy.pt"
        make_checkpoint(args.task, args.policy, ckpt)
        rates: dict[str, list[float]] = {"1": [], "pool": [], "pool_cold": []}

        def run(workers: int, pool: Executor | None = None) -> float:
            cfg = EvalConfig(
                checkpoint=str(ckpt),
                episodes=args.episodes,
                workers=workers,
                out=str(Path(tmp) / "r.json"),
            )
            t0 = time.perf_counter()
            s = evaluate(cfg, pool=pool)
            return s["episodes"] / (time.perf_counter() - t0)

        with make_pool(args.workers) as pool:
            run(args.workers, pool)  # start the workers and load the policy in each
            for _ in range(args.repeats):
                rates["1"].append(run(1))
                rates["pool"].append(run(args.workers, pool))
                rates["pool_cold"].append(run(args.workers))
        ratios = [b / a for a, b in zip(rates["1"], rates["pool"], strict=True)]
        cold = [b / a for a, b in zip(rates["1"], rates["pool_cold"], strict=True)]
    result = {
        "task": args.task,
        "policy": args.policy,
        "episodes": args.episodes,
        "workers": args.workers,
        "rollouts_per_s": rates,
        "speedup_median": statistics.median(ratios),
        "speedup_min": min(ratios),
        "speedup_max": max(ratios),
        "efficiency_median": statistics.median(ratios) / args.workers,
        "speedup_cold_median": statistics.median(cold),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print("| workers | rollouts/s (median) | speedup vs 1 (median, min-max) | efficiency |")
    print("|---|---|---|---|")
    print(f"| 1 (in process) | {statistics.median(rates['1']):.2f} | 1.00 | 1.00 |")
    print(
        f"| {args.workers}, started pool | {statistics.median(rates['pool']):.2f} | "
        f"{result['speedup_median']:.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
        f"{result['efficiency_median']:.2f} |"
    )
    print(
        f"| {args.workers}, spawned for the call | {statistics.median(rates['pool_cold']):.2f} | "
        f"{statistics.median(cold):.2f} ({min(cold):.2f}-{max(cold):.2f}) | "
        f"{statistics.median(cold) / args.workers:.2f} |"
    )


if __name__ == "__main__":
    main()
