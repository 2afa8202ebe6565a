"""Behaviour cloning: the update step the shared trainer runs on sampler batches.

BC is supervised learning on demonstration windows: minimise `policy.loss(batch)` (L2 or NLL,
masked on padded steps). DAgger and friends reuse these steps on their own aggregated data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from apprentice.policies.base import Policy
from apprentice.policies.transfer import host_to_device


class NonFiniteLoss(Exception):
    """The loss became NaN or inf; the trainer turns it into an ApprenticeError with context."""


def batch_to_tensors(
    batch: dict[str, np.ndarray], device: torch.device | None = None
) -> dict[str, Tensor]:
    """Sampler batch (numpy) -> tensors sharing its memory on the CPU, or copied to `device`
    (images cross as uint8, a quarter of the float bytes; to a GPU without waiting for it,
    `host_to_device`)."""
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
    if device is None or device.type == "cpu":
        return tensors
    return {k: host_to_device(v, device) for k, v in tensors.items()}


def bc_step(
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, np.ndarray],
    *,
    grad_clip: float | None = None,
    bf16: bool = False,
    device: torch.device | None = None,
    check_finite: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One gradient step on `batch`, without waiting for the device.

    Returns the loss before the step and the policy's info, as detached 0-d tensors on the
    policy's device. Nothing here reads a value back, so on a GPU the host queues the next
    batch while this step runs; the caller reads the losses back (and checks that they are
    finite) when it chooses: the trainer does, 32 steps at a time.

    bf16: run the forward pass under bfloat16 autocast (weights and the optimizer stay
    float32); the backward pass follows the forward's dtypes, as autocast prescribes.
    device: where the policy's weights are (None: the CPU); the batch is moved there.
    check_finite: read the loss back before stepping, and raise `NonFiniteLoss` on NaN or
    inf with the weights untouched (this waits for the device).
    """
    device_type = "cpu" if device is None else device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        loss, info = policy.loss(batch_to_tensors(batch, device))
    if check_finite and not math.isfinite(value := float(loss.detach())):
        raise NonFiniteLoss(value)
    # set_to_none skips a memset per parameter; the next backward writes fresh grads.
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
    optimizer.step()
    policy.after_optimizer_step()
    return loss.detach(), info


def bc_update(
    policy: Policy, optimizer: torch.optim.Optimizer, batch: dict[str, np.ndarray], **options: Any
) -> tuple[float, dict[str, float]]:
    """`bc_step(..., check_finite=True)` (same keyword options), with the loss and the policy's
    info read back as Python floats: simple, and a wait for the device every step."""
    loss, info = bc_step(policy, optimizer, batch, check_finite=True, **options)
    return float(loss), {k: float(v) for k, v in info.items()}


def bc_validation_loss(
    policy: Policy, batches: Iterable[dict[str, np.ndarray]], device: torch.device | None = None
) -> float | None:
    """Mean loss over `batches` without gradients (None if there are none); read back once."""
    losses: list[Tensor] = []
    was_training = policy.training
    policy.eval()
    with torch.no_grad():
        for batch in batches:
            losses.append(policy.loss(batch_to_tensors(batch, device))[0])
    policy.train(was_training)
    return float(torch.stack(losses).mean()) if losses else None
