"""`apprentice sweep`: a grid of collect -> train -> evaluate cells, from flags or a spec
file (`--spec FILE`, whose values the flags given beside it override)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from apprentice.cli.args import dataclass_from_args
from apprentice.cli.command import Command
from apprentice.console import console
from apprentice.errors import ApprenticeError
from apprentice.files import check_writable
from apprentice.sweep.config import BACKENDS, CHECKPOINTS, SweepConfig, load_spec
from apprentice.sweep.run import run_sweep
from apprentice.sweep.summary import rich_table


@dataclass(frozen=True)
class SweepCommandConfig(SweepConfig):
    """SweepConfig plus the spec file it may start from."""

    spec: str = ""
    """A TOML or JSON file of these settings, named as the flags without -- (_ for -), e.g.
    tasks = ["lift"], demos = [50, 200]; flags given beside it override its values. Each
    sweep folder keeps its latest settings as one (OUT/sweep.json)."""


def sweep_config(ns: argparse.Namespace) -> SweepConfig:
    """The sweep's settings from the parsed flags (over the spec file's, if given)."""
    base = None
    if ns.spec:
        spec = load_spec(ns.spec)
        base = SweepCommandConfig(**_fields(spec), spec=ns.spec)
    cfg = dataclass_from_args(SweepCommandConfig, ns, base=base)
    fields = _fields(cfg)
    fields.pop("spec")
    return SweepConfig(**fields)


def _fields(config: SweepConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def run(ns: argparse.Namespace) -> None:
    cfg = sweep_config(ns)
    check_writable(cfg.out, folder=True)
    result = run_sweep(cfg, echo=lambda line: console.print(line, markup=False, highlight=False))
    if result.groups:
        console.print(rich_table(result.groups, f"sweep {cfg.out}"))
    console.print(f"summary: {result.summary_path}\nreport: {result.report_path}", markup=False)
    if result.failed:
        keys = ", ".join(r["key"] for r in result.failed)
        raise ApprenticeError(
            f"{len(result.failed)} cell(s) failed: {keys}; their errors are in "
            f"{result.summary_path.parent / 'cells.jsonl'} (rerun the same command to retry them)"
        )


def command() -> Command:
    return Command(
        "sweep",
        "train and evaluate a grid of cells (task x policy or recipe x demos x seed)",
        SweepCommandConfig,
        run,
        {"choices": {"backend": list(BACKENDS), "checkpoint": list(CHECKPOINTS)}},
    )
