"""`apprentice train`: a behavioral-cloning policy trained on a dataset."""

from __future__ import annotations

import argparse

from apprentice.algos.config import TrainConfig
from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import print_table
from apprentice.files import check_writable
from apprentice.pipelines.train import run_train


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(TrainConfig, ns)
    check_writable(cfg.out, folder=True)
    result = run_train(cfg)
    print_table(f"trained {cfg.policy.name} on {cfg.dataset}", list(result.items()))


def command() -> Command:
    return Command(
        "train",
        "train a behavioral-cloning policy on a dataset",
        TrainConfig,
        run,
        {"required": ("dataset", "out")},
    )
