"""Benchmark apprentice's built-in tasks: oracle success and simulation speed.

    .venv/bin/python benchmarks/bench_envs.py --episodes 200
    .venv/bin/python benchmarks/bench_envs.py --episodes 200 --body arm

For each task, with the body that carries the gripper (`--body`: the floating gripper or the
7-DoF arm, see `apprentice.envs.bodies`): the oracle's success rate over seeds 0..N-1 with a
95% Wilson interval, env steps per second with low-dim observations under random actions on
one core, and the bare `mj_step` rate of the same model, so that
`env_steps/s * n_substeps / mj_steps/s` tells how much of the step time is physics. Prints a
markdown table and writes benchmarks/out/envs.json (envs_<body>.json for another body).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from apprentice.collect.record import record_episode
from apprentice.envs import make_task, task_names
from apprentice.envs.bodies import BODIES
from apprentice.envs.mujoco_task import MujocoTask
from apprentice.evaluate.metrics import wilson_interval
from harness import OUT, markdown_table, parser, success_cell, wilson_cell, write_json


def oracle_success(name: str, episodes: int, kwargs: dict[str, Any]) -> tuple[int, float]:
    """(successes, mean steps to success) of the oracle over seeds 0..episodes-1, each
    episode recorded as `apprentice collect` records it (ending at the first success)."""
    env = make_task(name, **kwargs)
    successes, lengths = 0, []
    for seed in range(episodes):
        oracle = env.oracle(np.random.default_rng(seed))
        episode = record_episode(env, oracle.act, seed=seed, source="oracle", on_reset=oracle.reset)
        if episode.success:
            successes += 1
            lengths.append(len(episode.actions))
    env.close()
    return successes, float(np.mean(lengths)) if lengths else float("nan")


def env_steps_per_s(name: str, steps: int, kwargs: dict[str, Any]) -> float:
    env = make_task(name, **kwargs)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(steps, env.action_space.shape[0]))
    actions = actions.astype(np.float32)
    env.reset(seed=0)
    start = time.perf_counter()
    for t in range(steps):
        # Random actions drift the gripper to its limits; restart every horizon as a rollout would.
        _, _, _, truncated, _ = env.step(actions[t])
        if truncated:
            env.reset(seed=t)
    return steps / (time.perf_counter() - start)


def mj_steps_per_s(name: str, env_steps: int, kwargs: dict[str, Any]) -> tuple[float, int]:
    """Bare physics rate of the task's model under the same kind of random servo targets."""
    env = make_task(name, **kwargs)
    model, data = env.model, env.data  # type: ignore[attr-defined]
    n_substeps: int = env.n_substeps  # type: ignore[attr-defined]
    actions = np.random.default_rng(0).uniform(-1, 1, size=(env_steps, env.action_space.shape[0]))
    env.reset(seed=0)
    elapsed = 0.0
    for t in range(env_steps):
        if t % env.horizon == 0:
            env.reset(seed=t)
        env._apply_action(actions[t])  # type: ignore[attr-defined]  # untimed: not physics
        start = time.perf_counter()
        mujoco.mj_step(model, data, n_substeps)
        elapsed += time.perf_counter() - start
    return env_steps * n_substeps / elapsed, n_substeps


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--episodes", type=int, default=200, help="oracle episodes per task")
    p.add_argument("--steps", type=int, default=5000, help="env steps for the speed test")
    p.add_argument("--tasks", nargs="*", default=None, help="tasks (default: all built-in ones)")
    p.add_argument(
        "--body",
        choices=sorted(BODIES),
        default="gripper",
        help="what carries the parallel-jaw gripper (default: all built-in tasks as they come; "
        "another body: the tasks that take it)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the JSON results go (default: out/envs.json, out/envs_<body>.json for "
        "another body)",
    )
    args = p.parse_args()
    if args.out is None:
        args.out = OUT / ("envs.json" if args.body == "gripper" else f"envs_{args.body}.json")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    rows: list[dict[str, Any]] = []
    # The robosuite tasks have their own benchmark (bench_robosuite_oracles.py, own venv);
    # Push-T is no MuJoCo task (its expert's rate is in results/pusht.md).
    # The gym/<id> control tasks have no oracle: bench_irl and bench_dagger measure them.
    kwargs: dict[str, Any] = {} if args.body == "gripper" else {"body": args.body}
    names = args.tasks or [
        n for n in task_names("builtin") if not kwargs or isinstance(make_task(n), MujocoTask)
    ]
    for name in names:
        successes, mean_len = oracle_success(name, args.episodes, kwargs)
        low, high = wilson_interval(successes, args.episodes)
        env_rate = env_steps_per_s(name, args.steps, kwargs)
        mj_rate, n_substeps = mj_steps_per_s(name, args.steps, kwargs)
        rows.append(
            {
                "task": name,
                "body": args.body,
                "episodes": args.episodes,
                "oracle_successes": successes,
                "oracle_success_rate": successes / args.episodes,
                "wilson95": [low, high],
                "oracle_mean_steps": mean_len,
                "env_steps_per_s": env_rate,
                "mj_steps_per_s": mj_rate,
                "n_substeps": n_substeps,
                "physics_fraction": env_rate * n_substeps / mj_rate,
            }
        )
    print(f"body: {args.body}")
    header = ["task", "oracle success", "95% Wilson", "mean steps", "env steps/s", "mj_step/s"]
    print(
        markdown_table(
            [*header, "env·substeps / mj"],
            (
                [
                    r["task"],
                    success_cell(r["oracle_successes"], r["episodes"]),
                    wilson_cell(r["oracle_successes"], r["episodes"]),
                    f"{r['oracle_mean_steps']:.1f}",
                    f"{r['env_steps_per_s']:.0f}",
                    f"{r['mj_steps_per_s']:.0f}",
                    f"{r['physics_fraction']:.2f}",
                ]
                for r in rows
            ),
        )
    )
    meta = {"mujoco": mujoco.__version__, "numpy": np.__version__, "body": args.body}
    write_json(args.out, {"meta": meta, "tasks": rows})


if __name__ == "__main__":
    main()
