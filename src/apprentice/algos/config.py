"""The one training config: every setting of a BC run, once, with its one default.

Commands that train (train, quickstart, dagger, irl's BCO and BC-then-RL) nest it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import torch

from apprentice.errors import ApprenticeError
from apprentice.overrides import coerce_tuple, field_default, strip_optional, tuple_item_type
from apprentice.policies.base import PolicyConfig, policy_config_from_dict
from apprentice.policies.rnn import RNNConfig
from apprentice.splits import check_valid_fraction

_C = TypeVar("_C")

# Fields that do not change what is learned: a resume may differ in them (epochs too, but
# under a cosine schedule: `TrainConfig.resume_free_fields`).
RESUME_FREE_FIELDS = frozenset(
    {
        "resume",
        "overwrite",
        "progress",
        "threads",
        "epochs",
        "eval_episodes",
        "device",
        "wandb",
        "dist_timeout",
    }
)

LR_SCHEDULES = ("constant", "cosine")
"""`TrainConfig.lr_schedule`'s choices."""


ROUND_SET_FIELDS = (
    "dataset",
    "out",
    "seed",
    "init_checkpoint",
    "eval_every",
    "eval_episodes",
    "resume",
    "overwrite",
)
"""Settings of a round's training that an algorithm retraining every round (DAgger, BCO) sets
itself; its nested training config offers no flag for them."""


_LEGACY_NAMES = {"out_dir": "out", "num_threads": "threads"}
"""Names a run folder's config.json may hold from before the settings had one name each."""


@dataclass(frozen=True)
class TrainConfig:
    """What to learn from, with which policy, for how long, and where to write the run."""

    dataset: str = ""
    """The demonstrations: an HDF5 file (robomimic or Isaac Lab layout) or a LeRobot dataset
    folder."""
    out: str = "runs/train"
    """Run folder: config, logs and checkpoints go here."""
    policy: PolicyConfig = field(default_factory=RNNConfig)
    """Policy kind and config: mlp, gmm, rnn (BC-RNN: LSTM 2x400, sequence 10; head=gmm for
    BC-RNN-GMM), transformer, act, diffusion or flow."""
    epochs: int = 100
    """Training epochs."""
    steps_per_epoch: int | None = 100
    """Gradient steps per epoch (robomimic: 100); None = one pass over the training windows."""
    batch_size: int = 100
    """Windows per gradient step (robomimic: 100); under torchrun, per process: a step's
    global batch is batch_size x processes."""
    lr: float = 1e-4
    """Adam learning rate (robomimic: 1e-4)."""
    weight_decay: float = 0.0
    """Adam L2 weight decay."""
    grad_clip: float | None = None
    """Clip the gradient norm to this value; None = no clipping."""
    lr_schedule: str = "constant"
    """Learning rate over the optimizer steps after the warmup: "constant" (lr), or "cosine"
    (half a cosine from lr down to 0 at the run's last step)."""
    warmup_steps: int = 0
    """Ramp the learning rate linearly over the first this many optimizer steps (step k of
    them uses lr * k / warmup_steps); 0 = no warmup."""
    ema_decay: float | None = None
    """Keep an exponential moving average (EMA) of the policy's weights, at most this decay
    per step (e.g. 0.999), and validate, roll out and save the average instead of the trained
    weights; None = off. Refused for a policy averaging its own (diffusion with ema=true)."""
    ema_power: float = 0.75
    """EMA warmup: the decay after n updates is min(1 - n^-ema_power, ema_decay)."""
    seed: int = 0
    """Seed of weights, window sampling and the train/valid split (same seed, same curve)."""
    train_mask: str = "train"
    """Train on the demos of mask/<name> if the file has it (e.g. `curated_train` from
    `apprentice filter --split`)."""
    valid_mask: str = "valid"
    """Validate on the demos of mask/<name> if the file has it."""
    valid_fraction: float = 0.1
    """Without train/valid filters in the file: fraction of demos held out for validation
    (seeded split), in [0, 1)."""
    eval_every: int = 10
    """Roll out on the dataset's task every this many epochs (and after the last) to pick the
    best checkpoint; 0 = never."""
    eval_episodes: int = 20
    """Rollouts per periodic evaluation (held-out seeds, kept apart from `eval`'s)."""
    save_every: int = 0
    """Also keep the weights every this many epochs as epoch_<N>.pt (learning curves); 0 = no."""
    threads: int | None = None
    """torch CPU threads (>= 1); None = one per core (under torchrun, OMP_NUM_THREADS: torchrun
    sets 1). Use 1 when other jobs share the cores."""
    precision: str = "fp32"
    """Forward-pass precision: fp32, or bf16 (autocast: about 1.5x faster on CPUs with
    AVX-512 bf16 units)."""
    device: str = "cpu"
    """Where the weights train: "cpu", "cuda", "cuda:N", or "auto" (CUDA when torch has it).
    Checkpoints are written with CPU tensors and rollouts run on a CPU copy, so a run trained
    on a GPU evaluates, exports and resumes anywhere."""
    dist_timeout: float = 300.0
    """Under torchrun: seconds a process waits for the others to join and at each exchange
    of a training step before the run stops with one line (resume it with the same
    command); rank 0's validation, rollouts and checkpoints are waited for without it."""
    log_every: int = 50
    """Log the step loss to TensorBoard every this many steps."""
    wandb: str | None = None
    """Also log the config and each epoch's scalars to this Weights & Biases project (offline
    under out/wandb/ without W&B credentials or network); None = TensorBoard only."""
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
            (
                self.threads is None or self.threads >= 1,
                f"threads must be >= 1, not {self.threads}",
            ),
            (self.eval_every >= 0, "eval_every must be >= 0"),
            (self.save_every >= 0, "save_every must be >= 0"),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0"),
            (self.precision in ("fp32", "bf16"), "precision must be 'fp32' or 'bf16'"),
            (
                self.lr_schedule in LR_SCHEDULES,
                f"unknown lr_schedule {self.lr_schedule!r}; known: {', '.join(LR_SCHEDULES)}",
            ),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, not {self.warmup_steps}"),
            (self.dist_timeout > 0, f"dist_timeout must be > 0, not {self.dist_timeout}"),
            (
                self.ema_decay is None or 0.0 < self.ema_decay < 1.0,
                f"ema_decay must be in (0, 1) or None, not {self.ema_decay}",
            ),
            (self.ema_power > 0.0, f"ema_power must be > 0, not {self.ema_power}"),
            (
                self.ema_decay is None or not self.policy.keeps_ema,
                f"ema_decay is set, but the {self.policy.name} policy keeps its own EMA; "
                "turn one off (policy arg ema=false, or no ema_decay)",
            ),
        ]
        _parse_device(self.device)  # a name torch cannot parse fails here; a missing GPU in train
        for ok, message in checks:
            if not ok:
                raise ApprenticeError(f"train config: {message}")
        check_valid_fraction(self.valid_fraction, "train config: valid_fraction")

    def resume_free_fields(self) -> frozenset[str]:
        """The fields a resume of this run may change: RESUME_FREE_FIELDS, less epochs under
        a cosine schedule, whose length is the run's (more epochs would bend the curve that
        the epochs done followed)."""
        if self.lr_schedule == "cosine":
            return RESUME_FREE_FIELDS - {"epochs"}
        return RESUME_FREE_FIELDS

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["policy"] = self.policy.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The config of a run's config.json, also in an older layout (`out_dir`,
        `num_threads`, a policy's flat camera fields)."""
        d = {_LEGACY_NAMES.get(k, k): v for k, v in d.items()}
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


def config_from_overrides(cls: type[_C], values: dict[str, Any], what: str) -> _C:
    """A config dataclass from key=value overrides (`parse_overrides`' dict): a nested
    config's fields by their dotted path (`train.epochs`), a policy by its kind
    (`train.policy=gmm`) and its fields (`train.policy.hidden_dims=64,64`), tuple fields as
    JSON or comma lists. Unknown keys are one error that lists the known ones."""
    return _from_overrides(cls, values, what, None)


def _from_overrides(cls: type[Any], values: dict[str, Any], what: str, base: Any) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted({k.split(".")[0] for k in values} - known)
    if unknown:
        raise ApprenticeError(
            f"{what}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        inner = {k[len(f.name) + 1 :]: v for k, v in values.items() if k.startswith(f.name + ".")}
        tp, _ = strip_optional(hints[f.name])
        default = getattr(base, f.name) if base is not None else None
        if isinstance(tp, type) and issubclass(tp, PolicyConfig):
            current = default if default is not None else field_default(f)
            if f.name in values:
                current = policy_config_from_dict({"name": values[f.name]})
            if inner:
                current = policy_config_from_dict({**current.to_dict(), **inner})
            kwargs[f.name] = current
        elif isinstance(tp, type) and is_dataclass(tp) and (inner or f.name in values):
            if f.name in values:
                raise ApprenticeError(f"{what}: set {f.name}'s fields as {f.name}.<field>=value")
            start = default if default is not None else field_default(f)
            kwargs[f.name] = _from_overrides(tp, inner, f"{what}: {f.name}", start)
        elif inner:
            raise ApprenticeError(f"{what}: {f.name} has no fields ({', '.join(sorted(inner))})")
        elif f.name in values:
            v = values[f.name]
            item_type = tuple_item_type(hints[f.name])
            kwargs[f.name] = coerce_tuple(v, item_type, f"{what}: {f.name}") if item_type else v
    if base is not None:
        return replace(base, **kwargs)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ApprenticeError(f"{what}: {exc}") from None
