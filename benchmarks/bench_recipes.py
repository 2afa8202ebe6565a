"""A shipped recipe measured as a user runs it: its data, `apprentice train --recipe`, eval.

For each recipe: collect the data it expects (its `collect` config, cached in --work), then
for each training seed run `apprentice train --recipe NAME --dataset FILE --out DIR --seed S`
(the command line itself, through `apprentice.cli.main`) and score the run's checkpoint on
--episodes held-out initial states with `apprentice eval`'s `evaluate`. Flags after `--`
go to every train command (they override the recipe, as on the command line), e.g.

    .venv/bin/python benchmarks/bench_recipes.py --recipe lift-lowdim --seeds 0 1 2 --episodes 50
    .venv/bin/python benchmarks/bench_recipes.py --recipe pusht-state --tag lr1e-3 -- --lr 1e-3

Results: one JSON per recipe (and tag) in --work, gathering the seeds' records
(<work>/<label>/s<seed>/bench.json: seeds may run in processes side by side), and a markdown
row per recipe.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import sys
import time
from pathlib import Path
from typing import Any

import h5py

from apprentice.cli.main import main as apprentice
from apprentice.collect.oracle import collect_demos
from apprentice.evaluate.run import EvalConfig, evaluate
from apprentice.recipes import get_recipe
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
    argv = sys.argv[1:]
    train_flags: list[str] = []
    if "--" in argv:
        train_flags = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    p = parser(__doc__)
    p.add_argument("--recipe", nargs="+", required=True)
    add_seeds(p)
    p.add_argument("--episodes", type=int, default=50, help="held-out episodes per seed")
    p.add_argument(
        "--demos", type=int, default=None, help="collect this many instead (at least the recipe's)"
    )
    p.add_argument("--workers", type=int, default=2, help="collection and eval processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training")
    p.add_argument("--tag", default="", help="a name for this variant (flags after --)")
    p.add_argument(
        "--every-checkpoint",
        type=int,
        default=0,
        metavar="N",
        help="also keep epoch_<k>.pt every N epochs and score each one (within-seed spread)",
    )
    p.add_argument("--work", type=Path, default=OUT / "recipes")
    args = p.parse_args(argv)
    rows = []
    for name in args.recipe:
        recipe = get_recipe(name)
        collect = recipe.collect
        if args.demos is not None:
            if args.demos < recipe.min_demos:
                # `train --recipe` refuses such a file: say so before collecting it.
                p.error(f"--demos {args.demos}: recipe {name} needs at least {recipe.min_demos}")
            collect = dataclasses.replace(collect, n=args.demos)
        data = args.work / f"{collect.task}_{collect.n}_noise{collect.action_noise}" / "demos.hdf5"
        if collect.camera:
            data = data.with_name("demos_camera.hdf5")
        data.parent.mkdir(parents=True, exist_ok=True)
        # Seeds run as processes side by side share the file: one collects it while the others
        # wait, and a complete file is left alone (a resume rewrites its masks, which a seed
        # already training would be reading).
        with open(data.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _holds(data, collect.n):
                collect_demos(
                    dataclasses.replace(
                        collect, out=str(data), workers=args.workers, progress=False
                    )
                )
        label = name + (f"_{args.tag}" if args.tag else "")
        runs: list[dict[str, Any]] = []
        for seed in args.seeds:
            out = args.work / label / f"s{seed}"
            t0 = time.perf_counter()
            code = apprentice(
                [
                    *("train", "--recipe", name, "--dataset", str(data), "--out", str(out)),
                    *("--seed", str(seed), "--threads", str(args.threads), "--no-progress"),
                    *(("--save-every", str(every)) if (every := args.every_checkpoint) else ()),
                    *train_flags,
                ]
            )
            if code != 0:
                raise SystemExit(f"{label} seed {seed}: apprentice train exited {code}")
            train_s = time.perf_counter() - t0
            s = evaluate(EvalConfig(checkpoint=str(out), episodes=args.episodes, workers=1))
            record = {"seed": seed, "train_seconds": train_s} | {
                k: s[k] for k in ("successes", "episodes", "success_rate", "mean_max_reward")
            }
            if args.every_checkpoint:
                record["per_checkpoint"] = _score_checkpoints(out, args.episodes)
                print(f"{label} seed {seed} per checkpoint: {record['per_checkpoint']}")
            write_json(out / "bench.json", record, quiet=True)
            # Every seed's record of this label, also those other processes ran beside this one.
            runs = [
                json.loads(f.read_text()) for f in sorted((args.work / label).glob("s*/bench.json"))
            ]
            print(
                f"{label} seed {seed}: {s['successes']}/{s['episodes']}, mean best reward "
                f"{s['mean_max_reward']:.3f}, {train_s:.0f} s training",
                flush=True,
            )
            write_json(args.work / f"{label}.json", _summary(label, args, train_flags, runs))
        rows.append(_row(label, runs))
    print(
        "\n"
        + markdown_table(
            ["recipe", "per seed", "pooled", "95% Wilson", "mean best reward", "train s"], rows
        )
    )


def _holds(path: Path, n: int) -> bool:
    """Whether `path` is a demo file with at least `n` demos."""
    if not path.exists():
        return False
    with h5py.File(path, "r") as f:
        return "data" in f and len(f["data"]) >= n


def _score_checkpoints(run: Path, episodes: int) -> dict[str, int]:
    """Successes of every epoch_<k>.pt (and final.pt) of a run on the same held-out states."""
    files = sorted(run.glob("epoch_*.pt"), key=lambda f: int(f.stem.split("_")[1]))
    scores = {}
    for f in [*files, run / "final.pt"]:
        out = run / f"eval_{f.stem}.json"
        s = evaluate(EvalConfig(checkpoint=str(f), episodes=episodes, workers=1, out=str(out)))
        scores[f.stem] = s["successes"]
    return scores


def _summary(
    label: str, args: Any, train_flags: list[str], runs: list[dict[str, Any]]
) -> dict[str, Any]:
    k = sum(r["successes"] for r in runs)
    n = sum(r["episodes"] for r in runs)
    return {
        "recipe": label,
        "train_flags": train_flags,
        "demos": args.demos,
        "runs": runs,
        "successes": k,
        "episodes": n,
        "mean_max_reward": sum(r["mean_max_reward"] for r in runs) / len(runs),
    }


def _row(label: str, runs: list[dict[str, Any]]) -> list[str]:
    k = sum(r["successes"] for r in runs)
    n = sum(r["episodes"] for r in runs)
    rewards = " / ".join(f"{r['mean_max_reward']:.3f}" for r in runs)
    times = " / ".join(f"{r['train_seconds']:.0f}" for r in runs)
    return [label, per_seed_cell(runs), success_cell(k, n), wilson_cell(k, n, 1), rewards, times]


if __name__ == "__main__":
    main()
