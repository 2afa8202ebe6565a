"""The two denoising networks of Diffusion Policy (Chi et al. 2023, Sec. 3.2 and Fig. 3),
also the velocity networks of the flow policy.

Both have one signature, `forward(sample, step, obs) -> prediction`: a noisy action chunk
(B, Tp, A), its diffusion step (B,) (the flow policy's time t in [0, 1], times 1000) and the
observation features of the To conditioning steps (B, To, Dc) give a chunk of the same shape
(the noise, or the clean chunk, see `DiffusionConfig.prediction`; the velocity for flow).
Observations condition the network; they are never denoised.

- `ConditionalUnet1D`: a 1D temporal U-Net of Conv1d residual blocks (GroupNorm + Mish) whose
  every block is FiLM-modulated (Perez et al. 2018) by the observation features and the step's
  sinusoidal embedding. Chi et al. recommend it as the first choice: it works out of the box.
- `TransformerDenoiser`: the "time-series diffusion transformer" (minGPT-style): action tokens
  attend causally to each other and by cross-attention to one step token and To observation
  tokens. Best on tasks with fast action changes, more sensitive to hyperparameters.

Shape legend: B batch, Tp prediction horizon (actions of a chunk), To observation steps,
Dc observation features per step, A action, C channels, E embedding.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SinusoidalStepEmbedding(nn.Module):
    """Diffusion step (or scaled flow time) (B,) -> (B, E): the Transformer's sine/cosine
    position code (E even)."""

    freqs: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half) / max(half - 1, 1))  # (E/2,)
        # Not persistent: a constant of the architecture, rebuilt from the config on load.
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, step: Tensor) -> Tensor:
        angles = step.float()[:, None] * self.freqs  # (B, E/2)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (B, E)


def _conv_block(c_in: int, c_out: int, kernel_size: int, groups: int) -> nn.Sequential:
    """Conv1d -> GroupNorm -> Mish over time; "same" padding keeps the length."""
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2),
        nn.GroupNorm(groups, c_out),
        nn.Mish(),
    )


class FiLMResidualBlock(nn.Module):
    """Two conv blocks; the first one's output is scaled and shifted per channel by the
    conditioning (FiLM), so every resolution of the U-Net sees the observations."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel_size: int, groups: int):
        super().__init__()
        self.conv1 = _conv_block(c_in, c_out, kernel_size, groups)
        self.conv2 = _conv_block(c_out, c_out, kernel_size, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.skip: nn.Module = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """x (B, C_in, Tp), cond (B, Dcond) -> (B, C_out, Tp)."""
        h = self.conv1(x)  # (B, C, Tp)
        scale, shift = self.film(cond)[..., None].chunk(2, dim=1)  # (B, C, 1) each
        h = self.conv2(scale * h + shift)  # (B, C, Tp)
        return h + self.skip(x)


class UnetLevel(nn.Module):
    """One U-Net resolution: two FiLM blocks, then a resampling conv (stride-2 down,
    transposed up, or identity at the coarsest level)."""

    def __init__(
        self, c_in: int, c_out: int, cond_dim: int, kernel_size: int, groups: int, resample: str
    ) -> None:
        super().__init__()
        self.res1 = FiLMResidualBlock(c_in, c_out, cond_dim, kernel_size, groups)
        self.res2 = FiLMResidualBlock(c_out, c_out, cond_dim, kernel_size, groups)
        self.resample: nn.Module = nn.Identity()
        if resample == "down":
            self.resample = nn.Conv1d(c_out, c_out, 3, stride=2, padding=1)  # T -> T / 2
        elif resample == "up":
            self.resample = nn.ConvTranspose1d(c_out, c_out, 4, stride=2, padding=1)  # T -> 2T

    def forward(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C_in, T), cond (B, Dcond) -> the blocks' output (B, C_out, T), resampled."""
        h = self.res2(self.res1(x, cond), cond)  # (B, C_out, T): the skip of a down level
        return h, self.resample(h)


class ConditionalUnet1D(nn.Module):
    """Chi et al.'s ConditionalUnet1D: down levels, two middle FiLM blocks, up levels that
    concatenate the same resolution's down output, and a final conv back to A channels.

    The chunk length Tp must be divisible by 2 ** (len(channels) - 1). As in the reference
    code, the finest level's skip output is not reused: the up path has one level fewer.
    """

    def __init__(
        self,
        action_dim: int,
        obs_steps: int,
        obs_step_dim: int,
        *,
        channels: tuple[int, ...],
        step_embed_dim: int,
        kernel_size: int,
        groups: int,
    ) -> None:
        super().__init__()
        e = step_embed_dim
        self.step_encoder = nn.Sequential(
            SinusoidalStepEmbedding(e), nn.Linear(e, 4 * e), nn.Mish(), nn.Linear(4 * e, e)
        )
        cond_dim = e + obs_steps * obs_step_dim  # FiLM input: step embedding + flat obs
        pairs = list(itertools.pairwise((action_dim, *channels)))  # [(C_in, C_out)] per level
        n = len(pairs)
        self.down = nn.ModuleList(
            UnetLevel(c_in, c_out, cond_dim, kernel_size, groups, "down" if i < n - 1 else "none")
            for i, (c_in, c_out) in enumerate(pairs)
        )
        self.mid = nn.ModuleList(
            FiLMResidualBlock(channels[-1], channels[-1], cond_dim, kernel_size, groups)
            for _ in range(2)
        )
        # Input 2 * C_out: the down level's output of the same resolution is concatenated.
        self.up = nn.ModuleList(
            UnetLevel(2 * c_out, c_in, cond_dim, kernel_size, groups, "up")
            for c_in, c_out in reversed(pairs[1:])
        )
        self.final = nn.Sequential(
            _conv_block(channels[0], channels[0], kernel_size, groups),
            nn.Conv1d(channels[0], action_dim, 1),
        )

    def forward(self, sample: Tensor, step: Tensor, obs: Tensor) -> Tensor:
        """sample (B, Tp, A), step (B,), obs (B, To, Dc) -> (B, Tp, A)."""
        cond = torch.cat([self.step_encoder(step), obs.flatten(1)], dim=-1)  # (B, Dcond)
        x = sample.transpose(1, 2)  # (B, A, Tp): channels first for Conv1d
        skips = []
        for level in self.down:
            skip, x = level(x, cond)  # skip (B, C, T'), x (B, C, T' / 2)
            skips.append(skip)
        for block in self.mid:
            x = block(x, cond)  # (B, C, T')
        for level in self.up:
            _, x = level(torch.cat([x, skips.pop()], dim=1), cond)  # (B, C', 2T')
        return self.final(x).transpose(1, 2)  # (B, Tp, A)


class Attention(nn.Module):
    """Multi-head attention of queries x on a context (x itself for self-attention), by
    PyTorch's fused scaled-dot-product kernel."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.proj = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor, context: Tensor, *, causal: bool) -> Tensor:
        """x (B, T, E), context (B, S, E) -> (B, T, E); causal: position i sees j <= i."""
        b, t, e = x.shape
        h = self.heads
        q = self.query(x).view(b, t, h, e // h).transpose(1, 2)  # (B, H, T, E/H)
        kv = self.key_value(context).view(b, context.shape[1], 2, h, e // h)  # (B, S, 2, H, E/H)
        k, v = kv.permute(2, 0, 3, 1, 4)  # (B, H, S, E/H) each
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)  # (B,H,T,E/H)
        return self.proj(y.transpose(1, 2).reshape(b, t, e))  # (B, T, E)


class DecoderBlock(nn.Module):
    """Pre-LN (minGPT) decoder block: causal self-attention over the action tokens,
    cross-attention to the conditioning tokens, then an MLP; each adds to the residual."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, heads, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        """x (B, Tp, E), memory (B, 1 + To, E) -> (B, Tp, E)."""
        h = self.norm1(x)
        x = x + self.self_attn(h, h, causal=True)
        x = x + self.cross_attn(self.norm2(x), memory, causal=False)
        return x + self.mlp(self.norm3(x))


class TransformerDenoiser(nn.Module):
    """Chi et al.'s TransformerForDiffusion (observations as conditioning, n_cond_layers = 0):
    pre-LN decoder blocks over the Tp noisy action tokens (causal self-attention) whose
    memory is [step token, To observation tokens] passed through an MLP encoder."""

    def __init__(
        self,
        action_dim: int,
        obs_steps: int,
        obs_step_dim: int,
        *,
        horizon: int,
        embed_dim: int,
        num_layers: int,
        num_heads: int,
        dropout: float,
    ) -> None:
        super().__init__()
        e = embed_dim
        self.action_in = nn.Linear(action_dim, e)
        self.obs_in = nn.Linear(obs_step_dim, e)
        self.step_embed = SinusoidalStepEmbedding(e)
        # Learned positions (GPT-2 init, std 0.02) for the action tokens and the memory tokens.
        self.action_pos = nn.Parameter(0.02 * torch.randn(1, horizon, e))
        self.cond_pos = nn.Parameter(0.02 * torch.randn(1, 1 + obs_steps, e))
        self.cond_encoder = nn.Sequential(nn.Linear(e, 4 * e), nn.Mish(), nn.Linear(4 * e, e))
        self.blocks = nn.ModuleList(DecoderBlock(e, num_heads, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(e)
        self.head = nn.Linear(e, action_dim)

    def forward(self, sample: Tensor, step: Tensor, obs: Tensor) -> Tensor:
        """sample (B, Tp, A), step (B,), obs (B, To, Dc) -> (B, Tp, A)."""
        x = self.action_in(sample) + self.action_pos  # (B, Tp, E)
        memory = torch.cat([self.step_embed(step)[:, None], self.obs_in(obs)], dim=1)  # (B,1+To,E)
        memory = self.cond_encoder(memory + self.cond_pos)  # (B, 1 + To, E)
        for block in self.blocks:
            x = block(x, memory)  # (B, Tp, E)
        return self.head(self.norm(x))  # (B, Tp, A)


class MlpDenoiser(nn.Module):
    """The whole chunk at once through an MLP: [flat noisy chunk, flat observations, step
    embedding] -> flat prediction. No temporal inductive bias, but a step costs a small
    fraction of the U-Net's (about 30x fewer CPU-seconds at Tp = 16, A = 2, batch 256): on
    low-dim tasks with short chunks it buys many more gradient steps per CPU-second."""

    def __init__(
        self,
        action_dim: int,
        obs_steps: int,
        obs_step_dim: int,
        *,
        horizon: int,
        hidden_dims: tuple[int, ...],
        step_embed_dim: int,
    ) -> None:
        super().__init__()
        self.step_embed = SinusoidalStepEmbedding(step_embed_dim)
        width = horizon * action_dim + obs_steps * obs_step_dim + step_embed_dim
        layers: list[nn.Module] = []
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.Mish()]
            width = hidden
        layers.append(nn.Linear(width, horizon * action_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, sample: Tensor, step: Tensor, obs: Tensor) -> Tensor:
        """sample (B, Tp, A), step (B,), obs (B, To, Dc) -> (B, Tp, A)."""
        x = torch.cat([sample.flatten(1), obs.flatten(1), self.step_embed(step)], dim=-1)
        return self.net(x).view(sample.shape)
