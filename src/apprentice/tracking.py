"""Experiment tracking beside TensorBoard: `--wandb PROJECT` mirrors a run to Weights & Biases.

A run folder's own log stays metrics.jsonl and TensorBoard (tb/). With `--wandb` (train,
dagger, irl, sweep), a `Tracker` also gets the run's config when the run starts and, each
epoch (or round), the same scalars under the same names as TensorBoard ("epoch/train_loss",
...), against TensorBoard's step, logged as the metric `global_step`.

W&B writes under the run folder (RUN_FOLDER/wandb/). It runs online where W&B credentials are
found (WANDB_API_KEY, or a `wandb login`), and offline where none are, or where W&B cannot be
reached; WANDB_MODE (online, offline, disabled) decides over both. `wandb sync
RUN_FOLDER/wandb/offline-run-*` uploads an offline run later.

A resumed run logs on to the same W&B run: its id is kept in the run folder (`RUN_ID_FILE`).
Epochs that a killed run logged after its last checkpoint are logged again by the resume (W&B
has no purge_step, as TensorBoard has), so such a run shows two points at one step there.
"""

from __future__ import annotations

import logging
import netrc
import os
import secrets
import shutil
import string
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol
from urllib.parse import urlparse

from apprentice.errors import ApprenticeError
from apprentice.files import write_text_atomic

log = logging.getLogger(__name__)

STEP = "global_step"
"""The x-axis metric of every scalar: optimizer steps in training, env steps in IRL, the round
in DAgger (TensorBoard's step where the run keeps a TensorBoard log)."""
RUN_ID_FILE = "wandb_id.txt"
"""The run folder's W&B run id, which a resume logs on to."""
WANDB_FOLDER = "wandb"
"""Where W&B writes in the run folder (an offline run's data, W&B's logs)."""


class Tracker(Protocol):
    """Where a run's scalars go beside its own log."""

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        """Scalars by name (e.g. "epoch/train_loss") at `step` (see `STEP`)."""

    def finish(self) -> None:
        """The run ended (or stopped): flush and close."""


class NoTracker:
    """No tracking: what a run without `--wandb` gets."""

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbTracker:
    """A W&B run (from `wandb.init`) whose scalars are charted against `STEP`."""

    def __init__(self, run: Any) -> None:
        self.run = run
        # Against our own step, not W&B's: a resumed run's steps repeat the killed one's last.
        run.define_metric(STEP)
        run.define_metric("*", step_metric=STEP)

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        self.run.log({STEP: step, **scalars})

    def finish(self) -> None:
        self.run.finish()


def scalars(record: Mapping[str, Any], prefix: str, skip: tuple[str, ...] = ()) -> dict[str, float]:
    """The numbers of `record` (bools as 0/1; not the keys in `skip`), named prefix + key:
    the scalars a run logs per epoch or round."""
    return {
        prefix + key: float(value)
        for key, value in record.items()
        if isinstance(value, int | float) and key not in skip
    }


def log_rows(
    project: str | None,
    run_dir: Path,
    config: Mapping[str, Any],
    rows: list[dict[str, Any]],
    *,
    step_key: str,
    job_type: str,
) -> None:
    """A finished run's rows, each at its `step_key` and named step_key/<key>, as a W&B run
    of its own: for loops that keep no per-epoch log (tabular IRL writes its history whole,
    at the end). Nothing without a project."""
    tracker = start_tracker(project, run_dir, config, resume=False, job_type=job_type)
    try:
        for row in rows:
            tracker.log(scalars(row, f"{step_key}/", skip=(step_key,)), int(row[step_key]))
    finally:
        tracker.finish()


def require_wandb() -> ModuleType:
    """The `wandb` module; one error that says how to install it where it is missing."""
    try:
        import wandb
    except ImportError:
        raise ApprenticeError(
            "--wandb needs the wandb package: pip install -e '.[wandb]' (or pip install wandb)"
        ) from None
    return wandb


def check_tracking(project: str | None) -> None:
    """Refuse `--wandb PROJECT` up front, before any work, where wandb is not installed."""
    if project is not None:
        require_wandb()


def start_tracker(
    project: str | None,
    run_dir: Path,
    config: Mapping[str, Any],
    *,
    resume: bool,
    job_type: str,
) -> Tracker:
    """A tracker for the run in `run_dir`: `NoTracker` without a project, else a W&B run of
    `project` (named after the folder, `config` as its config) that a `resume` continues.
    `job_type` tells runs of different commands apart in the project (train, dagger,
    irl-gail, ...)."""
    if project is None:
        return NoTracker()
    wandb = require_wandb()
    settings: dict[str, Any] = {
        "project": project,
        "id": _run_id(run_dir, resume),
        "resume": "allow",
        "dir": str(run_dir),  # W&B adds WANDB_FOLDER
        "name": run_dir.resolve().name,
        "job_type": job_type,
        "config": dict(config),
        "reinit": "create_new",  # a run of its own beside any other of this process
        "settings": wandb.Settings(console="off"),  # the command's own output is not captured
    }
    mode = None if _online_asked(wandb) else "offline"
    try:
        run = wandb.init(mode=mode, **settings)
    except wandb.errors.Error as exc:
        if mode == "offline":
            raise ApprenticeError(f"--wandb {project}: {_first_line(exc)}") from None
        log.warning("W&B not reachable (%s); logging offline", _first_line(exc))
        run = _init_offline(wandb, project, settings)
    return WandbTracker(run)


def remove_tracking(run_dir: Path) -> None:
    """Delete what tracking wrote in `run_dir` (its W&B run id and data): for an overwrite,
    which starts a new W&B run."""
    (run_dir / RUN_ID_FILE).unlink(missing_ok=True)
    shutil.rmtree(run_dir / WANDB_FOLDER, ignore_errors=True)


def _init_offline(wandb: ModuleType, project: str, settings: dict[str, Any]) -> Any:
    try:
        return wandb.init(mode="offline", **settings)
    except wandb.errors.Error as exc:
        raise ApprenticeError(f"--wandb {project}: {_first_line(exc)}") from None


def _run_id(run_dir: Path, resume: bool) -> str:
    """The W&B run id kept in `run_dir` on a resume; a new one (kept there) otherwise."""
    path = run_dir / RUN_ID_FILE
    if resume and path.exists():
        return path.read_text().strip()
    alphabet = string.ascii_lowercase + string.digits  # what W&B's own ids are made of
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))
    write_text_atomic(path, run_id + "\n")
    return run_id


def _online_asked(wandb: ModuleType) -> bool:
    """Whether to leave the mode to W&B (WANDB_MODE, else online): where WANDB_MODE is set
    or credentials are found; without any, W&B would prompt for a key or fail."""
    if os.environ.get("WANDB_MODE"):
        return True
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    url = os.environ.get("WANDB_BASE_URL") or wandb.Settings().base_url
    try:
        found = netrc.netrc(os.environ.get("NETRC")).authenticators(urlparse(url).hostname or "")
    except (OSError, netrc.NetrcParseError):
        return False
    return found is not None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


__all__ = [
    "RUN_ID_FILE",
    "STEP",
    "WANDB_FOLDER",
    "NoTracker",
    "Tracker",
    "WandbTracker",
    "check_tracking",
    "log_rows",
    "remove_tracking",
    "require_wandb",
    "scalars",
    "start_tracker",
]
