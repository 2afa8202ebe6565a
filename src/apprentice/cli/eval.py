"""`apprentice eval`: a policy's success rate on held-out initial states, or along the
perturbation axes of its task (`--sweep light=0,0.5,1`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import print_table
from apprentice.envs.pool import BACKENDS
from apprentice.evaluate.robustness import parse_sweep, sweep_policy
from apprentice.evaluate.run import EvalConfig, evaluate
from apprentice.files import check_writable


def check_output(out: str | None, checkpoint: str, what: str) -> None:
    """`--out` must be writable, or without it the checkpoint's folder, where `what` then
    goes by default (a checkpoint that does not exist is left for loading to name)."""
    if out:
        check_writable(out)
        return
    path = Path(checkpoint)
    folder = path if path.is_dir() else path.parent if path.exists() else None
    if folder is not None:
        check_writable(
            folder,
            flag="checkpoint folder",
            folder=True,
            hint=f"pass --out to write the {what} elsewhere",
        )


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(EvalConfig, ns)
    if cfg.sweep:
        run_sweep(cfg)
        return
    check_output(cfg.out, cfg.checkpoint, "results")
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


def run_sweep(cfg: EvalConfig) -> None:
    sweeps = parse_sweep(cfg.sweep)  # a malformed item is named before anything loads
    check_output(cfg.out, cfg.checkpoint, "sweep")
    s = sweep_policy(cfg, sweeps)
    rows: list[tuple[str, object]] = [("checkpoint", s["checkpoint"])]
    for axis, levels in s["axes"].items():
        rows += [
            (
                f"{axis} {r['level']:g}",
                f"{r['success_rate']:.1%} ({r['successes']}/{r['episodes']}), "
                f"95% Wilson {r['ci_low']:.1%} - {r['ci_high']:.1%}",
            )
            for r in levels
        ]
    rows += [("sweep", s["results_path"]), ("report", s["report_path"])]
    print_table(f"success along perturbation levels on {s['task']}", rows)


def command() -> Command:
    return Command(
        "eval",
        "evaluate a policy on held-out initial states, or along perturbation axes (--sweep)",
        EvalConfig,
        run,
        {"positional": ("checkpoint",), "choices": {"backend": list(BACKENDS)}},
    )
