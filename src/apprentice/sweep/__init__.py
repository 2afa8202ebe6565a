"""Sweeps: a grid of cells (task x policy or recipe x demos x training seed), each collect ->
train -> evaluate, run side by side on a local process pool or on Ray, resumable cell by
cell, and summarized per group with 95% Wilson intervals in a table, summary.json and an
HTML report.

    config (SweepConfig, spec file) -> plan (CellJob per cell) -> run_cells (demos, workers,
    cells.jsonl) -> summarize (summary.json, report.html)
"""

from apprentice.sweep.config import SweepConfig, load_spec
from apprentice.sweep.grid import Cell, CellJob, DemoSpec
from apprentice.sweep.plan import plan
from apprentice.sweep.run import SweepResult, run_sweep, summarize_sweep
from apprentice.sweep.runner import CellLog, CellsOutcome, run_cells

__all__ = [
    "Cell",
    "CellJob",
    "CellLog",
    "CellsOutcome",
    "DemoSpec",
    "SweepConfig",
    "SweepResult",
    "load_spec",
    "plan",
    "run_cells",
    "run_sweep",
    "summarize_sweep",
]
