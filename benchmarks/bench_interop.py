"""Other formats' datasets: converting to LeRobot, and training and sampling batches from one.

On lift demos recorded with both cameras (84x84) by the oracle:

- convert: seconds to write them as a LeRobot v3.0 dataset (`apprentice convert`, default
  codec and lossless), and back to HDF5; the frames' PSNR after the round trip, low-dim
  arrays and actions checked equal;
- train: `apprentice train` wall seconds and steps/s from the HDF5 file and from the LeRobot
  folder (decode cache cold, then warm), same config, alternated;
- loader (with --lerobot-python, LeRobot 0.6.1's venv, `make lerobot`): batches/s of 100 from a
  one-camera 64x64 LeRobot folder through LeRobot's own `LeRobotDataset` in a torch DataLoader
  against apprentice's `DemoDataset` + `WindowSampler` on the same folder, 1 thread each, in
  one process of that venv (benchmarks/lerobot_loader.py).

    .venv/bin/python benchmarks/bench_interop.py [--quick] \
        [--lerobot-python .venv-lerobot/bin/python]

Prints a markdown table and writes benchmarks/out/interop.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from apprentice.algos.config import TrainConfig
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.data.convert import convert, psnr
from apprentice.data.source import open_source
from apprentice.pipelines.train import run_train
from apprentice.policies import MLPConfig
from harness import OUT, add_out, add_quick, markdown_table, parser, write_json

HERE = Path(__file__).resolve().parent


def camera_demos(work: Path, n: int) -> Path:
    """`n` lift demos with both 84x84 cameras (collected once, then reused)."""
    path = work / f"lift_cam{n}.hdf5"
    if not path.exists():
        collect_demos(
            CollectConfig(task="lift", n=n, out=str(path), camera=True, workers=2, progress=False)
        )
    return path


def one_small_camera(src: Path, dst: Path, size: int = 64) -> Path:
    """A copy of `src` with the agentview camera only, resized to `size` (the dataset LeRobot's
    loader was measured on: one 64x64 camera)."""
    from PIL import Image

    if dst.exists():
        return dst
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        for demo in f["data"].values():
            for group in ("obs", "next_obs"):
                if group not in demo:
                    continue
                obs = demo[group]
                if "eye_in_hand_image" in obs:
                    del obs["eye_in_hand_image"]
                frames = obs["agentview_image"][()]
                small = np.stack(
                    [np.asarray(Image.fromarray(x).resize((size, size))) for x in frames]
                )
                del obs["agentview_image"]
                obs.create_dataset("agentview_image", data=small)
    return dst


def time_convert(src: Path, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, lossless in (("default", False), ("lossless", True)):
        folder = work / f"lerobot_{label}"
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        with open_source(src) as source:
            _, notes = convert(source, folder, lossless=lossless)
        seconds = time.perf_counter() - t0
        back = work / f"back_{label}.hdf5"
        back.unlink(missing_ok=True)
        t1 = time.perf_counter()
        with open_source(folder) as source:
            convert(source, back)
        back_seconds = time.perf_counter() - t1
        out[label] = {
            "seconds": seconds,
            "back_seconds": back_seconds,
            "frames": notes.frames,
            "demos": notes.demos,
            "info": notes.info,
            "megabytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6,
            **round_trip(src, back),
        }
    return out


def round_trip(a: Path, b: Path) -> dict[str, Any]:
    """Low-dim arrays and actions equal (checked), and the frames' PSNR (dB)."""
    psnrs: list[float] = []
    with open_source(a) as x, open_source(b) as y:
        for name in x.demo_names:
            np.testing.assert_array_equal(x.read_actions(name), y.read_actions(name))
            for key in x.obs_keys:
                u, v = x.read_obs(name, key), y.read_obs(name, key)
                if key in x.image_keys:
                    psnrs.append(psnr(u, v))
                else:
                    np.testing.assert_array_equal(u, v)
    finite = [p for p in psnrs if np.isfinite(p)]
    return {
        "psnr_min": min(psnrs) if psnrs else None,
        "psnr_mean": float(np.mean(finite)) if finite else float("inf"),
        "exact_frames": len(psnrs) - len(finite),
        "frames_compared": len(psnrs),
    }


def time_train(hdf5: Path, folder: Path, work: Path, steps: int, rounds: int) -> dict[str, Any]:
    """Wall seconds of the same short camera run from each dataset (data load included)."""
    policy = MLPConfig(
        obs_keys=("eef_pos", "gripper_qpos"), image_keys=("agentview_image",), hidden_dims=(256,)
    )

    def run(dataset: Path, tag: str) -> float:
        out = work / f"train_{tag}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = TrainConfig(
            dataset=str(dataset),
            out=str(out),
            policy=policy,
            epochs=1,
            steps_per_epoch=steps,
            batch_size=64,
            eval_every=0,
            threads=1,
            progress=False,
        )
        t0 = time.perf_counter()
        run_train(cfg)
        return time.perf_counter() - t0

    cache = work / "decode_cache"
    os.environ["APPRENTICE_CACHE"] = str(cache)
    shutil.rmtree(cache, ignore_errors=True)
    cold = run(folder, "lerobot_cold")
    seconds: dict[str, list[float]] = {"hdf5": [], "lerobot": []}
    for _ in range(rounds):  # alternated: both see the same load
        seconds["hdf5"].append(run(hdf5, "hdf5"))
        seconds["lerobot"].append(run(folder, "lerobot"))
    med = {k: float(np.median(v)) for k, v in seconds.items()}
    return {
        "steps": steps,
        "seconds": seconds,
        "lerobot_cold_seconds": cold,
        "steps_per_s": {k: steps / v for k, v in med.items()},
        "ratio": med["hdf5"] / med["lerobot"],
        "ratio_cold": med["hdf5"] / cold,
    }


def time_loader(python: str, folder: Path, batches: int) -> dict[str, Any]:
    script = HERE / "lerobot_loader.py"
    argv = [python, str(script), str(folder), "--batches", str(batches)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{script} failed:\n{r.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = parser(__doc__)
    add_quick(p)
    add_out(p, OUT / "interop.json")
    p.add_argument("--demos", type=int, default=200)
    p.add_argument("--lerobot-python", default=None, help="LeRobot 0.6.1's venv python")
    p.add_argument("--work", type=Path, default=OUT / "interop")
    p.add_argument(
        "--data", type=Path, default=None, help="lift demos with both cameras (else collected)"
    )
    args = p.parse_args()
    n = 4 if args.quick else args.demos
    work = args.work / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    src = args.data if args.data is not None else camera_demos(work, n)
    results: dict[str, Any] = {"demos": n, "convert": time_convert(src, work)}
    folder = work / "lerobot_default"
    results["train"] = time_train(
        src, folder, work, steps=20 if args.quick else 200, rounds=1 if args.quick else 3
    )
    rows = []
    for label, r in results["convert"].items():
        rows.append(
            [
                f"convert {n} lift demos (2 cameras 84x84, {r['frames']} frames) to LeRobot, "
                f"{label}",
                f"{r['seconds']:.1f} s (back: {r['back_seconds']:.1f} s), {r['megabytes']:.1f} MB",
                f"PSNR min {r['psnr_min']:.1f} dB, mean {r['psnr_mean']:.1f} dB",
            ]
        )
    t = results["train"]
    rows.append(
        [
            f"train {t['steps']} steps (MLP + agentview, batch 64), data load included",
            f"HDF5 {t['steps_per_s']['hdf5']:.2f} steps/s, "
            f"LeRobot {t['steps_per_s']['lerobot']:.2f}",
            f"ratio {t['ratio']:.2f} (cold decode cache: {t['ratio_cold']:.2f})",
        ]
    )
    if args.lerobot_python:
        small = one_small_camera(src, work / f"lift_cam{n}_agentview64.hdf5")
        small_folder = work / "lerobot_64"
        shutil.rmtree(small_folder, ignore_errors=True)
        with open_source(small) as source:
            convert(source, small_folder)
        results["loader"] = time_loader(args.lerobot_python, small_folder, 3 if args.quick else 20)
        r = results["loader"]
        rows.append(
            [
                "batches of 100 (64x64 video camera + state), 1 thread",
                f"LeRobotDataset {r['lerobot_batches_per_s']:.2f}/s, "
                f"apprentice {r['apprentice_batches_per_s']:.0f}/s",
                f"ratio {r['ratio']:.0f} (apprentice load {r['apprentice_load_s']:.1f} s)",
            ]
        )
    print(markdown_table(["measure", "result", "check"], rows))
    write_json(args.out, results)


if __name__ == "__main__":
    main()
