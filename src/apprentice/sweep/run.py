"""`apprentice sweep`: plan the grid, run its cells, summarize every finished cell of the
sweep folder (summary.json, report.html)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apprentice.envs.ray_pool import import_ray
from apprentice.files import write_text_atomic
from apprentice.sweep.config import SweepConfig
from apprentice.sweep.plan import plan
from apprentice.sweep.report import write_report
from apprentice.sweep.runner import (
    CELLS_FILE,
    CellLog,
    CellsOutcome,
    Echo,
    check_settings,
    run_cells,
)
from apprentice.sweep.summary import GroupSummary, summarize, write_summary
from apprentice.tracking import check_tracking

SPEC_FILE = "sweep.json"
"""The latest run's settings in the sweep folder: a spec file (`--spec`) itself."""


@dataclass(frozen=True)
class SweepResult:
    """What a sweep run did and where its results are."""

    outcome: CellsOutcome
    groups: list[GroupSummary]
    """Every finished cell of the sweep folder, grouped (this run's and earlier ones')."""
    failed: list[dict[str, Any]]
    """The latest records of the cells of this grid that failed (key, error, trace)."""
    summary_path: Path
    report_path: Path


def run_sweep(config: SweepConfig, *, echo: Echo = print) -> SweepResult:
    """Run the cells of `config` not finished yet in its sweep folder, then write the
    summary and report of all its finished cells. Bad settings are refused before anything
    runs; a failed cell is recorded and the others go on (`SweepResult.failed`)."""
    out = Path(config.out).resolve()  # Ray's workers may start in another folder
    jobs = plan(config, out)
    if config.backend == "ray":
        import_ray()
    check_tracking(config.wandb)
    log = CellLog(out / CELLS_FILE)
    check_settings(jobs, log.finished(), log.path)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / SPEC_FILE, json.dumps(config.to_dict(), indent=2) + "\n")
    outcome = run_cells(jobs, out, workers=config.workers, backend=config.backend, echo=echo)
    return summarize_sweep(out, [j.cell.key for j in jobs], outcome)


def summarize_sweep(out: Path, keys: list[str], outcome: CellsOutcome) -> SweepResult:
    """Write OUT/summary.json and OUT/report.html from OUT/cells.jsonl."""
    log = CellLog(out / CELLS_FILE)
    finished = log.finished()
    latest = {r["key"]: r for r in log.records if "key" in r}
    failed = [latest[k] for k in keys if k not in finished and "error" in latest.get(k, {})]
    groups = summarize(finished.values())
    title = f"sweep {out.name}"
    return SweepResult(
        outcome,
        groups,
        failed,
        write_summary(out, groups, failed),
        write_report(out, groups, failed, title),
    )
