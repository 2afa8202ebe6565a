"""Exponential moving averages of weights (EMA): the decay's warmup, the update, and the
average of a whole policy that the trainer keeps (`TrainConfig.ema_decay`).

Two things average weights: the diffusion policy, over its own denoiser and camera encoders
(`DiffusionConfig.ema`, stored in its checkpoints), and the trainer, over any policy's
parameters (`PolicyAverage`). Both use `ema_decay` and `ema_update`, so one formula holds
wherever weights are averaged; a policy that averages its own (`PolicyConfig.keeps_ema`)
refuses the trainer's on top.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from apprentice.policies.base import Policy


def ema_decay(updates: int, power: float, max_decay: float) -> float:
    """Decay of the EMA update after `updates` earlier ones: 1 - updates^-power, capped.

    Chi et al.'s EMAModel (inv_gamma = 1, update_after_step = 0): the first two updates copy
    the weights, then the average's horizon grows as a power of the step count.
    """
    if updates <= 0:
        return 0.0
    return min(1.0 - updates**-power, max_decay)


@torch.no_grad()
def ema_update(shadow: Mapping[str, Tensor], live: nn.Module, decay: float) -> None:
    """shadow <- decay * shadow + (1 - decay) * live for each of `live`'s parameters, found in
    `shadow` by name; `live`'s buffers (normalizer statistics, running statistics, counters)
    are copied, not averaged."""
    pairs = [(shadow[key], p.detach()) for key, p in live.named_parameters()]
    if pairs:  # one fused update, not a kernel per parameter
        torch._foreach_lerp_([s for s, _ in pairs], [p for _, p in pairs], 1.0 - decay)
    for key, buf in live.named_buffers():
        shadow[key].copy_(buf)


class PolicyAverage:
    """The EMA of a policy's parameters, as a policy (`policy`) that validates, rolls out and
    is saved in place of the trained one, so every checkpoint acts with the average.

    `policy` is a deep copy of the trained policy, frozen and in eval mode, that never trains;
    `update` after each optimizer step moves it toward the trained weights with
    `ema_decay(updates, power, max_decay)`. It is no submodule of the trained policy: the
    optimizer and the trained policy's state_dict never see it.
    """

    def __init__(self, policy: Policy, *, max_decay: float, power: float) -> None:
        self.policy = copy.deepcopy(policy).requires_grad_(False).eval()
        self.max_decay, self.power = max_decay, power
        self.updates = 0
        """Updates so far; the next one's decay follows from it (a resume restores it with
        the weights)."""
        # Updated in place (load_state_dict copies into them too): looked up once.
        self._shadow = {**dict(self.policy.named_parameters()), **dict(self.policy.named_buffers())}

    def update(self, trained: Policy) -> None:
        """One EMA step toward `trained`'s current weights."""
        ema_update(self._shadow, trained, ema_decay(self.updates, self.power, self.max_decay))
        self.updates += 1
