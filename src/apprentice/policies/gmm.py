"""BC with an MLP trunk and a Gaussian-mixture action head (robomimic's "BC-GMM").

A mixture of K diagonal Gaussians can represent the several ways human demonstrators solve
the same state, where an L2 head would average them (Mandlekar et al. 2021, robomimic, Sec. 4).
Defaults follow robomimic's BC-GMM: 5 modes, softplus stds + 1e-4 floor, tanh on the means
(not on the distribution), and near-zero noise at evaluation.

Shape legend: B batch, T time, Din input features, H trunk features, K modes, A action.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError
from apprentice.policies.base import Policy, PolicyConfig, masked_mean, register_policy
from apprentice.policies.mlp import check_activation, check_init, mlp_trunk, orthogonal_init

_LOG_2PI = math.log(2.0 * math.pi)
_TANH_EPS = 1e-6
_LOW_NOISE_STD = 1e-4


@dataclass(frozen=True)
class GMMHeadOptions:
    """Settings of a Gaussian-mixture action head, shared by every config that has one
    (gmm; rnn and transformer with head=gmm)."""

    RUN_TIME_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"deterministic_act", "low_noise_eval", "sample_seed"}
    )

    num_modes: int = 5
    """gmm head: mixture components K."""
    min_std: float = 1e-4
    """gmm head: floor added to each softplus standard deviation, so the NLL cannot diverge."""
    use_tanh: bool = False
    """gmm head: squash the mixture through tanh (True) or only the means (False, robomimic)."""
    deterministic_act: bool = True
    """gmm head: act returns the most likely mode's mean; False samples the mixture."""
    low_noise_eval: bool = True
    """gmm head, sampling: use std 1e-4 (robomimic) instead of the predicted stds."""
    sample_seed: int = 0
    """Seed of the act-time sampler, re-applied on every reset()."""


@dataclass(frozen=True)
class GMMConfig(PolicyConfig, GMMHeadOptions):
    """Behaviour cloning with an MLP trunk and a Gaussian-mixture head (NLL loss)."""

    hidden_dims: tuple[int, ...] = (1024, 1024)
    """Widths of the trunk's hidden layers (robomimic BC-GMM: 1024, 1024)."""
    activation: str = "relu"
    """Hidden activation: relu, gelu, elu, tanh or mish."""
    init: str = "pytorch"
    """Weights: pytorch (PyTorch's default, as robomimic's BC-GMM) or orthogonal (trunk gain
    sqrt(2); the mixture's mean, scale and logit layers gain 0.01; zero biases), as the mlp's."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hidden_dims", tuple(int(h) for h in self.hidden_dims))
        check_activation(self.activation, self.name)
        check_init(self.init, self.name)
        check_gmm(self.num_modes, self.min_std, self.name)

    def build(self, spec: ObsActSpec, normalizer_state: dict[str, Any]) -> GMMPolicy:
        return GMMPolicy(self, spec, normalizer_state)

    @classmethod
    def tiny(cls, **overrides: Any) -> Self:
        return cls(**{"hidden_dims": (32,), **overrides})


ACTION_HEADS = ("deterministic", "gmm")
"""Heads of the sequence policies (rnn, transformer): tanh + L2, or the mixture + NLL."""


def check_head(head: str, policy: str) -> None:
    if head not in ACTION_HEADS:
        raise ApprenticeError(
            f"{policy} policy: unknown head {head!r}; known: {', '.join(ACTION_HEADS)}"
        )


def make_action_head(
    head: str, options: GMMHeadOptions, in_dim: int, action_dim: int
) -> tuple[GMMHead | None, nn.Linear | None]:
    """(the mixture head, None) for head="gmm", else (None, the linear layer tanh follows)."""
    if head == "gmm":
        gmm = GMMHead(
            in_dim,
            action_dim,
            num_modes=options.num_modes,
            min_std=options.min_std,
            use_tanh=options.use_tanh,
        )
        return gmm, None
    return None, nn.Linear(in_dim, action_dim)


def head_loss(
    gmm: GMMHead | None, linear: nn.Linear | None, h: Tensor, actions: Tensor, mask: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss of the head `make_action_head` built on features h (B, T, H): the mixture's NLL,
    or the L2 error of tanh(linear); masked on padded steps (mask (B, T))."""
    if gmm is not None:
        loss = masked_mean(-gmm.log_prob(h, actions), mask)
        return loss, {"nll": loss.detach()}
    assert linear is not None
    loss = masked_mean((linear(h).tanh() - actions).pow(2).mean(-1), mask)  # over (B, T)
    return loss, {"mse": loss.detach()}


def head_act(
    gmm: GMMHead | None,
    linear: nn.Linear | None,
    feat: Tensor,
    *,
    deterministic: bool,
    low_noise: bool,
    generator: torch.Generator | None,
) -> Tensor:
    """Actions (B, A) of the head `make_action_head` built, from features (B, H)."""
    if gmm is not None:
        return gmm.act(feat, deterministic=deterministic, low_noise=low_noise, generator=generator)
    assert linear is not None
    return linear(feat).tanh()


def sampling_refusal(options: GMMHeadOptions, gmm: GMMHead | None, policy: str) -> str | None:
    """Why a policy whose head is `gmm` cannot batch separate streams (`Policy.batching_refusal`),
    or None: a mixture head that samples draws every row from one generator, so a row's
    draws depend on the rows beside it; the most likely mode's mean depends on its row alone."""
    if gmm is None or options.deterministic_act:
        return None
    return (
        f"the {policy} policy samples its gmm head (deterministic_act=false) from one "
        "generator that all rows share"
    )


def check_gmm(num_modes: int, min_std: float, policy: str) -> None:
    if num_modes < 1:
        raise ApprenticeError(f"{policy} policy: num_modes must be >= 1, got {num_modes}")
    if min_std <= 0:
        raise ApprenticeError(f"{policy} policy: min_std must be > 0, got {min_std}")


class GMMHead(nn.Module):
    """Features (..., H) -> mixture parameters; NLL of actions and act-time actions."""

    def __init__(
        self, in_dim: int, action_dim: int, *, num_modes: int, min_std: float, use_tanh: bool
    ) -> None:
        super().__init__()
        self.num_modes = num_modes
        self.action_dim = action_dim
        self.min_std = min_std
        self.use_tanh = use_tanh
        self.means = nn.Linear(in_dim, num_modes * action_dim)
        self.scales = nn.Linear(in_dim, num_modes * action_dim)
        self.logits = nn.Linear(in_dim, num_modes)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h (..., H) -> means (..., K, A), stds (..., K, A), logits (..., K)."""
        shape = (*h.shape[:-1], self.num_modes, self.action_dim)
        means = self.means(h).reshape(shape)  # (..., K, A)
        if not self.use_tanh:
            # Without a tanh-squashed distribution, keep the means inside the action box.
            means = means.tanh()
        stds = F.softplus(self.scales(h)).reshape(shape) + self.min_std  # (..., K, A)
        return means, stds, self.logits(h)

    def log_prob(self, h: Tensor, actions: Tensor) -> Tensor:
        """log p(actions (..., A) | h (..., H)) -> (...)."""
        means, stds, logits = self(h)
        target = actions
        if self.use_tanh:
            # Change of variables a = tanh(u): log p(a) = log p(u) - sum log(1 - a^2).
            clipped = actions.clamp(-1 + _TANH_EPS, 1 - _TANH_EPS)
            target = torch.atanh(clipped)
        z = (target[..., None, :] - means) / stds  # (..., K, A)
        comp = (-0.5 * z.pow(2) - stds.log() - 0.5 * _LOG_2PI).sum(-1)  # (..., K)
        log_p = torch.logsumexp(comp + logits.log_softmax(-1), dim=-1)  # (...)
        if self.use_tanh:
            log_p = log_p - torch.log1p(-clipped.pow(2) + _TANH_EPS).sum(-1)
        return log_p

    def act(
        self,
        h: Tensor,
        *,
        deterministic: bool,
        low_noise: bool,
        generator: torch.Generator | None,
    ) -> Tensor:
        """Actions (B, A) from h (B, H): the most likely mode's mean, or a mixture sample."""
        means, stds, logits = self(h)  # (B, K, A), (B, K, A), (B, K)
        if deterministic:
            mode = logits.argmax(-1)  # (B,)
            action = means[torch.arange(h.shape[0]), mode]  # (B, A)
        else:
            mode = torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]  # (B,)
            rows = torch.arange(h.shape[0])
            std = (
                torch.full_like(stds[rows, mode], _LOW_NOISE_STD) if low_noise else stds[rows, mode]
            )
            noise = torch.randn(std.shape, generator=generator)  # (B, A)
            action = means[rows, mode] + std * noise
        return action.tanh() if self.use_tanh else action


class GMMPolicy(Policy):
    """obs (frame-stacked, normalized) -> MLP trunk -> GMM head."""

    config: GMMConfig

    def __init__(self, config: GMMConfig, spec: ObsActSpec, normalizer_state: dict[str, Any]):
        super().__init__(config, spec, normalizer_state)
        self.trunk = mlp_trunk(self.input_dim, config.hidden_dims, config.activation)
        feat = config.hidden_dims[-1] if config.hidden_dims else self.input_dim
        self.head = GMMHead(
            feat,
            self.action_dim,
            num_modes=config.num_modes,
            min_std=config.min_std,
            use_tanh=config.use_tanh,
        )
        if config.init == "orthogonal":
            orthogonal_init(self.trunk, self.head.means, self.head.scales, self.head.logits)
        self._generator = torch.Generator().manual_seed(config.sample_seed)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x = self.obs_windows(batch)  # (B, T, Din)
        actions, mask = self.targets(batch, x.shape[1])  # (B, T, A), (B, T)
        log_p = self.head.log_prob(self.trunk(x), actions)  # (B, T)
        loss = masked_mean(-log_p, mask)
        return loss, {"nll": loss.detach()}

    def _act_step(self, x: Tensor, fresh: Tensor) -> Tensor:
        return self.head.act(
            self.trunk(x),
            deterministic=self.config.deterministic_act,
            low_noise=self.config.low_noise_eval,
            generator=self._generator,
        )

    def _reset_rows(self, rows: Tensor | None) -> None:
        if rows is None:
            self._generator.manual_seed(self.config.sample_seed)

    def batching_refusal(self) -> str | None:
        return sampling_refusal(self.config, self.head, self.config.name)

    def export_step(
        self, x: Tensor, step: Tensor | None, state: dict[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        # The most likely mode's mean: no sampler state for the graph to carry.
        action = self.head.act(
            self.trunk(x), deterministic=True, low_noise=self.config.low_noise_eval, generator=None
        )
        return action, {}  # (B, A)


register_policy("gmm")(GMMConfig)
