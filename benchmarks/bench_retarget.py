"""Retargeting: the share of mocap-like tracks of oracle demos that replay to a success.

    .venv/bin/python benchmarks/bench_retarget.py                  # 50 demos of lift and stack
    .venv/bin/python benchmarks/bench_retarget.py --demos 200      # the full size
    .venv/bin/python benchmarks/bench_retarget.py --tasks lift --demos 20   # a quick check

Per task: N oracle demos (`collect`), made into tracks (`apprentice.retarget.synthetic`: one
random rigid mocap frame, 30 Hz with jittered timestamps, Gaussian tracking noise on the wrist,
the grip and the tracked objects), then retargeted (`retarget_tracks`: frame estimated from
the tracked objects, resampled to 20 Hz, smoothed, replayed closed loop from the demo's seed)
at each noise level: 0 (frame and rate only), 1 (the default: 3 mm, 1.5 deg, 0.05 grip std)
and 2. Reports the share of tracks kept (their replay succeeded) with its 95% Wilson interval
(the target at the default noise: at least 90%), the reasons the others were dropped, and the
time per track. Writes benchmarks/out/retarget/retarget.json.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.retarget import RetargetConfig, make_tracks, retarget_tracks
from harness import OUT, add_out, markdown_table, parser, success_cell, wilson_cell, write_json

WORK = OUT / "retarget"


def run_task(task: str, demos: int, levels: list[float], workers: int) -> list[dict[str, Any]]:
    source = WORK / f"{task}_{demos}.hdf5"
    collect_demos(
        CollectConfig(task=task, n=demos, out=str(source), workers=workers, progress=False)
    )
    rows = []
    for noise in levels:
        folder = WORK / f"{task}_{demos}_noise{noise:g}"
        made = make_tracks(source, folder / "tracks", noise=noise, seed=0, overwrite=True)
        t0 = time.perf_counter()
        r = retarget_tracks(
            RetargetConfig(
                tracks=str(folder / "tracks"),
                task=task,
                out=str(folder / "retargeted.hdf5"),
                overwrite=True,
                progress=False,
            )
        )
        seconds = time.perf_counter() - t0
        reasons = Counter(t.reason.split(":")[0].split(" (")[0] for t in r.tracks if not t.kept)
        rows.append(
            {
                "task": task,
                "noise": noise,
                "tracks": len(made.paths),
                "kept": r.kept,
                "dropped": dict(reasons),
                "s_per_track": seconds / len(made.paths),
                "report": str(r.report_path),
            }
        )
        print(f"{task} noise x{noise:g}: {r.kept}/{len(made.paths)} kept", flush=True)
    return rows


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--tasks", nargs="+", default=["lift", "stack"])
    p.add_argument("--demos", type=int, default=50, help="oracle demos (tracks) per task")
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 1.0, 2.0],
                   help="noise scales (1: the default tracking noise)")  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="processes collecting the demos")
    add_out(p, WORK / "retarget.json")
    args = p.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = [r for task in args.tasks for r in run_task(task, args.demos, args.noise, args.workers)]
    print()
    print(
        markdown_table(
            ["task", "noise", "kept", "95% CI", "dropped (why)", "s per track"],
            [
                [
                    r["task"],
                    f"x{r['noise']:g}",
                    success_cell(r["kept"], r["tracks"]),
                    wilson_cell(r["kept"], r["tracks"], percent=1),
                    ", ".join(f"{k}: {v}" for k, v in r["dropped"].items()) or "-",
                    f"{r['s_per_track']:.3f}",
                ]
                for r in rows
            ],
        )
    )
    write_json(args.out, {"demos": args.demos, "rows": rows})


if __name__ == "__main__":
    main()
