"""`apprentice harden`: sweep a policy, record oracle demos where it fails, retrain, sweep
again."""

from __future__ import annotations

import argparse

from rich.table import Table

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.cli.eval import check_output
from apprentice.console import console
from apprentice.files import check_writable
from apprentice.harden import HardenConfig, harden
from apprentice.harden_report import table_rows


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(HardenConfig, ns)
    if cfg.out:
        check_writable(cfg.out, folder=True)
    else:  # the run goes to <the checkpoint's run folder>/harden
        check_output(None, cfg.checkpoint, "harden run")
    r = harden(cfg)
    s = r.summary
    table = Table(title=f"success along perturbation levels on {s['task']}, before and after")
    for column in ("axis", "level", "before", "after"):
        table.add_column(column)
    for row in table_rows(s):
        table.add_row(*row)
    console.print(table)
    console.print(s["outcome"])
    if s["hardened_checkpoint"]:
        console.print(f"retrained policy: {s['hardened_checkpoint']}")
    ran = ", ".join(r.stages_run) or "none (every stage was done)"
    console.print(f"stages run now: {ran}; report: {r.report}")


def command() -> Command:
    return Command(
        "harden",
        "sweep a policy along perturbation axes, record oracle demos where it fails, "
        "retrain warm-started, sweep again",
        HardenConfig,
        run,
        {"positional": ("checkpoint",)},
    )
