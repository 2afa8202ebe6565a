"""Evaluation throughput: pooled rollouts against the single-process rate.

Target: rollouts/s with W workers >= 0.8 x W x the single-process rate. Both are measured in
one run, alternating, on the same checkpoint (a freshly initialized BC-RNN by default: the
policy's quality does not matter for throughput, only its cost per step, so every episode
runs to the horizon, which is the worst case).

    .venv/bin/python benchmarks/bench_eval.py --task lift --episodes 20 --workers 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from apprentice.data.normalize import Normalizer
from apprentice.envs import make_task
from apprentice.envs.base import task_spec
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
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "policy.pt"
        make_checkpoint(args.task, args.policy, ckpt)
        rates: dict[int, list[float]] = {1: [], args.workers: []}
        for _ in range(args.repeats):
            for w in (1, args.workers):
                s = evaluate(
                    EvalConfig(
                        checkpoint=str(ckpt),
                        episodes=args.episodes,
                        workers=w,
                        out=str(Path(tmp) / "r.json"),
                    )
                )
                rates[w].append(s["episodes"] / s["wall_seconds"])
        ratios = [b / a for a, b in zip(rates[1], rates[args.workers], strict=True)]
    result = {
        "task": args.task,
        "policy": args.policy,
        "episodes": args.episodes,
        "workers": args.workers,
        "rollouts_per_s_1": rates[1],
        f"rollouts_per_s_{args.workers}": rates[args.workers],
        "speedup_median": statistics.median(ratios),
        "speedup_min": min(ratios),
        "speedup_max": max(ratios),
        "efficiency_median": statistics.median(ratios) / args.workers,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print("| workers | rollouts/s (median) | speedup vs 1 (median, min-max) | efficiency |")
    print("|---|---|---|---|")
    print(f"| 1 | {statistics.median(rates[1]):.2f} | 1.00 | 1.00 |")
    print(
        f"| {args.workers} | {statistics.median(rates[args.workers]):.2f} | "
        f"{result['speedup_median']:.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
        f"{result['efficiency_median']:.2f} |"
    )


if __name__ == "__main__":
    main()
