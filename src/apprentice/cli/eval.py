"""`apprentice eval`: a policy's success rate on held-out initial states."""

from __future__ import annotations

import argparse
from pathlib import Path

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import print_table
from apprentice.evaluate.run import EvalConfig, evaluate
from apprentice.files import check_writable


def checkpoint_folder(checkpoint: str) -> Path | None:
    """The folder that results beside `checkpoint` (a run folder or a file) go to; None
    when `checkpoint` does not exist (loading it then says so)."""
    path = Path(checkpoint)
    if path.is_dir():
        return path
    return path.parent if path.exists() else None


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(EvalConfig, ns)
    if cfg.out:
        check_writable(cfg.out)
    elif (folder := checkpoint_folder(cfg.checkpoint)) is not None:
        check_writable(
            folder,
            flag="checkpoint folder",
            folder=True,
            hint="pass --out to write the results elsewhere",
        )
    s = evaluate(cfg)
    print_table(
        f"evaluation on {s['task']}",
        [
            ("checkpoint", s["checkpoint"]),
            ("success rate", f"{s['success_rate']:.1%} ({s['successes']}/{s['episodes']})"),
            ("95% Wilson interval", f"{s['ci_low']:.1%} - {s['ci_high']:.1%}"),
            ("mean episode length", f"{s['mean_episode_length']:.1f}"),
            ("mean best reward", f"{s['mean_max_reward']:.3f}"),
            ("results", s["results_path"]),
            ("videos", len(s["videos"])),
        ],
    )


def command() -> Command:
    return Command(
        "eval",
        "evaluate a policy on held-out initial states",
        EvalConfig,
        run,
        {"positional": ("checkpoint",)},
    )
