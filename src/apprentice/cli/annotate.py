"""`apprentice annotate`: recompute a dataset's datagen_info by replaying its states."""

from __future__ import annotations

import argparse
from pathlib import Path

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import print_table
from apprentice.files import check_writable
from apprentice.generate.annotate import AnnotateConfig, annotate


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(AnnotateConfig, ns)
    if Path(cfg.source).is_file():  # annotated in place; a missing file is annotate's error
        check_writable(cfg.source, flag="dataset")
    r = annotate(cfg)
    print_table(
        f"annotated {r.path}",
        [("demos annotated", r.annotated), ("demos kept as they were", r.kept)],
    )


def command() -> Command:
    return Command(
        "annotate",
        "recompute a dataset's datagen_info (poses, subtask signals) by replaying its states",
        AnnotateConfig,
        run,
        {"positional": ("source",)},
    )
