"""The policy zoo's success grid: every policy, low-dim and camera observations, 50 and 200
demos, several training seeds, each scored on 50 held-out initial states.

For each task the oracle's demos are collected once (the 50-demo file is the first 50 demos
of the 200-demo one) with low-dim observations, and again with the two 84x84 cameras. Every
cell of the grid then trains one policy with the shared trainer (`--device auto`: on a GPU
when torch sees one) and evaluates its final checkpoint with `apprentice.evaluate` on the
CPU. Cells run side by side in `--jobs` processes, each with one torch thread; each finished
cell is appended to `<out>/cells.jsonl` at once, so a run stopped at any point keeps what
it finished and a rerun skips those cells.

Camera cells read `agentview_image` and `eye_in_hand_image` (conv encoder with spatial
softmax, random-shift augmentation) plus the proprio keys: where the object is has to come
from the pixels. Low-dim cells read every low-dim key, the object poses included.

    MUJOCO_GL=egl .venv/bin/python benchmarks/bench_zoo.py --tasks lift --jobs 2
    MUJOCO_GL=egl .venv/bin/python benchmarks/bench_zoo.py --quick     # smoke test, tiny sizes
    .venv/bin/python benchmarks/bench_zoo.py --table benchmarks/out/zoo   # the table again
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import json
import multiprocessing as mp
import os
import shutil
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from harness import OUT, add_out, add_quick, add_seeds, markdown_table, parser, wilson_cell

POLICIES = ("mlp", "gmm", "rnn", "transformer", "act", "diffusion")
CAMS = ("agentview_image", "eye_in_hand_image")
PROPRIO = ("eef_pos", "eef_quat", "gripper_qpos")
# One budget for every policy. The feed-forward and recurrent policies take robomimic's
# defaults at lr 1e-3 (what the head-to-head used); the attention and diffusion policies take
# 3e-4 and a clipped gradient, as transformers are prone to blow up at 1e-3 without warm-up.
LR = {"mlp": 1e-3, "gmm": 1e-3, "rnn": 1e-3, "transformer": 3e-4, "act": 3e-4, "diffusion": 3e-4}
CLIP = {"transformer": 1.0, "act": 1.0, "diffusion": 1.0}
# --quick: each policy's tiny size, the diffusion policy's with a transformer denoiser and
# fewer steps still.
QUICK_ARGS: dict[str, dict[str, Any]] = {
    "diffusion": {"denoiser": "transformer", "num_train_steps": 10, "inference_steps": 2},
}


@dataclass(frozen=True)
class Cell:
    task: str
    obs: str  # "low_dim" or "images"
    policy: str
    demos: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.task}/{self.obs}/{self.policy}/d{self.demos}/s{self.seed}"


def demo_file(work: Path, task: str, obs: str, n: int, sizes: list[int], workers: int) -> Path:
    """Oracle demos of `task`: the smaller files are prefixes of the larger ones."""
    from apprentice.collect.oracle import CollectConfig, collect_demos

    cam = obs == "images"
    previous: Path | None = None
    for size in sorted(sizes):
        path = work / "data" / f"{task}_{'cam' if cam else 'lowdim'}_{size}.hdf5"
        done = path.with_suffix(".done")
        if not done.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            if previous is not None and not path.exists():
                shutil.copyfile(previous, path)  # grow the smaller file's demos, same seeds
            collect_demos(
                CollectConfig(
                    task=task, n=size, out=str(path), workers=workers, camera=cam, progress=False
                )
            )
            done.touch()
        if size == n:
            return path
        previous = path
    raise ValueError(f"{n} demos is not one of the sizes {sizes}")


def policy_config(cell: Cell, quick: bool, overrides: list[str] | None = None) -> Any:
    from apprentice.overrides import parse_overrides
    from apprentice.policies import policy_config_class, policy_config_from_dict

    kw: dict[str, Any] = dict(QUICK_ARGS.get(cell.policy, {})) if quick else {}
    if cell.obs == "images":
        kw.update(obs_keys=PROPRIO, image_keys=CAMS, encoder="conv")
    kw.update(parse_overrides(overrides or [], "--policy-args entry"))
    base = policy_config_class(cell.policy).tiny().to_dict() if quick else {"name": cell.policy}
    return policy_config_from_dict({**base, **kw})


def run_cell(cell: Cell, data: str, args: dict[str, Any]) -> dict[str, Any]:
    """Train one cell and score its final checkpoint (in a worker process)."""
    import torch

    from apprentice.algos.trainer import TrainConfig, train
    from apprentice.evaluate.run import EvalConfig, evaluate

    torch.set_num_threads(1)
    run_dir = Path(args["out"]) / "runs" / cell.key.replace("/", "_")
    t0 = time.perf_counter()
    result = train(
        TrainConfig(
            dataset=data,
            out=str(run_dir),
            policy=policy_config(cell, args["quick"], args["policy_args"]),
            epochs=args["epochs"],
            steps_per_epoch=args["steps_per_epoch"],
            batch_size=args["batch_images"] if cell.obs == "images" else args["batch"],
            lr=LR[cell.policy],
            grad_clip=CLIP.get(cell.policy),
            seed=cell.seed,
            device=args["device"],
            threads=1,
            progress=False,
        )
    )
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = evaluate(
        EvalConfig(
            checkpoint=str(result.final_checkpoint),
            episodes=args["episodes"],
            workers=1,
            envs_per_worker=args["eval_envs"],
            out=str(run_dir / "eval.json"),
        )
    )
    last = result.metrics[-1] if result.metrics else {}
    return {
        "cell": cell.__dict__,
        "policy_args": args["policy_args"],
        "successes": int(s["successes"]),
        "episodes": int(s["episodes"]),
        "mean_max_reward": s.get("mean_max_reward"),
        "train_s": round(train_s, 1),
        "eval_s": round(time.perf_counter() - t0, 1),
        "steps_per_s": last.get("steps_per_s"),
        "train_loss": last.get("train_loss"),
        "device": str(
            torch.device(args["device"])
            if args["device"] != "auto"
            else ("cuda" if torch.cuda.is_available() else "cpu")
        ),
    }


def _worker(cell: Cell, data: str, args: dict[str, Any]) -> dict[str, Any]:
    try:
        return run_cell(cell, data, args)
    except Exception as exc:  # a failed cell is reported, the grid goes on
        return {
            "cell": cell.__dict__,
            "error": f"{type(exc).__name__}: {exc}",
            "trace": traceback.format_exc()[-2000:],
        }


def parse_cell(key: str) -> Cell:
    """`lift/images/rnn/d200/s1` (a cell's key) -> the cell."""
    parts = key.split("/")
    ok = len(parts) == 5 and parts[3][:1] == "d" and parts[4][:1] == "s"
    if not ok or parts[1] not in ("low_dim", "images") or parts[2] not in POLICIES:
        raise ValueError(f"--cells: {key!r} is not task/obs/policy/dN/sN (lift/images/rnn/d50/s2)")
    return Cell(parts[0], parts[1], parts[2], int(parts[3][1:]), int(parts[4][1:]))


def cells_of(args: argparse.Namespace) -> list[Cell]:
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


def read_cells(out: Path) -> dict[str, dict[str, Any]]:
    path = out / "cells.jsonl"
    done: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                if "error" not in r:
                    done[Cell(**r["cell"]).key] = r
    return done


def table(out: Path) -> str:
    rows: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for r in read_cells(out).values():
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
    out.mkdir(parents=True, exist_ok=True)
    done = read_cells(out)
    try:
        todo = [c for c in cells_of(args) if c.key not in done]
    except ValueError as exc:
        p.error(str(exc))
    print(f"{len(done)} cells done, {len(todo)} to run", flush=True)
    sizes: dict[tuple[str, str], set[int]] = {}  # demo counts each (task, obs) needs
    for c in todo:
        sizes.setdefault((c.task, c.obs), set()).add(c.demos)
    data: dict[tuple[str, str, int], str] = {}

    def data_of(c: Cell) -> str:
        # Collected when a group's first cell is about to start, while earlier cells train.
        if (c.task, c.obs, c.demos) not in data:
            t0 = time.perf_counter()
            group = sorted(sizes[c.task, c.obs])
            for n in group:
                data[c.task, c.obs, n] = str(
                    demo_file(out, c.task, c.obs, n, group, args.collect_workers)
                )
            print(f"demos {c.task} {c.obs}: {time.perf_counter() - t0:.0f} s", flush=True)
        return data[c.task, c.obs, c.demos]

    def may_start(slowest: float) -> bool:
        elapsed = time.perf_counter() - start
        if args.deadline is None or elapsed <= args.deadline:
            return True
        return args.stop_by is not None and 0 < slowest and elapsed + 1.1 * slowest < args.stop_by

    shared = vars(args) | {"out": str(out)}
    slowest = 0.0  # train + eval seconds of the slowest finished cell
    lock = threading.Lock()

    def record(log: TextIO, future: cf.Future[dict[str, Any]]) -> None:
        # Called as each cell ends, also while the main loop collects demos for later cells.
        r = future.result()
        with lock:
            log.write(json.dumps(r) + "\n")
            log.flush()
            os.fsync(log.fileno())
            name = Cell(**r["cell"]).key
            if "error" in r:
                print(f"FAILED {name}: {r['error']}\n{r['trace']}", flush=True)
                return
            print(
                f"{name}: {r['successes']}/{r['episodes']} (train {r['train_s']} s, "
                f"eval {r['eval_s']} s, {r['steps_per_s'] or 0:.1f} steps/s)",
                flush=True,
            )

    queue = list(todo)
    # The log outlives the pool: a cell's callback may run after `wait` has returned, and the
    # pool's exit waits for every callback. spawn: CUDA cannot be used in a forked child once
    # the parent touched it.
    with (
        open(out / "cells.jsonl", "a") as log,
        cf.ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool,
    ):
        pending: set[cf.Future[dict[str, Any]]] = set()
        while queue or pending:
            while queue and len(pending) < args.jobs and may_start(slowest):
                c = queue.pop(0)
                future = pool.submit(_worker, c, data_of(c), shared)
                future.add_done_callback(functools.partial(record, log))
                pending.add(future)
            if not pending:
                break
            finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for r in (f.result() for f in finished):
                if "error" not in r:
                    slowest = max(slowest, r["train_s"] + r["eval_s"])
    print(table(out))
    print(f"total {time.perf_counter() - start:.0f} s; {len(queue)} cells not started")


if __name__ == "__main__":
    main()
