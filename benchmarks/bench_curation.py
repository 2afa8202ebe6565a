"""Curation: BC-RNN on noisy human-like demos, all of them vs the ones `apprentice filter` keeps.

1. Collect N human-like demos (`apprentice collect --noise human`: the task's oracle with
   injected pauses, stop-and-go, tremor, dropped grasps and gripper chatter; about 44% of
   the demos get at least one defect, each labelled in its attrs).
2. Score them (`apprentice.data.quality`, oracle path lengths included) and filter with
   `--min-score` (default 0.8: fixed beforehand on a development set collected from
   other seeds, 5000-5079, never on these demos or the evaluation seeds). The filter's
   precision and recall against the injected labels are reported, overall and per defect.
3. For each training seed, train BC-RNN (the quickstart's: LSTM 2x128, lr 1e-3, 20 x 100
   steps, best of the periodic rollout checks) on mask/train (all), on
   mask/curated_train (filtered), and on a random subset of mask/train as large as the
   filtered set (the control: is it which demos were kept, or how many?), drawn afresh per
   training seed, and evaluate each on the same held-out seeds.

Every stage resumes: rerun the same command after an interruption.

    .venv/bin/python benchmarks/bench_curation.py --demos 200 --seeds 0 1 2 --episodes 50
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.algos.trainer import TrainConfig, train
from apprentice.collect.noisy import DEFECTS
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.collect.replay import score_file
from apprentice.data.curate import FilterConfig, curate
from apprentice.data.reader import DemoFile
from apprentice.data.store import write_mask
from apprentice.evaluate.metrics import success_rate
from apprentice.evaluate.run import EvalConfig, evaluate, rollout_callback
from apprentice.overrides import parse_overrides
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

CONDITIONS = {
    "all": ("train", "valid"),
    "filtered": ("curated_train", "curated_valid"),
    "random": ("random_train_s{seed}", "random_valid_s{seed}"),
}


def write_random_masks(demos: Path, seed: int) -> None:
    """The control: per training seed, a random subset of train/valid with the filter's sizes."""
    with DemoFile(demos) as f:
        masks = f.masks
    rng = np.random.default_rng(10_000 + seed)
    for split, like in (("train", "curated_train"), ("valid", "curated_valid")):
        pool = sorted(masks[split])
        pick = rng.choice(len(pool), size=len(masks[like]), replace=False)
        write_mask(demos, f"random_{split}_s{seed}", [pool[i] for i in sorted(pick)])


def filter_quality(demos: Path, min_score: float) -> dict[str, Any]:
    """Score and filter the file; precision/recall of 'dropped' against 'injected'."""
    scores = score_file(demos)
    result = curate(FilterConfig(file=str(demos), min_score=min_score, split=True), scores)
    with DemoFile(demos) as f:
        injected = {n: str(f.attrs(n).get("injected", "")) for n in f.demo_names}
    noisy = {n for n, inj in injected.items() if inj}
    dropped = set(result.dropped)
    hit = len(noisy & dropped)
    per_defect = {}
    for kind in DEFECTS:
        having = {n for n, inj in injected.items() if kind in inj.split(",")}
        per_defect[kind] = {"demos": len(having), "dropped": len(having & dropped)}
    return {
        "demos": len(injected),
        "noisy": len(noisy),
        "dropped": len(dropped),
        "kept": len(result.kept),
        "precision": hit / max(len(dropped), 1),
        "recall": hit / max(len(noisy), 1),
        "per_defect": per_defect,
        "masks": result.masks,
        "mean_score_clean": float(
            scores.score[[i for i, n in enumerate(scores.names) if n not in noisy]].mean()
        ),
        "mean_score_noisy": float(
            scores.score[[i for i, n in enumerate(scores.names) if n in noisy]].mean()
        )
        if noisy
        else None,
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--task", default="lift")
    p.add_argument("--demos", type=int, default=200)
    p.add_argument("--min-score", type=float, default=0.8)
    add_seeds(p)
    p.add_argument("--episodes", type=int, default=50, help="held-out evaluation episodes")
    p.add_argument("--policy", default="rnn")
    p.add_argument("--policy-args", nargs="*", default=["hidden_dim=128"])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--eval-episodes", type=int, default=20, help="rollouts per periodic check")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads for training")
    p.add_argument("--work", default=str(OUT / "curation"))
    p.add_argument("--json", default=str(OUT / "curation.json"))
    p.add_argument("--filter-only", action="store_true", help="score and filter; train nothing")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"config": vars(args), "runs": {}}
    out = Path(args.json)

    demos = work / f"{args.task}_human_{args.demos}.hdf5"
    t0 = time.perf_counter()
    collect_demos(
        CollectConfig(
            task=args.task,
            n=args.demos,
            out=str(demos),
            workers=args.workers,
            noise="human",
            progress=False,
        )
    )
    results["collect_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results["filter"] = filter_quality(demos, args.min_score)
    results["filter_seconds"] = time.perf_counter() - t0
    fq = results["filter"]
    print(
        f"filter at --min-score {args.min_score}: kept {fq['kept']}/{fq['demos']}, "
        f"precision {fq['precision']:.2f}, recall {fq['recall']:.2f} "
        f"({fq['noisy']} demos with injected defects)",
        flush=True,
    )
    defects = [[kind, c["demos"], c["dropped"]] for kind, c in fq["per_defect"].items()]
    print("\n" + markdown_table(["defect", "demos with it", "dropped"], defects))
    write_json(out, results, quiet=True)
    if args.filter_only:
        return
    policy = policy_config_from_dict(
        {"name": args.policy, **parse_overrides(args.policy_args, "policy argument")}
    )
    evaluate_cb = rollout_callback(args.task, args.eval_episodes) if args.eval_every else None
    for seed in args.seeds:
        write_random_masks(demos, seed)
        for condition, masks in CONDITIONS.items():
            train_mask, valid_mask = (m.format(seed=seed) for m in masks)
            run_dir = work / f"{args.task}_{condition}_s{seed}"
            eval_json = run_dir / "eval.json"
            t0 = time.perf_counter()
            if not eval_json.exists():
                train(
                    TrainConfig(
                        dataset=str(demos),
                        out=str(run_dir),
                        policy=policy,
                        epochs=args.epochs,
                        steps_per_epoch=args.steps_per_epoch,
                        lr=args.lr,
                        seed=seed,
                        train_mask=train_mask,
                        valid_mask=valid_mask,
                        eval_every=args.eval_every if evaluate_cb else 0,
                        eval_episodes=args.eval_episodes,
                        threads=args.threads,
                        progress=False,
                    ),
                    evaluate=evaluate_cb,
                )
                evaluate(
                    EvalConfig(
                        checkpoint=str(run_dir),
                        episodes=args.episodes,
                        workers=args.workers,
                        out=str(eval_json),
                    )
                )
            s = json.loads(eval_json.read_text())
            results["runs"][f"{condition}/s{seed}"] = {
                "condition": condition,
                "seed": seed,
                "successes": s["successes"],
                "episodes": s["episodes"],
                "seconds_this_call": time.perf_counter() - t0,
            }
            print(f"{condition} seed {seed}: {s['successes']}/{s['episodes']}", flush=True)
            write_json(out, results, quiet=True)

    with DemoFile(demos) as f:
        seed0 = args.seeds[0]
        sizes = {
            c: len(f.masks.get(masks[0].format(seed=seed0), [])) for c, masks in CONDITIONS.items()
        }
    print(f"\n{args.task}, {fq['demos']} human-like demos ({fq['noisy']} with defects)\n")
    rows = []
    for condition in CONDITIONS:
        runs = [r for r in results["runs"].values() if r["condition"] == condition]
        succ, n = sum(r["successes"] for r in runs), sum(r["episodes"] for r in runs)
        sr = success_rate(succ, n)
        results[condition] = {"successes": succ, "episodes": n, "ci": [sr.ci_low, sr.ci_high]}
        rows.append(
            [
                condition,
                sizes[condition],
                per_seed_cell(runs),
                success_cell(succ, n),
                wilson_cell(succ, n, percent=1),
            ]
        )
    header = ["training set", "training demos", "per training seed", "pooled", "95% Wilson"]
    print(markdown_table(header, rows))
    write_json(out, results)


if __name__ == "__main__":
    main()
