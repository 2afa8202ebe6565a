"""WindowSampler throughput on a manipulation-sized low-dim dataset.

Generates 200 demos x ~150 steps (eef_pos 3, eef_quat 4, gripper_qpos 2, object 20; actions 7),
loads them with DemoDataset and times WindowSampler.sample() for two window shapes. Throughput is
reported next to the fraction of memcpy bandwidth it reaches (bytes of batch produced per second /
bytes numpy copies per second on this machine), which says how far the gather is from the
hardware limit. Prints a markdown table, writes benchmarks/out/sampler.json.

    python benchmarks/bench_sampler.py [--seconds 2] [--robomimic-python /path/to/venv/bin/python]

With --robomimic-python, the same file is read by robomimic's SequenceDataset (hdf5_cache_mode
"all", torch DataLoader, batch 100) in a subprocess running that interpreter.
"""

from __future__ import annotations

import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from apprentice.data import DemoDataset, DemoWriter, Episode, WindowSampler
from harness import OUT, add_out, markdown_table, parser, write_json

KEYS = {"eef_pos": 3, "eef_quat": 4, "gripper_qpos": 2, "object": 20}
ACTION_DIM = 7
CONFIGS = [
    {"name": "seq_len=10, frame_stack=1, batch 100", "seq_len": 10, "frame_stack": 1},
    {"name": "seq_len=1, frame_stack=1, batch 100", "seq_len": 1, "frame_stack": 1},
]
BATCH = 100


def write_dataset(path: Path, *, episodes: int = 200, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with DemoWriter(path, env_args={"env_name": "Bench"}, overwrite=True, durable=False) as w:
        for i in range(episodes):
            t = int(rng.integers(120, 181))  # ~150 steps, like robomimic's Lift/Can demos
            obs = {k: rng.normal(size=(t, d)).astype(np.float32) for k, d in KEYS.items()}
            w.append(
                Episode(
                    obs=obs,
                    next_obs=obs,
                    actions=rng.uniform(-1, 1, (t, ACTION_DIM)).astype(np.float32),
                    rewards=np.zeros(t, dtype=np.float32),
                    dones=(np.arange(t) == t - 1).astype(np.int64),
                    states=np.zeros((t, 1)),
                    seed=i,
                )
            )


def memcpy_bandwidth(nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """Bytes per second numpy copies between two large arrays (best of `repeats`)."""
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return nbytes / best


def time_sampler(ds: DemoDataset, seq_len: int, frame_stack: int, seconds: float) -> dict:
    sampler = WindowSampler(
        ds, seq_len=seq_len, frame_stack=frame_stack, batch_size=BATCH, rng=np.random.default_rng(0)
    )
    batch_bytes = sum(v.nbytes for v in sampler.sample().values())
    for _ in range(20):  # warm up caches and the allocator
        sampler.sample()
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        for _ in range(50):
            sampler.sample()
        n += 50
    return {"batches_per_s": n / elapsed, "bytes_per_batch": batch_bytes}


ROBOMIMIC_SCRIPT = """
import json, sys, time
import torch
from torch.utils.data import DataLoader
import robomimic.utils.obs_utils as ObsUtils
from robomimic.utils.dataset import SequenceDataset

path, keys, seq_len, frame_stack, batch, seconds = (
    sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
    float(sys.argv[6]))
ObsUtils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": keys, "rgb": []}})
ds = SequenceDataset(hdf5_path=path, obs_keys=keys, dataset_keys=("actions",),
    frame_stack=frame_stack, seq_length=seq_len, pad_frame_stack=True, pad_seq_length=True,
    get_pad_mask=True, goal_mode=None, hdf5_cache_mode="all", hdf5_use_swmr=True,
    hdf5_normalize_obs=False, filter_by_attribute=None, load_next_obs=False)
loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0, drop_last=True)
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    for _ in loader:
        n += 1
        if time.perf_counter() - t0 >= seconds:
            break
print(json.dumps({"batches_per_s": n / (time.perf_counter() - t0)}))
"""


def time_robomimic(python: str, path: Path, seq_len: int, frame_stack: int, seconds: float) -> dict:
    out = subprocess.run(
        [
            python,
            "-c",
            ROBOMIMIC_SCRIPT,
            str(path),
            ",".join(KEYS),
            str(seq_len),
            str(frame_stack),
            str(BATCH),
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--seconds", type=float, default=2.0, help="timing per configuration")
    p.add_argument("--robomimic-python", help="interpreter with robomimic installed")
    add_out(p, OUT / "sampler.json")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.hdf5"
        t0 = time.perf_counter()
        write_dataset(path)
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ds = DemoDataset.load(path)
        load_s = time.perf_counter() - t0
        bandwidth = memcpy_bandwidth()
        rows = []
        for cfg in CONFIGS:
            r = time_sampler(ds, cfg["seq_len"], cfg["frame_stack"], args.seconds)
            r["bandwidth_fraction"] = r["batches_per_s"] * r["bytes_per_batch"] / bandwidth
            if args.robomimic_python:
                rm = time_robomimic(
                    args.robomimic_python, path, cfg["seq_len"], cfg["frame_stack"], args.seconds
                )
                r["robomimic_batches_per_s"] = rm["batches_per_s"]
            rows.append({**cfg, **r})

    print(
        f"dataset: {ds.num_episodes} demos, {ds.num_steps} steps; written in {write_s:.2f} s, "
        f"loaded in {load_s:.3f} s; memcpy bandwidth {bandwidth / 1e9:.1f} GB/s\n"
    )
    header = ["window", "batches/s", "MB/s produced", "of memcpy bandwidth"]
    cells = [
        [
            r["name"],
            f"{r['batches_per_s']:.0f}",
            f"{r['batches_per_s'] * r['bytes_per_batch'] / 1e6:.0f}",
            f"{100 * r['bandwidth_fraction']:.1f}%",
        ]
        + ([f"{r['robomimic_batches_per_s']:.0f}"] if args.robomimic_python else [])
        for r in rows
    ]
    if args.robomimic_python:
        header.append("robomimic batches/s")
    print(markdown_table(header, cells))

    result = {
        "machine": platform.platform(),
        "numpy": np.__version__,
        "episodes": ds.num_episodes,
        "steps": ds.num_steps,
        "write_s": write_s,
        "load_s": load_s,
        "memcpy_bytes_per_s": bandwidth,
        "configs": rows,
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
