"""Tabular IRL (apprenticeship learning, MaxEnt IRL) on the shipped gridworlds, and the
linear-feature apprenticeship learner on a continuous task.

Tabular part: for each gridworld, algorithm, number of demos (or the expert's exact feature
expectations, "exact") and seed, `run_tabular` and its result: ||mu_E - mu|| at the end,
whether it met its stopping rule, the learned policy's (or, for apprenticeship, the mixed
policy's) exact value under the TRUE reward, normalized (value - uniform) / (expert -
uniform), MaxEnt's Pearson correlation of recovered and true reward, iterations and wall
time. Demo i of seed s is drawn from default_rng([s, i]).

    .venv/bin/python benchmarks/bench_irl_tabular.py --demos exact 20 200 --seeds 0 1 2

Continuous part (`--continuous`): apprenticeship learning with linear features and PPO on
gym/InvertedPendulum-v5 from the same demo file as bench_irl.py's GAIL runs, rows
{env_steps, mean_return, normalized_return, wall_s} written to
benchmarks/out/irl/apprentice_InvertedPendulum-v5_apprenticeship_s<seed>.json so that
bench_irl.py's table shows it beside GAIL and imitation 1.0.1.

    .venv/bin/python benchmarks/bench_irl_tabular.py --continuous --env-steps 100000 --seeds 0

Writes benchmarks/out/irl_tabular.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness import OUT, add_quick, add_seeds, markdown_table, parser, write_json

WORLDS = ["gridworld/5x5", "gridworld/objectworld-10", "gridworld/16x16"]


def run_tabular_grid(args: argparse.Namespace) -> list[dict[str, Any]]:
    from apprentice.irl.common import IRLConfig
    from apprentice.irl.tabular import record_gridworld_demos, run_tabular

    rows = []
    for world in args.worlds:
        for algo in args.algos:
            for demos in args.demos:
                seeds = [0] if demos == "exact" else args.seeds
                for seed in seeds:
                    tag = f"{world.removeprefix('gridworld/')}_{algo}_{demos}_s{seed}"
                    work = args.work / tag
                    algo_args = ["exact_expert=true"] if demos == "exact" else []
                    demo_path = ""
                    if demos != "exact":
                        demo_path = str(args.work / f"demos_{tag}.hdf5")
                        record_gridworld_demos(world, demo_path, int(demos), seed)
                    start = time.perf_counter()
                    r = run_tabular(
                        IRLConfig(
                            algo=algo,
                            task=world,
                            demos=demo_path,
                            out=str(work),
                            seed=seed,
                            overwrite=True,
                            algo_args=tuple(algo_args),
                        )
                    )
                    f = r.final
                    row = {
                        "world": world,
                        "algo": algo,
                        "demos": demos,
                        "seed": seed,
                        "distance": f["distance"],
                        "converged": f["converged"],
                        "iterations": f["iterations"],
                        "normalized_return": f.get(
                            "mixture_normalized_return", f.get("normalized_return")
                        ),
                        "reward_correlation": f.get("reward_correlation"),
                        "wall_s": time.perf_counter() - start,
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Mean (min-max) over seeds per world, algorithm and number of demos."""
    header = ["world", "algo", "demos", "seeds", "dist. to mu_E", "met stop rule"]
    header += ["normalized value (true reward)", "reward corr.", "iterations", "wall s"]
    rows_out: list[list[Any]] = []

    def stat(xs: list[float], fmt: str) -> str:
        if len(xs) == 1:
            return format(xs[0], fmt)
        return f"{format(float(np.mean(xs)), fmt)} ({format(min(xs), fmt)}-{format(max(xs), fmt)})"

    keys: list[tuple[str, str, str]] = []
    for r in rows:
        k = (r["world"], r["algo"], r["demos"])
        if k not in keys:
            keys.append(k)
    for world, algo, demos in keys:
        group = [r for r in rows if (r["world"], r["algo"], r["demos"]) == (world, algo, demos)]
        corr = [r["reward_correlation"] for r in group if r["reward_correlation"] is not None]
        rows_out.append(
            [
                world,
                algo,
                demos,
                len(group),
                stat([r["distance"] for r in group], ".3f"),
                f"{sum(r['converged'] for r in group)}/{len(group)}",
                stat([r["normalized_return"] for r in group], ".3f"),
                stat(corr, ".2f") if corr else "-",
                stat([float(r["iterations"]) for r in group], ".0f"),
                stat([r["wall_s"] for r in group], ".1f"),
            ]
        )
    return markdown_table(header, rows_out)


def run_continuous(args: argparse.Namespace) -> None:
    from apprentice.irl.common import IRLConfig
    from apprentice.irl.envs import record_expert_demos
    from apprentice.irl.tabular import run_tabular

    env = args.task.removeprefix("gym/")
    demos = OUT / "irl" / f"demos_{env}_{args.demo_episodes}.hdf5"
    if not demos.exists():  # the file bench_irl.py records (and the peer reads) if it is absent
        expert = OUT / "experts" / f"{env}.zip"
        spec = str(expert) if expert.exists() else "pd"
        tmp = demos.with_name(demos.name + ".partial")
        tmp.unlink(missing_ok=True)
        record_expert_demos(args.task, spec, args.demo_episodes, tmp, seed=0)
        os.replace(tmp, demos)
    for seed in args.seeds:
        r = run_tabular(
            IRLConfig(
                algo="apprenticeship",
                task=args.task,
                demos=str(demos),
                out=str(args.work / f"{env}_apprenticeship_s{seed}"),
                env_steps=args.env_steps,
                seed=seed,
                eval_episodes=args.eval_episodes,
                algo_args=tuple(args.algo_args),
            )
        )
        rows = [
            {k: h.get(k) for k in ("env_steps", "mean_return", "normalized_return", "wall_s")}
            for h in r.history
        ]
        out = OUT / "irl" / f"apprentice_{env}_apprenticeship_s{seed}.json"
        write_json(out, {"rows": rows, "final": r.final, "demos": str(demos)})
        cells = [
            [
                row["env_steps"],
                f"{row['mean_return']:.1f}",
                f"{row.get('normalized_return') or float('nan'):.3f}",
                f"{row['wall_s']:.0f}",
            ]
            for row in rows
        ]
        print(markdown_table(["env steps", "return", "normalized", "wall s"], cells))


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--worlds", nargs="+", default=WORLDS)
    p.add_argument("--algos", nargs="+", default=["apprenticeship", "maxent"])
    p.add_argument("--demos", nargs="+", default=["exact", "20", "200"])
    add_seeds(p)
    p.add_argument("--work", type=Path, default=OUT / "irl_tabular_runs")
    add_quick(p, help="5x5 only, exact and 10 demos, seed 0")
    p.add_argument("--continuous", action="store_true", help="the linear-feature version instead")
    p.add_argument("--task", default="gym/InvertedPendulum-v5")
    p.add_argument("--env-steps", type=int, default=100_000)
    p.add_argument("--demo-episodes", type=int, default=10)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--algo-args", nargs="*", default=[])
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    (OUT / "irl").mkdir(parents=True, exist_ok=True)
    if args.continuous:
        run_continuous(args)
        return
    if args.quick:
        args.worlds, args.demos, args.seeds = ["gridworld/5x5"], ["exact", "10"], [0]
    rows = run_tabular_grid(args)
    out = OUT / ("irl_tabular_quick.json" if args.quick else "irl_tabular.json")
    write_json(out, {"rows": rows, "load_avg_end": list(os.getloadavg())})
    print(table(rows))


if __name__ == "__main__":
    main()
