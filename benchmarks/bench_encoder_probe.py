"""Linear probe of pretrained camera encoders: how well their frozen features locate things.

A policy on a frozen encoder can only use what its features hold. For each encoder file
(`apprentice pretrain-encoder`), encode every `--stride`-th frame of the first `--demos`
demos, fit a least-squares linear map (with bias) from the features to each low-dim key
(`--keys`, e.g. Push-T's T corners `keypoints` and the pusher's `agent_pos`) on the first
80% of the demos' frames, and report on the last 20%: R^2 per key (mean and worst dimension)
and the RMSE in the key's own units, beside the key's standard deviation.

    .venv/bin/python benchmarks/bench_encoder_probe.py \
        --dataset benchmarks/out/recipes/pusht_1000_noise0.0/demos_camera.hdf5 --image-key image \
        --keys keypoints agent_pos --encoders AUTOENCODER.pt REGRESSOR.pt
    .venv/bin/python benchmarks/bench_encoder_probe.py --quick   # a smoke test on tiny data

Writes benchmarks/out/encoder_probe/results.json (quick.json with --quick) and prints a
markdown table.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from apprentice.algos.pretrain import PretrainEncoderConfig, pretrain_encoder
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.policies.encoder_file import EncoderFile
from harness import OUT, add_quick, markdown_table, parser, write_json


@torch.no_grad()
def features_and_keys(
    path: Path, encoder: EncoderFile, image_key: str, keys: list[str], demos: int, stride: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(features (N, Df), {key: (N, Dk)}) of every `stride`-th frame of the first `demos`."""
    core = encoder.camera.build(encoder.image_shape)
    encoder.load_into(core, encoder.camera, what=image_key)
    core.eval()
    feats, values = [], {k: [] for k in keys}
    with h5py.File(path, "r") as f:
        names = sorted(f["data"], key=lambda n: int(n.split("_")[-1]))[:demos]
        for name in names:
            obs = f["data"][name]["obs"]
            feats.append(core(torch.from_numpy(obs[image_key][::stride])).numpy())
            for k in keys:
                values[k].append(np.asarray(obs[k][::stride], np.float64))
    return np.concatenate(feats), {k: np.concatenate(v) for k, v in values.items()}


def probe(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """R^2 (mean, worst dimension) and RMSE on the last 20% of a fit on the first 80%."""
    n = int(0.8 * len(x))
    xb = np.c_[x, np.ones(len(x))]
    w = np.linalg.lstsq(xb[:n], y[:n], rcond=None)[0]
    err = xb[n:] @ w - y[n:]
    r2 = 1 - (err**2).sum(0) / ((y[n:] - y[n:].mean(0)) ** 2).sum(0)
    return {
        "r2_mean": float(r2.mean()),
        "r2_min": float(r2.min()),
        "rmse": float(np.sqrt((err**2).mean())),
        "std": float(y.std()),
    }


def quick_inputs(work: Path) -> tuple[Path, list[Path]]:
    """Four pusht camera demos and a 5-step encoder of each kind."""
    data = work / "pusht_cam4.hdf5"
    collect_demos(CollectConfig(task="pusht", n=4, out=str(data), camera=True, progress=False))
    files = []
    for name, target in (("autoencoder", None), ("regressor", "keypoints")):
        out = work / f"{name}.pt"
        pretrain_encoder(
            PretrainEncoderConfig(
                dataset=str(data),
                image_key="image",
                out=str(out),
                camera_args=("feature_dim=8", "num_keypoints=4", "random_shift=0"),
                steps=5,
                batch_size=4,
                target_key=target,
                threads=1,
            )
        )
        files.append(out)
    return data, files


def main() -> None:
    p = parser(__doc__)
    add_quick(p, help="four collected demos and 5-step encoders: a smoke test")
    p.add_argument("--dataset", type=Path)
    p.add_argument("--image-key", default="image")
    p.add_argument("--keys", nargs="+", default=["keypoints", "agent_pos"])
    p.add_argument("--encoders", type=Path, nargs="+", default=[])
    p.add_argument("--demos", type=int, default=120, help="demos to encode (the first ones)")
    p.add_argument("--stride", type=int, default=3, help="encode every stride-th frame")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            args.dataset, args.encoders = quick_inputs(Path(tmp))
            args.demos, args.stride = 4, 1
        if args.dataset is None or not args.encoders:
            p.error("give --dataset and --encoders (or --quick)")
        results: dict[str, Any] = {}
        for path in args.encoders:
            encoder = EncoderFile.load(path)
            x, ys = features_and_keys(
                args.dataset, encoder, args.image_key, args.keys, args.demos, args.stride
            )
            results[str(path)] = {
                "target": encoder.target_key or "frame (autoencoder)",
                "frames": len(x),
                **{k: probe(x, y) for k, y in ys.items()},
            }
    name = "quick" if args.quick else "results"
    write_json(args.json or OUT / "encoder_probe" / f"{name}.json", results)
    rows = [
        [
            Path(path).as_posix(),
            r["target"],
            key,
            f"{r[key]['r2_mean']:.3f} ({r[key]['r2_min']:.3f})",
            f"{r[key]['rmse']:.3g} (std {r[key]['std']:.3g})",
        ]
        for path, r in results.items()
        for key in args.keys
    ]
    header = ["encoder", "pretrained on", "key", "R^2 mean (worst dim)", "RMSE"]
    print("\n" + markdown_table(header, rows))


if __name__ == "__main__":
    main()
