"""A run folder: its config.json, metrics.jsonl + TensorBoard log, and the resume rules.

Split from the trainer so that any loop (BC epochs, DAgger rounds) can keep the same folder
contract: a folder holds one run; a second call with the same config resumes it, a different
config is refused unless the caller asks to overwrite.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from apprentice.errors import ApprenticeError
from apprentice.files import write_text_atomic
from apprentice.tracking import remove_tracking, scalars, start_tracker


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON through a temporary file and a rename: a process killed
    at any instant leaves the old file or the new one, never half."""
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n", durable=False)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """`rows` as JSON lines, written whole the same way as `write_json`."""
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows), durable=False)


RUN_FILES = ("config.json", "metrics.jsonl", "last.pt", "best.pt", "final.pt")
"""Files a run owns (and `overwrite` deletes, with tb/ and its W&B files)."""

STAGE_FOLDERS = ("encoders",)
"""Folders a recipe's stages write into the run folder before the run starts (its pretrained
encoders): a folder holding only these is a run about to start, not a foreign folder."""


class RunLog:
    """metrics.jsonl + TensorBoard (+ W&B with `wandb`, see `apprentice.tracking`); on resume,
    drops records of epochs past the checkpoint."""

    def __init__(
        self,
        run_dir: Path,
        *,
        resume_epoch: int,
        global_step: int,
        wandb: str | None = None,
        config: Mapping[str, Any] | None = None,
        job_type: str = "train",
    ) -> None:
        """`wandb` names the W&B project the epochs also go to, with `config` (the run's) and
        `job_type` (the command: train, irl-gail, ...)."""
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / "metrics.jsonl"
        self.records: list[dict[str, Any]] = []
        if resume_epoch > 0 and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
                if record.get("epoch", math.inf) <= resume_epoch:
                    self.records.append(record)
        self._rewrite()
        # purge_step discards events logged after the checkpoint by the killed process.
        self.tb = SummaryWriter(
            str(run_dir / "tb"), purge_step=global_step + 1 if resume_epoch > 0 else None
        )
        self.tracker = start_tracker(
            wandb, run_dir, config or {}, resume=resume_epoch > 0, job_type=job_type
        )

    def _rewrite(self) -> None:
        write_jsonl(self.path, self.records)

    def epoch(self, record: dict[str, Any], global_step: int) -> None:
        self.records.append(record)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        values = scalars(record, "epoch/", skip=("epoch",))
        for tag, value in values.items():
            self.tb.add_scalar(tag, value, global_step)
        self.tb.flush()
        self.tracker.log(values, global_step)

    def close(self) -> None:
        self.tb.close()
        self.tracker.finish()


class _NoWriter:
    """A TensorBoard writer that writes nothing."""

    def add_scalar(self, tag: str, value: float, global_step: int) -> None:
        pass


class SilentLog:
    """The log of a training process that does not write the run's (under torchrun, every
    rank but 0, whose `RunLog` does): it keeps and writes nothing."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.tb = _NoWriter()

    def epoch(self, record: dict[str, Any], global_step: int) -> None:
        pass

    def close(self) -> None:
        pass


def prepare_run_dir(
    run_dir: Path,
    config: dict[str, Any],
    *,
    resume: bool,
    overwrite: bool,
    free_fields: frozenset[str] = frozenset(),
    canonical: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[Path, Path | None]:
    """Create or validate the run folder for `config` (a JSON-safe dict).

    Returns the folder and its last.pt when a run with the same config (up to
    `free_fields`) is to be resumed. `canonical` rewrites the config found in the folder into
    today's layout before the comparison (a run written by an older version resumes).
    """
    config_path = run_dir / "config.json"
    if overwrite and run_dir.exists():
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tb", ignore_errors=True)
        remove_tracking(run_dir)
    if run_dir.exists() and any(p.name not in STAGE_FOLDERS for p in run_dir.iterdir()):
        if not config_path.exists():
            raise ApprenticeError(
                f"run folder {run_dir} is not empty and holds no config.json; choose a new out"
            )
        if not resume:
            raise ApprenticeError(
                f"run folder {run_dir} already holds a run; use a new out, "
                "resume=True (--resume) to continue it, or overwrite=True (--overwrite)"
            )
        try:
            previous = json.loads(config_path.read_text())
        except json.JSONDecodeError:
            raise ApprenticeError(f"{config_path} is not valid JSON; use a new out") from None
        if canonical is not None:
            with contextlib.suppress(ApprenticeError):  # unreadable: it differs, said below
                previous = json.loads(json.dumps(canonical(previous)))
        current = json.loads(json.dumps(config))
        differ = sorted(
            k
            for k in set(previous) | set(current)
            if k not in free_fields and previous.get(k) != current.get(k)
        )
        if differ:
            raise ApprenticeError(
                f"run folder {run_dir} holds a run with a different config "
                f"({', '.join(differ)} differ); use a new out or overwrite=True (--overwrite)"
            )
        last = run_dir / "last.pt"
        return run_dir, last if last.exists() else None
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(config_path, config)
    return run_dir, None
