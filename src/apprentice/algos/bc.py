"""Behaviour cloning: the update step the shared trainer runs on sampler batches.

BC is supervised learning on demonstration windows: minimise `policy.loss(batch)` (L2 or NLL,
masked on padded steps). DAgger and friends reuse these steps on their own aggregated data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from apprentice.policies.base import Policy


class NonFiniteLoss(Exception):
    """The loss became NaN or inf; the trainer turns it into an ApprenticeError with context."""


def batch_to_tensors(
    batch: dict[str, np.ndarray], device: torch.device | None = None
) -> dict[str, Tensor]:
    """Sampler batch (numpy) -> tensors sharing its memory on the CPU, or copied to `device`
    (images cross as uint8, a quarter of the float bytes)."""
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
    if device is None or device.type == "cpu":
        return tensors
    return {k: v.to(device, non_blocking=True) for k, v in tensors.items()}


def bc_update(
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, np.ndarray],
    *,
    grad_clip: float | None = None,
    bf16: bool = False,
    device: torch.device | None = None,
) -> tuple[float, dict[str, float]]:
    """One gradient step on `batch`; returns the loss before the step and the policy's info.

    bf16: run the forward pass under bfloat16 autocast (weights and the optimizer stay
    float32); the backward pass follows the forward's dtypes, as autocast prescribes.
    device: where the policy's weights are (None: the CPU); the batch is moved there.
    """
    device_type = "cpu" if device is None else device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        loss, info = policy.loss(batch_to_tensors(batch, device))
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLoss(value)
    # set_to_none skips a memset per parameter; the next backward writes fresh grads.
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
    optimizer.step()
    policy.after_optimizer_step()
    return value, info


def bc_validation_loss(
    policy: Policy, batches: Iterable[dict[str, np.ndarray]], device: torch.device | None = None
) -> float | None:
    """Mean loss over `batches` without gradients (None if there are none)."""
    total, count = 0.0, 0
    was_training = policy.training
    policy.eval()
    with torch.no_grad():
        for batch in batches:
            loss, _ = policy.loss(batch_to_tensors(batch, device))
            total += float(loss)
            count += 1
    policy.train(was_training)
    return total / count if count else None
