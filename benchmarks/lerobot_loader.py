"""Batches per second from one LeRobot folder: LeRobot's own `LeRobotDataset` in a torch
DataLoader against apprentice's `DemoDataset` + `WindowSampler`, 1 thread each, in one process.

Runs in LeRobot 0.6.1's venv (`make lerobot`), where apprentice is installed too; called by
bench_interop.py --lerobot-python. Prints one JSON line.

    .venv-lerobot/bin/python benchmarks/lerobot_loader.py FOLDER [--batches 20] [--batch 100]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from apprentice.data.dataset import DemoDataset, WindowSampler


def lerobot_rate(folder: Path, batches: int, batch: int) -> float:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("apprentice/converted", root=folder)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0)

    def forever() -> Iterator[Any]:
        while True:  # a new shuffled epoch when one ends (a small dataset has few batches)
            yield from loader

    it = forever()
    next(it)  # warm-up: the first batch opens the files
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches / (time.perf_counter() - t0)


def apprentice_rate(folder: Path, batches: int, batch: int) -> tuple[float, float]:
    """(batches/s, seconds to load the folder: the videos decoded once)."""
    t0 = time.perf_counter()
    dataset = DemoDataset.load(folder)
    load_s = time.perf_counter() - t0
    sampler = WindowSampler(dataset, batch_size=batch, rng=np.random.default_rng(0))
    n = batches * 50  # many more: each takes milliseconds

    def to_torch(b: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        # As LeRobot hands them over: float images in [0, 1], channels first.
        out = {k: torch.from_numpy(v) for k, v in b.items()}
        for k in out:
            if k.endswith("_image"):
                out[k] = out[k].permute(0, 1, 4, 2, 3).float().div_(255)
        return out

    to_torch(sampler.sample())
    t0 = time.perf_counter()
    for _ in range(n):
        to_torch(sampler.sample())
    return n / (time.perf_counter() - t0), load_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    lerobot = lerobot_rate(args.folder, args.batches, args.batch)
    ours, load_s = apprentice_rate(args.folder, args.batches, args.batch)
    print(
        json.dumps(
            {
                "batch": args.batch,
                "lerobot_batches_per_s": lerobot,
                "apprentice_batches_per_s": ours,
                "apprentice_load_s": load_s,
                "ratio": ours / lerobot,
            }
        )
    )


if __name__ == "__main__":
    main()
