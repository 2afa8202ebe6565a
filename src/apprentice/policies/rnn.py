"""BC-RNN: an LSTM over observation sequences with a deterministic or GMM head.

robomimic (Mandlekar et al. 2021) found BC-RNN the strongest BC variant on low-dim human data:
LSTM 2x400, trained on windows of 10 steps from a zero state. At rollout, robomimic starts the
hidden state afresh every `horizon` (10) steps, so run time sees the same context lengths as
training; `rnn_horizon` keeps that behaviour (0 = never reset within an episode).
The "gmm" head is robomimic's BC-RNN-GMM (5 modes).

Shape legend: B batch, T time, Din input features, H hidden size, L layers, A action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn

from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError
from apprentice.policies.base import Policy, PolicyConfig, RunState, register_policy
from apprentice.policies.gmm import (
    GMMHeadOptions,
    check_gmm,
    check_head,
    head_act,
    head_loss,
    make_action_head,
    sampling_refusal,
)


@dataclass(frozen=True)
class RNNConfig(PolicyConfig, GMMHeadOptions):
    """Behaviour cloning with an LSTM (robomimic BC-RNN / BC-RNN-GMM)."""

    RUN_TIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"rnn_horizon"})

    seq_len: int = 10
    """Training window length T (robomimic BC-RNN: 10)."""
    hidden_dim: int = 400
    """LSTM hidden size H."""
    num_layers: int = 2
    """Stacked LSTM layers L."""
    rnn_horizon: int = 10
    """At act time, restart the hidden state every this many steps (robomimic); 0 = never."""
    head: str = "deterministic"
    """Action head: "deterministic" (tanh, L2 loss) or "gmm" (BC-RNN-GMM, NLL loss)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_head(self.head, self.name)
        if self.hidden_dim < 1 or self.num_layers < 1:
            raise ApprenticeError("rnn policy: hidden_dim and num_layers must be >= 1")
        if self.rnn_horizon < 0:
            raise ApprenticeError(f"rnn policy: rnn_horizon must be >= 0, got {self.rnn_horizon}")
        check_gmm(self.num_modes, self.min_std, self.name)

    def build(self, spec: ObsActSpec, normalizer_state: dict[str, Any]) -> RNNPolicy:
        return RNNPolicy(self, spec, normalizer_state)

    @classmethod
    def tiny(cls, **overrides: Any) -> Self:
        return cls(**{"hidden_dim": 16, "seq_len": 4, "rnn_horizon": 4, **overrides})


class RNNPolicy(Policy):
    """obs sequence (frame-stacked, normalized) -> LSTM -> per-step action head."""

    config: RNNConfig

    def __init__(self, config: RNNConfig, spec: ObsActSpec, normalizer_state: dict[str, Any]):
        super().__init__(config, spec, normalizer_state)
        self.lstm = nn.LSTM(
            self.input_dim, config.hidden_dim, num_layers=config.num_layers, batch_first=True
        )
        self.gmm, self.linear = make_action_head(
            config.head, config, config.hidden_dim, self.action_dim
        )
        self._generator = torch.Generator().manual_seed(config.sample_seed)
        # Act-time recurrent state: (h, c) each (L, B, H), and steps since each row's restart.
        self._state: tuple[Tensor, Tensor] | None = None
        self._counter: Tensor | None = None  # (B,) int64

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x = self.obs_windows(batch)  # (B, T, Din)
        actions, mask = self.targets(batch, x.shape[1])  # (B, T, A), (B, T)
        h, _ = self.lstm(x)  # (B, T, H), from a zero state as robomimic trains
        return head_loss(self.gmm, self.linear, h, actions, mask)

    def _act_step(self, x: Tensor, fresh: Tensor) -> Tensor:
        b = x.shape[0]
        layers, hidden = self.config.num_layers, self.config.hidden_dim
        if self._state is None or self._counter is None or self._state[0].shape[1] != b:
            self._state = (torch.zeros(layers, b, hidden), torch.zeros(layers, b, hidden))
            self._counter = torch.zeros(b, dtype=torch.long)
        restart = fresh.clone()  # (B,)
        if self.config.rnn_horizon > 0:
            restart |= self._counter % self.config.rnn_horizon == 0
        h0, c0 = self._state
        keep = (~restart).to(h0.dtype)[None, :, None]  # (1, B, 1)
        self._counter = torch.where(restart, torch.zeros_like(self._counter), self._counter)
        out, self._state = self.lstm(x[:, None], (h0 * keep, c0 * keep))  # out (B, 1, H)
        self._counter = self._counter + 1
        return head_act(
            self.gmm,
            self.linear,
            out[:, 0],  # (B, H)
            deterministic=self.config.deterministic_act,
            low_noise=self.config.low_noise_eval,
            generator=self._generator,
        )

    def _reset_rows(self, rows: Tensor | None) -> None:
        if rows is None:
            self._state = None
            self._counter = None
            self._generator.manual_seed(self.config.sample_seed)

    def _row_state(self) -> RunState:
        if self._state is None or self._counter is None:
            return {}
        h, c = self._state  # (L, B, H) each
        # Batch first, as every run-state tensor: (B, L, H), (B, L, H), (B,).
        return {"rnn_h": h.transpose(0, 1), "rnn_c": c.transpose(0, 1), "rnn_steps": self._counter}

    def _load_row_state(self, state: RunState) -> None:
        if "rnn_h" not in state:
            self._state, self._counter = None, None
            return
        h, c = state["rnn_h"], state["rnn_c"]  # (B, L, H) each
        self._state = (h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous())
        self._counter = state["rnn_steps"]  # (B,)

    def batching_refusal(self) -> str | None:
        return sampling_refusal(self.config, self.gmm, self.config.name)

    def export_state(self) -> dict[str, tuple[int, ...]]:
        shape = (self.config.num_layers, 1, self.config.hidden_dim)  # (L, 1, H)
        return {"h": shape, "c": shape}

    def export_step(
        self, x: Tensor, step: Tensor | None, state: dict[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        assert step is not None  # the exported step keeps (h, c), so it counts steps
        # _act_step restarts at steps 0, horizon, 2 * horizon, ... of an episode.
        restart = step == 0  # (B,)
        if self.config.rnn_horizon > 0:
            restart = restart | (step % self.config.rnn_horizon == 0)
        keep = (~restart).to(x.dtype)[None, :, None]  # (1, B, 1)
        out, (h, c) = self.lstm(x[:, None], (state["h"] * keep, state["c"] * keep))  # (B, 1, H)
        action = head_act(
            self.gmm,
            self.linear,
            out[:, 0],  # (B, H)
            deterministic=True,
            low_noise=self.config.low_noise_eval,
            generator=None,
        )
        return action, {"h": h, "c": c}


register_policy("rnn")(RNNConfig)
