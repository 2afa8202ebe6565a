"""`apprentice replay FILE --demo N [--mode states|actions|both] [--video out.mp4]`."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.collect.replay import REPLAY_MODES, ReplayConfig, replay
from apprentice.console import print_table
from apprentice.files import check_writable


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(ReplayConfig, ns)
    if cfg.video:
        check_writable(cfg.video, flag="--video")
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


def command() -> Command:
    return Command(
        "replay",
        "replay a demo from its states (exact) and its actions (reports divergence), to video",
        ReplayConfig,
        run,
        {"positional": ("file",), "choices": {"mode": list(REPLAY_MODES)}},
    )
