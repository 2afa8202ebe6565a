"""`apprentice irl`: run an inverse-RL or adversarial-imitation algorithm, print its curve."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import console
from apprentice.files import check_writable
from apprentice.irl.common import ALGOS, IRLConfig
from apprentice.irl.run import run_irl


def _fmt(row: dict[str, Any], key: str, spec: str) -> str:
    value = row.get(key)
    return "-" if value is None else format(value, spec)


def final_lines(final: dict[str, Any]) -> list[str]:
    """The algorithm-specific results of summary.json worth a line on the console: whether
    feature matching converged (apprenticeship, MaxEnt), the learned reward's correlation
    with the true one (MaxEnt on a gridworld)."""
    lines = []
    if "converged" in final:
        line = "converged" if final["converged"] else "did not converge"
        iterations = final.get("iterations", final.get("iteration"))
        if iterations is not None:
            line += f" after {iterations} iterations"
        distance = final.get("relative_distance", final.get("distance"))
        if distance is not None:
            kind = "relative " if "relative_distance" in final else ""
            line += f" (feature-expectation {kind}distance {distance:.3g})"
        lines.append(line)
    if "reward_correlation" in final:
        lines.append(
            f"learned reward vs the true reward: correlation {final['reward_correlation']:.3f}"
        )
    return lines


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(IRLConfig, ns)
    check_writable(cfg.out, folder=True)
    r = run_irl(cfg)
    table = Table(title=f"{cfg.algo} on {cfg.task}: the learner on held-out initial states")
    for col in ("env steps", "return", "normalized", "success", "D(expert) acc", "wall s"):
        table.add_column(col)
    for h in r.history:
        table.add_row(
            _fmt(h, "env_steps", "d"),
            _fmt(h, "mean_return", ".1f"),
            _fmt(h, "normalized_return", ".2f"),
            _fmt(h, "success_rate", ".0%"),
            _fmt(h, "acc_expert", ".2f"),
            _fmt(h, "wall_s", ".0f"),
        )
    console.print(table)
    for line in final_lines(r.final):
        console.print(f"{cfg.algo}: {line}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"run folder {r.run_dir}")


def command() -> Command:
    return Command(
        "irl",
        "inverse RL and adversarial imitation: apprenticeship, MaxEnt, GAIL, AIRL, GAIfO, "
        "BCO, BC+RL",
        IRLConfig,
        run,
        {"choices": {"algo": list(ALGOS), "rl_algo": ["auto", "ppo", "sac"]}},
    )
