"""`apprentice dagger`: interactive imitation rounds, and their summary table."""

from __future__ import annotations

import argparse

from rich.table import Table

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import console
from apprentice.files import check_writable
from apprentice.interactive.dagger import METHODS, SCHEDULES, DaggerConfig, run_dagger
from apprentice.policies.base import policy_names
from apprentice.teleop.devices import DEVICE_NAMES


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(DaggerConfig, ns)
    check_writable(cfg.out, folder=True)
    r = run_dagger(cfg)
    table = Table(title=f"{cfg.method} on {cfg.task}: success against expert labels")
    for col in ("round", "beta", "labels", "interventions", "success", "95% CI", "return"):
        table.add_column(col)
    for h in r.history:
        ret = f"{h['mean_return']:.1f}"
        if "normalized_return" in h:
            ret += f" ({h['normalized_return']:.2f} norm.)"
        table.add_row(
            str(h["round"]),
            f"{h['beta']:.2f}",
            str(h["labels"]),
            str(h["interventions"]),
            # gymnasium tasks have no success, only a return
            "-" if "normalized_return" in h else f"{h['success_rate']:.0%}",
            "-" if "normalized_return" in h else f"{h['ci_low']:.0%}-{h['ci_high']:.0%}",
            ret,
        )
    console.print(table)
    console.print(f"run folder {r.run_dir}; aggregated demos {r.dataset}")
    if r.history and "selected_round" in r.history[-1]:
        last = r.history[-1]
        console.print(
            f"best round on {cfg.validation_episodes} validation rollouts: "
            f"{last['selected_round']} (validation {last['validation']:.3g} in the last round)"
        )
    console.print(f"learner: {r.policy}")


def command() -> Command:
    kinds = policy_names()
    return Command(
        "dagger",
        "interactive imitation: DAgger, HG-DAgger, DART (or BC) rounds with an expert labelling",
        DaggerConfig,
        run,
        {
            "choices": {
                "method": list(METHODS),
                "beta_schedule": list(SCHEDULES),
                "device": list(DEVICE_NAMES),
            }
        },
        flag_help={"train.policy": f"Learner policy kind: {', '.join(kinds)}."},
    )
