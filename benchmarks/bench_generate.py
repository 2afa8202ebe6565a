"""Synthetic generation: data generation rate, throughput, scaling, and what the data is worth.

Phases (each writes its own JSON under --work and prints a markdown table):

  dgr     per task and source seed: 10 oracle source demos (recorded without action noise
          unless --source-noise), then `--n` generated demos into each variant (D0: the
          source's distribution; D1: objects spread wider). Reports the data generation rate
          (successes / attempts) and successful demos per CPU-minute (one worker,
          in-process, so CPU time is this process's).
  scale   generation throughput with 1 and 2 workers on the same source, alternated repeats.
  policy  BC-RNN trained on the 10 source demos, on `--n` generated demos, and on `--n`
          oracle demos (all oracle demos with ORACLE_NOISE, as in bench_quality), 3 training
          seeds each, 50 held-out episodes each; with --variant D1 the generated data is
          generated into D1 and every policy is evaluated on D1.

    .venv/bin/python benchmarks/bench_generate.py --phase dgr --n 1000
    .venv/bin/python benchmarks/bench_generate.py --phase scale --tasks stack --n 400
    .venv/bin/python benchmarks/bench_generate.py --phase dgr --tasks handover bimanual_lift \
        --n 100 --variants D0 --seeds 0
    .venv/bin/python benchmarks/bench_generate.py --phase policy --tasks lift stack
    .venv/bin/python benchmarks/bench_generate.py --phase policy --tasks handover \
        --datasets source generated --work benchmarks/out/bodies_gen
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from apprentice.algos.config import TrainConfig
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.evaluate.metrics import success_rate
from apprentice.evaluate.run import EvalConfig, evaluate
from apprentice.generate.run import GenerateConfig, run_generate
from apprentice.overrides import parse_overrides
from apprentice.pipelines.train import run_train
from apprentice.policies.base import policy_config_from_dict
from harness import (
    OUT,
    add_seeds,
    markdown_table,
    parser,
    per_seed_cell,
    ratio,
    success_cell,
    wilson_cell,
    write_json,
)

TASKS = ["lift", "stack", "pick_place", "peg_insert"]
ORACLE_NOISE = {"lift": 0.1, "stack": 0.1, "pick_place": 0.1, "peg_insert": 0.03}
ORACLE_NOISE.update(handover=0.05, bimanual_lift=0.05)
"""Collection noise of the oracle demos, as in bench_quality (peg_insert's oracle fails most
of the time at 0.1, and so do the two-arm ones: handover succeeded 24 times in 130
attempts, bimanual_lift once; at 0.05 they succeed 40 of 40 and 40 of 45)."""
MIMICGEN_D0 = "Stack 94%, Stack Three 71%, Square 74%, Threading 51%"


def source_file(work: Path, task: str, seed: int, n: int = 10, noise: float | None = None) -> Path:
    """n oracle demos of `task`, collection seeds from 10000 * seed (distinct per seed),
    with ORACLE_NOISE[task] unless `noise` is given."""
    default = ORACLE_NOISE.get(task, 0.0)
    noise = default if noise is None else noise
    tag = "" if noise == default else f"_noise{noise}"
    path = work / f"{task}_oracle{n}{tag}_s{seed}.hdf5"
    collect_demos(
        CollectConfig(
            task=task,
            n=n,
            out=str(path),
            workers=1 if n <= 20 else 2,
            seed=10_000 * seed,
            action_noise=noise,
            progress=False,
        )
    )
    return path


def generated_file(
    work: Path, task: str, source: Path, n: int, variant: str, workers: int = 1, seed: int = 0
) -> tuple[Path, dict[str, Any]]:
    out = work / f"{source.stem}_gen{n}_{variant}.hdf5"
    cpu0, wall0 = time.process_time(), time.perf_counter()
    r = run_generate(
        GenerateConfig(
            source=str(source),
            n=n,
            out=str(out),
            task_args=() if variant == "default" else (f"variant={variant}",),
            workers=workers,
            seed=seed,
            progress=False,
        )
    )
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    stats = {
        "task": task,
        "variant": variant,
        "successes": r.successes,
        "attempts": r.attempts,
        "dgr": r.dgr,
        "new_successes": r.new_successes,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "failures": {f"{i}:{k}": c for (i, k), c in r.failures.items()},
    }
    return out, stats


def phase_dgr(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rows = []
    for task in args.tasks:
        for seed in args.seeds:
            noise = 0.0 if args.source_noise is None else args.source_noise
            source = source_file(work, task, seed, noise=noise)
            for variant in args.variants:
                out = work / f"{source.stem}_gen{args.n}_{variant}.hdf5"
                out.unlink(missing_ok=True)  # a resumed file would not time the generation
                _, stats = generated_file(work, task, source, args.n, variant, seed=seed)
                stats["seed"] = seed
                stats["demos_per_cpu_minute"] = 60 * stats["new_successes"] / stats["cpu_seconds"]
                rows.append(stats)
                print(
                    f"{task} {variant} seed {seed}: DGR {stats['dgr']:.1%} "
                    f"({stats['successes']}/{stats['attempts']}), "
                    f"{stats['demos_per_cpu_minute']:.0f} demos/CPU-min",
                    flush=True,
                )
    print(f"\nMimicGen's published D0 rates for reference: {MIMICGEN_D0}")
    table = []
    for task in args.tasks:
        for variant in args.variants:
            rs = [r for r in rows if r["task"] == task and r["variant"] == variant]
            k, n = sum(r["successes"] for r in rs), sum(r["attempts"] for r in rs)
            per = ", ".join(f"{r['dgr']:.1%}" for r in rs)
            rate = sum(r["new_successes"] for r in rs) * 60 / sum(r["cpu_seconds"] for r in rs)
            table.append([task, variant, per, f"{k}/{n} = {k / n:.1%}", f"{rate:.0f}"])
    header = ["task", "variant", "DGR per seed", "pooled DGR", "demos per CPU-minute"]
    print("\n" + markdown_table(header, table))
    return {"rows": rows}


def phase_scale(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rows = []
    for task in args.tasks:
        source = source_file(work, task, 0)
        for rep in range(args.repeats):
            for workers in (1, 2):
                out = work / f"{source.stem}_gen{args.n}_D0.hdf5"
                out.unlink(missing_ok=True)
                _, stats = generated_file(work, task, source, args.n, "D0", workers=workers)
                rate = stats["new_successes"] / stats["wall_seconds"]
                rows.append({"task": task, "workers": workers, "repeat": rep, "rate": rate})
                print(f"{task} workers {workers} repeat {rep}: {rate:.1f} demos/s", flush=True)
    table = []
    for task in args.tasks:
        one = [r["rate"] for r in rows if r["task"] == task and r["workers"] == 1]
        two = [r["rate"] for r in rows if r["task"] == task and r["workers"] == 2]
        speedup = ratio(two, one)
        table.append(
            [
                task,
                ", ".join(f"{x:.1f}" for x in one),
                ", ".join(f"{x:.1f}" for x in two),
                ", ".join(f"{x:.2f}" for x in sorted(speedup.values)),
                f"{speedup.median:.2f}",
            ]
        )
    header = ["task", "1 worker (demos/s)", "2 workers (demos/s)", "ratio per repeat", "median"]
    print("\n" + markdown_table(header, table))
    return {"rows": rows, "cpus": os.cpu_count()}


def train_and_eval(
    args: argparse.Namespace, dataset: Path, run_dir: Path, seed: int, variant: str
) -> dict[str, Any]:
    t0 = time.perf_counter()
    policy = policy_config_from_dict(
        {"name": "rnn", **parse_overrides(args.policy_args, "policy argument")}
    )
    run_train(
        TrainConfig(
            dataset=str(dataset),
            out=str(run_dir),
            policy=policy,
            epochs=args.epochs,
            steps_per_epoch=100,
            lr=1e-3,
            seed=seed,
            threads=1,
            # Checkpoint selection on the training distribution's own rollouts (seeds
            # disjoint from the final evaluation's), as in bench_quality.
            eval_every=10,
            eval_episodes=20,
            overwrite=True,
            progress=False,
        )
    )
    train_s = time.perf_counter() - t0
    s = evaluate(
        EvalConfig(
            checkpoint=str(run_dir),
            task_args=(f"variant={variant}",),
            episodes=args.episodes,
            workers=args.eval_workers,
        )
    )
    return {"seed": seed, "train_seconds": train_s, "successes": s["successes"],
            "episodes": s["episodes"]}  # fmt: skip


def phase_policy(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    variant = args.variant
    results: dict[str, Any] = {}
    noise = "" if args.source_noise is None else f"_noise{args.source_noise}"
    out_json = work / f"policy_{variant}{noise}_{'_'.join(args.tasks)}.json"
    for task in args.tasks:
        source = source_file(work, task, 0, noise=args.source_noise)
        generated, gen_stats = generated_file(work, task, source, args.n, variant)
        tag = "" if args.source_noise is None else f" (sources noise {args.source_noise})"
        datasets = {}
        if "source" in args.datasets:
            datasets[f"source 10{tag}"] = source
        if "generated" in args.datasets:
            datasets[f"generated {args.n}{tag}"] = generated
        if "oracle" in args.datasets and variant == "D0":
            datasets[f"oracle {args.n}"] = source_file(work, task, 0, n=args.n)
        results[task] = {"generation": gen_stats, "datasets": {}}
        for label, path in datasets.items():
            runs = []
            for seed in args.seeds:
                slug = "".join(c for c in label if c.isalnum() or c == ".")
                run_dir = work / "runs" / f"{task}_{variant}_{slug}_s{seed}"
                r = train_and_eval(args, path, run_dir, seed, variant)
                runs.append(r)
                print(f"{task} {variant} {label} seed {seed}: {r['successes']}/{r['episodes']} "
                      f"({r['train_seconds']:.0f} s train)", flush=True)  # fmt: skip
            k = sum(r["successes"] for r in runs)
            n = sum(r["episodes"] for r in runs)
            pooled = success_rate(k, n)
            results[task]["datasets"][label] = {
                "runs": runs, "successes": k, "episodes": n, "rate": pooled.rate,
                "ci_low": pooled.ci_low, "ci_high": pooled.ci_high}  # fmt: skip
            write_json(out_json, results, quiet=True)
    table = [
        [
            task,
            label,
            per_seed_cell(d["runs"]),
            success_cell(d["successes"], d["episodes"]),
            wilson_cell(d["successes"], d["episodes"], percent=1),
        ]
        for task, r in results.items()
        for label, d in r["datasets"].items()
    ]
    header = ["task", "dataset", "per seed", f"pooled (eval on {variant})", "95% Wilson"]
    print("\n" + markdown_table(header, table))
    return results


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--phase", choices=["dgr", "scale", "policy"], required=True)
    p.add_argument("--tasks", nargs="+", default=TASKS)
    p.add_argument("--n", type=int, default=1000, help="generated (and oracle) demos")
    add_seeds(p)
    p.add_argument(
        "--variants",
        nargs="+",
        default=["D0", "D1"],
        help="dgr phase; 'default' for tasks without variants (the robosuite ones)",
    )
    p.add_argument("--variant", default="D0", help="policy phase: generate and evaluate on it")
    p.add_argument("--repeats", type=int, default=3, help="scale phase")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--policy-args", nargs="*", default=["hidden_dim=128"])
    p.add_argument("--eval-workers", type=int, default=1)
    p.add_argument(
        "--source-noise",
        type=float,
        default=None,
        help="collection noise of the source demos (default: 0 for dgr, ORACLE_NOISE for policy)",
    )
    p.add_argument(
        "--datasets",
        nargs="+",
        default=["source", "generated", "oracle"],
        choices=["source", "generated", "oracle"],
        help="policy phase: which datasets to train on",
    )
    p.add_argument("--work", default=str(OUT / "generate"))
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    phase = {"dgr": phase_dgr, "scale": phase_scale, "policy": phase_policy}[args.phase]
    result = phase(args, work)
    name = f"{args.phase}_{'_'.join(args.tasks)}.json"
    write_json(work / name, {"config": vars(args), **result})


if __name__ == "__main__":
    main()
