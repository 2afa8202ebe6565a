"""The trainer's optimizer and its learning-rate schedule.

Adam on the policy's parameters at `TrainConfig.lr`; with a warmup or a cosine schedule, a
`LambdaLR` scales that rate by `lr_factor` of the optimizer steps taken. The default
(constant, no warmup) makes no scheduler at all: nothing touches the optimizer's lr.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from apprentice.algos.config import TrainConfig
from apprentice.errors import ApprenticeError
from apprentice.policies.base import Policy


def make_optimizer(policy: Policy, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam on `policy`'s trainable parameters (a frozen camera encoder's are not) with
    `config`'s lr and weight decay."""
    # Fused Adam: one kernel updates every parameter; 10-25% more steps/s than the
    # per-parameter loop for the 2x1024 MLP on CPU (benchmarks/bench_train.py).
    trainable = [p for p in policy.parameters() if p.requires_grad]
    return torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay, fused=True)


def lr_factor(step: int, *, schedule: str, warmup_steps: int, total_steps: int) -> float:
    """The learning rate of optimizer step `step` (0, 1, ...) as a fraction of lr.

    Warmup: step k < warmup_steps uses (k + 1) / warmup_steps, so the last warmup step runs
    at lr and none at 0. Then "constant" stays at 1; "cosine" follows half a cosine,
    (1 + cos(pi * p)) / 2 with p = (step - warmup_steps) / (total_steps - warmup_steps), from 1
    to 0 at step total_steps (one past the last; Loshchilov & Hutter 2017, without restarts).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_lr_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int | None
) -> LambdaLR | None:
    """The scheduler of `config`'s lr_schedule and warmup over `config.epochs` epochs of
    `steps_per_epoch` steps, stepped after each optimizer step; None for a constant rate
    without warmup. `steps_per_epoch` may be None only then, or for a constant rate."""
    if config.lr_schedule == "constant" and config.warmup_steps == 0:
        return None
    if config.lr_schedule == "cosine" and steps_per_epoch is None:
        raise ApprenticeError(
            "train config: a cosine lr_schedule needs steps_per_epoch to know the run's length"
        )
    total = config.epochs * (steps_per_epoch or 0)
    return LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step, schedule=config.lr_schedule, warmup_steps=config.warmup_steps, total_steps=total
        ),
    )
