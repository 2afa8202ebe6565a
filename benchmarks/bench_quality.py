"""Policy quality: BC on oracle demos, several training seeds, held-out evaluation.

For each task: collect N oracle demos (collection seeds 0..), train the policy with S
training seeds, and evaluate each run on the same E held-out initial states. Reports each
seed's success rate and the pooled rate with its 95% Wilson interval.

    .venv/bin/python benchmarks/bench_quality.py --tasks lift stack pick_place peg_insert \
        --demos 200 --action-noise 0.1 --seeds 0 1 2 --episodes 50 --epochs 60
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from apprentice.algos.config import TrainConfig
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.evaluate.metrics import success_rate
from apprentice.evaluate.run import EvalConfig, evaluate
from apprentice.overrides import parse_overrides
from apprentice.pipelines.train import run_train
from apprentice.policies.base import policy_config_from_dict
from harness import (
    OUT,
    add_seeds,
    markdown_table,
    parser,
    per_seed_cell,
    success_cell,
    wilson_cell,
    write_json,
)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--tasks", nargs="+", default=["lift", "stack", "pick_place", "peg_insert"])
    p.add_argument("--demos", type=int, default=200)
    p.add_argument("--action-noise", type=float, default=0.1, help="collection noise std")
    add_seeds(p)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--policy", default="rnn")
    p.add_argument("--policy-args", nargs="*", default=["hidden_dim=128"])
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads for training")
    p.add_argument("--work", default=str(OUT / "quality"))
    p.add_argument("--json", default=str(OUT / "quality.json"))
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"config": vars(args), "tasks": {}}
    policy = policy_config_from_dict(
        {"name": args.policy, **parse_overrides(args.policy_args, "policy argument")}
    )
    for task in args.tasks:
        demos = work / f"{task}_{args.demos}_noise{args.action_noise}.hdf5"
        collect_demos(
            CollectConfig(
                task=task,
                n=args.demos,
                out=str(demos),
                workers=args.workers,
                action_noise=args.action_noise,
                progress=False,
            )
        )
        runs = []
        for seed in args.seeds:
            run_dir = work / f"{task}_{args.policy}_s{seed}"
            t0 = time.perf_counter()
            run_train(
                TrainConfig(
                    dataset=str(demos),
                    out=str(run_dir),
                    policy=policy,
                    epochs=args.epochs,
                    steps_per_epoch=args.steps_per_epoch,
                    lr=args.lr,
                    seed=seed,
                    threads=args.threads,
                    eval_every=10,
                    eval_episodes=20,
                    progress=False,
                )
            )
            train_s = time.perf_counter() - t0
            s = evaluate(
                EvalConfig(checkpoint=str(run_dir), episodes=args.episodes, workers=args.workers)
            )
            runs.append({"seed": seed, "train_seconds": train_s, **{k: s[k] for k in (
                "success_rate", "successes", "episodes", "ci_low", "ci_high")}})  # fmt: skip
            print(f"{task} seed {seed}: {s['successes']}/{s['episodes']} in {train_s:.0f}s train")
        k = sum(r["successes"] for r in runs)
        n = sum(r["episodes"] for r in runs)
        pooled = success_rate(k, n)
        results["tasks"][task] = {"runs": runs, "successes": k, "episodes": n,
                                  "success_rate": pooled.rate, "ci_low": pooled.ci_low,
                                  "ci_high": pooled.ci_high}  # fmt: skip
        write_json(args.json, results, quiet=True)
    rows = [
        [
            task,
            per_seed_cell(r["runs"]),
            success_cell(r["successes"], r["episodes"], digits=0),
            wilson_cell(r["successes"], r["episodes"], percent=0),
        ]
        for task, r in results["tasks"].items()
    ]
    print("\n" + markdown_table(["task", "per seed", "pooled", "95% Wilson"], rows))


if __name__ == "__main__":
    main()
