"""The Push-T expert (apprentice.envs.pusht.PushTOracle) on held-out initial states.

Runs the planning expert alone, one episode per seed, from the seeds evaluation uses
(10^9 onwards, never a demo's), and reports its success rate with a Wilson interval, the
mean of each episode's best reward (Diffusion Policy's Push-T score), the episode length
and the expert's wall time per episode on one core.

    .venv/bin/python benchmarks/bench_pusht_expert.py --episodes 50
"""

from __future__ import annotations

import time

import numpy as np

from apprentice.collect.record import record_episode
from apprentice.envs import make_task
from apprentice.envs.seeds import held_out_seeds
from apprentice.evaluate.metrics import success_rate
from harness import OUT, add_out, parser, wilson_cell, write_json


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--episodes", type=int, default=50)
    add_out(p, OUT / "pusht_expert.json")
    args = p.parse_args()
    task = make_task("pusht")
    rows = []
    for seed in held_out_seeds(args.episodes):
        t0 = time.perf_counter()
        oracle = task.oracle(np.random.default_rng(seed))
        episode = record_episode(
            task, oracle.act, seed=seed, source="oracle", on_reset=oracle.reset
        )
        rows.append(
            {
                "seed": seed,
                "success": episode.success,
                "max_reward": float(episode.rewards.max()),
                "length": len(episode.actions),
                "seconds": time.perf_counter() - t0,
            }
        )
    k = sum(r["success"] for r in rows)
    sr = success_rate(k, len(rows))
    summary = {
        "successes": k,
        "episodes": len(rows),
        "ci": [sr.ci_low, sr.ci_high],
        "mean_max_reward": float(np.mean([r["max_reward"] for r in rows])),
        "mean_length": float(np.mean([r["length"] for r in rows])),
        "seconds_per_episode": float(np.mean([r["seconds"] for r in rows])),
        "episodes_detail": rows,
    }
    write_json(args.out, summary, quiet=True)
    print(
        f"expert: {k}/{len(rows)} = {k / len(rows):.1%} "
        f"(95% Wilson {wilson_cell(k, len(rows), percent=1)}), "
        f"mean best reward {summary['mean_max_reward']:.3f}, "
        f"mean length {summary['mean_length']:.1f} steps, "
        f"{summary['seconds_per_episode']:.2f} s per episode"
    )


if __name__ == "__main__":
    main()
