"""Adversarial imitation and learning from observation: normalized return against env steps.

For each task, algorithm and seed, runs `apprentice irl` (through `run_irl`, the command's
own function) on the same expert demos, evaluating every `--eval-every` environment steps on
held-out initial states, and reports the normalized return (score - random) / (expert -
random). BC (the shared trainer on the same demos, no environment steps) is the baseline.
imitation 1.0.1's own runs (benchmarks/peers/imitation_run.py, JSON of the same rows) are
shown beside ours when their files exist.

Demos come from the SB3 expert of benchmarks/train_experts.py where one exists
(benchmarks/out/experts/<env>.zip; its .json gives the expert and random returns), the
built-in task's oracle for manipulation tasks, or the PD law for InvertedPendulum.

    .venv/bin/python benchmarks/bench_irl.py --tasks gym/InvertedPendulum-v5 \
        --algos bc gail airl --seeds 0 1 2 --env-steps 150000 --eval-every 15000

Writes benchmarks/out/irl/apprentice_<env>_<algo>_s<seed>.json (rows: env_steps,
mean_return, normalized_return, wall_s; a finished file is not rerun, a killed run resumes
from its run folder under --work), and per task a markdown table on stdout and
benchmarks/out/irl/curves_<env>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from harness import OUT, add_out, add_seeds, markdown_table, parser, write_json

IRL_OUT = OUT / "irl"
EXPERTS = OUT / "experts"


def env_label(task: str) -> str:
    """The <env> of file names: gym/InvertedPendulum-v5 -> InvertedPendulum-v5."""
    return task.removeprefix("gym/")


def expert_spec(task: str) -> str:
    zip_path = EXPERTS / f"{env_label(task)}.zip"
    if zip_path.exists():
        return str(zip_path)
    if task == "gym/InvertedPendulum-v5":
        return "pd"
    if task.startswith("gym/"):
        raise SystemExit(f"no expert for {task}: run benchmarks/train_experts.py first")
    return "oracle"


def demo_path(task: str, episodes: int, out: Path) -> Path:
    return out / f"demos_{env_label(task)}_{episodes}.hdf5"


def run_path(args: argparse.Namespace, task: str, algo: str, seed: int) -> Path:
    """The run folder of one (task, algo, seed) under --work."""
    return args.work / f"{env_label(task)}_{algo}_s{seed}"


def demos_for(task: str, episodes: int, out: Path) -> Path:
    from apprentice.irl.envs import record_expert_demos

    path = demo_path(task, episodes, out)
    if not path.exists():
        tmp = path.with_name(path.name + ".partial")
        tmp.unlink(missing_ok=True)
        record_expert_demos(task, expert_spec(task), episodes, tmp, seed=0)
        os.replace(tmp, path)
    return path


def run_bc(task: str, demos: Path, seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """BC on the demos with the shared trainer; one row at 0 environment steps."""
    from apprentice.algos.trainer import TrainConfig, train
    from apprentice.irl.envs import evaluate_policy, expert_reference, make_irl_env
    from apprentice.policies.checkpoint import load_policy
    from apprentice.policies.mlp import MLPConfig

    t0 = time.perf_counter()
    r = train(
        TrainConfig(
            dataset=str(demos),
            out=str(run_path(args, task, "bc", seed)),
            policy=MLPConfig(hidden_dims=(256, 256)),
            epochs=args.bc_epochs,
            steps_per_epoch=100,
            batch_size=256,
            lr=1e-3,
            seed=seed,
            valid_fraction=0.0,
            threads=1,
            progress=False,
        )
    )
    policy = load_policy(r.final_checkpoint)
    env = make_irl_env(task, seed)
    scores = evaluate_policy(policy.act, env, args.eval_episodes, reference=expert_reference(demos))
    return [{"env_steps": 0, "wall_s": time.perf_counter() - t0, **scores}]


def run_one(
    task: str, algo: str, demos: Path, seed: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    if algo == "bc":
        return run_bc(task, demos, seed, args)
    from apprentice.irl.common import IRLConfig
    from apprentice.irl.run import run_irl

    result = run_irl(
        IRLConfig(
            algo=algo,
            task=task,
            demos=str(demos),
            out=str(run_path(args, task, algo, seed)),
            env_steps=args.env_steps,
            seed=seed,
            rl_algo=args.rl_algo,
            eval_episodes=args.eval_episodes,
            eval_every=args.eval_every,
            algo_args=tuple(args.algo_args),
        )
    )
    return [
        {k: h.get(k) for k in ("env_steps", "mean_return", "normalized_return", "wall_s")}
        for h in result.history
    ]


def final_eval(
    task: str, run_dir: Path, demos: Path, episodes: int, deterministic: bool = True
) -> dict[str, float]:
    """The final policy of a run (BC: final.pt; adversarial: the generator, its mean action
    or with `deterministic` False its sampled one) scored on `episodes` held-out initial
    states (more than the runs' own evaluations, kept short)."""
    from apprentice.irl.adversarial import load_generator
    from apprentice.irl.envs import evaluate_policy, expert_reference, make_irl_env
    from apprentice.policies.checkpoint import load_policy

    final_pt = run_dir / "final.pt"
    if final_pt.exists():
        act = load_policy(final_pt).act
    else:
        # Sampled actions repeat between calls: loading reseeds torch with the run's seed.
        act = load_generator(run_dir, deterministic)
    return evaluate_policy(act, make_irl_env(task, 0), episodes, reference=expert_reference(demos))


def final_evals(
    task: str, algos: list[str], seeds: list[int], args: argparse.Namespace, sampled: bool = False
) -> None:
    """Write final_<env>_<algo>_s<seed>.json: each finished BC or adversarial run's last
    policy on --final-episodes held-out episodes (once; a file that exists is kept). With
    `sampled`, sampled_<env>_...json: the adversarial generators with sampled actions."""
    from apprentice.irl.adversarial import ADVERSARIAL

    env = env_label(task)
    prefix = "sampled" if sampled else "final"
    for algo in [a for a in algos if (a == "bc" and not sampled) or a in ADVERSARIAL]:
        for seed in seeds:
            run_dir = run_path(args, task, algo, seed)
            path = args.out / f"{prefix}_{env}_{algo}_s{seed}.json"
            done = (run_dir / "policy.zip").exists() or (run_dir / "final.pt").exists()
            if path.exists() or not done:
                continue
            demos = demo_path(task, args.demo_episodes, args.out)
            scores = final_eval(task, run_dir, demos, args.final_episodes, not sampled)
            write_json(path, scores, quiet=True)
    rows = list(result_files(args.out, env, prefix))
    if rows:
        how = "sampled actions" if sampled else "mean actions"
        n = rows[0][2]["eval_episodes"]
        print(f"\n{task}: final policies ({how}) on {n:.0f} held-out episodes\n")
        header = ["method", "seed", "normalized return", "return (mean ± std)", "success rate"]
        cells = [
            [
                algo,
                seed,
                f"{r.get('normalized_return', float('nan')):.3f}",
                f"{r['mean_return']:.1f} ± {r['std_return']:.1f}",
                f"{r['success_rate']:.2f}" if "success_rate" in r else "",
            ]
            for algo, seed, r in rows
        ]
        print(markdown_table(header, cells))


def result_files(out: Path, env: str, prefix: str) -> Iterator[tuple[str, int, Any]]:
    """(algo, seed, JSON) of each <prefix>_<env>_<algo>_s<seed>.json under `out`, sorted."""
    for path in sorted(out.glob(f"{prefix}_{env}_*_s*.json")):
        algo, _, seed = path.stem[len(f"{prefix}_{env}_") :].rpartition("_s")
        yield algo, int(seed), json.loads(path.read_text())


def load_runs(out: Path, env: str, prefix: str) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """algo -> seed -> rows, from <prefix>_<env>_<algo>_s<seed>.json files under `out`."""
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for algo, seed, data in result_files(out, env, prefix):
        runs.setdefault(algo, {})[seed] = data["rows"] if isinstance(data, dict) else data
    return runs


def report(task: str, out: Path) -> None:
    env = env_label(task)
    ours = load_runs(out, env, "apprentice")
    # imitation's runs are written by benchmarks/peers/imitation_run.py under IRL_OUT.
    peer = load_runs(IRL_OUT, env, "imitation")
    table = []
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label, runs in [("apprentice", ours), ("imitation 1.0.1", peer)]:
        for algo, by_seed in sorted(runs.items()):
            finals = [rows[-1] for rows in by_seed.values() if rows]
            norm = [
                f["normalized_return"] for f in finals if f.get("normalized_return") is not None
            ]
            ret = [f["mean_return"] for f in finals]
            wall = [f.get("wall_s") or 0.0 for f in finals]
            name = algo if label == "apprentice" else f"{algo} ({label})"
            table.append(
                [
                    name,
                    len(finals),
                    finals[0]["env_steps"],
                    f"{np.mean(norm):.3f} ± {np.std(norm):.3f}",
                    f"{np.mean(ret):.1f}",
                    f"{np.mean(wall):.0f}",
                ]
            )
            # The curve: mean over seeds at the evaluation points all seeds share.
            steps = sorted(
                set.intersection(*[{r["env_steps"] for r in v} for v in by_seed.values()])
            )
            ys = [
                np.mean(
                    [
                        r["normalized_return"]
                        for v in by_seed.values()
                        for r in v
                        if r["env_steps"] == s
                    ]
                )
                for s in steps
            ]
            curves[name] = (np.asarray(steps), np.asarray(ys))
    print(f"\n### {task}: normalized return (mean ± std over seeds) at the last evaluation\n")
    header = ["method", "seeds", "env steps", "normalized return", "return"]
    print(markdown_table([*header, "wall-clock s (mean)"], table))
    print(f"\n{task}: normalized return against environment steps (mean over seeds)\n")
    for name, (xs, ys) in curves.items():
        print(
            f"- {name}: " + ", ".join(f"{x // 1000}k: {y:.2f}" for x, y in zip(xs, ys, strict=True))
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (xs, ys) in curves.items():
        if len(xs) == 1:
            ax.axhline(ys[0], linestyle="--", label=name)
        else:
            ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("normalized return")
    ax.set_title(task)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"curves_{env}.png", dpi=100)
    plt.close(fig)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--tasks", nargs="+", default=["gym/InvertedPendulum-v5"])
    p.add_argument("--algos", nargs="+", default=["bc", "gail", "airl"])
    add_seeds(p)
    p.add_argument("--demo-episodes", type=int, default=10)
    p.add_argument("--env-steps", type=int, default=150_000)
    p.add_argument("--eval-every", type=int, default=15_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--rl-algo", default="auto")
    p.add_argument("--algo-args", nargs="*", default=[], help="key=value for every irl run")
    p.add_argument("--bc-epochs", type=int, default=20)
    add_out(p, IRL_OUT, help="result JSON, demos and curves")
    p.add_argument("--work", type=Path, default=None, help="run folders (default: <out>/runs)")
    p.add_argument("--report-only", action="store_true", help="only print the tables")
    p.add_argument(
        "--final-episodes",
        type=int,
        default=0,
        help="also score each run's final policy on this many held-out episodes",
    )
    p.add_argument(
        "--final-sampled",
        action="store_true",
        help="with --final-episodes, also score the adversarial generators' sampled actions",
    )
    args = p.parse_args()
    args.work = args.work or args.out / "runs"
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        if not args.report_only:
            demos = demos_for(task, args.demo_episodes, args.out)
            for algo in args.algos:
                for seed in args.seeds:
                    path = args.out / f"apprentice_{env_label(task)}_{algo}_s{seed}.json"
                    if path.exists():
                        continue
                    t0 = time.perf_counter()
                    rows = run_one(task, algo, demos, seed, args)
                    record = {
                        "task": task,
                        "algo": algo,
                        "seed": seed,
                        "demos": str(demos),
                        "args": {k: str(v) for k, v in vars(args).items()},
                        "total_wall_s": time.perf_counter() - t0,
                        "rows": rows,
                    }
                    write_json(path, record, quiet=True)
                    print(f"{task} {algo} seed {seed}: {rows[-1]}", flush=True)
        report(task, args.out)
        if args.final_episodes:
            final_evals(task, args.algos, args.seeds, args)
            if args.final_sampled:
                final_evals(task, args.algos, args.seeds, args, sampled=True)


if __name__ == "__main__":
    main()
