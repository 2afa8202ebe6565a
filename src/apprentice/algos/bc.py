"""Behaviour cloning: supervised learning on demonstration windows.

BC minimises the policy's loss, `policy(batch)` (L2 or NLL, masked on padded steps), one
`Trainer.step` per sampler batch (algos/trainer.py); DAgger and friends run that trainer on
their own aggregated data. Here: the batch conversion and the validation loss.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from apprentice.policies.base import Policy
from apprentice.policies.transfer import host_to_device


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


def bc_validation_loss(
    policy: Policy, batches: Iterable[dict[str, np.ndarray]], device: torch.device | None = None
) -> float | None:
    """Mean loss over `batches` without gradients (None if there are none); read back once."""
    losses: list[Tensor] = []
    was_training = policy.training
    policy.eval()
    with torch.no_grad():
        for batch in batches:
            losses.append(policy(batch_to_tensors(batch, device))[0])
    policy.train(was_training)
    return float(torch.stack(losses).mean()) if losses else None
