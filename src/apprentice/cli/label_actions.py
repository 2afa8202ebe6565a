"""`apprentice label-actions`: infer the actions of state-only demos or camera recordings,
print the labels' error."""

from __future__ import annotations

import argparse
from typing import Any

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import print_table
from apprentice.files import check_writable
from apprentice.irl.idm import EXPLORATION
from apprentice.irl.label import LabelConfig, label_actions


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(LabelConfig, ns)
    check_writable(cfg.out)
    r = label_actions(cfg)
    if cfg.strip:
        print_table(f"state-only copy of {cfg.demos}", [("file", r.path), ("demos", r.demos)])
        return
    rows: list[tuple[str, Any]] = [
        ("file", r.path),
        ("demos labelled", f"{r.demos} ({r.resumed} from an earlier run)"),
        ("latent action model" if cfg.latent else "inverse-dynamics model", r.idm_path or cfg.idm),
        *((k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.extra.items()),
    ]
    if r.error is None:
        what = "camera frames only" if cfg.from_video else "state-only demos"
        rows.append(("error vs true actions", f"unknown ({what})"))
    else:
        rows += [
            ("MAE vs true actions", f"{r.error['mae']:.4f} over {r.error['steps']} steps"),
            ("MAE per dimension", " ".join(f"{x:.3f}" for x in r.error["mae_per_dim"])),
            ("relative MAE", f"{r.error['relative_mae']:.3f} (1 = predicting the mean)"),
            ("cosine similarity", f"{r.error['cosine']:.3f}"),
        ]
    print_table("labelled actions", rows)


def command() -> Command:
    return Command(
        "label-actions",
        "infer the actions of state-only demos (BCO) or of camera recordings (VPT-style) with "
        "an inverse-dynamics model, or through latent actions learnt from the recordings "
        "(--latent, LAPO-style)",
        LabelConfig,
        run,
        {"choices": {"exploration": list(EXPLORATION[:3])}},
    )
