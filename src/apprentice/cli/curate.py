"""`apprentice inspect`, `replay` and `filter`: look at demos, replay them, curate them.

Each `*_command()` returns the (name, help, config, function, extra) tuple that
`apprentice.cli.main` registers, as `apprentice.interactive.cli.dagger_command` does.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Command = tuple[str, str, type, Callable[[argparse.Namespace], None], dict[str, Any]]

MAX_SCORE_ROWS = 40
"""Demos listed in the printed quality table; --json holds every one."""


@dataclass(frozen=True)
class InspectConfig:
    """Summarize a dataset; with --scores, also score each demo's quality."""

    file: str = ""
    """An HDF5 dataset (the positional argument)."""
    scores: bool = False
    """Add the per-demo quality table (idle, jerk, path, chatter, grasps, outliers, score)."""
    json: str | None = None
    """Write the summary and every demo's quality scores to this JSON file."""
    oracle: bool = True
    """With scores: compare path lengths with the task oracle's from each demo's start."""
    progress: bool = True
    """Show a progress bar while the oracle is replayed."""


def cmd_inspect(ns: argparse.Namespace) -> None:
    from apprentice.cli.args import dataclass_from_args
    from apprentice.cli.main import console
    from apprentice.collect.replay import score_file
    from apprentice.data.inspect import summarize
    from apprentice.data.quality import format_scores

    cfg = dataclass_from_args(InspectConfig, ns)
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


def inspect_command() -> Command:
    """`apprentice inspect FILE [--scores] [--json out.json]` (main adds FILE)."""
    return (
        "inspect",
        "print per-demo and per-key statistics of a dataset, and with --scores its quality",
        InspectConfig,
        cmd_inspect,
        {"skip": ("file",)},
    )


def cmd_replay(ns: argparse.Namespace) -> None:
    import numpy as np

    from apprentice.cli.args import dataclass_from_args
    from apprentice.cli.main import print_table
    from apprentice.collect.replay import ReplayConfig, replay

    cfg = dataclass_from_args(ReplayConfig, ns)
    r = replay(cfg)
    rows: list[tuple[str, Any]] = [("demo", f"{r.demo} ({r.steps} steps)")]
    if r.max_state_error is not None:
        rows.append(("from states: max state error", f"{r.max_state_error:.3g}"))
    if r.max_obs_error is not None:
        rows.append(("from states: max obs error", f"{r.max_obs_error:.3g}"))
    if r.eef_error is not None and r.object_error is not None:
        eef, obj = r.eef_error, r.object_error
        if len(eef):
            rows.append(
                ("from actions: eef error mean / max (m)", f"{eef.mean():.3g} / {eef.max():.3g}")
            )
            rows.append(("from actions: object error max (m)", f"{obj.max():.3g}"))
            off = np.flatnonzero(eef > 1e-3)
            rows.append(("first step off by > 1 mm", int(off[0]) + 1 if len(off) else "none"))
        rows.append(
            (
                "success stored / replayed",
                f"{r.stored_success} / {r.replayed_success}"
                + ("" if r.success_matches is not False else "  (MISMATCH)"),
            )
        )
    if r.video is not None:
        rows.append(("video", str(r.video)))
    print_table(f"replay of {cfg.file}", rows)


def replay_command() -> Command:
    """`apprentice replay FILE --demo N [--mode states|actions|both] [--video out.mp4]`."""
    from apprentice.collect.replay import REPLAY_MODES, ReplayConfig

    return (
        "replay",
        "replay a demo from its states (exact) and its actions (reports divergence), to video",
        ReplayConfig,
        cmd_replay,
        {"positional": ("file",), "choices": {"mode": list(REPLAY_MODES)}},
    )


def cmd_filter(ns: argparse.Namespace) -> None:
    from rich.markup import escape

    from apprentice.cli.args import dataclass_from_args
    from apprentice.cli.main import console, print_table
    from apprentice.collect.replay import score_file
    from apprentice.data.curate import FilterConfig, curate, demos_to_score

    cfg = dataclass_from_args(FilterConfig, ns)
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


def filter_command() -> Command:
    """`apprentice filter FILE --min-score S [--max-idle ...] [--name curated] [--split]`."""
    from apprentice.data.curate import FilterConfig

    return (
        "filter",
        "score each demo's quality and write a mask of the ones to keep (demos untouched)",
        FilterConfig,
        cmd_filter,
        {"positional": ("file",)},
    )
