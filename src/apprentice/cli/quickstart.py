"""`apprentice quickstart`: collect lift demos, train BC-RNN, evaluate, write a report."""

from __future__ import annotations

import argparse

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import print_table
from apprentice.files import check_writable
from apprentice.pipelines.quickstart import QuickstartConfig, quickstart


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(QuickstartConfig, ns)
    # Without --out the run goes to a new folder under runs/.
    check_writable(cfg.out or "runs", folder=True)
    result = quickstart(cfg)
    print_table("quickstart", list(result.items()))


def command() -> Command:
    return Command(
        "quickstart",
        "collect lift demos, train BC-RNN, evaluate, write a report",
        QuickstartConfig,
        run,
        {},
    )
