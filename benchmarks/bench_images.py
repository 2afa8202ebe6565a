"""Camera observations: training and act speed of the image encoders, and success from pixels.

Speed (`--speed`, on in-memory random uint8 images, 2 cameras at 84x84 + 9 proprio dims):

- training steps/s of the trainer's step, `Trainer.step` (WindowSampler batch -> policy(batch)
  -> fused Adam) for an MLP policy with the small `conv` encoder and with `resnet18`, at
  frame_stack 1 and 2, next to its bound: forward + backward of the bare encoders alone on the
  same number of images (no sampler, augmentation, policy head or optimizer). Timed
  round-robin, in wall time and in the timing thread's CPU time; the ratio is taken on CPU
  time, which leaves out the wait for a core on a shared machine;
- act latency (batch 1, one torch thread): p50 and p99 (wall and thread CPU) of `Policy.act`
  for each encoder and for the same MLP on low-dim observations only.

Success (`--success`): collect camera demos of a built-in task with the oracle, train an image
policy on images + proprioception (no object pose: where the cube is must come from the
pixels), evaluate on held-out seeds with a 95% Wilson interval. Optionally the same policy on
low-dim observations with the object pose, as the reference. `--pretrain-task stack` measures
a sample-efficiency technique: train on another task's camera demos first, then fine-tune.

    .venv/bin/python benchmarks/bench_images.py --speed
    .venv/bin/python benchmarks/bench_images.py --success --demos 50 --epochs 30 --seeds 0
Writes benchmarks/out/images/{speed,success}.json (speed_quick.json with --quick) and
prints markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from apprentice.algos import TrainConfig, Trainer
from apprentice.data.dataset import DemoDataset, WindowSampler
from apprentice.policies import CameraConfig, MLPConfig, Policy, PolicyConfig
from harness import OUT, add_quick, add_seeds, alternate, markdown_table, parser, write_json

CAMS = ("agentview_image", "eye_in_hand_image")
PROPRIO = ("eef_pos", "eef_quat", "gripper_qpos")


def camera_dataset(
    num_demos: int = 20, length: int = 100, size: int = 84, seed: int = 0
) -> DemoDataset:
    """Random uint8 frames of two cameras and 9 proprio dims, in memory (for timing only)."""
    rng = np.random.default_rng(seed)
    n = num_demos * length
    obs: dict[str, np.ndarray] = {
        "eef_pos": rng.normal(size=(n, 3)).astype(np.float32),
        "eef_quat": rng.normal(size=(n, 4)).astype(np.float32),
        "gripper_qpos": rng.normal(size=(n, 2)).astype(np.float32),
    }
    for cam in CAMS:
        obs[cam] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (n, 7)).astype(np.float32)
    lengths = np.full(num_demos, length, dtype=np.int64)
    starts = np.arange(num_demos, dtype=np.int64) * length
    names = [f"demo_{i}" for i in range(num_demos)]
    return DemoDataset(obs, actions, starts, lengths, names, {"env_name": "bench"})


def train_step(config: PolicyConfig, dataset: DemoDataset, batch: int) -> Callable[[], Any]:
    """The trainer's step for `config`, `Trainer.step`: sample, policy(batch), backward, the
    trainer's fused Adam."""
    torch.manual_seed(0)
    policy = config.build(dataset.spec, {}).train()
    trainer = Trainer.for_policy(policy, TrainConfig(lr=1e-4))
    sampler = WindowSampler.for_policy(
        dataset, config, batch_size=batch, rng=np.random.default_rng(0)
    )
    return lambda: trainer.step(sampler.sample())


def encoder_bound_step(config: PolicyConfig, dataset: DemoDataset, batch: int) -> Callable[[], Any]:
    """Forward + backward of the bare encoder trunks + keypoint heads on the same images."""
    torch.manual_seed(0)
    policy = config.build(dataset.spec, {}).train()
    frames = batch * config.frame_stack  # images per camera in one training window batch
    rng = np.random.default_rng(1)
    # Random images drawn ahead (drawing them is not encoder work), a different batch per call.
    pool = [
        torch.from_numpy(rng.integers(0, 256, (frames, 3, 84, 84), dtype=np.uint8))
        for _ in range(8)
    ]
    calls = itertools.count()

    def step() -> None:
        total = torch.zeros(())
        for cam in CAMS:
            core = policy.image_encoder(cam)
            x = pool[next(calls) % len(pool)].float().div(255.0)  # (N, 3, 84, 84)
            total = total + core.linear(core.pool(core.trunk(x)).flatten(1)).sum()
        for p in policy.parameters():
            p.grad = None
        total.backward()

    return step


def speed(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    dataset = camera_dataset()
    rows = []
    for encoder, fs in [("conv", 1), ("conv", 2), ("resnet18", 1), ("resnet18", 2)]:
        if encoder == "resnet18" and args.quick and fs == 2:
            continue
        config = MLPConfig(
            image_keys=CAMS, obs_keys=PROPRIO, camera=CameraConfig(encoder=encoder), frame_stack=fs
        )
        heavy = encoder == "resnet18"
        n = 1 if heavy or args.quick else 5
        rounds = alternate(
            {
                "train": train_step(config, dataset, args.batch),
                "bound": encoder_bound_step(config, dataset, args.batch),
            },
            calls=n,
            rounds=1 if args.quick else args.repeats,
        )
        rates, cpu = rounds.wall, rounds.cpu
        ratios = [t / b for t, b in zip(cpu["train"], cpu["bound"], strict=True)]
        rows.append(
            {
                "encoder": encoder,
                "frame_stack": fs,
                "batch": args.batch,
                "train_steps_per_s": statistics.median(rates["train"]),
                "bound_steps_per_s": statistics.median(rates["bound"]),
                "train_steps_per_cpu_s": statistics.median(cpu["train"]),
                "bound_steps_per_cpu_s": statistics.median(cpu["bound"]),
                "fraction_of_bound": statistics.median(ratios),
                "fraction_range": [min(ratios), max(ratios)],
            }
        )
        print(rows[-1], flush=True)
    torch.set_num_threads(1)
    latency = act_latency(dataset, samples=50 if args.quick else args.act_samples)
    return {"rows": rows, "act_latency_ms": latency}


def act_latency(dataset: DemoDataset, samples: int) -> dict[str, dict[str, float]]:
    """p50/p99 of Policy.act (batch 1, 1 thread), the policies interleaved call by call."""
    policies: dict[str, Policy] = {
        "mlp low-dim": MLPConfig(obs_keys=PROPRIO).build(dataset.spec, {}),
        "mlp + conv (2 cams)": MLPConfig(image_keys=CAMS, obs_keys=PROPRIO).build(dataset.spec, {}),
        "mlp + resnet18 (2 cams)": MLPConfig(
            image_keys=CAMS, obs_keys=PROPRIO, camera=CameraConfig(encoder="resnet18")
        ).build(dataset.spec, {}),
    }
    rng = np.random.default_rng(2)
    wall: dict[str, list[float]] = {name: [] for name in policies}
    cpu: dict[str, list[float]] = {name: [] for name in policies}
    for p in policies.values():
        p.reset()
    for i in range(samples + 5):
        obs = {k: v[int(rng.integers(dataset.num_steps))] for k, v in dataset.obs.items()}
        for name, policy in policies.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            policy.act(obs)
            if i >= 5:  # the first calls warm up allocators
                wall[name].append((time.perf_counter() - t0) * 1e3)
                cpu[name].append((time.thread_time() - c0) * 1e3)
    return {
        name: {
            "p50": float(np.percentile(wall[name], 50)),
            "p99": float(np.percentile(wall[name], 99)),
            "cpu_p50": float(np.percentile(cpu[name], 50)),
            "cpu_p99": float(np.percentile(cpu[name], 99)),
        }
        for name in policies
    }


def success(args: argparse.Namespace) -> dict[str, Any]:
    from apprentice.algos.trainer import train
    from apprentice.collect.oracle import CollectConfig, collect_demos
    from apprentice.evaluate.metrics import success_rate
    from apprentice.evaluate.run import EvalConfig, evaluate

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    noise = f"_noise{args.action_noise}" if args.action_noise else ""

    def camera_demos(task: str, n: int) -> Path:
        path = work / f"{task}_cam{n}{noise}.hdf5"
        collect_demos(
            CollectConfig(
                task=task,
                n=n,
                out=str(path),
                workers=args.workers,
                camera=True,
                action_noise=args.action_noise,
            )
        )
        return path

    def train_config(dataset: Path, run_dir: Path, policy: PolicyConfig, seed: int) -> TrainConfig:
        return TrainConfig(
            dataset=str(dataset),
            out=str(run_dir),
            policy=policy,
            epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch,
            batch_size=args.batch,
            lr=args.lr,
            seed=seed,
            threads=args.threads,
            progress=False,
        )

    demos = camera_demos(args.task, args.demos)
    image_policy = MLPConfig(
        obs_keys=PROPRIO,
        image_keys=CAMS,
        camera=CameraConfig(encoder=args.encoder),
        frame_stack=args.frame_stack,
    )
    kinds: dict[str, PolicyConfig] = {"images+proprio": image_policy}
    init: dict[int, str] = {}
    if args.pretrain_task:
        # Sample efficiency: start from a policy trained on another task's camera demos (the
        # proprio keys, cameras and actions are shared), then fine-tune on this task's demos.
        kinds = {f"images+proprio pretrained on {args.pretrain_task}": image_policy}
        source = camera_demos(args.pretrain_task, args.pretrain_demos)
        for seed in args.seeds:
            run = work / f"pretrain_{args.pretrain_task}_{args.pretrain_demos}{noise}_s{seed}"
            init[seed] = str(train(train_config(source, run, image_policy, seed)).final_checkpoint)
    if args.low_dim_reference:
        kinds["low-dim (object pose)"] = MLPConfig(frame_stack=args.frame_stack)
    results: dict[str, Any] = {}
    for kind, policy in kinds.items():
        runs = []
        for seed in args.seeds:
            warm = init.get(seed) if kind.startswith("images") else None
            pre = f"_pre{args.pretrain_task}" if warm else ""
            run_dir = work / f"{args.task}_{args.demos}{noise}_{kind.split()[0]}{pre}_s{seed}"
            t0 = time.perf_counter()
            config = train_config(demos, run_dir, policy, seed)
            trained = train(dataclasses.replace(config, init_checkpoint=warm))
            train_s = time.perf_counter() - t0
            s = evaluate(
                EvalConfig(
                    checkpoint=str(trained.final_checkpoint),
                    episodes=args.episodes,
                    workers=args.workers,
                    out=str(run_dir / "eval.json"),
                )
            )
            runs.append(
                {"seed": seed, "successes": s["successes"], "episodes": s["episodes"]}
                | {"train_seconds": train_s, "final_train_loss": trained.metrics[-1]["train_loss"]}
            )
            print(kind, runs[-1], flush=True)
        wins = sum(r["successes"] for r in runs)
        trials = sum(r["episodes"] for r in runs)
        sr = success_rate(wins, trials)
        results[kind] = {
            "runs": runs,
            "successes": wins,
            "episodes": trials,
            "ci": [sr.ci_low, sr.ci_high],
        }
    return results


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--speed", action="store_true", help="time training steps and act latency")
    p.add_argument("--success", action="store_true", help="collect, train, evaluate")
    add_quick(p)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--act-samples", type=int, default=300)
    p.add_argument("--task", default="lift")
    p.add_argument("--demos", type=int, default=50)
    p.add_argument("--action-noise", type=float, default=0.0, help="collection noise std")
    p.add_argument("--encoder", default="conv")
    p.add_argument("--frame-stack", type=int, default=1)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--lr", type=float, default=5e-4)
    add_seeds(p, default=(0,))
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--low-dim-reference", action="store_true")
    p.add_argument("--pretrain-task", default=None, help="pretrain on this task's demos first")
    p.add_argument("--pretrain-demos", type=int, default=50)
    p.add_argument("--work", default=str(OUT / "images"))
    args = p.parse_args()
    if not (args.speed or args.success):
        p.error("choose --speed and/or --success")
    out = Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"cpu_count": os.cpu_count(), "torch": torch.__version__, "args": vars(args)}
    if args.speed:
        meta["load_avg_start"] = os.getloadavg()
        result = speed(args) | meta | {"load_avg_end": os.getloadavg()}
        # A smoke run must not overwrite the full results.
        name = "speed_quick" if args.quick else "speed"
        write_json(out / f"{name}.json", result, quiet=True)
        header = ["encoder", "fs", "batch", "train steps/s (wall)", "train steps per CPU-s"]
        header += ["encoder-bound steps per CPU-s", "fraction of bound (range)"]
        rows = [
            [
                r["encoder"],
                r["frame_stack"],
                r["batch"],
                f"{r['train_steps_per_s']:.2f}",
                f"{r['train_steps_per_cpu_s']:.2f}",
                f"{r['bound_steps_per_cpu_s']:.2f}",
                f"{r['fraction_of_bound']:.2f} "
                f"({r['fraction_range'][0]:.2f}-{r['fraction_range'][1]:.2f})",
            ]
            for r in result["rows"]
        ]
        print("\n" + markdown_table(header, rows))
        rows = [
            [
                name,
                f"{lat['p50']:.2f} / {lat['p99']:.2f}",
                f"{lat['cpu_p50']:.2f} / {lat['cpu_p99']:.2f}",
            ]
            for name, lat in result["act_latency_ms"].items()
        ]
        header = ["policy", "act p50 / p99 ms (wall)", "act p50 / p99 ms (thread CPU)"]
        print("\n" + markdown_table(header, rows))
    if args.success:
        result = success(args) | meta
        # Every setting that changes the numbers is in the name: runs never overwrite others.
        name = f"success_noise{args.action_noise}" if args.action_noise else "success"
        name += f"_{args.demos}demos_"
        name += f"pre{args.pretrain_task}" if args.pretrain_task else "scratch"
        name += f"_{args.epochs}ep_s{''.join(str(s) for s in args.seeds)}"
        write_json(out / f"{name}.json", result, quiet=True)
        rows = [
            [kind, f"{r['successes']}/{r['episodes']}", f"{r['ci'][0]:.2f}-{r['ci'][1]:.2f}"]
            for kind, r in result.items()
            if isinstance(r, dict) and "ci" in r
        ]
        print("\n" + markdown_table(["observations", "successes", "95% CI"], rows))


if __name__ == "__main__":
    main()
