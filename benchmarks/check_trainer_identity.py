"""Fingerprints of tiny training runs, to show two trees of the code train bit for bit alike.

Trains every registered policy kind at a tiny size (low-dim), an MLP on cameras, and runs that
take the trainer's other paths (rollout callback with best-by-success and epoch_N files,
grad_clip with bf16 autocast, an init_checkpoint warm start, a resume from last.pt), each for
a few epochs of a few steps with seed 0 on one thread. For each run it prints a sha256 of the
weights in final.pt, best.pt, last.pt (with the optimizer state, the generators and the
counters) and every epoch_N.pt, and of the metrics' losses and success rates.

Run it on each tree, on the same demo files, and compare the outputs:

    apprentice collect --task lift --n 4 --out /tmp/id/lift.hdf5 --valid-fraction 0.25
    apprentice collect --task lift --n 3 --camera --out /tmp/id/lift_cam.hdf5
    PYTHONPATH=<tree>/src python benchmarks/check_trainer_identity.py \
        --lift /tmp/id/lift.hdf5 --camera /tmp/id/lift_cam.hdf5 --out /tmp/id/<tree> \
        --json /tmp/id/<tree>.json
    python benchmarks/check_trainer_identity.py --compare /tmp/id/a.json /tmp/id/b.json

It uses only `train`, `TrainConfig` and the policy registry, so it runs on older trees too
(where the run folder was `out_dir` and the thread count `num_threads`). For the same reason
it keeps its own table of tiny sizes (`SMALL`) rather than each policy config's `tiny()`:
older trees have no `tiny()`, and the sizes must be the same on both trees (the fingerprints
are of these exact runs), whatever a later `tiny()` becomes. It imports nothing from this
folder (no `harness`) so that it runs from a checkout of any commit.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Tiny sizes per policy kind: each trains a few steps in well under a second (fixed here,
# not each config's tiny(): see the module docstring).
SMALL: dict[str, dict[str, Any]] = {
    "mlp": {"hidden_dims": (64, 64)},
    "gmm": {"hidden_dims": (64, 64)},
    "rnn": {"hidden_dim": 32, "seq_len": 5, "rnn_horizon": 4},
    "transformer": {"embed_dim": 32, "num_layers": 2, "frame_stack": 4, "seq_len": 4},
    "act": {"hidden_dim": 32, "ff_dim": 64, "chunk_size": 5},
    "diffusion": {
        "unet_channels": (16, 32),
        "step_embed_dim": 16,
        "seq_len": 8,
        "action_horizon": 4,
        "inference_steps": 4,
    },
}
CAMERA = {
    "hidden_dims": (64,),
    "obs_keys": ("eef_pos", "eef_quat", "gripper_qpos"),
    "image_keys": ("agentview_image", "eye_in_hand_image"),
    "feature_dim": 16,
    "num_keypoints": 8,
}


def train_config(**kw: Any) -> Any:
    """A TrainConfig of this tree, naming the run folder and thread count as it does."""
    from apprentice.algos import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    if "out" not in names:
        kw["out_dir"] = kw.pop("out")
    if "threads" not in names:
        kw["num_threads"] = kw.pop("threads")
    return TrainConfig(**kw)


def policy(name: str, **kw: Any) -> Any:
    """The policy config of kind `name`, read from a dict as a checkpoint's is, so that each
    tree places the fields (the camera ones above all) as its own config does."""
    from apprentice.policies.base import policy_config_from_dict

    return policy_config_from_dict({"name": name, **kw})


def digest_tensors(h: Any, tree: Any) -> None:
    """Feed a nest of dicts, lists, tensors, arrays and scalars into hash `h`, in order."""
    if isinstance(tree, dict):
        for key in sorted(tree, key=str):
            h.update(repr(key).encode())
            digest_tensors(h, tree[key])
    elif isinstance(tree, list | tuple):
        for item in tree:
            digest_tensors(h, item)
    elif isinstance(tree, torch.Tensor):
        t = tree.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # bf16 has no numpy twin
    elif isinstance(tree, np.ndarray):
        h.update(f"{tree.dtype}{tree.shape}".encode() + tree.tobytes())
    else:
        h.update(repr(tree).encode())


def fingerprint(path: Path, *, last: bool = False) -> str:
    from apprentice.policies.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    h = hashlib.sha256()
    digest_tensors(h, ckpt["state_dict"])
    extra = ckpt.get("extra", {})
    # last.pt: everything a resume reads (the optimizer, both generators, the counters, best).
    digest_tensors(h, extra if last else {"epoch": extra.get("epoch")})
    return h.hexdigest()[:16]


def run_fingerprint(run: Path) -> dict[str, Any]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    metric_keys = ("epoch", "train_loss", "valid_loss", "success_rate", "action_sum", "steps")
    metrics = [{k: r.get(k) for k in metric_keys} for r in records]
    out: dict[str, Any] = {
        "metrics": hashlib.sha256(json.dumps(metrics).encode()).hexdigest()[:16],
        "train_loss": [r["train_loss"] for r in records],
        "record_keys": list(records[-1]) if records else [],
    }
    for name in ("final.pt", "best.pt", *sorted(p.name for p in run.glob("epoch_*.pt"))):
        if (run / name).exists():
            out[name] = fingerprint(run / name)
    out["last.pt"] = fingerprint(run / "last.pt", last=True)
    return out


def rollouts_by_epoch() -> Callable[[Any, int], dict[str, float]]:
    """A rollout callback with a fixed success sequence (best.pt follows it) that also acts
    once, as a real rollout does, so training must carry on after `act`."""
    rates = iter([0.3, 0.7, 0.5, 0.7, 0.9, 0.1])

    def evaluate(policy: Any, episodes: int) -> dict[str, float]:
        obs = {k: np.zeros(policy.spec.obs_shapes[k], np.float32) for k in policy.obs_keys}
        action = policy.act(obs)
        return {"success_rate": next(rates), "action_sum": float(action.sum())}

    return evaluate


def runs(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    from apprentice.algos import train

    torch.set_num_threads(1)
    out = Path(args.out)
    common: dict[str, Any] = {
        "dataset": args.lift,
        "epochs": args.epochs,
        "steps_per_epoch": args.steps,
        "batch_size": 16,
        "lr": 1e-3,
        "progress": False,
        "threads": 1,
        "overwrite": True,
        "log_every": 2,
    }
    results: dict[str, dict[str, Any]] = {}

    def run(label: str, evaluate: Any = None, **kw: Any) -> None:
        config = train_config(**{**common, "out": str(out / label), **kw})
        train(config, evaluate=evaluate)
        results[label] = run_fingerprint(out / label)
        print(label, json.dumps(results[label]), flush=True)

    for name, sizes in SMALL.items():
        run(name, policy=policy(name, **sizes))
    run("mlp-camera", policy=policy("mlp", **CAMERA), dataset=args.camera, batch_size=8)
    mlp = policy("mlp", **SMALL["mlp"])
    run("mlp-rollouts", rollouts_by_epoch(), policy=mlp, eval_every=1, save_every=2, seed=3)
    run("mlp-clip-bf16", policy=mlp, grad_clip=0.5, precision="bf16", valid_fraction=0.0)
    warm = str(out / "mlp" / "final.pt")
    run("mlp-warm-start", policy=mlp, init_checkpoint=warm, lr=5e-4)
    # Half the epochs, then the rest from last.pt (epochs may change on resume).
    label = "diffusion-resumed"
    diffusion = policy("diffusion", **SMALL["diffusion"])
    first = train_config(**{**common, "out": str(out / label), "epochs": args.epochs // 2})
    train(dataclasses.replace(first, policy=diffusion))
    common["overwrite"] = False
    run(label, policy=diffusion)
    return results


def compare(a_path: str, b_path: str) -> int:
    a, b = (json.loads(Path(p).read_text()) for p in (a_path, b_path))
    differ = 0
    for label in sorted(set(a) | set(b)):
        if a.get(label) == b.get(label):
            print(f"{label}: identical")
            continue
        differ += 1
        fields = sorted(set(a.get(label, {})) | set(b.get(label, {})))
        changed = [f for f in fields if a.get(label, {}).get(f) != b.get(label, {}).get(f)]
        print(f"{label}: DIFFERS in {', '.join(changed)}")
    print(f"{len(set(a) | set(b)) - differ} identical, {differ} differ")
    return 1 if differ else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lift", help="low-dim demo file (lift, with a valid mask)")
    p.add_argument("--camera", help="camera demo file (lift --camera)")
    p.add_argument("--out", default="/tmp/trainer_identity", help="folder for the run folders")
    p.add_argument("--json", help="write the fingerprints here")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--steps", type=int, default=3, help="gradient steps per epoch")
    p.add_argument("--compare", nargs=2, metavar="JSON", help="compare two fingerprint files")
    args = p.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    if not (args.lift and args.camera):
        p.error("--lift and --camera are required (or --compare)")
    results = runs(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
