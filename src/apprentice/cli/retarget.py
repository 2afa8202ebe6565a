"""`apprentice retarget`: tracked wrist poses (motion capture) -> demos of a task; with
--make-tracks, mocap-like tracks from oracle demos."""

from __future__ import annotations

import argparse
from pathlib import Path

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import print_table
from apprentice.envs import task_names
from apprentice.errors import ApprenticeError
from apprentice.files import check_writable
from apprentice.retarget.run import (
    ALIGNMENTS,
    RETARGET_FAMILIES,
    RetargetConfig,
    report_path,
    retarget_tracks,
)
from apprentice.retarget.synthetic import make_tracks


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(RetargetConfig, ns)
    if cfg.make_tracks:
        check_writable(cfg.out, folder=True)
        made = make_tracks(
            cfg.make_tracks, cfg.out, noise=cfg.noise, rate=cfg.track_rate, seed=cfg.seed,
            overwrite=cfg.overwrite,
        )  # fmt: skip
        print_table(
            f"mocap-like tracks from {cfg.make_tracks}",
            [
                ("folder", cfg.out),
                ("tracks", len(made.paths)),
                ("rate", f"{cfg.track_rate:g} Hz, jittered"),
                ("noise", f"x{cfg.noise:g} (3 mm, 1.5 deg, 0.05 grip std at x1)"),
                ("true frame", made.frame_path),
            ],
        )
        return
    check_writable(cfg.out)
    check_writable(report_path(cfg.out))
    r = retarget_tracks(cfg)
    print_table(
        f"tracks of {cfg.tracks}",
        [
            (Path(t.track).name, f"kept as {t.demo} ({t.steps} steps)" if t.kept else t.reason)
            for t in r.tracks
        ],
    )
    print_table(
        f"retargeted onto {cfg.task}",
        [
            ("file", r.path),
            ("kept", f"{r.kept} of {len(r.tracks)} tracks"),
            ("frame", r.frame["method"]),
            ("report", r.report_path),
        ],
    )
    if not r.kept:
        raise ApprenticeError(
            f"none of the {len(r.tracks)} tracks replayed to a success; why each failed is in "
            f"{r.report_path}"
        )


def command() -> Command:
    tasks = [n for f in RETARGET_FAMILIES for n in task_names(f)]
    return Command(
        "retarget",
        "map tracked wrist poses (motion capture) onto a task's actions, replay them and keep "
        "the demos that succeed",
        RetargetConfig,
        run,
        {"positional": ("tracks",), "choices": {"align": list(ALIGNMENTS)}},
        # Not a choice: an unknown task is the package's one-line error, like a malformed track.
        flag_help={"task": f"Task the tracks demonstrate: {', '.join(tasks)}."},
    )
