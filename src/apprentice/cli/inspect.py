"""`apprentice inspect FILE [--scores] [--json out.json]`: a dataset's statistics and quality."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.collect.replay import score_file
from apprentice.console import console
from apprentice.data.inspect import summarize
from apprentice.data.quality import format_scores
from apprentice.errors import ApprenticeError
from apprentice.files import check_writable

MAX_SCORE_ROWS = 40
"""Demos listed in the printed quality table; --json holds every one."""


@dataclass(frozen=True)
class InspectConfig:
    """Summarize a dataset; with --scores, also score each demo's quality."""

    file: str = ""
    """A dataset: an HDF5 file (robomimic or Isaac Lab layout) or a LeRobot folder."""
    hub: str | None = None
    """Inspect this Hugging Face Hub dataset (OWNER/NAME) instead of FILE."""
    scores: bool = False
    """Add the per-demo quality table (idle, jerk, path, chatter, grasps, outliers, score)."""
    json: str | None = None
    """Write the summary and every demo's quality scores to this JSON file."""
    oracle: bool = True
    """With scores: compare path lengths with the task oracle's from each demo's start."""
    progress: bool = True
    """Show a progress bar while the oracle is replayed."""


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(InspectConfig, ns)
    if cfg.hub:
        from apprentice.data.hub import fetch_hub

        if cfg.file:
            raise ApprenticeError(f"give FILE or --hub, not both (--hub {cfg.hub})")
        cfg = dataclasses.replace(cfg, file=str(fetch_hub(cfg.hub)))
    if not cfg.file:
        raise ApprenticeError("give the dataset to inspect: FILE (or --hub REPO_ID)")
    if cfg.json:
        check_writable(cfg.json, flag="--json")
    summary = summarize(cfg.file)
    console.print(summary, markup=False, highlight=False)
    if not (cfg.scores or cfg.json):
        return
    s = score_file(cfg.file, oracle=cfg.oracle, progress=cfg.progress)
    lines = ["", "quality (score 1 = no defect found; apprentice.data.quality documents each)"]
    lines += [format_scores(s, limit=MAX_SCORE_ROWS)]
    lines += [f"note: {k}: {v}" for k, v in s.notes.items()]
    order = s.score.argsort()[:5]
    lines.append("lowest: " + ", ".join(f"{s.names[i]} {s.score[i]:.2f}" for i in order))
    console.print("\n".join(lines), markup=False, highlight=False)
    if cfg.json:
        out = Path(cfg.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps({"file": cfg.file, "notes": s.notes, "demos": s.records()}, indent=1)
        )
        console.print(f"wrote {out}", markup=False, highlight=False)


def command() -> Command:
    return Command(
        "inspect",
        "print per-demo and per-key statistics of a dataset, and with --scores its quality",
        InspectConfig,
        run,
        {"positional": ("file",)},
    )
