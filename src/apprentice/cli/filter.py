"""`apprentice filter FILE --min-score S [--max-idle ...] [--name curated] [--split]`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markup import escape

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.collect.replay import score_file
from apprentice.console import console, print_table
from apprentice.data.curate import FilterConfig, curate, demos_to_score
from apprentice.files import check_writable


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(FilterConfig, ns)
    if not cfg.dry_run and Path(cfg.file).is_file():  # its masks are written into the file
        check_writable(cfg.file, flag="dataset")
    demos = demos_to_score(cfg.file, cfg.from_mask)
    scores = score_file(cfg.file, demos, oracle=cfg.oracle, progress=cfg.progress)
    r = curate(cfg, scores)
    for name, why in r.dropped.items():
        console.print(
            f"drop {name}: {'; '.join(why)}", markup=False, highlight=False, soft_wrap=True
        )
    rows: list[tuple[str, Any]] = [
        ("demos scored", len(scores.names)),
        ("kept", len(r.kept)),
        ("dropped", len(r.dropped)),
    ]
    rows += [(f"mask/{m}", f"{n} demos") for m, n in r.masks.items()]
    rows += [(f"note: {k}", escape(v)) for k, v in scores.notes.items()]
    if cfg.dry_run:
        rows.append(("dry run", "nothing written"))
    print_table(f"filtered {cfg.file} (--min-score {cfg.min_score})", rows)


def command() -> Command:
    return Command(
        "filter",
        "score each demo's quality and write a mask of the ones to keep (demos untouched)",
        FilterConfig,
        run,
        {"positional": ("file",)},
    )
