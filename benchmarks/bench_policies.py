"""The policy zoo on CPU: training steps/s and inference latency per action, every policy.

For every registered policy, at its defaults and at a small size, on oracle demos of the
built-in `lift` task (collected once, cached under benchmarks/out/policies/):

- training steps/s: the trainer's step, `Trainer.step` (WindowSampler batch of 100 ->
  policy(batch) -> fused Adam), timed in round-robin windows across all policies so a shared
  machine's load falls on all of them alike; also as a ratio to the BC MLP (2x1024) timed in
  the same rounds;
- latency per action: `policy.act(obs)` (batch 1, what a robot loop calls), each call timed
  on its own over real observations of the demos (episodes replayed, reset between them,
  untimed), after a warm-up; p50 / p99 / mean ms;
- for chunk policies (an `ActionQueue` or `TemporalEnsembler` inside), the same numbers over
  the act calls that queried a new chunk (every call when ensembling, every Ta-th otherwise).

torch runs on 1 thread. Prints a markdown table and writes benchmarks/out/policies.json.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_policies.py
    .venv/bin/python benchmarks/bench_policies.py --quick         # smoke test: each policy's tiny()

`--success` instead trains each listed policy on the first N demos (for each N in --demos)
with the shared trainer and scores it on held-out initial states with `apprentice.evaluate`,
reporting successes/trials with the 95% Wilson interval:

    .venv/bin/python benchmarks/bench_policies.py --success --policies mlp act --demos 50 \
        --seeds 0 --episodes 50 --epochs 20
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from apprentice.algos import TrainConfig, Trainer
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.data.dataset import DemoDataset, WindowSampler
from apprentice.data.normalize import Normalizer
from apprentice.policies import Policy, PolicyConfig, policy_config_class, policy_names
from apprentice.policies.chunking import ActionQueue, TemporalEnsembler
from harness import (
    OUT,
    add_out,
    add_quick,
    add_seeds,
    alternate,
    markdown_table,
    parser,
    write_json,
)

BATCH = 100
BASELINE = "mlp"
# A second, small size per policy (unknown names run at their defaults only).
SMALL: dict[str, dict[str, Any]] = {
    "mlp": {"hidden_dims": (256, 256)},
    "gmm": {"hidden_dims": (256, 256)},
    "rnn": {"hidden_dim": 128},
    "transformer": {"embed_dim": 64, "num_layers": 2, "num_heads": 2},
    "act": {"hidden_dim": 64, "num_heads": 2, "ff_dim": 256, "temporal_ensemble": False},
}


def lift_demos(n: int, path: Path) -> Path:
    """Oracle demos of lift at `path` (collected once; an existing file is resumed)."""
    collect_demos(CollectConfig(task="lift", n=n, out=str(path), workers=1, progress=False))
    return path


def variants(names: list[str], quick: bool) -> list[tuple[str, str, PolicyConfig]]:
    """(label, name, config) for every policy at its defaults and small size."""
    out = []
    for name in names:
        cls = policy_config_class(name)
        if quick:
            out.append((f"{name} (quick)", name, cls.tiny()))
            continue
        out.append((f"{name} (default)", name, cls()))
        if name in SMALL:
            small = SMALL[name]
            args = " ".join(f"{k}={v}" for k, v in small.items())
            out.append((f"{name} ({args})", name, cls(**small)))
    return out


def describe(config: PolicyConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "obs_keys"}


def train_rates(
    setups: dict[str, tuple[Policy, WindowSampler]], *, seconds: float, repeats: int
) -> dict[str, dict[str, Any]]:
    """Median steps/s of each policy's training step, in round-robin windows."""
    trainers = {
        label: Trainer.for_policy(p, TrainConfig(lr=1e-4)) for label, (p, _) in setups.items()
    }
    for policy, _ in setups.values():
        policy.train()
    rounds = alternate(
        {
            label: (lambda t=trainers[label], s=sampler: t.step(s.sample()))
            for label, (_, sampler) in setups.items()
        },
        rounds=repeats,
        seconds=seconds,
        warmup=3,
        min_calls=2,
    )
    return {
        label: {"steps_per_s": rounds.median(label), "rounds": r, "steps": rounds.calls[label]}
        for label, r in rounds.wall.items()
    }


def _ms(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1e3
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "n": int(a.size),
    }


def queries(policy: Policy) -> int | None:
    """Chunk queries a chunking policy has made so far; None for other policies.

    A temporal ensembler queries on every act; an action queue every Ta steps, and those
    act calls carry the query's cost.
    """
    helpers = [v for v in vars(policy).values() if isinstance(v, ActionQueue | TemporalEnsembler)]
    return sum(h.queries for h in helpers) if helpers else None


def act_latency(
    policies: dict[str, Policy], dataset: DemoDataset, *, calls: int, warmup: int, rounds: int
) -> dict[str, dict[str, Any]]:
    """Latency of each `act` call, and of the calls that queried a chunk; policies alternate."""
    starts, lengths = dataset.episode_starts, dataset.episode_lengths
    per_round = max(1, calls // rounds)
    act_s: dict[str, list[float]] = {label: [] for label in policies}
    chunk_s: dict[str, list[float]] = {label: [] for label in policies}
    where = {label: (0, 0) for label in policies}  # (episode, step) each policy replays next

    def stream(label: str, policy: Policy, n: int, record: bool) -> None:
        for _ in range(n):
            ep, t = where[label]
            if t >= lengths[ep]:  # the next episode: reset, untimed
                ep, t = (ep + 1) % len(starts), 0
                policy.reset()
            where[label] = (ep, t + 1)
            o = {k: v[starts[ep] + t] for k, v in dataset.obs.items()}
            before = queries(policy)
            t0 = time.perf_counter()
            policy.act(o)
            dt = time.perf_counter() - t0
            if not record:
                continue
            act_s[label].append(dt)
            if queries(policy) != before:
                chunk_s[label].append(dt)

    for label, policy in policies.items():
        policy.eval()
        policy.reset()
        stream(label, policy, warmup, record=False)
    labels = list(policies)
    for r in range(rounds):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            stream(label, policies[label], per_round, record=True)
    out: dict[str, dict[str, Any]] = {}
    for label in policies:
        out[label] = {"act": _ms(act_s[label])}
        if chunk_s[label]:
            out[label]["chunk_query"] = _ms(chunk_s[label])
    return out


def speed(args: argparse.Namespace) -> dict[str, Any]:
    demos = lift_demos(args.num_demos, Path(args.data))
    dataset = DemoDataset.load(demos, with_images=False)
    norm = Normalizer.fit(dataset).state_dict()
    names = args.policies or policy_names()
    setups: dict[str, tuple[Policy, WindowSampler]] = {}
    configs: dict[str, PolicyConfig] = {}
    for label, _, config in variants(names, args.quick):
        torch.manual_seed(0)
        policy = config.build(dataset.spec, norm)
        sampler = WindowSampler.for_policy(
            dataset, config, batch_size=BATCH, rng=np.random.default_rng(0)
        )
        setups[label], configs[label] = (policy, sampler), config
    train = train_rates(setups, seconds=args.seconds, repeats=args.repeats)
    base = next((lbl for lbl in train if lbl.split(" ")[0] == BASELINE), None)
    if base is not None:
        for rec in train.values():
            ratios = [a / b for a, b in zip(rec["rounds"], train[base]["rounds"], strict=True)]
            rec["ratio_to_mlp"] = statistics.median(ratios)
    latency = act_latency(
        {label: p for label, (p, _) in setups.items()},
        dataset,
        calls=args.calls,
        warmup=args.warmup,
        rounds=args.rounds,
    )
    results = {
        label: {
            "config": describe(configs[label]),
            "params": sum(p.numel() for p in setups[label][0].parameters()),
            "train": train[label],
            **latency[label],
        }
        for label in setups
    }
    return {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_avg": os.getloadavg(),
        },
        "data": {"file": str(demos), "demos": dataset.num_episodes, "steps": dataset.num_steps},
        "policies": results,
    }


def speed_table(result: dict[str, Any]) -> str:
    rows = []
    for label, r in result["policies"].items():
        act = r["act"]
        chunk = r.get("chunk_query")
        q = f"{chunk['p50_ms']:.2f} / {chunk['p99_ms']:.2f} ({chunk['n']})" if chunk else ""
        ratio = r["train"].get("ratio_to_mlp")
        rows.append(
            [
                label,
                f"{r['params']:,}",
                f"{r['train']['steps_per_s']:.1f}",
                "" if ratio is None else f"{ratio:.2f}",
                f"{act['p50_ms']:.2f} / {act['p99_ms']:.2f}",
                q,
            ]
        )
    header = ["policy", "params", "train steps/s (batch 100)", "vs MLP", "act p50 / p99 ms"]
    return markdown_table([*header, "chunk query p50 / p99 ms (queries)"], rows)


def success(args: argparse.Namespace) -> dict[str, Any]:
    from apprentice.algos.config import TrainConfig
    from apprentice.evaluate.metrics import success_rate
    from apprentice.evaluate.run import EvalConfig, evaluate
    from apprentice.pipelines.train import run_train
    from apprentice.policies.base import policy_config_from_dict

    work = Path(args.work)
    names = args.policies or policy_names()
    results: dict[str, Any] = {}
    for n in args.demos:
        # Attempt i uses seed i: the 50-demo file is the first 50 demos of the 200-demo one.
        subset = lift_demos(n, work / f"lift_{n}.hdf5")
        for name in names:
            wins, trials, per_seed = 0, 0, []
            for seed in args.seeds:
                run_dir = work / f"{name}{'_small' if args.small else ''}_d{n}_s{seed}"
                t0 = time.perf_counter()
                run_train(
                    TrainConfig(
                        dataset=str(subset),
                        out=str(run_dir),
                        policy=policy_config_from_dict(
                            {"name": name, **(SMALL.get(name, {}) if args.small else {})}
                        ),
                        epochs=args.epochs,
                        steps_per_epoch=args.steps_per_epoch,
                        lr=args.lr,
                        seed=seed,
                        threads=1,
                        eval_every=0,
                        progress=False,
                    )
                )
                train_s = time.perf_counter() - t0
                s = evaluate(
                    EvalConfig(
                        checkpoint=str(run_dir / "final.pt"),
                        episodes=args.episodes,
                        workers=args.workers,
                    )
                )
                k = round(s["success_rate"] * args.episodes)
                wins, trials = wins + k, trials + args.episodes
                per_seed.append({"seed": seed, "successes": k, "train_s": train_s})
            rate = success_rate(wins, trials)
            results[f"{name}{' (small)' if args.small else ''} d{n}"] = {
                "successes": wins,
                "trials": trials,
                "ci95": [rate.ci_low, rate.ci_high],
                "per_seed": per_seed,
            }
            print(f"{name} demos={n}: {rate}", flush=True)
    return {"success": results, "args": vars(args)}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--policies", nargs="*", default=None, help="default: every registered one")
    add_quick(p, help="tiny nets and runs: a smoke test")
    p.add_argument("--num-demos", type=int, default=50, help="lift oracle demos for timing")
    p.add_argument("--data", default=None, help="demo file (default: cached under out/)")
    p.add_argument("--seconds", type=float, default=4.0, help="training window per round")
    p.add_argument("--repeats", type=int, default=3, help="training rounds")
    p.add_argument("--calls", type=int, default=1000, help="timed act calls per policy")
    p.add_argument("--warmup", type=int, default=50, help="untimed act calls first")
    p.add_argument("--rounds", type=int, default=5, help="latency rounds (policies alternate)")
    add_out(p, OUT / "policies.json")
    p.add_argument("--success", action="store_true", help="success rates instead of speed")
    p.add_argument("--demos", type=int, nargs="+", default=[50, 200], help="--success: demos")
    add_seeds(p, default=(0,), help="--success: train seeds")
    p.add_argument("--episodes", type=int, default=50, help="--success: held-out rollouts")
    p.add_argument("--epochs", type=int, default=50, help="--success: epochs")
    p.add_argument("--steps-per-epoch", type=int, default=100, help="--success")
    p.add_argument("--lr", type=float, default=1e-4, help="--success: Adam lr")
    p.add_argument("--workers", type=int, default=2, help="--success: rollout processes")
    p.add_argument("--work", default=str(OUT / "policies"), help="--success: run folders")
    p.add_argument("--small", action="store_true", help="--success: the small sizes")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        args.num_demos, args.seconds, args.repeats = 3, 0.2, 1
        args.calls, args.warmup, args.rounds = 20, 2, 1
    if args.data is None:
        args.data = str(OUT / "policies" / f"lift_{args.num_demos}.hdf5")
    Path(args.data).parent.mkdir(parents=True, exist_ok=True)
    if args.success:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        result = success(args)
    else:
        result = speed(args)
        print(speed_table(result))
    write_json(args.out, result, default=str)


if __name__ == "__main__":
    main()
