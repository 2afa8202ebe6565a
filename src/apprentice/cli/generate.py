"""`apprentice generate`: synthetic demos from a few source demos (MimicGen-style)."""

from __future__ import annotations

import argparse

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import print_table
from apprentice.files import check_writable
from apprentice.generate.attempt import SELECTIONS
from apprentice.generate.backends import BACKENDS
from apprentice.generate.run import GenerateConfig, run_generate


def run(ns: argparse.Namespace) -> None:
    cfg = dataclass_from_args(GenerateConfig, ns)
    check_writable(cfg.out)
    if cfg.failed_out is not None:
        check_writable(cfg.failed_out, flag="--failed-out")
    r = run_generate(cfg)
    failures = ", ".join(f"subtask {i} {kind}: {c}" for (i, kind), c in r.failures.most_common())
    rows: list[tuple[str, object]] = [
        ("file", r.path),
        ("generated demos", r.successes),
        ("attempts", r.attempts),
        ("data generation rate", f"{r.dgr:.1%}"),
        ("this run", f"{r.new_successes} demos in {r.new_attempts} attempts, {r.seconds:.1f} s"),
        ("failures this run", failures or "none"),
    ]
    if r.skipped_sources:
        rows.append(("source demos skipped", len(r.skipped_sources)))
    print_table(f"generated {cfg.n} demos from {cfg.source}", rows)


def command() -> Command:
    return Command(
        "generate",
        "generate synthetic demos from a few source demos (MimicGen-style)",
        GenerateConfig,
        run,
        {"choices": {"backend": list(BACKENDS), "selection": list(SELECTIONS)}},
    )
