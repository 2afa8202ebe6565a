"""Throughput of robomimic 0.3.0's own low-dim data path: SequenceDataset -> torch DataLoader.

Run with the robomimic venv (see setup_robomimic.sh):

    .venv-robomimic/bin/python benchmarks/peers/robomimic_sampler.py \
        --dataset benchmarks/out/peers/fixture.hdf5 --seq-len 10 --frame-stack 1 --batch-size 100 \
        --obs-keys eef_pos eef_quat gripper_qpos object --seconds 10 \
        --json benchmarks/out/peers/rm_sampler.json

What is measured (robomimic's low-dim training settings, as robomimic/scripts/train.py builds them):
  * robomimic.utils.dataset.SequenceDataset(hdf5_cache_mode="all", pad_seq_length=True,
    pad_frame_stack=True, dataset_keys=("actions", "rewards", "dones"), load_next_obs=False as in
    BCConfig, hdf5_use_swmr=True, filter_by_attribute="train" when mask/train exists, else None).
    hdf5_cache_mode="all" loads the file AND precomputes every __getitem__ result; that time is
    `load_seconds` (it scales with #windows x seq_len).
  * torch DataLoader(batch_size, shuffle=True, drop_last=True, num_workers=0 (robomimic's low-dim
    default), no persistent workers), iterator re-created at the end of each pass as
    robomimic.utils.train_utils.run_epoch does. One "batch" = one collated dict of tensors.
  * `batches_per_s`: batches pulled in --seconds of wall clock after a warm-up, median over
    --repeats; num_workers=2 too unless --no-workers2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time


def _mask_exists(path: str, name: str) -> bool:
    import h5py

    with h5py.File(path, "r") as f:
        return f"mask/{name}" in f


def build_dataset(args):
    import robomimic.utils.obs_utils as ObsUtils
    from robomimic.utils.dataset import SequenceDataset

    # robomimic must know each key's modality before building datasets or models
    ObsUtils.initialize_obs_utils_with_obs_specs(
        {"obs": {"low_dim": list(args.obs_keys), "rgb": []}}
    )
    filter_key = args.filter_key
    if filter_key == "auto":
        filter_key = "train" if _mask_exists(args.dataset, "train") else None
    t0 = time.perf_counter()
    ds = SequenceDataset(
        hdf5_path=args.dataset,
        obs_keys=tuple(args.obs_keys),
        dataset_keys=("actions", "rewards", "dones"),
        load_next_obs=args.load_next_obs,
        frame_stack=args.frame_stack,
        seq_length=args.seq_len,
        pad_frame_stack=True,
        pad_seq_length=True,
        get_pad_mask=False,
        goal_mode=None,
        hdf5_cache_mode="all",
        hdf5_use_swmr=True,
        hdf5_normalize_obs=False,
        filter_by_attribute=filter_key,
    )
    return ds, time.perf_counter() - t0, filter_key


def measure(
    ds, batch_size: int, num_workers: int, seconds: float, warmup_s: float, seed: int
) -> dict:
    import torch
    from torch.utils.data import DataLoader

    g = torch.Generator()
    g.manual_seed(seed)
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        drop_last=True,
        generator=g,
    )
    it = iter(loader)

    def next_batch():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    t_end = time.perf_counter() + warmup_s
    while time.perf_counter() < t_end:
        b = next_batch()
    n = 0
    t0 = time.perf_counter()
    t_end = t0 + seconds
    while True:
        b = next_batch()
        n += 1
        if time.perf_counter() >= t_end:
            break
    dt = time.perf_counter() - t0
    shapes = {k: list(v.shape) for k, v in b["obs"].items()}
    shapes["actions"] = list(b["actions"].shape)
    del it
    return {"batches": n, "seconds": dt, "batches_per_s": n / dt, "batch_shapes": shapes}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--seq-len", type=int, default=10)
    p.add_argument("--frame-stack", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--obs-keys", nargs="+", required=True)
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per repeat")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds before each repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--filter-key", default="auto", help='mask name, "auto" (train if present), or "none"'
    )
    p.add_argument("--load-next-obs", action="store_true", help="also load next_obs (BC does not)")
    p.add_argument("--no-workers2", action="store_true", help="skip the num_workers=2 measurement")
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", required=True)
    args = p.parse_args()
    if args.filter_key == "none":
        args.filter_key = None

    import numpy as np
    import robomimic
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    np.random.seed(args.seed)  # noqa: NPY002  (robomimic's own code uses the global RNG)
    torch.manual_seed(args.seed)
    ds, load_s, filter_key = build_dataset(args)

    results = {}
    for nw in [0] if args.no_workers2 else [0, 2]:
        runs = [
            measure(ds, args.batch_size, nw, args.seconds, args.warmup, args.seed + r)
            for r in range(args.repeats)
        ]
        rates = [r["batches_per_s"] for r in runs]
        results[f"num_workers={nw}"] = {
            "batches_per_s": statistics.median(rates),
            "batches_per_s_all": rates,
            "samples_per_s": statistics.median(rates) * args.batch_size,
            "batch_shapes": runs[0]["batch_shapes"],
        }
        print(
            f"num_workers={nw}: {statistics.median(rates):.1f} batches/s (runs: "
            + ", ".join(f"{x:.1f}" for x in rates)
            + ")",
            file=sys.stderr,
        )

    out = {
        "peer": "robomimic",
        "robomimic_version": robomimic.__version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "batches_per_s": results["num_workers=0"]["batches_per_s"],
        "load_seconds": load_s,
        "by_num_workers": results,
        "settings": {
            "dataset": os.path.abspath(args.dataset),
            "seq_length": args.seq_len,
            "frame_stack": args.frame_stack,
            "batch_size": args.batch_size,
            "obs_keys": list(args.obs_keys),
            "dataset_keys": ["actions", "rewards", "dones"],
            "load_next_obs": args.load_next_obs,
            "pad_seq_length": True,
            "pad_frame_stack": True,
            "hdf5_cache_mode": "all",
            "filter_by_attribute": filter_key,
            "shuffle": True,
            "drop_last": True,
            "num_demos": ds.n_demos,
            "num_windows": len(ds),
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "repeats": args.repeats,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps({k: out[k] for k in ("batches_per_s", "load_seconds")}))


if __name__ == "__main__":
    main()
