"""Sweep throughput: cells per hour of `apprentice sweep` with 2 workers against 1.

Each run is the command itself, in a fresh folder, on the same small grid: its demos
collected afresh, then every cell a real collect -> train -> evaluate (by default the
default MLP, 1024x1024, trained for 1,000 steps with one torch thread on 20 lift demos and
scored on 20 held-out episodes). Runs with --workers 1 and --workers 2 alternate, round
after round (the order flipped every round), so that both see the same load; a round's
ratio is the 2-worker run's cells per hour over the 1-worker run's. The bound is 2x (two
cells side by side on two cores); what keeps it below is the part that does not run side
by side (the demo collection, the start-up) and other work on the machine. Target: >= 1.8x.

    .venv/bin/python benchmarks/bench_sweep.py                # 3 rounds of 6 cells
    .venv/bin/python benchmarks/bench_sweep.py --quick        # smoke test, tiny sizes
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import OUT, add_out, add_quick, markdown_table, parser, ratio, write_json

WORKERS = (1, 2)
TARGET = 1.8


def grid_flags(args: Any) -> list[str]:
    """The sweep's flags but --workers and --out: the grid both runs share."""
    return [
        *("--tasks", "lift", "--policies", "mlp", "--demos", str(args.demos)),
        *("--seeds", *map(str, range(args.cells)), "--episodes", str(args.episodes)),
        *("--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps_per_epoch)),
        *("--batch-size", str(args.batch_size), "--policy-args", *args.policy_args),
    ]


def run_sweep(flags: list[str], workers: int, out: Path) -> dict[str, Any]:
    """One `apprentice sweep` run in a fresh `out`: its wall-clock time and cells per hour."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "apprentice.cli.main", "sweep", *flags]
    t0 = time.perf_counter()
    r = subprocess.run(
        [*cmd, "--workers", str(workers), "--out", str(out)], capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"sweep with --workers {workers} failed:\n{r.stderr[-3000:]}")
    cells = len((out / "cells.jsonl").read_text().splitlines())
    collect = re.search(r"^demos .*: (\d+) s$", r.stdout, re.MULTILINE)
    return {
        "workers": workers,
        "wall_s": round(wall, 2),
        "cells": cells,
        "cells_per_hour": 3600 * cells / wall,
        "collect_s": int(collect.group(1)) if collect else None,
    }


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=3, help="alternated pairs of runs")
    p.add_argument("--cells", type=int, default=6, help="cells of the grid (training seeds)")
    p.add_argument("--demos", type=int, default=20, help="lift demos every cell trains on")
    p.add_argument("--episodes", type=int, default=20, help="held-out rollouts per cell")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument(
        "--policy-args", nargs="*", default=[], help="the MLP's config (default: its own)"
    )
    p.add_argument("--work", type=Path, default=OUT / "sweep_runs", help="the runs' folders")
    add_out(p, OUT / "sweep.json")
    add_quick(p, help="1 round of 2 tiny cells: checks the script works")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.cells, args.demos, args.episodes = 1, 2, 2, 1
        args.epochs, args.steps_per_epoch, args.batch_size = 1, 2, 8
        args.policy_args = ["hidden_dims=[16]"]
    flags = grid_flags(args)
    load = [os.getloadavg()[0]]
    rounds: list[dict[int, dict[str, Any]]] = []
    for i in range(args.rounds):
        order = WORKERS if i % 2 == 0 else WORKERS[::-1]
        runs = {w: run_sweep(flags, w, args.work / f"r{i}_w{w}") for w in order}
        rounds.append(runs)
        print(
            f"round {i}: " + ", ".join(f"{w} worker(s) {runs[w]['wall_s']:.0f} s" for w in WORKERS),
            flush=True,
        )
    load.append(os.getloadavg()[0])
    per_hour = {w: [r[w]["cells_per_hour"] for r in rounds] for w in WORKERS}
    speedup = ratio(per_hour[2], per_hour[1])
    rows = []
    for i, r in enumerate(rounds):
        runs = [f"{r[w]['cells_per_hour']:.0f} ({r[w]['wall_s']:.0f} s)" for w in WORKERS]
        rows.append([i, *runs, f"{r[2]['cells_per_hour'] / r[1]['cells_per_hour']:.2f}"])
    print(
        markdown_table(
            ["round", "1 worker: cells/h (wall)", "2 workers: cells/h (wall)", "ratio"], rows
        )
    )
    print(
        f"2 workers / 1 worker: {speedup} (median, min-max over {args.rounds} rounds); "
        f"target >= {TARGET}; {args.cells} cells a run"
    )
    write_json(
        args.out,
        {
            "grid": flags,
            "rounds": [{str(w): r[w] for w in WORKERS} for r in rounds],
            "cells_per_hour_median": {str(w): statistics.median(per_hour[w]) for w in WORKERS},
            "ratio": {"median": speedup.median, "low": speedup.low, "high": speedup.high},
            "target": TARGET,
            "bound": 2.0,
            "cpus": os.cpu_count(),
            "load_average_1min": {"start": load[0], "end": load[1]},
            "quick": args.quick,
        },
    )


if __name__ == "__main__":
    main()
