"""`apprentice sweep`'s settings: the grid, how each cell trains and is scored, and where the
cells run; from flags or from a spec file (TOML or JSON) with the same names."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from apprentice.algos.config import config_from_overrides
from apprentice.envs.base import task_names
from apprentice.envs.pool import BACKENDS
from apprentice.errors import ApprenticeError
from apprentice.policies.base import policy_names
from apprentice.recipes import recipe_names

CHECKPOINTS = ("final", "best")
"""Which checkpoint of a cell's run folder is scored."""


@dataclass(frozen=True)
class SweepConfig:
    """Train and evaluate a grid of cells (task x policy or recipe x demos x seed), each
    collect -> train -> evaluate, resumable cell by cell, summarized with Wilson intervals."""

    tasks: tuple[str, ...] = ("lift",)
    """Tasks the --policies are trained on (a recipe brings its own task)."""
    policies: tuple[str, ...] = ()
    """Policy kinds to train, each from its defaults with --policy-args over them."""
    recipes: tuple[str, ...] = ()
    """Shipped recipes to train (`apprentice recipes`), each on its own task, data and
    training settings."""
    demos: tuple[int, ...] = ()
    """Demo counts, a cell each; the smaller demo files are the first demos of the larger
    (default: a recipe's own count, 100 for a policy)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds, a cell each."""
    episodes: int = 50
    """Rollouts scoring each cell, from the held-out initial states `apprentice eval` uses."""
    camera: bool = False
    """Policy cells record the cameras and train on them plus the robot's own state, not the
    objects' poses (a recipe sets its own observations)."""
    checkpoint: str = "final"
    """The checkpoint scored: final, or best (by the periodic rollouts where --eval-every is
    set, else by validation loss)."""
    epochs: int | None = None
    """Training epochs (default: a recipe's; 100 for a policy)."""
    steps_per_epoch: int | None = None
    """Gradient steps per epoch (default: a recipe's; 100 for a policy)."""
    batch_size: int | None = None
    """Windows per gradient step (default: a recipe's; 100 for a policy)."""
    lr: float | None = None
    """Adam learning rate (default: a recipe's; 1e-4 for a policy)."""
    eval_every: int | None = None
    """Roll out every this many epochs in training to pick best.pt (default: a recipe's;
    never for a policy)."""
    policy_args: tuple[str, ...] = ()
    """Overrides of every cell's policy config as key=value (e.g. hidden_dim=128)."""
    train_args: tuple[str, ...] = ()
    """Other training settings as key=value, as `apprentice train` names them (e.g.
    grad_clip=1.0 device=auto precision=bf16)."""
    wandb: str | None = None
    """Also log each cell's training to this Weights & Biases project, a W&B run per cell
    (offline in its run folder without credentials); None = TensorBoard only."""
    threads: int = 1
    """torch CPU threads per cell."""
    workers: int = 2
    """Cells run side by side (processes, or Ray tasks with --backend ray); also the
    processes collecting demos."""
    backend: str = "process"
    """process (this machine) or ray (the cluster at RAY_ADDRESS, else a local one; OUT must
    then be on a filesystem the cluster's nodes share)."""
    eval_envs: int = 10
    """Envs a cell's evaluation steps in lockstep (one policy call per step for all)."""
    out: str = "runs/sweep"
    """Sweep folder: cells.jsonl, summary.json, report.html, the demos and a run folder per
    cell. Rerun the same command to resume it."""

    def __post_init__(self) -> None:
        _check_names("task", self.tasks, task_names())
        _check_names("policy", self.policies, policy_names(), plural="policies")
        _check_names("recipe", self.recipes, recipe_names())
        if not self.policies and not self.recipes:
            raise ApprenticeError(
                "give what to train: --policies NAME ... and/or --recipes NAME ... "
                "(`apprentice recipes` lists the recipes)"
            )
        checks = [
            ("demos", min(self.demos, default=1), 1),
            ("seeds", min(self.seeds, default=0), 0),
            ("episodes", self.episodes, 1),
            ("threads", self.threads, 1),
            ("workers", self.workers, 1),
            ("eval_envs", self.eval_envs, 1),
        ]
        for name, number, low in checks:
            if number < low:
                raise ApprenticeError(f"{name} must be >= {low}, got {number}")
        if not self.seeds:
            raise ApprenticeError("give at least one training seed (--seeds)")
        for name, choice, known in (
            ("backend", self.backend, BACKENDS),
            ("checkpoint", self.checkpoint, CHECKPOINTS),
        ):
            if choice not in known:
                raise ApprenticeError(
                    f"unknown {name} {choice!r}; choose one of {', '.join(known)}"
                )

    def to_dict(self) -> dict[str, Any]:
        """The settings as a spec file holds them (JSON values)."""
        return {f.name: _json_value(getattr(self, f.name)) for f in fields(self)}


def _check_names(what: str, names: tuple[str, ...], known: list[str], plural: str = "") -> None:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ApprenticeError(
            f"unknown {what} {', '.join(map(repr, unknown))}; the known "
            f"{plural or what + 's'} are: {', '.join(known)}"
        )


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


_KEY_VALUE_FIELDS = ("policy_args", "train_args")
"""Fields of key=value items, which a spec file may also give as a table."""


def load_spec(path: str | Path) -> SweepConfig:
    """A sweep's settings from a spec file: TOML (.toml) or JSON (anything else), keys named
    as the fields of `SweepConfig` (the flags without --, _ for -), lists for the grid; the
    policy and training arguments as a table or as key=value strings."""
    path = Path(path)
    if not path.is_file():
        raise ApprenticeError(f"--spec {path}: no such file")
    try:
        text = path.read_text()
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApprenticeError(f"--spec {path} does not parse ({exc})") from None
    if not isinstance(data, dict):
        raise ApprenticeError(f"--spec {path} must hold a table of settings")
    for key in _KEY_VALUE_FIELDS:
        if isinstance(data.get(key), dict):
            data[key] = [f"{k}={json.dumps(v)}" for k, v in data[key].items()]
    return config_from_overrides(SweepConfig, data, f"--spec {path}")
