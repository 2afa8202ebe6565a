"""Interactive imitation: success (or normalized return) against expert labels, for BC,
DAgger, HG-DAgger and DART at equal label budgets.

Every method starts from the same round 0 (the same expert demos, seeds and learner), then
adds exactly `--labels-per-round` expert labels per round (`DaggerConfig.labels_per_round`),
so at every point of the curves all methods have used the same number of labels. The learner
is retrained (warm start) after each round and scored on the same held-out seeds. Built-in
tasks report the success rate; gymnasium tasks the normalized return
(score - random) / (expert - random) against the SB3 expert's record written by
benchmarks/train_experts.py (run that first).

    .venv/bin/python benchmarks/bench_dagger.py --tasks lift gym/InvertedPendulum-v5 \
        --seeds 0 1 2
Writes benchmarks/out/dagger/<task>.json, a markdown table on stdout and <task>.png curves.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from apprentice.interactive.dagger import DaggerConfig, round_training, run_dagger
from apprentice.overrides import parse_overrides
from apprentice.policies.base import policy_config_from_dict
from harness import OUT, add_out, add_seeds, markdown_table, parser, write_json

DAGGER_OUT = OUT / "dagger"
EXPERTS = OUT / "experts"

# Per task: round-0 expert episodes and the label budget of each later round. Built-in
# tasks start from a handful of demos (where BC is under 95%); the gym tasks from one.
SIZES: dict[str, dict[str, int]] = {
    "lift": {"init_episodes": 3, "labels_per_round": 300},
    "stack": {"init_episodes": 5, "labels_per_round": 600},
    "gym/InvertedPendulum-v5": {"init_episodes": 1, "labels_per_round": 500},
    "gym/Reacher-v5": {"init_episodes": 4, "labels_per_round": 200},
    # One 1000-step episode to start, as the IRL benchmarks; locomotion needs more labels.
    "gym/Hopper-v5": {"init_episodes": 1, "labels_per_round": 1000},
    "gym/HalfCheetah-v5": {"init_episodes": 1, "labels_per_round": 1000},
}
METHODS = ("bc", "dagger", "hg-dagger", "dart")


def expert_for(task: str) -> str:
    if task.startswith("gym/"):
        path = EXPERTS / f"{task.removeprefix('gym/')}.zip"
        if not path.exists():
            raise SystemExit(f"no expert {path}: run benchmarks/train_experts.py first")
        return str(path)
    return "oracle"


def score(entry: dict[str, Any]) -> float:
    """The curve's y: normalized return where there is one, else the success rate; of the
    learner picked on validation rollouts when the run selects (--validation-episodes)."""
    entry = entry.get("selected", entry)
    return float(entry.get("normalized_return", entry["success_rate"]))


def run_task(task: str, args: argparse.Namespace) -> dict[str, Any]:
    sizes = SIZES.get(task, {"init_episodes": 5, "labels_per_round": 500})
    runs: dict[str, list[dict[str, Any]]] = {}
    policy = policy_config_from_dict(
        {"name": args.policy, **parse_overrides(args.policy_args, "policy argument")}
    )
    for method in args.methods:
        for seed in args.seeds:
            folder = Path(args.work) / task.replace("/", "_") / f"{method}_s{seed}"
            if args.fresh and folder.exists():
                shutil.rmtree(folder)
            cfg = DaggerConfig(
                task=task,
                out=str(folder),
                expert=expert_for(task),
                method=method,
                init_episodes=sizes["init_episodes"],
                rounds=args.rounds,
                episodes_per_round=10,
                labels_per_round=args.labels_per_round or sizes["labels_per_round"],
                # A learner that balances the pendulum is rarely taken over: without a cap,
                # HG-DAgger would roll out 200 episodes of 1000 steps looking for its labels.
                max_rollouts=args.hg_max_rollouts if method == "hg-dagger" else 0,
                beta_schedule=args.beta_schedule,
                train=round_training(
                    policy=policy,
                    epochs=args.epochs,
                    steps_per_epoch=args.steps_per_epoch,
                    threads=1,
                ),
                eval_episodes=args.episodes,
                validation_episodes=args.validation_episodes,
                seed=seed,
            )
            t0 = time.perf_counter()
            result = run_dagger(cfg)
            seconds = time.perf_counter() - t0
            runs.setdefault(method, []).append(
                {"seed": seed, "seconds": seconds, "history": result.history}
            )
            last = result.history[-1]
            print(
                f"{task} {method} seed {seed}: {score(last):.3f} at {last['labels']} labels "
                f"({seconds:.0f} s)",
                flush=True,
            )
    return {"task": task, "config": vars(args) | {"sizes": sizes}, "runs": runs}


def table(result: dict[str, Any]) -> str:
    """Markdown: per round, labels and each method's mean (per-seed) score."""
    runs = result["runs"]
    methods = [m for m in METHODS if m in runs]
    rounds = len(next(iter(runs.values()))[0]["history"])
    metric = (
        "normalized return"
        if "normalized_return" in runs[methods[0]][0]["history"][0]
        else "success"
    )
    rows = []
    for r in range(rounds):
        labels = runs[methods[0]][0]["history"][r]["labels"]
        cells = []
        for m in methods:
            vals = [score(run["history"][r]) for run in runs[m]]
            per = ", ".join(f"{v:.2f}" for v in vals)
            cells.append(f"{np.mean(vals):.3f} ({per})")
        rows.append([r, labels, *cells])
    lines = [markdown_table(["round", "labels", *methods], rows)]
    hg = runs.get("hg-dagger")
    if hg:
        inter = [sum(h["interventions"] for h in run["history"]) for run in hg]
        lines.append(f"\nHG-DAgger interventions per seed: {inter}; metric: {metric}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, runs in result["runs"].items():
        labels = [h["labels"] for h in runs[0]["history"]]
        scores = np.array([[score(h) for h in run["history"]] for run in runs])  # seeds, rounds
        ax.plot(labels, scores.mean(0), marker="o", label=method)
        ax.fill_between(labels, scores.min(0), scores.max(0), alpha=0.15)
    ax.set_xlabel("expert labels")
    ax.set_ylabel("normalized return" if result["task"].startswith("gym/") else "success rate")
    ax.set_title(f"{result['task']} ({len(next(iter(result['runs'].values())))} seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--tasks", nargs="+", default=["lift", "gym/InvertedPendulum-v5"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    add_seeds(p)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--labels-per-round", type=int, default=0, help="0: the task's default")
    p.add_argument("--beta-schedule", default="linear", choices=["linear", "exponential"])
    p.add_argument("--policy", default="mlp")
    p.add_argument("--policy-args", nargs="*", default=["hidden_dims=[256,256]"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--episodes", type=int, default=50, help="held-out rollouts per round")
    p.add_argument("--hg-max-rollouts", type=int, default=0, help="HG-DAgger's episode cap")
    p.add_argument(
        "--validation-episodes",
        type=int,
        default=0,
        help="every method reports its best round so far on this many validation rollouts",
    )
    p.add_argument("--work", default=str(DAGGER_OUT / "runs"))
    add_out(p, DAGGER_OUT, help="folder of the JSON results and curves")
    p.add_argument("--fresh", action="store_true", help="delete previous runs (else resume)")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        result = run_task(task, args)
        name = task.replace("/", "_")
        write_json(out / f"{name}.json", result)
        plot(result, out / f"{name}.png")
        print(f"\n### {task}\n\n{table(result)}\n", flush=True)


if __name__ == "__main__":
    main()
