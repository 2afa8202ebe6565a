"""One cell's work in a worker: train through `apprentice train`'s pipeline (its trainer and
run folder: a rerun resumes a half-trained cell from last.pt), then score the chosen
checkpoint as `apprentice eval` does, on the same held-out initial states."""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from apprentice.algos.config import resolve_device
from apprentice.errors import ApprenticeError
from apprentice.evaluate.report import read_metrics
from apprentice.evaluate.run import EvalConfig, evaluate
from apprentice.pipelines.train import run_train
from apprentice.recipes import get_recipe
from apprentice.sweep.grid import CHECKPOINT_FILES, CellJob


def execute_cell(job: CellJob) -> dict[str, Any]:
    """The cell's record for cells.jsonl: its score and timings, or, where it failed, its
    error (one line) and the end of its traceback."""
    try:
        return _train_and_score(job)
    except Exception as exc:  # a failed cell is recorded; the sweep goes on
        return error_record(job, exc, traceback.format_exc())


def error_record(job: CellJob, exc: BaseException, trace: str = "") -> dict[str, Any]:
    """A failed cell's record."""
    error = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line
    return {**_identity(job), "error": error, "trace": trace[-2000:]}


def _identity(job: CellJob) -> dict[str, Any]:
    return {"key": job.cell.key, "cell": asdict(job.cell)}


def _train_and_score(job: CellJob) -> dict[str, Any]:
    config = job.train
    if not config.dataset:
        raise ApprenticeError(f"cell {job.cell.key}: its demos were not collected")
    t0 = time.perf_counter()
    if job.cell.recipe:
        config = get_recipe(job.cell.recipe).run_stages(config)
    rows = run_train(config)
    train_s = time.perf_counter() - t0
    run_dir = Path(config.out)
    checkpoint = _scored(run_dir, job.checkpoint)
    t0 = time.perf_counter()
    scores = evaluate(
        EvalConfig(
            checkpoint=str(checkpoint),
            episodes=job.episodes,
            workers=1,
            envs_per_worker=job.eval_envs,
            out=str(run_dir / "eval.json"),
        )
    )
    metrics = read_metrics(run_dir / "metrics.jsonl")
    last = metrics[-1] if metrics else {}
    return {
        **_identity(job),
        "successes": int(scores["successes"]),
        "episodes": int(scores["episodes"]),
        "success_rate": scores["success_rate"],
        "ci_low": scores["ci_low"],
        "ci_high": scores["ci_high"],
        "mean_max_reward": scores.get("mean_max_reward"),
        "train_s": round(train_s, 1),
        "eval_s": round(time.perf_counter() - t0, 1),
        "epochs": last.get("epoch"),
        "resumed_from_epoch": rows.get("resumed from epoch", 0),  # run_train's summary row
        "steps_per_s": last.get("steps_per_s"),
        "train_loss": last.get("train_loss"),
        "device": str(resolve_device(config.device)),
        "run_dir": str(run_dir),
        "checkpoint": str(checkpoint),
        "settings": job.settings(),
    }


def _scored(run_dir: Path, choice: str) -> Path:
    path = run_dir / CHECKPOINT_FILES[choice]
    if not path.exists():
        raise ApprenticeError(
            f"{path} was not written: with --checkpoint best the run needs best.pt "
            "(periodic rollouts, --eval-every, or validation demos)"
        )
    return path
