"""BC-Transformer: a GPT-style causal transformer over the last `frame_stack` observations.

robomimic's BC-Transformer(-GMM) (Mandlekar et al. 2021; robomimic v0.3) is the reference:
context 10 frames, embedding 512, 6 layers, 8 heads, dropout 0.1, learned positions, a GMM
head. The defaults here are smaller (128 wide, 4 layers, 4 heads) so that a CPU trains them
in minutes; `--policy-args embed_dim=512 num_layers=6 num_heads=8` gives the reference.

The context is the base class's frame stack: step t's input (frame_stack * D) is cut into
frame_stack tokens (D each), so run-time history, padding at episode starts and any
observation encoder the base applies come for free.

Training: one forward pass over a window's last context gives an output at every position,
and causality makes position i depend on frames 0..i only. `seq_len` = T trailing positions
are supervised, each with its own action: T = frame_stack (the default) supervises every
position with its causal prefix (robomimic's `supervise_all_steps`), ~T times the
supervised actions of T = 1 (only the last position, robomimic's default) at nearly the
same cost per step. Act time uses the last position only, which sees the full context.

Shape legend: B batch, T supervised steps, C context frames (= frame_stack), D observation
features, E embedding, A action, K mixture modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError
from apprentice.policies.base import Policy, PolicyConfig, register_policy
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
class TransformerConfig(PolicyConfig, GMMHeadOptions):
    """Behaviour cloning with a causal transformer over an observation history."""

    frame_stack: int = 10
    """Context C: observation frames (tokens) the transformer attends over (robomimic: 10)."""
    seq_len: int = 0
    """Trailing context positions supervised per window: 1 (last only) to frame_stack; 0 = all."""
    embed_dim: int = 128
    """Token embedding width E (robomimic: 512)."""
    num_layers: int = 4
    """Transformer blocks (robomimic: 6)."""
    num_heads: int = 4
    """Attention heads per block; must divide embed_dim (robomimic: 8)."""
    dropout: float = 0.1
    """Dropout on embeddings, attention and residual branches (robomimic: 0.1)."""
    head: str = "deterministic"
    """Action head: "deterministic" (tanh, L2 loss) or "gmm" (BC-Transformer-GMM, NLL loss)."""

    def __post_init__(self) -> None:
        if self.seq_len == 0:
            object.__setattr__(self, "seq_len", self.frame_stack)
        super().__post_init__()
        if self.seq_len > self.frame_stack:
            raise ApprenticeError(
                f"transformer policy: seq_len={self.seq_len} supervises more positions than "
                f"the context has (frame_stack={self.frame_stack}); use seq_len <= frame_stack"
            )
        check_head(self.head, self.name)
        if self.embed_dim < 1 or self.num_layers < 1 or self.num_heads < 1:
            raise ApprenticeError("transformer policy: embed_dim, num_layers, num_heads >= 1")
        if self.embed_dim % self.num_heads:
            raise ApprenticeError(
                f"transformer policy: num_heads={self.num_heads} does not divide "
                f"embed_dim={self.embed_dim}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ApprenticeError(
                f"transformer policy: dropout must be in [0, 1), got {self.dropout}"
            )
        check_gmm(self.num_modes, self.min_std, self.name)

    def build(self, spec: ObsActSpec, normalizer_state: dict[str, Any]) -> TransformerPolicy:
        return TransformerPolicy(self, spec, normalizer_state)

    @classmethod
    def tiny(cls, **overrides: Any) -> Self:
        return cls(
            **{"embed_dim": 16, "num_layers": 1, "num_heads": 2, "frame_stack": 3, **overrides}
        )


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where token i attends to tokens 0..i (nanoGPT)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, c, e = x.shape  # (B, C, E)
        q, k, v = self.qkv(x).split(e, dim=-1)  # 3 x (B, C, E)
        # (B, C, E) -> (B, heads, C, E / heads)
        q, k, v = (t.view(b, c, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # (B, heads, C, E / heads)
        y = y.transpose(1, 2).reshape(b, c, e)  # (B, C, E)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x)) (GPT-2)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dim)
        self.attn = CausalSelfAttention(embed_dim, num_heads, dropout)
        self.ln2 = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, 4 * embed_dim),
            nn.GELU(),
            nn.Linear(4 * embed_dim, embed_dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))  # (B, C, E)
        return x + self.mlp(self.ln2(x))  # (B, C, E)


class CausalTransformer(nn.Module):
    """Frames (B, C, D) -> features (B, C, E); output i sees frames 0..i only."""

    def __init__(
        self,
        obs_dim: int,
        context: int,
        embed_dim: int,
        num_layers: int,
        num_heads: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(obs_dim, embed_dim)
        self.pos = nn.Parameter(torch.zeros(1, context, embed_dim))
        nn.init.normal_(self.pos, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, dropout) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(embed_dim)

    def forward(self, frames: Tensor) -> Tensor:
        x = self.drop(self.embed(frames) + self.pos)  # (B, C, E)
        for block in self.blocks:
            x = block(x)  # (B, C, E)
        return self.ln_f(x)  # (B, C, E)


class TransformerPolicy(Policy):
    """Frame-stacked obs -> C tokens -> causal transformer -> last token -> action head."""

    config: TransformerConfig

    def __init__(
        self, config: TransformerConfig, spec: ObsActSpec, normalizer_state: dict[str, Any]
    ) -> None:
        super().__init__(config, spec, normalizer_state)
        self.gpt = CausalTransformer(
            self.obs_dim,
            config.frame_stack,
            config.embed_dim,
            config.num_layers,
            config.num_heads,
            config.dropout,
        )
        self.gmm, self.linear = make_action_head(
            config.head, config, config.embed_dim, self.action_dim
        )
        self._generator = torch.Generator().manual_seed(config.sample_seed)

    def frames(self, x: Tensor) -> Tensor:
        """Stacked inputs (B, C * D) -> tokens (B, C, D), the oldest first."""
        return x.reshape(x.shape[0], self.config.frame_stack, -1)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x = self.obs_windows(batch)  # (B, T, C * D)
        actions, mask = self.targets(batch, x.shape[1])  # (B, T, A), (B, T)
        t, c = x.shape[1], self.config.frame_stack
        # The last step's context holds frames t0+T-C .. t0+T-1 of the window (anchor t0), so
        # its position C-T+i is step t0+i's current frame, seeing only its causal prefix.
        h = self.gpt(self.frames(x[:, -1]))[:, c - t :]  # (B, T, E)
        return head_loss(self.gmm, self.linear, h, actions, mask)

    def _act_step(self, x: Tensor, fresh: Tensor) -> Tensor:
        return head_act(
            self.gmm,
            self.linear,
            self.gpt(self.frames(x))[:, -1],  # (B, E): the current frame, full context
            deterministic=self.config.deterministic_act,
            low_noise=self.config.low_noise_eval,
            generator=self._generator,
        )

    def _reset_rows(self, rows: Tensor | None) -> None:
        if rows is None:
            self._generator.manual_seed(self.config.sample_seed)

    def batching_refusal(self) -> str | None:
        # Its run-time state is the base's frame history: only a sampling head is in the way.
        return sampling_refusal(self.config, self.gmm, self.config.name)

    def export_step(
        self, x: Tensor, step: Tensor | None, state: dict[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        # A pure function of the frame history: the last position attends to all frames.
        action = head_act(
            self.gmm,
            self.linear,
            self.gpt(self.frames(x))[:, -1],  # (B, E)
            deterministic=True,
            low_noise=self.config.low_noise_eval,
            generator=None,
        )
        return action, {}


register_policy("transformer")(TransformerConfig)
