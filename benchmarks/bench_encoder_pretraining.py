"""Encoder pretraining for image policies: lift from cameras, encoder from scratch vs pretrained.

For each number of demos (default 20, 50, 200): collect lift camera demos with the oracle
(two 84x84 cameras + proprio, no object pose: where the cube is must come from the pixels),
then per training seed train the same policy two ways and evaluate each on held-out seeds:

- scratch: the camera encoders train with the policy (random shift on);
- pretrained: `apprentice pretrain-encoder` on each camera of the same demos (deep spatial
  autoencoder, `apprentice.algos.pretrain`), then the policy with those encoders frozen and
  their features cached (`encoder_checkpoint=... freeze_encoder=true`).

Reports successes per seed, the total with its 95% Wilson interval, pretraining and training
seconds and training steps/s.

    .venv/bin/python benchmarks/bench_encoder_pretraining.py --demos 20 50 200 --seeds 0 1 2
    .venv/bin/python benchmarks/bench_encoder_pretraining.py --quick   # a smoke test
Writes benchmarks/out/encoder_pretraining/results.json (quick.json with --quick) and prints a
markdown table.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from apprentice.algos.pretrain import PretrainEncoderConfig, pretrain_encoder
from apprentice.algos.trainer import TrainConfig, train
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.evaluate.run import EvalConfig, evaluate
from apprentice.overrides import parse_overrides
from apprentice.policies import CameraConfig, PolicyConfig, policy_config_from_dict
from harness import (
    OUT,
    add_quick,
    add_seeds,
    markdown_table,
    parser,
    per_seed_cell,
    success_cell,
    wilson_cell,
    write_json,
)

CAMS = ("agentview_image", "eye_in_hand_image")
PROPRIO = ("eef_pos", "eef_quat", "gripper_qpos")
ARMS = ("scratch", "pretrained")


def camera_demos(work: Path, n: int, workers: int, action_noise: float) -> Path:
    path = work / f"lift_cam{n}_noise{action_noise}.hdf5"
    collect_demos(
        CollectConfig(
            task="lift",
            n=n,
            out=str(path),
            workers=workers,
            camera=True,
            action_noise=action_noise,
            progress=False,
        )
    )
    return path


def policy_for(args: argparse.Namespace, camera: CameraConfig) -> PolicyConfig:
    fields = parse_overrides(args.policy_args, "--policy-args entry")
    return policy_config_from_dict(
        {"name": args.policy, "obs_keys": PROPRIO, "image_keys": CAMS, **fields}
        | {"camera": camera}
    )


def run_arm(
    args: argparse.Namespace, demos: Path, run_dir: Path, policy: PolicyConfig, seed: int
) -> dict[str, Any]:
    t0 = time.perf_counter()
    trained = train(
        TrainConfig(
            dataset=str(demos),
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
    )
    train_s = time.perf_counter() - t0
    s = evaluate(
        EvalConfig(
            checkpoint=str(trained.final_checkpoint),
            episodes=args.episodes,
            workers=args.workers,
            out=str(run_dir / "eval.json"),
        )
    )
    rates = [m["steps_per_s"] for m in trained.metrics if m.get("steps_per_s")]
    return {
        "seed": seed,
        "successes": s["successes"],
        "episodes": s["episodes"],
        "train_seconds": train_s,
        "steps_per_s": sum(rates) / len(rates) if rates else None,
        "final_train_loss": trained.metrics[-1]["train_loss"],
    }


def bench(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for n in args.demos:
        demos = camera_demos(work, n, args.workers, args.action_noise)
        arms: dict[str, list[dict[str, Any]]] = {arm: [] for arm in args.arms}
        for seed in args.seeds:
            # Pretraining: one encoder per camera, on this size's own demos.
            t0 = time.perf_counter()
            files, losses = [], {}
            for cam in CAMS:
                out = work / f"enc_{n}_{cam}_s{seed}.pt"
                r = pretrain_encoder(
                    PretrainEncoderConfig(
                        dataset=str(demos),
                        image_key=cam,
                        out=str(out),
                        camera_args=tuple(args.camera_args),
                        steps=args.pretrain_steps,
                        batch_size=args.pretrain_batch,
                        seed=seed,
                        threads=args.threads,
                    )
                )
                files.append(str(out))
                losses[cam] = [r.loss_start, r.loss_end]
            pretrain_s = time.perf_counter() - t0
            camera = CameraConfig(**parse_overrides(args.camera_args, "--camera-args entry"))
            frozen = replace(camera, encoder_checkpoint=",".join(files), freeze_encoder=True)
            for arm, cam_config in (("scratch", camera), ("pretrained", frozen)):
                if arm not in args.arms:
                    continue
                policy = policy_for(args, cam_config)
                run = run_arm(args, demos, work / f"{n}_{arm}_s{seed}", policy, seed)
                if arm == "pretrained":
                    run |= {"pretrain_seconds": pretrain_s, "reconstruction_loss": losses}
                arms[arm].append(run)
                print(n, arm, run, flush=True)
        results[str(n)] = {
            arm: {
                "runs": runs,
                "successes": sum(r["successes"] for r in runs),
                "episodes": sum(r["episodes"] for r in runs),
            }
            for arm, runs in arms.items()
        }
    return results


def table(results: dict[str, Any]) -> str:
    rows = []
    for n, arms in results.items():
        for arm, r in arms.items():
            runs = r["runs"]
            pre = sum(x.get("pretrain_seconds", 0.0) for x in runs)
            rates = [x["steps_per_s"] for x in runs if x["steps_per_s"]]
            rows.append(
                [
                    n,
                    arm,
                    per_seed_cell(runs),
                    success_cell(r["successes"], r["episodes"]),
                    wilson_cell(r["successes"], r["episodes"], percent=0),
                    f"{pre:.0f}",
                    f"{sum(x['train_seconds'] for x in runs):.0f}",
                    f"{sum(rates) / len(rates):.1f}" if rates else "-",
                ]
            )
    header = ["demos", "encoder", "per seed", "success", "95% CI", "pretrain s", "train s"]
    return markdown_table([*header, "steps/s"], rows)


def main() -> None:
    p = parser(__doc__)
    add_quick(p, help="tiny sizes (4 demos, a few steps, 2 episodes): a smoke test")
    p.add_argument("--demos", type=int, nargs="+", default=[20, 50, 200])
    add_seeds(p)
    p.add_argument("--episodes", type=int, default=50, help="held-out episodes per seed")
    p.add_argument(
        "--arms", nargs="+", choices=ARMS, default=list(ARMS), help="which encoders to train"
    )
    p.add_argument("--policy", default="rnn", help="policy kind (BC-RNN by default)")
    p.add_argument("--policy-args", nargs="*", default=[], help="key=value policy settings")
    p.add_argument("--camera-args", nargs="*", default=[], help="key=value camera settings")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--pretrain-steps", type=int, default=3000)
    p.add_argument("--pretrain-batch", type=int, default=32)
    p.add_argument("--action-noise", type=float, default=0.05, help="collection noise std")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--workers", type=int, default=1, help="collection and evaluation workers")
    p.add_argument("--work", default=None, help="demos, encoders and runs (default: out/)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    name = "quick" if args.quick else "results"
    if args.quick:
        args.demos, args.seeds, args.episodes = [4], [0], 2
        args.epochs, args.steps_per_epoch, args.batch, args.pretrain_steps = 1, 3, 4, 3
        args.policy_args = ["hidden_dim=16", "seq_len=4", *args.policy_args]
        args.camera_args = ["feature_dim=16", "num_keypoints=8", *args.camera_args]
    args.work = args.work or str(OUT / "encoder_pretraining" / name)
    results = bench(args)
    meta = {"cpu_count": os.cpu_count(), "torch": torch.__version__, "args": vars(args)}
    write_json(
        args.json or OUT / "encoder_pretraining" / f"{name}.json", {"results": results} | meta
    )
    print("\n" + table(results))


if __name__ == "__main__":
    main()
