"""Learning from observation and BC-then-RL: label accuracy, BCO and bc-rl learning curves.

Three measurements (each optional, `--parts`):

- `label`: action-labelling accuracy on lift. Oracle demos are collected, their actions
  stripped (`strip_actions`), the state-only copy labelled by `label_actions` (the IDM
  trained on the task's own exploration: noisy oracle, and uniform random for contrast), and
  the labels compared with the stripped true actions: MAE per dimension, relative MAE (1 =
  always predicting the mean action) and cosine similarity.
- `bco`: BCO(0) and BCO(alpha) on gym/InvertedPendulum-v5 from demos of the SB3 expert
  (benchmarks/out/experts/InvertedPendulum-v5.zip, run train_experts.py first), next to BC on
  the same demos with their true actions (the ceiling BCO's labels aim at); normalized return
  (R - random) / (expert - random) on held-out seeds.
- `bcrl`: the DAPG-style hybrid (BC pretraining + PPO with a decaying BC term) against
  RL alone (no pretraining, no BC term) at the same env-step budget; the hybrid's row at
  env_steps 0 is BC alone.

    .venv/bin/python benchmarks/bench_lfo.py --seeds 0 1 2
Writes benchmarks/out/lfo/{label,bco,bcrl}.json and a markdown table per part on stdout.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from apprentice.algos.trainer import TrainConfig, train
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.data import DemoDataset
from apprentice.irl.bco import run_bco
from apprentice.irl.common import IRLConfig
from apprentice.irl.envs import evaluate_policy, expert_reference, make_irl_env, record_expert_demos
from apprentice.irl.hybrid import run_bc_rl
from apprentice.irl.label import LabelConfig, action_error, label_actions, strip_actions
from apprentice.policies.checkpoint import load_policy
from apprentice.policies.mlp import MLPConfig
from harness import OUT, add_out, add_seeds, markdown_table, parser, write_json

EXPERT = OUT / "experts" / "InvertedPendulum-v5.zip"
PENDULUM = "gym/InvertedPendulum-v5"


def part_label(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    demos = work / "lift_oracle.hdf5"
    if not demos.exists():
        collect_demos(CollectConfig(task="lift", n=args.lift_demos, out=str(demos), workers=1))
    states = work / "lift_states.hdf5"
    strip_actions(demos, states, overwrite=True)
    truth = DemoDataset.load(demos).actions  # (N, 7), the stripped actions
    rows = {}
    for mode in ("oracle", "random"):
        t0 = time.perf_counter()
        r = label_actions(
            LabelConfig(
                demos=str(states),
                out=str(work / f"lift_labelled_{mode}.hdf5"),
                exploration=mode,
                exploration_steps=args.exploration_steps,
                idm_steps=args.idm_steps,
                overwrite=True,
            )
        )
        labels = DemoDataset.load(r.path).actions
        rows[mode] = {**action_error(labels, truth), "wall_s": time.perf_counter() - t0}
    print(f"\nlift: {args.lift_demos} oracle demos, IDM from {args.exploration_steps} env steps\n")
    cells = [
        [
            mode,
            f"{e['mae']:.4f}",
            f"{e['relative_mae']:.3f}",
            f"{e['cosine']:.3f}",
            " ".join(f"{x:.3f}" for x in e["mae_per_dim"]),
        ]
        for mode, e in rows.items()
    ]
    header = ["exploration", "MAE", "relative MAE", "cosine", "MAE per dim (x y z rx ry rz grip)"]
    print(markdown_table(header, cells))
    return rows


def pendulum_demos(work: Path, n: int) -> Path:
    if not EXPERT.exists():
        raise SystemExit(f"no expert {EXPERT}: run benchmarks/train_experts.py first")
    path = work / f"ip_sb3_{n}.hdf5"
    if not path.exists():
        record_expert_demos(PENDULUM, str(EXPERT), n, path)
    return path


def bc_true_actions(demos: Path, seed: int, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """BC on the demos' own actions, trained and scored as BCO's last round is."""
    r = train(
        TrainConfig(
            dataset=str(demos),
            out=str(out),
            policy=MLPConfig(hidden_dims=(256, 256)),
            epochs=args.bc_epochs,
            steps_per_epoch=100,
            lr=1e-3,
            seed=seed,
            valid_fraction=0.0,
            threads=1,
            progress=False,
            overwrite=True,
        )
    )
    policy = load_policy(r.final_checkpoint)
    env = make_irl_env(PENDULUM, seed)
    scores = []
    for i in range(args.eval_episodes):
        policy.reset()
        scores.append(
            evaluate_policy(policy.act, env, 1, reference=expert_reference(demos), seed_offset=i)
        )
    return {k: float(np.mean([s[k] for s in scores])) for k in ("mean_return", "normalized_return")}


def part_bco(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    demos = pendulum_demos(work, args.ip_demos)
    variants = {  # name -> (run folder, algo args)
        "BCO(0)": ("bco0", ("rounds=0",)),
        "BCO(0.5), 2 rounds": ("bco05", ("alpha=0.5", "rounds=2")),
    }
    out: dict[str, Any] = {"demos": str(demos), "env_steps": args.bco_steps, "runs": {}}
    common = (f"train.epochs={args.bc_epochs}", "train.threads=1", f"idm_steps={args.idm_steps}")
    for seed in args.seeds:
        for name, (slug, extra) in variants.items():
            t0 = time.perf_counter()
            r = run_bco(
                IRLConfig(
                    algo="bco",
                    task=PENDULUM,
                    demos=str(demos),
                    out=str(work / f"{slug}_s{seed}"),
                    env_steps=args.bco_steps,
                    seed=seed,
                    eval_episodes=args.eval_episodes,
                    algo_args=(*common, *extra),
                    overwrite=True,
                )
            )
            out["runs"].setdefault(name, []).append(
                {"seed": seed, "history": r.history, "wall_s": time.perf_counter() - t0}
            )
        bc = bc_true_actions(demos, seed, work / f"bc_true_s{seed}", args)
        out["runs"].setdefault("BC, true actions", []).append({"seed": seed, **bc})
    print(f"\nInvertedPendulum: {args.ip_demos} SB3-expert demos, {args.bco_steps} env steps\n")
    rows = []
    for name, runs in out["runs"].items():
        finals = [r["history"][-1] if "history" in r else r for r in runs]
        nr = [f["normalized_return"] for f in finals]
        per = ", ".join(f"{x:.2f}" for x in nr)
        mae = " ".join(f"{f['idm_mae']:.4f}" for f in finals if "idm_mae" in f) or "-"
        rows.append([name, f"{np.mean(nr):.2f} ({per})", mae, finals[0].get("env_steps", 0)])
    header = ["method", "normalized return, mean (per seed)", "IDM MAE (last round)"]
    print(markdown_table([*header, "env steps"], rows))
    return out


def part_bcrl(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    demos = pendulum_demos(work, args.ip_demos)
    variants = {"bc-rl": ("bcrl", ()), "RL only": ("rl", ("bc_steps=0", "lambda0=0"))}
    out: dict[str, Any] = {"demos": str(demos), "env_steps": args.rl_steps, "runs": {}}
    for seed in args.seeds:
        for name, (slug, extra) in variants.items():
            t0 = time.perf_counter()
            r = run_bc_rl(
                IRLConfig(
                    algo="bc-rl",
                    task=PENDULUM,
                    demos=str(demos),
                    out=str(work / f"{slug}_s{seed}"),
                    env_steps=args.rl_steps,
                    eval_every=args.rl_steps // 4,
                    seed=seed,
                    eval_episodes=args.eval_episodes,
                    algo_args=("threads=1", *extra),
                    overwrite=True,
                )
            )
            out["runs"].setdefault(name, []).append(
                {"seed": seed, "history": r.history, "wall_s": time.perf_counter() - t0}
            )
    steps = sorted(
        {h["env_steps"] for runs in out["runs"].values() for r in runs for h in r["history"]}
    )
    print(f"\nInvertedPendulum: normalized return vs env steps ({args.ip_demos} demos)\n")
    rows = []
    for name, runs in out["runs"].items():
        cells = []
        for s in steps:
            vals = [
                h["normalized_return"] for r in runs for h in r["history"] if h["env_steps"] == s
            ]
            cells.append(f"{np.mean(vals):.2f}" if vals else "-")
        rows.append([name, *cells])
    print(markdown_table(["method", *map(str, steps)], rows))
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--parts", nargs="*", default=["label", "bco", "bcrl"])
    add_seeds(p, nargs="*")
    p.add_argument("--lift-demos", type=int, default=50)
    p.add_argument("--exploration-steps", type=int, default=20_000)
    p.add_argument("--idm-steps", type=int, default=3000)
    p.add_argument("--ip-demos", type=int, default=4)
    p.add_argument("--bco-steps", type=int, default=5000)
    p.add_argument("--bc-epochs", type=int, default=10)
    p.add_argument("--rl-steps", type=int, default=20_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    add_out(p, OUT / "lfo", help="folder of the JSON results and the runs")
    p.add_argument("--fresh", action="store_true", help="delete the work folder first")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    work = out / "runs"
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    parts = {"label": part_label, "bco": part_bco, "bcrl": part_bcrl}
    for name in args.parts:
        t0 = time.perf_counter()
        result = parts[name](args, work)
        result = {"args": vars(args), "wall_s": time.perf_counter() - t0, "result": result}
        write_json(out / f"{name}.json", result, default=str)


if __name__ == "__main__":
    main()
