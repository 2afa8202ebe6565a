"""The one training config: every setting of a BC run, once, with its one default.

Commands that train (train, quickstart, dagger, irl's BCO and BC-then-RL) nest it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from apprentice.errors import ApprenticeError
from apprentice.policies.base import PolicyConfig, policy_config_from_dict
from apprentice.policies.mlp import MLPConfig

# Fields that do not change what is learned: a resume may differ in them.
RESUME_FREE_FIELDS = frozenset(
    {"resume", "overwrite", "progress", "threads", "epochs", "eval_episodes", "device"}
)


@dataclass(frozen=True)
class TrainConfig:
    """What to learn from, with which policy, for how long, and where to write the run."""

    dataset: str = ""
    """Path of the demonstration HDF5 file (robomimic layout)."""
    out: str = "runs/train"
    """Run folder: config, logs and checkpoints go here."""
    policy: PolicyConfig = field(default_factory=MLPConfig)
    """Policy config (its registered name picks the policy)."""
    epochs: int = 100
    """Training epochs."""
    steps_per_epoch: int | None = None
    """Gradient steps per epoch; None = one pass over the training windows (robomimic: 100)."""
    batch_size: int = 100
    """Windows per gradient step (robomimic: 100)."""
    lr: float = 1e-4
    """Adam learning rate (robomimic: 1e-4)."""
    weight_decay: float = 0.0
    """Adam L2 weight decay."""
    grad_clip: float | None = None
    """Clip the gradient norm to this value; None = no clipping."""
    seed: int = 0
    """Seed of weights, window sampling and the train/valid split (same seed, same curve)."""
    train_mask: str = "train"
    """Demo filter (mask/<name> in the file) to train on, if the file has it."""
    valid_mask: str = "valid"
    """Demo filter to validate on, if the file has it."""
    valid_fraction: float = 0.1
    """Without those filters: fraction of demos held out for validation (seeded split)."""
    eval_every: int = 0
    """Run the rollout callback every this many epochs (and after the last); 0 = never."""
    eval_episodes: int = 50
    """Episodes per rollout evaluation (passed to the callback)."""
    save_every: int = 0
    """Also keep the weights every this many epochs as epoch_<N>.pt (learning curves); 0 = no."""
    threads: int | None = None
    """torch CPU threads; None = one per core. Use 1 when other jobs share the cores."""
    precision: str = "fp32"
    """Forward-pass precision: "fp32", or "bf16" (autocast; faster on CPUs with bf16 units)."""
    device: str = "cpu"
    """Where the weights train: "cpu", "cuda", "cuda:N", or "auto" (CUDA when torch has it).
    Checkpoints are written with CPU tensors and rollouts run on a CPU copy, so a run trained
    on a GPU evaluates, exports and resumes anywhere."""
    log_every: int = 50
    """Log the step loss to TensorBoard every this many steps."""
    progress: bool = True
    """Show a progress bar per epoch."""
    resume: bool = True
    """Continue a run found in out with the same config (from last.pt)."""
    overwrite: bool = False
    """Delete a previous run's files in out and start afresh."""
    init_checkpoint: str | None = None
    """Warm start: a checkpoint whose weights (not its normalization stats, refit on this
    dataset) a fresh run starts from, as DAgger retrains after each round."""

    def __post_init__(self) -> None:
        if isinstance(self.policy, dict):  # from JSON
            object.__setattr__(self, "policy", policy_config_from_dict(self.policy))
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (0.0 <= self.valid_fraction < 1.0, "valid_fraction must be in [0, 1)"),
            (self.eval_every >= 0, "eval_every must be >= 0"),
            (self.save_every >= 0, "save_every must be >= 0"),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0"),
            (self.precision in ("fp32", "bf16"), "precision must be 'fp32' or 'bf16'"),
        ]
        _parse_device(self.device)  # a name torch cannot parse fails here; a missing GPU in train
        for ok, message in checks:
            if not ok:
                raise ApprenticeError(f"train config: {message}")

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["policy"] = self.policy.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ApprenticeError(f"train config has unknown field(s): {', '.join(unknown)}")
        return cls(**d)


def _parse_device(name: str) -> torch.device | None:
    """The device `name` names (None for "auto"); an error unless it is cpu or cuda[:N]."""
    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ApprenticeError(
            f"train config: device {name!r} is not a torch device (use cpu, cuda, cuda:N or auto)"
        ) from None
    if device.type not in ("cpu", "cuda"):
        raise ApprenticeError(f"train config: device {name!r} is not supported (cpu or cuda)")
    return device


def resolve_device(name: str) -> torch.device:
    """`TrainConfig.device` -> the torch device to train on; one clear error for a GPU this
    machine lacks. (A config naming one still loads anywhere: its run can resume on the CPU.)"""
    device = _parse_device(name)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ApprenticeError(
                f"train config: device {name!r} asked for, but this torch "
                f"({torch.__version__}) sees no CUDA GPU; use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ApprenticeError(
                f"train config: device {name!r} asked for, but only "
                f"{torch.cuda.device_count()} CUDA GPU(s) are visible"
            )
    return device


def load_train_config(path: str | os.PathLike[str]) -> TrainConfig:
    """Read a run's config.json back."""
    try:
        return TrainConfig.from_dict(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise ApprenticeError(f"cannot read train config {path}: {exc}") from None
