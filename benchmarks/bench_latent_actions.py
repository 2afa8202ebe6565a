"""Label error of `label-actions --from-video`: the latent-action route against the IDM route
at the same budget of labelled interaction.

Collects lift demos with the agentview camera, writes each as an mp4 (no actions in the
files), and labels the folder twice per budget B: the IDM route learns from B steps of the
task's exploration (`--exploration-steps B`); the latent route learns its latent actions
from frames alone (the videos' and those B steps') and fits its decoder on the B steps with
their actions (`--latent --labelled-steps B`). The error is against the demos' true actions. Writes
benchmarks/out/latent_actions.json.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.collect.replay import write_video
from apprentice.data import DemoFile
from apprentice.irl.label import LabelConfig, action_error, label_actions
from apprentice.irl.videos import Videos
from harness import OUT, add_out, add_quick, markdown_table, parser, write_json

WORK = OUT / "latent_actions"


def make_videos(demos: int, size: int, work: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """`demos` lift demos as mp4 files (one each) and their true actions by file name."""
    collected = work / "lift-camera.hdf5"
    cfg = CollectConfig(
        task="lift", n=demos, out=str(collected), workers=1, camera=True, progress=False
    )
    collect_demos(replace(cfg, task_args=(f"image_size={size}",), overwrite=True))
    folder = work / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    true: dict[str, np.ndarray] = {}
    with Videos(collected, "agentview") as videos, DemoFile(collected) as f:
        for name in videos.names:
            write_video(folder / f"{name}.mp4", list(videos.read(name).frames))
            true[f"{name}.mp4"] = f.read_actions(name)
    return folder, true


def label_error(cfg: LabelConfig, true: dict[str, np.ndarray]) -> dict[str, Any]:
    """Run the route of `cfg`; its labels' error against `true` and its wall-clock time."""
    t0 = time.perf_counter()
    r = label_actions(cfg)
    seconds = time.perf_counter() - t0
    pred, ref = [], []
    with DemoFile(r.path) as f:
        for name in f.demo_names:
            pred.append(f.read_actions(name))
            ref.append(true[str(f.attrs(name)["labelled_from"])])
    return {**action_error(np.concatenate(pred), np.concatenate(ref)), "seconds": seconds}


def main() -> None:
    p = parser(__doc__)
    add_quick(p)
    p.add_argument("--demos", type=int, default=20, help="lift video demos")
    p.add_argument("--size", type=int, default=32, help="frame size (square)")
    p.add_argument("--budgets", type=int, nargs="+", default=[1000, 3000],
                   help="labelled steps of exploration per route")  # fmt: skip
    p.add_argument("--idm-steps", type=int, default=1000, help="gradient steps of the IDM")
    p.add_argument("--latent-steps", type=int, default=1500,
                   help="gradient steps of the latent action model")  # fmt: skip
    p.add_argument("--routes", nargs="+", choices=["idm", "latent"], default=["idm", "latent"],
                   help="routes to measure")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=WORK, help="videos and labelled files")
    add_out(p, OUT / "latent_actions.json")
    args = p.parse_args()
    if args.quick:
        args.demos, args.budgets, args.idm_steps, args.latent_steps = 2, [100], 5, 5
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    folder, true = make_videos(args.demos, args.size, args.work)
    steps = sum(len(a) for a in true.values())
    base = LabelConfig(
        out="",
        from_video=str(folder),
        task="lift",
        image_size=args.size,
        idm_steps=args.idm_steps,
        latent_steps=args.latent_steps,
        seed=args.seed,
        overwrite=True,
    )
    rows: list[dict[str, Any]] = []
    for budget in args.budgets:
        for route in args.routes:
            cfg = replace(
                base,
                out=str(args.work / f"{route}-{budget}.hdf5"),
                latent=route == "latent",
                exploration_steps=budget,
                labelled_steps=budget,
            )
            err = label_error(cfg, true)
            rows.append({"budget": budget, "route": route, **err})
            print(f"B={budget} {route}: MAE {err['mae']:.4f} ({err['seconds']:.0f} s)", flush=True)
    print(f"\n{args.demos} lift video demos at {args.size}x{args.size}, {steps} steps\n")
    print(
        markdown_table(
            ["labelled steps", "route", "MAE", "relative MAE", "cosine", "MAE per dim", "s"],
            [
                [
                    r["budget"],
                    r["route"],
                    f"{r['mae']:.4f}",
                    f"{r['relative_mae']:.3f}",
                    f"{r['cosine']:.3f}",
                    " ".join(f"{x:.3f}" for x in r["mae_per_dim"]),
                    f"{r['seconds']:.0f}",
                ]
                for r in rows
            ],
        )
    )
    write_json(args.out, {"demos": args.demos, "size": args.size, "steps": steps, "rows": rows})


if __name__ == "__main__":
    main()
