"""The policy zoo's success grid: every policy, low-dim and camera observations, 50 and 200
demos, several training seeds, each scored on 50 held-out initial states.

The grid runs through `apprentice.sweep` (what `apprentice sweep` runs): for each task the
oracle's demos are collected once (the 50-demo file is the first 50 demos of the 200-demo
one) with low-dim observations, and again with the two 84x84 cameras. Every cell of the grid
then trains one policy with the shared trainer (`--device auto`: on a GPU when torch sees
one) and evaluates its final checkpoint with `apprentice.evaluate` on the CPU. Cells run
side by side in `--jobs` processes, each with one torch thread; each finished cell is
appended to `<out>/cells.jsonl` at once, so a run stopped at any point keeps what it
finished and a rerun skips those cells. What this script adds to a sweep: the zoo's budget
per policy (learning rate, clipping), its camera and batch settings, the tiny --quick sizes,
cells named in a given order, a deadline, and its table.

Camera cells read `agentview_image` and `eye_in_hand_image` (conv encoder with spatial
softmax, random-shift augmentation) plus the proprio keys: where the object is has to come
from the pixels. Low-dim cells read every low-dim key, the object poses included.

    MUJOCO_GL=egl .venv/bin/python benchmarks/bench_zoo.py --tasks lift --jobs 2
    MUJOCO_GL=egl .venv/bin/python benchmarks/bench_zoo.py --quick     # smoke test, tiny sizes
    .venv/bin/python benchmarks/bench_zoo.py --table benchmarks/out/zoo   # the table again
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from apprentice.algos.config import TrainConfig
from apprentice.overrides import parse_overrides
from apprentice.policies import policy_config_class, policy_config_from_dict
from apprentice.sweep import Cell, CellJob, CellLog, DemoSpec, run_cells
from harness import OUT, add_out, add_quick, add_seeds, markdown_table, parser, wilson_cell

POLICIES = ("mlp", "gmm", "rnn", "transformer", "act", "diffusion", "flow")
CAMS = ("agentview_image", "eye_in_hand_image")
PROPRIO = ("eef_pos", "eef_quat", "gripper_qpos")
# One budget for every policy. The feed-forward and recurrent policies take robomimic's
# defaults at lr 1e-3 (what the head-to-head used); the attention and diffusion policies take
# 3e-4 and a clipped gradient, as transformers are prone to blow up at 1e-3 without warm-up.
LR = {"mlp": 1e-3, "gmm": 1e-3, "rnn": 1e-3, "transformer": 3e-4, "act": 3e-4, "diffusion": 3e-4}
LR["flow"] = 3e-4
CLIP = {"transformer": 1.0, "act": 1.0, "diffusion": 1.0, "flow": 1.0}
# --quick: each policy's tiny size, the diffusion policy's with a transformer denoiser and
# fewer steps still.
QUICK_ARGS: dict[str, dict[str, Any]] = {
    "diffusion": {"denoiser": "transformer", "num_train_steps": 10, "inference_steps": 2},
}


def policy_config(cell: Cell, quick: bool, overrides: list[str] | None = None) -> Any:
    kw: dict[str, Any] = dict(QUICK_ARGS.get(cell.policy, {})) if quick else {}
    if cell.obs == "images":
        kw.update(obs_keys=PROPRIO, image_keys=CAMS, encoder="conv")
    kw.update(parse_overrides(overrides or [], "--policy-args entry"))
    base = policy_config_class(cell.policy).tiny().to_dict() if quick else {"name": cell.policy}
    return policy_config_from_dict({**base, **kw})


def job(cell: Cell, args: Any, out: Path) -> CellJob:
    """The sweep's job of one zoo cell: the zoo's budget for its policy."""
    images = cell.obs == "images"
    train = TrainConfig(
        out=str(cell.run_dir(out)),
        policy=policy_config(cell, args.quick, args.policy_args),
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_images if images else args.batch,
        lr=LR[cell.policy],
        grad_clip=CLIP.get(cell.policy),
        seed=cell.seed,
        device=args.device,
        eval_every=0,  # the final checkpoint is scored: no rollouts in training
        threads=1,
        progress=False,
    )
    demos = DemoSpec(cell.task, camera=images, action_noise=args.action_noise)
    return CellJob(cell, demos, train, args.episodes, args.eval_envs)


def parse_cell(key: str) -> Cell:
    """`lift/images/rnn/d200/s1` (a cell's key) -> the cell."""
    parts = key.split("/")
    ok = len(parts) == 5 and parts[3][:1] == "d" and parts[4][:1] == "s"
    if not ok or parts[1] not in ("low_dim", "images") or parts[2] not in POLICIES:
        raise ValueError(f"--cells: {key!r} is not task/obs/policy/dN/sN (lift/images/rnn/d50/s2)")
    return Cell(parts[0], parts[1], parts[2], int(parts[3][1:]), int(parts[4][1:]))


def cells_of(args: Any) -> list[Cell]:
    if args.cells:  # in the order given: the costliest first, where time is short
        return [parse_cell(k) for k in args.cells]
    # Task by task, low-dim first: a run cut short still has whole (task, obs) blocks.
    return [
        Cell(task, obs, policy, n, seed)
        for task in args.tasks
        for obs in args.obs
        for n in args.demos
        for seed in args.seeds
        for policy in args.policies
    ]


def table(out: Path) -> str:
    rows: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for r in CellLog(out / "cells.jsonl").finished().values():
        c = r["cell"]
        rows.setdefault((c["task"], c["obs"], c["policy"], c["demos"]), []).append(r)
    header = ["task", "obs", "policy", "demos", "success (seeds pooled)", "95% Wilson"]
    header += ["per seed", "train s/cell", "steps/s", "max reward"]
    lines: list[list[Any]] = []
    for (task, obs, policy, n), runs in sorted(rows.items()):
        runs.sort(key=lambda r: r["cell"]["seed"])
        k, t = sum(r["successes"] for r in runs), sum(r["episodes"] for r in runs)
        per = "/".join(str(r["successes"]) for r in runs)
        train_s = sum(r["train_s"] for r in runs) / len(runs)
        rates = [r["steps_per_s"] for r in runs if r.get("steps_per_s")]
        rate = f"{sum(rates) / len(rates):.0f}" if rates else ""
        # The mean over episodes of each one's best reward (Push-T's coverage score); cells
        # run before it was recorded have none.
        scores = [r["mean_max_reward"] for r in runs if r.get("mean_max_reward") is not None]
        score = f"{sum(scores) / len(scores):.3f}" if len(scores) == len(runs) else ""
        pooled = [f"{k}/{t} = {k / t:.1%}", wilson_cell(k, t, percent=1)]
        lines.append([task, obs, policy, n, *pooled, per, f"{train_s:.0f}", rate, score])
    return markdown_table(header, lines)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--tasks", nargs="+", default=["lift"])
    p.add_argument("--obs", nargs="+", default=["low_dim", "images"], choices=["low_dim", "images"])
    p.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    p.add_argument("--demos", nargs="+", type=int, default=[50, 200])
    add_seeds(p)
    p.add_argument(
        "--action-noise",
        type=float,
        default=0.0,
        help="collect the oracle's demos under this action noise (its own --out)",
    )
    p.add_argument("--episodes", type=int, default=50, help="held-out rollouts per cell")
    p.add_argument(
        "--eval-envs",
        type=int,
        default=10,
        help="envs a cell's evaluation steps in lockstep (one policy call per step for all)",
    )
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--batch", type=int, default=100, help="low-dim batch")
    p.add_argument("--batch-images", type=int, default=64, help="camera batch")
    p.add_argument("--device", default="auto", help="training device: cpu, cuda, auto")
    p.add_argument(
        "--policy-args",
        nargs="*",
        default=[],
        help="key=value set on every policy's config (e.g. init=orthogonal); use its own --out",
    )
    p.add_argument("--jobs", type=int, default=2, help="cells trained side by side")
    p.add_argument("--collect-workers", type=int, default=2)
    p.add_argument(
        "--cells",
        nargs="+",
        default=None,
        help="run these cells (task/obs/policy/dN/sN) in this order instead of the product",
    )
    p.add_argument("--deadline", type=float, default=None, help="stop starting cells after s")
    p.add_argument(
        "--stop-by",
        type=float,
        default=None,
        help="past --deadline, start a cell only if the slowest finished one would end by s",
    )
    add_out(p, OUT / "zoo", help="folder of the cells' results (cells.jsonl) and demos")
    add_quick(p, help="tiny nets, demos and runs")
    p.add_argument("--table", default=None, help="only print the table of this output folder")
    args = p.parse_args()
    if args.table:
        print(table(Path(args.table)))
        return
    if args.quick:
        args.demos, args.seeds, args.episodes = [2, 3], [0], 2
        args.epochs, args.steps_per_epoch, args.batch, args.batch_images = 1, 3, 8, 4
    start = time.perf_counter()
    out = Path(args.out)
    try:
        cells = cells_of(args)
    except ValueError as exc:
        p.error(str(exc))

    def may_start(slowest: float) -> bool:
        elapsed = time.perf_counter() - start
        if args.deadline is None or elapsed <= args.deadline:
            return True
        return args.stop_by is not None and 0 < slowest and elapsed + 1.1 * slowest < args.stop_by

    outcome = run_cells(
        [job(c, args, out) for c in cells],
        out,
        workers=args.jobs,
        collect_workers=args.collect_workers,
        may_start=may_start,
        echo=lambda line: print(line, flush=True),
    )
    print(table(out))
    unstarted = len(outcome.not_started)
    print(f"total {time.perf_counter() - start:.0f} s; {unstarted} cells not started")


if __name__ == "__main__":
    main()
