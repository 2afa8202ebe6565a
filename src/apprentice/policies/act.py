"""ACT: Action Chunking with Transformers (Zhao et al. 2023, "Learning Fine-Grained Bimanual
Manipulation with Low-Cost Hardware").

A conditional VAE whose decoder predicts a chunk of k future actions from the current
observation and a style latent z:

- posterior encoder q(z | obs, a_t..t+k-1): a transformer encoder over [CLS, obs token(s),
  k action tokens]; the CLS output gives z's mean and log-variance (latent 32). Padded steps
  past an episode end are masked out of its attention, as ACT's `is_pad` does.
- decoder: a transformer encoder over [z token, obs token(s)], then a transformer decoder
  whose k learned queries cross-attend to it and give the chunk (B, k, A).
- loss: L1 on the chunk (masked on padding) + kl_weight * KL(q || N(0, I)) (ACT: L1, beta 10).
  At act time, and for validation, z is the prior mean 0 / the posterior mean, so both are
  deterministic.

Training windows are whole chunks: seq_len = chunk_size, with the sampler's mask for steps
past an episode end. At run time `temporal_ensemble` queries every step and averages the
overlapping chunks (ACT Sec. 3.3, weights exp(-m i), m = 0.01); without it, each chunk runs
open-loop for `execute_horizon` steps. Both are per row (`apprentice.policies.chunking`).

ACT's reference sizes (50 Hz, images): chunk 100, hidden 512, 8 heads, feed-forward 3200,
4 encoder layers, 7 decoder layers, 4 CVAE encoder layers, latent 32, dropout 0.1, lr 1e-5,
beta 10. The defaults here are for 20 Hz low-dim data on a CPU: chunk 20, hidden 128, 4 heads,
feed-forward 512, 2 layers each. Images come as encoded features through the base class's
`obs_windows` like every other observation, so this file never sees pixels.

Shape legend: B batch, k chunk size (= T), C frame_stack, D observation features, E hidden,
L latent, A action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn

from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError
from apprentice.policies.base import (
    Policy,
    PolicyConfig,
    RunState,
    masked_mean,
    register_policy,
)
from apprentice.policies.chunking import ActionQueue, TemporalEnsembler


@dataclass(frozen=True)
class ACTConfig(PolicyConfig):
    """Action chunking with a CVAE transformer (ACT), with optional temporal ensembling."""

    RUN_TIME_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"temporal_ensemble", "ensemble_decay", "execute_horizon"}
    )

    seq_len: int = 0
    """Training window T; 0 (default) = chunk_size, the only value ACT trains with."""
    chunk_size: int = 20
    """Actions k predicted per query (ACT: 100 at 50 Hz; about 20 at this project's 20 Hz)."""
    hidden_dim: int = 128
    """Transformer width E (ACT: 512)."""
    num_heads: int = 4
    """Attention heads; must divide hidden_dim (ACT: 8)."""
    ff_dim: int = 512
    """Feed-forward width of every transformer layer (ACT: 3200)."""
    encoder_layers: int = 2
    """Layers of the decoder's observation encoder (ACT: 4)."""
    decoder_layers: int = 2
    """Layers of the chunk decoder (ACT: 7)."""
    cvae_layers: int = 2
    """Layers of the posterior (CVAE) encoder over the action chunk (ACT: 4)."""
    latent_dim: int = 32
    """Size L of the style latent z (ACT: 32)."""
    dropout: float = 0.1
    """Dropout in every transformer layer (ACT: 0.1)."""
    kl_weight: float = 10.0
    """Weight beta of KL(q(z | obs, chunk) || N(0, I)) in the loss (ACT: 10)."""
    temporal_ensemble: bool = True
    """Act: query every step and average overlapping chunks (ACT); False = open-loop chunks."""
    ensemble_decay: float = 0.01
    """m in the ensembling weights exp(-m * i), i = 0 the oldest prediction (ACT: 0.01)."""
    execute_horizon: int = 0
    """Without ensembling: actions of each chunk executed before the next query; 0 = all k."""

    def __post_init__(self) -> None:
        if self.seq_len == 0:
            object.__setattr__(self, "seq_len", self.chunk_size)
        super().__post_init__()
        if self.chunk_size < 1:
            raise ApprenticeError(f"act policy: chunk_size must be >= 1, got {self.chunk_size}")
        if self.seq_len != self.chunk_size:
            raise ApprenticeError(
                f"act policy: seq_len={self.seq_len} differs from chunk_size={self.chunk_size}; "
                "ACT trains on whole chunks, set chunk_size only"
            )
        if not 0 <= self.execute_horizon <= self.chunk_size:
            raise ApprenticeError(
                f"act policy: execute_horizon must be in [0, chunk_size={self.chunk_size}], "
                f"got {self.execute_horizon}"
            )
        if min(self.hidden_dim, self.num_heads, self.ff_dim, self.latent_dim) < 1:
            raise ApprenticeError("act policy: hidden_dim, num_heads, ff_dim, latent_dim >= 1")
        if min(self.encoder_layers, self.decoder_layers, self.cvae_layers) < 1:
            raise ApprenticeError("act policy: encoder, decoder and cvae layers must be >= 1")
        if self.hidden_dim % self.num_heads:
            raise ApprenticeError(
                f"act policy: num_heads={self.num_heads} does not divide "
                f"hidden_dim={self.hidden_dim}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ApprenticeError(f"act policy: dropout must be in [0, 1), got {self.dropout}")
        if self.kl_weight < 0 or self.ensemble_decay < 0:
            raise ApprenticeError("act policy: kl_weight and ensemble_decay must be >= 0")

    def build(self, spec: ObsActSpec, normalizer_state: dict[str, Any]) -> ACTPolicy:
        return ACTPolicy(self, spec, normalizer_state)

    @classmethod
    def tiny(cls, **overrides: Any) -> Self:
        return cls(**{"hidden_dim": 16, "num_heads": 2, "ff_dim": 32, "chunk_size": 5, **overrides})


def _encoder(config: ACTConfig, layers: int) -> nn.TransformerEncoder:
    # Pre-LN (norm_first) rather than DETR's post-LN: it trains stably without ACT's warm-up.
    layer = nn.TransformerEncoderLayer(
        config.hidden_dim,
        config.num_heads,
        config.ff_dim,
        config.dropout,
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def _positions(count: int, width: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(1, count, width) * 0.02)


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the latent, mean over the batch (ACT)."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1).mean()


class ACTPolicy(Policy):
    """CVAE over action chunks; `_act_step` turns chunks into one action per step."""

    config: ACTConfig

    def __init__(self, config: ACTConfig, spec: ObsActSpec, normalizer_state: dict[str, Any]):
        super().__init__(config, spec, normalizer_state)
        e, k, c = config.hidden_dim, config.chunk_size, config.frame_stack
        # Posterior encoder q(z | obs, chunk): its own projections, as in ACT.
        self.cvae_cls = _positions(1, e)
        self.cvae_obs = nn.Linear(self.obs_dim, e)
        self.cvae_action = nn.Linear(self.action_dim, e)
        self.cvae_pos = _positions(1 + c + k, e)
        self.cvae = _encoder(config, config.cvae_layers)
        self.to_latent = nn.Linear(e, 2 * config.latent_dim)
        # Decoder p(chunk | obs, z).
        self.from_latent = nn.Linear(config.latent_dim, e)
        self.obs_proj = nn.Linear(self.obs_dim, e)
        self.memory_pos = _positions(1 + c, e)
        self.encoder = _encoder(config, config.encoder_layers)
        self.queries = _positions(k, e)
        decoder_layer = nn.TransformerDecoderLayer(
            e, config.num_heads, config.ff_dim, config.dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(
            decoder_layer, config.decoder_layers, norm=nn.LayerNorm(e)
        )
        self.action_head = nn.Linear(e, self.action_dim)
        # Run-time chunk execution, per row.
        self._ensembler = TemporalEnsembler(k, config.ensemble_decay)
        self._queue = ActionQueue(config.execute_horizon or k)

    def frames(self, x: Tensor) -> Tensor:
        """Stacked inputs (B, C * D) -> frames (B, C, D), the oldest first."""
        return x.reshape(x.shape[0], self.config.frame_stack, -1)

    def posterior(self, frames: Tensor, actions: Tensor, pad: Tensor) -> tuple[Tensor, Tensor]:
        """mu, logvar (B, L) of q(z | frames (B, C, D), actions (B, k, A)); pad (B, k) bool."""
        b = frames.shape[0]
        tokens = torch.cat(
            [self.cvae_cls.expand(b, -1, -1), self.cvae_obs(frames), self.cvae_action(actions)],
            dim=1,
        )  # (B, 1 + C + k, E)
        ignore = torch.cat(
            [torch.zeros(b, 1 + frames.shape[1], dtype=torch.bool, device=pad.device), pad], dim=1
        )
        h = self.cvae(tokens + self.cvae_pos, src_key_padding_mask=ignore)[:, 0]  # (B, E)
        mu, logvar = self.to_latent(h).chunk(2, dim=-1)  # (B, L) each
        return mu, logvar

    def decode(self, frames: Tensor, z: Tensor) -> Tensor:
        """The chunk (B, k, A) for frames (B, C, D) and latent z (B, L)."""
        memory = torch.cat([self.from_latent(z)[:, None], self.obs_proj(frames)], dim=1)
        memory = self.encoder(memory + self.memory_pos)  # (B, 1 + C, E)
        queries = self.queries.expand(frames.shape[0], -1, -1)  # (B, k, E)
        return self.action_head(self.decoder(queries, memory))  # (B, k, A)

    def predict_chunk(self, x: Tensor) -> Tensor:
        """Chunk (B, k, A) from stacked inputs x (B, C * D) with z = 0, the prior's mean."""
        z = x.new_zeros(x.shape[0], self.config.latent_dim)  # (B, L)
        return self.decode(self.frames(x), z)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x = self.first_step_features(batch)  # (B, C * D): the chunk's conditioning step
        actions, mask = self.targets(batch, self.config.chunk_size)  # (B, k, A), (B, k)
        frames = self.frames(x)  # (B, C, D)
        mu, logvar = self.posterior(frames, actions, mask < 0.5)  # (B, L) each
        if self.training:
            z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)  # reparameterization
        else:
            z = mu  # validation: the posterior mean, so the curve is not sampling noise
        pred = self.decode(frames, z)  # (B, k, A)
        l1 = masked_mean((pred - actions).abs().mean(-1), mask)
        kl = kl_to_standard_normal(mu, logvar)
        loss = l1 + self.config.kl_weight * kl
        return loss, {"l1": l1.detach(), "kl": kl.detach()}

    def _act_step(self, x: Tensor, fresh: Tensor) -> Tensor:
        if self.config.temporal_ensemble:
            return self._ensembler.step(self.predict_chunk(x), fresh)  # (B, A)
        return self._queue.step(fresh, lambda rows: self.predict_chunk(x[rows]))  # (B, A)

    def _reset_rows(self, rows: Tensor | None) -> None:
        self._ensembler.reset(rows)
        self._queue.reset(rows)

    def _row_state(self) -> RunState:
        return {**self._ensembler.row_state(), **self._queue.row_state()}

    def _load_row_state(self, state: RunState) -> None:
        self._ensembler.load_row_state(state)
        self._queue.load_row_state(state)


register_policy("act")(ACTConfig)
