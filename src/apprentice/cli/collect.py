"""`apprentice collect`: record scripted-oracle demonstrations."""

from __future__ import annotations

import argparse

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.collect.oracle import CollectConfig, collect_demos
from apprentice.console import print_table
from apprentice.envs import task_names
from apprentice.files import check_writable


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(CollectConfig, ns)
    check_writable(cfg.out)
    r = collect_demos(cfg)
    print_table(
        f"collected {cfg.task} demos",
        [
            ("file", r.path),
            ("successful demos", r.successes),
            ("resumed from", r.resumed_from),
            ("attempts this run", r.attempts),
            ("failed kept", r.kept_failed),
        ],
    )


def command() -> Command:
    return Command(
        "collect",
        "record scripted-oracle demonstrations",
        CollectConfig,
        run,
        {"choices": {"task": task_names()}},
    )
