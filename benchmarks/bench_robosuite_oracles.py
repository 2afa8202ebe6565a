"""Benchmark the robosuite tasks (optional extra): oracle success and simulation speed.

    make robosuite   # once: builds .venv-robosuite (robosuite 1.5.2, mujoco < 3.10)
    OMP_NUM_THREADS=1 .venv-robosuite/bin/python benchmarks/bench_robosuite_oracles.py \\
        --episodes 200 --tasks Lift Stack
    .venv-robosuite/bin/python benchmarks/bench_robosuite_oracles.py --smoke

For each task: the scripted oracle's successes over seeds 0..N-1 with a 95% Wilson interval,
the mean steps to success, env steps per second while the oracle drives (oracle and
recording included: the episodes run through `apprentice collect`'s `record_episode`),
env steps per second under random actions, and the bare `mj_step` rate of the same model, so
that `env_steps/s * substeps / mj_steps/s` tells how much of robosuite's step is physics (the
rest is its Python OSC controller and observables). One core (the process is pinned to one).
Rows are merged by task into benchmarks/out/robosuite_oracles.json, so the tasks can be run in
separate invocations of a few minutes each.

`--smoke` is the small version that `make bench` runs when .venv-robosuite exists: a few
steps of each task and of its oracle, a get/set_state replay, and exit status 1 on failure.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from typing import Any

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from apprentice.collect.record import record_episode
from apprentice.envs import make_task
from apprentice.envs.robosuite import ROBOSUITE_TASKS, robosuite_available
from apprentice.evaluate.metrics import wilson_interval
from harness import OUT, add_out, markdown_table, parser, success_cell, wilson_cell, write_json


def oracle_run(name: str, episodes: int) -> dict[str, Any]:
    """Successes, mean steps to success and oracle-driven steps/s over seeds 0..episodes-1."""
    env = make_task(name)
    successes, lengths, steps = 0, [], 0
    failed: list[int] = []
    start = time.perf_counter()
    for seed in range(episodes):
        oracle = env.oracle(np.random.default_rng(seed))
        episode = record_episode(env, oracle.act, seed=seed, source="oracle", on_reset=oracle.reset)
        steps += len(episode.actions)
        if episode.success:
            successes += 1
            lengths.append(len(episode.actions))
        else:
            failed.append(seed)
    elapsed = time.perf_counter() - start
    env.close()
    return {
        "successes": successes,
        "mean_steps": float(np.mean(lengths)) if lengths else float("nan"),
        "oracle_steps_per_s": steps / elapsed,
        "failed_seeds": failed,
    }


def env_steps_per_s(name: str, steps: int) -> float:
    env = make_task(name)
    shape = (steps, *env.action_space.shape)
    actions = np.random.default_rng(0).uniform(-1, 1, size=shape).astype(np.float32)
    env.reset(seed=0)
    start = time.perf_counter()
    for t in range(steps):
        _, _, _, truncated, _ = env.step(actions[t])
        if truncated:
            env.reset(seed=t)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def mj_steps_per_s(name: str, steps: int) -> tuple[float, int]:
    """Bare `mj_step` rate of the task's compiled model, from its reset state."""
    import mujoco

    env = make_task(name)
    env.reset(seed=0)
    sim = env.env.sim  # type: ignore[attr-defined]
    model, data = sim.model._model, sim.data._data
    n_substeps = round(1.0 / (env.control_freq * model.opt.timestep))  # 25 of 2 ms
    start = time.perf_counter()
    mujoco.mj_step(model, data, steps * n_substeps)
    rate = steps * n_substeps / (time.perf_counter() - start)
    env.close()
    return rate, n_substeps


def smoke(tasks: list[str]) -> None:
    """Five recorded steps of each task's oracle, and an exact get/set_state replay."""
    for name in tasks:
        env = make_task(name)
        oracle = env.oracle(np.random.default_rng(0))
        steps = itertools.count(1)
        episode = record_episode(
            env,
            oracle.act,
            seed=0,
            source="oracle",
            on_reset=oracle.reset,
            should_stop=lambda: next(steps) >= 5,
        )
        obs = {k: v[-1] for k, v in episode.next_obs.items()}
        state = env.get_state()
        actions = np.random.default_rng(1).uniform(-1, 1, size=(3, *env.action_space.shape))
        first = [env.step(a)[0] for a in actions]
        env.set_state(state)
        again = [env.step(a)[0] for a in actions]
        for a, b in zip(first, again, strict=True):
            for key in a:
                if not np.array_equal(a[key], b[key]):
                    sys.exit(f"{name}: replay from get_state differs in {key}")
        env.close()
        print(f"{name}: ok ({', '.join(f'{k}{v.shape}' for k, v in obs.items())})")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--episodes", type=int, default=200, help="oracle episodes per task")
    p.add_argument("--steps", type=int, default=1000, help="env steps for the speed test")
    p.add_argument("--tasks", nargs="*", default=list(ROBOSUITE_TASKS), help="robosuite tasks")
    p.add_argument("--smoke", action="store_true", help="a few steps of each task and oracle")
    add_out(p, OUT / "robosuite_oracles.json")
    args = p.parse_args()
    if not robosuite_available():
        sys.exit(
            "robosuite is not usable in this environment: run `make robosuite` and use "
            ".venv-robosuite/bin/python"
        )
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    if args.smoke:
        smoke(args.tasks)
        return
    rows: dict[str, dict[str, Any]] = {}
    if args.out.exists():
        rows = {r["task"]: r for r in json.loads(args.out.read_text()).get("tasks", [])}
    for name in args.tasks:
        run = oracle_run(name, args.episodes)
        low, high = wilson_interval(run["successes"], args.episodes)
        env_rate = env_steps_per_s(name, args.steps)
        mj_rate, n_substeps = mj_steps_per_s(name, args.steps)
        rows[name] = {
            "task": name,
            "episodes": args.episodes,
            **run,
            "success_rate": run["successes"] / args.episodes,
            "wilson95": [low, high],
            "env_steps_per_s": env_rate,
            "mj_steps_per_s": mj_rate,
            "n_substeps": n_substeps,
            "physics_fraction": env_rate * n_substeps / mj_rate,
        }
        r = rows[name]
        print(
            f"{name}: {r['successes']}/{r['episodes']} successes "
            f"[{low:.3f}, {high:.3f}], {r['mean_steps']:.1f} steps, "
            f"{r['oracle_steps_per_s']:.0f} steps/s with oracle, {env_rate:.0f} steps/s random, "
            f"failed seeds {r['failed_seeds']}",
            flush=True,
        )
    header = ["task", "oracle success", "95% Wilson", "mean steps", "steps/s (oracle)"]
    header += ["steps/s (random)", "mj_step/s", "env·substeps / mj"]
    table = markdown_table(
        header,
        (
            [
                name,
                success_cell(rows[name]["successes"], rows[name]["episodes"]),
                wilson_cell(rows[name]["successes"], rows[name]["episodes"]),
                f"{rows[name]['mean_steps']:.1f}",
                f"{rows[name]['oracle_steps_per_s']:.0f}",
                f"{rows[name]['env_steps_per_s']:.0f}",
                f"{rows[name]['mj_steps_per_s']:.0f}",
                f"{rows[name]['physics_fraction']:.2f}",
            ]
            for name in args.tasks
        ),
    )
    print(f"\n{table}")
    import mujoco
    import robosuite

    meta = {"mujoco": mujoco.__version__, "robosuite": robosuite.__version__}
    write_json(args.out, {"meta": meta, "tasks": [rows[k] for k in sorted(rows)]})


if __name__ == "__main__":
    main()
