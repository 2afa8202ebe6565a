"""Robustness: the cost of the perturbation axes, and policies from nominal against randomized data.

    .venv/bin/python benchmarks/bench_robustness.py cost --steps 3000 --rounds 5
    .venv/bin/python benchmarks/bench_robustness.py quality --recipe stack-lowdim \\
        --axes friction object_mass latency --seeds 0 1 2 --episodes 50
    .venv/bin/python benchmarks/bench_robustness.py quality --recipe lift-image \\
        --axes light camera --seeds 0 1 2 --episodes 50 --nominal-checkpoints \\
        benchmarks/out/encoder_pretraining/results/200_pretrained_s{0,1,2}/final.pt

cost: env steps/s of each built-in task with every axis it takes at level 1 against nominal,
low-dim (random actions, one core), and with both 84x84 cameras rendered: nominal against the
camera axes (light, colors, camera, distractors) at level 1. Alternated rounds, the ratio's
median and range over rounds.

quality: collect the recipe's demos twice, nominal and randomized (`--task-args AXIS=0:1` for
every axis named), train the recipe on each with every seed, and sweep each policy over each
axis at levels 0, 0.25, 0.5, 0.75 and 1 (`apprentice eval --sweep`) on held-out seeds. Reports,
per axis, success per level for both and, at the far end where the nominal policy is below
50%, the randomized policy's success there as a share of its own nominal success (the
target: at least 80%).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from apprentice.envs import make_task
from apprentice.envs.base import task_axes
from harness import OUT, add_out, alternate, markdown_table, parser, ratio, write_json

TASKS = ("lift", "stack", "pick_place", "peg_insert")
CAMERA_AXES = ("light", "colors", "camera", "distractors")
LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _stepper(task: str, steps: int, **kwargs: Any) -> Any:
    env = make_task(task, **kwargs)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(steps, 7)).astype(np.float32)
    env.reset(seed=0)
    state = {"t": 0}

    def run() -> None:
        # One call = `steps` env steps; reset every horizon, as a rollout would.
        for _ in range(steps):
            t = state["t"] = state["t"] + 1
            _, _, _, truncated, _ = env.step(actions[t % steps])
            if truncated:
                env.reset(seed=t)

    return run


def cost(steps: int, rounds: int, camera_steps: int) -> dict[str, Any]:
    rows, results = [], {}
    for task in TASKS:
        hardest = {axis: 1.0 for axis in task_axes(task)}
        cases = {
            "low-dim nominal": _stepper(task, steps),
            "low-dim all axes at 1": _stepper(task, steps, perturb=hardest),
            "cameras nominal": _stepper(task, camera_steps, camera=True),
            "cameras camera axes at 1": _stepper(
                task, camera_steps, camera=True, perturb=dict.fromkeys(CAMERA_AXES, 1.0)
            ),
        }
        timed = alternate(cases, rounds=rounds, calls=1)
        per_s = {
            name: [
                v * (steps if name.startswith("low") else camera_steps) for v in timed.wall[name]
            ]
            for name in cases
        }
        low = ratio(per_s["low-dim all axes at 1"], per_s["low-dim nominal"])
        cam = ratio(per_s["cameras camera axes at 1"], per_s["cameras nominal"])
        results[task] = {
            "steps_per_s": {k: float(np.median(v)) for k, v in per_s.items()},
            "low_dim_ratio": low.median,
            "camera_ratio": cam.median,
            "axes": list(hardest),
        }
        s = results[task]["steps_per_s"]
        rows.append(
            (
                task,
                f"{s['low-dim nominal']:.0f}",
                f"{s['low-dim all axes at 1']:.0f}",
                str(low),
                f"{s['cameras nominal']:.0f}",
                f"{s['cameras camera axes at 1']:.0f}",
                str(cam),
            )
        )
    header = (
        "task",
        "low-dim nominal (steps/s)",
        "every axis at 1",
        "ratio",
        "2 cameras nominal",
        "camera axes at 1",
        "ratio",
    )
    print(markdown_table(header, rows))
    return results


def _apprentice(*args: str) -> None:
    cmd = [sys.executable, "-m", "apprentice", *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _sweep(checkpoint: Path, out: Path, axes: list[str], episodes: int, workers: int) -> Any:
    sweeps = [f"{a}={','.join(str(v) for v in LEVELS)}" for a in axes]
    _apprentice(
        "eval", str(checkpoint), "--episodes", str(episodes), "--workers", str(workers),
        "--out", str(out), "--sweep", *sweeps,
    )  # fmt: skip
    return json.loads(out.read_text())


def quality(
    recipe: str,
    axes: list[str],
    seeds: list[int],
    episodes: int,
    workers: int,
    folder: Path,
    nominal_checkpoints: list[Path],
) -> dict[str, Any]:
    from apprentice.recipes import get_recipe

    r = get_recipe(recipe)
    data = r.collect
    results: dict[str, Any] = {"recipe": recipe, "axes": axes, "arms": {}}
    if nominal_checkpoints:  # the recipe's own measured runs: swept, not retrained
        results["arms"]["nominal"] = [
            _sweep(ckpt, folder / "nominal" / f"s{i}" / "sweep.json", axes, episodes, workers)
            for i, ckpt in enumerate(nominal_checkpoints)
        ]
    arms = [("nominal", [])] if not nominal_checkpoints else []
    arms.append(("randomized", [f"{a}=0:1" for a in axes]))
    for arm, task_args in arms:
        demos = folder / arm / "demos.hdf5"
        _apprentice(
            "collect",
            "--task",
            data.task,
            "--n",
            str(data.n),
            "--action-noise",
            str(data.action_noise),
            "--workers",
            str(workers),
            "--out",
            str(demos),
            "--no-progress",
            *(["--camera"] if data.camera else []),
            *(["--task-args", *task_args] if task_args else []),
        )
        arm_results = []
        for seed in seeds:
            run = folder / arm / f"s{seed}"
            if not (run / "final.pt").exists():  # a finished run is kept, and its sweep
                _apprentice(
                    "train", "--recipe", recipe, "--dataset", str(demos), "--out", str(run),
                    "--seed", str(seed),
                )  # fmt: skip
            # final.pt, as the recipes' measured numbers score it.
            sweep = _sweep(run / "final.pt", run / "sweep.json", axes, episodes, workers)
            arm_results.append(sweep)
        results["arms"][arm] = arm_results
    _quality_table(results)
    return results


def _pooled(runs: list[dict[str, Any]], axis: str) -> list[tuple[float, int, int]]:
    """(level, successes, episodes) per level, summed over the seeds' sweeps."""
    by_level: dict[float, list[int]] = {}
    for run in runs:
        for row in run["axes"][axis]:
            s = by_level.setdefault(float(row["level"]), [0, 0])
            s[0] += int(row["successes"])
            s[1] += int(row["episodes"])
    return [(level, s, n) for level, (s, n) in sorted(by_level.items())]


def _quality_table(results: dict[str, Any]) -> None:
    rows = []
    for axis in results["axes"]:
        nominal = _pooled(results["arms"]["nominal"], axis)
        randomized = _pooled(results["arms"]["randomized"], axis)
        for (level, s0, n0), (_, s1, n1) in zip(nominal, randomized, strict=True):
            rows.append((axis, level, f"{s0}/{n0} = {s0 / n0:.1%}", f"{s1}/{n1} = {s1 / n1:.1%}"))
        far = [lv for lv, s, n in nominal if s / n < 0.5]
        if far:
            level = max(far)
            own = dict((lv, s / n) for lv, s, n in randomized)
            kept = own[level] / own[0.0] if own[0.0] else float("nan")
            rows.append((axis, f"far end {level}", "nominal < 50%", f"keeps {kept:.0%} (>= 80%)"))
    print(markdown_table(("axis", "level", "nominal data", "randomized data"), rows))


def main() -> None:
    p = parser(__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cost", help="env steps/s with every axis at level 1 against nominal")
    c.add_argument("--steps", type=int, default=3000, help="low-dim env steps per round")
    c.add_argument("--camera-steps", type=int, default=300, help="camera env steps per round")
    c.add_argument("--rounds", type=int, default=5)
    add_out(c, OUT / "robustness_cost.json")
    q = sub.add_parser("quality", help="nominal against randomized data, swept")
    q.add_argument("--recipe", default="stack-lowdim")
    q.add_argument("--axes", nargs="+", default=["friction", "object_mass", "latency"])
    q.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    q.add_argument("--episodes", type=int, default=50)
    q.add_argument("--workers", type=int, default=2)
    q.add_argument("--folder", type=Path, help="default: benchmarks/out/robustness/RECIPE")
    q.add_argument(
        "--nominal-checkpoints",
        type=Path,
        nargs="*",
        default=[],
        help="sweep these (one per seed) as the nominal arm instead of training it",
    )
    add_out(q, OUT / "robustness_quality.json")
    a = p.parse_args()
    if a.what == "cost":
        write_json(a.out, cost(a.steps, a.rounds, a.camera_steps))
    else:
        folder = a.folder or OUT / "robustness" / a.recipe
        write_json(
            a.out,
            quality(
                a.recipe,
                a.axes,
                a.seeds,
                a.episodes,
                a.workers,
                folder,
                a.nominal_checkpoints,
            ),
        )


if __name__ == "__main__":
    main()
