"""Evaluation throughput: `evaluate` with W workers against one process, end to end.

Targets: `apprentice eval --workers W` is never slower than one worker (end to end, pool
start included, in a fresh process as the command runs); a started pool gives rollouts/s
>= 0.8 x W x the single-process rate. Every figure is measured in one run, in alternated
rounds, on the same checkpoint (a freshly initialized BC-RNN by default: the policy's quality
does not matter for throughput, only its cost per step, so every episode runs to the
horizon, the worst case). Rows:

- 1 (in process): `evaluate(workers=1)` in a fresh interpreter;
- W, evaluate's choice: `evaluate(workers=W)` in a fresh interpreter, pool start included
  (it starts a pool only where the pool pays for its start-up; `workers_used` says which);
- W, pool started for the call: `make_pool(W)` + `evaluate(pool=...)` in a fresh interpreter
  (the fork server's preload and the workers' start inside the timing);
- W, spawned pool started for the call: the same with spawned workers, each importing torch
  and mujoco itself (the peer of the fork server);
- W, started pool: the steady state, workers already up, as when evaluations share a pool.

The fresh-interpreter rows time the `evaluate` call (and the pool's start), not the
interpreter's own imports, which every row pays alike.

    .venv/bin/python benchmarks/bench_eval.py --task lift --episodes 20 --workers 2 --repeats 3
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Executor
from pathlib import Path

import torch

from apprentice.data.normalize import Normalizer
from apprentice.envs import make_task
from apprentice.envs.base import task_spec
from apprentice.envs.pool import make_pool
from apprentice.evaluate.run import EvalConfig, evaluate
from apprentice.policies.base import policy_config_from_dict
from apprentice.policies.checkpoint import save_checkpoint
from harness import OUT, Ratio, add_out, markdown_table, parser, ratio, write_json

# One evaluation in a fresh interpreter: prints episodes, seconds, workers_used.
_FRESH = """
import json, sys, time
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
import torch
from apprentice.envs.pool import _init_worker, make_pool
from apprentice.evaluate.run import EvalConfig, evaluate
ckpt, episodes, workers, mode, out = sys.argv[1:6]
torch.set_num_threads(1)
cfg = EvalConfig(checkpoint=ckpt, episodes=int(episodes), workers=int(workers), out=out)
t0 = time.perf_counter()
if mode == "choice":
    s = evaluate(cfg)
elif mode == "forkserver":
    with make_pool(cfg.workers) as pool:
        s = evaluate(cfg, pool=pool)
else:
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(cfg.workers, mp_context=ctx, initializer=_init_worker) as pool:
        s = evaluate(cfg, pool=pool)
print(json.dumps([s["episodes"], time.perf_counter() - t0, s["workers_used"]]))
"""

ROWS = ("1", "choice", "forkserver", "spawn", "started")


def make_checkpoint(task_name: str, policy: str, path: Path) -> None:
    task = make_task(task_name)
    spec = task_spec(task)
    normalizer = Normalizer.identity(spec)
    cfg = policy_config_from_dict({"name": policy})
    save_checkpoint(path, cfg.build(spec, normalizer.state_dict()), env_args=task.env_args)


def fresh(ckpt: Path, episodes: int, workers: int, mode: str, out: Path) -> tuple[float, int]:
    """rollouts/s and workers used of one evaluation in a fresh interpreter."""
    argv = [str(ckpt), str(episodes), str(workers), mode, str(out)]
    done = subprocess.run(
        [sys.executable, "-c", _FRESH, *argv], capture_output=True, text=True, check=True
    )
    n, seconds, used = json.loads(done.stdout.strip().splitlines()[-1])
    return n / seconds, int(used)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--task", default="lift")
    p.add_argument("--policy", default="rnn")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    add_out(p, OUT / "eval.json", flag="--json")
    args = p.parse_args()
    # The single-process rate is one process on one core, as each pool worker is.
    torch.set_num_threads(1)
    rates: dict[str, list[float]] = {row: [] for row in ROWS}
    used: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "policy.pt"
        make_checkpoint(args.task, args.policy, ckpt)
        out = Path(tmp) / "r.json"

        def started(pool: Executor) -> float:
            cfg = EvalConfig(
                checkpoint=str(ckpt), episodes=args.episodes, workers=args.workers, out=str(out)
            )
            t0 = time.perf_counter()
            s = evaluate(cfg, pool=pool)
            return float(s["episodes"]) / (time.perf_counter() - t0)

        with make_pool(args.workers) as pool:
            started(pool)  # start the workers and load the policy in each
            for round_index in range(args.repeats):
                # ABBA: every other round runs the rows in reverse, so that a drift in the
                # machine's load during a round does not favour one row.
                order = ROWS if round_index % 2 == 0 else ROWS[::-1]
                for row in order:
                    if row == "started":
                        rates[row].append(started(pool))
                        continue
                    workers = 1 if row == "1" else args.workers
                    mode = "choice" if row == "1" else row
                    rate, workers_used = fresh(ckpt, args.episodes, workers, mode, out)
                    rates[row].append(rate)
                    if row == "choice":
                        used.append(workers_used)
    ratios = {row: ratio(rates[row], rates["1"]) for row in ROWS[1:]}
    result = {
        "task": args.task,
        "policy": args.policy,
        "episodes": args.episodes,
        "workers": args.workers,
        "rollouts_per_s": rates,
        "workers_used_by_choice": used,
        "speedup": {row: r.median for row, r in ratios.items()},
        "speedup_min": {row: r.low for row, r in ratios.items()},
        "speedup_max": {row: r.high for row, r in ratios.items()},
        "speedup_median": ratios["started"].median,
        "speedup_end_to_end_median": ratios["choice"].median,
    }
    write_json(args.json, result)
    w = args.workers
    labels = {
        "1": "1 (in process)",
        "choice": f"{w}, evaluate's choice, end to end (workers used: {sorted(set(used))})",
        "forkserver": f"{w}, fork-server pool started for the call",
        "spawn": f"{w}, spawned pool started for the call",
        "started": f"{w}, started pool",
    }
    print(f"{args.task}, {args.policy}, {args.episodes} episodes, {args.repeats} rounds")
    rows = [
        [labels[row], f"{statistics.median(rates[row]):.2f}", ratios.get(row, Ratio([1.0]))]
        for row in ROWS
    ]
    header = ["workers", "rollouts/s (median)", "speedup vs 1 (median, min-max)"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
