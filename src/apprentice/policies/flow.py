"""Flow matching policy: an action chunk is the end point of a learned velocity field that
carries Gaussian noise to the actions, conditioned on the last To observations (rectified flow,
Liu et al. 2022; flow matching, Lipman et al. 2023; as pi0 generates its action chunks, Black
et al. 2024).

Training: the window's clean chunk x1 and its conditioning come from
`GenerativeChunkPolicy.training_chunk`. Draw noise x0 ~ N(0, I) and a time t in [0, 1]
(`time_sampling`), form the straight-line interpolant x_t = (1 - t) x0 + t x1 (Liu et al.
eq. 1; Lipman et al. eq. 22 with sigma_min = 0) and regress its velocity x1 - x0 with an MSE
masked on the steps past an episode's end. The network is one of diffusion's denoisers
(`denoisers.py`); its step input is t * 1000, so the sinusoidal embedding resolves t as
finely as it resolves a diffusion step.

Inference: S = inference_steps Euler steps of dt = 1 / S from x_0 = noise to x_1, clipped to
the [-1, 1] action box. The paths of a rectified flow are nearly straight, so a few steps
suffice (pi0: 10; default here 4, the latency budget of a CPU).

Act-time noise: plan n of a row since its reset starts from entry n mod 64 of a bank of 64
noise chunks drawn from sample_seed (a constant buffer, rebuilt from the config). A reset
replays, `act_batch` rows equal separate `act` streams, and the exported graph indexes the
same bank with its step counter, so the export acts exactly as the policy.

Export (`export_step`): the queue becomes explicit state, the Ta actions of the last chunk
(`chunk`); plan n happens at step n * Ta. A graph has no branch on values, so it samples a
chunk at every step and keeps it only when a plan is due: each exported step costs one chunk.

The horizons, the networks, the EMA and the receding-horizon execution are shared with the
diffusion policy (`generative.py`).

Shape legend: B batch, To observation steps (= frame_stack), Tp prediction horizon
(= seq_len), Ta executed steps, A action, Dc observation features per step, S Euler steps,
n rows planned now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch
from torch import Tensor

from apprentice.data.spec import ObsActSpec
from apprentice.policies.base import masked_mean, register_policy
from apprentice.policies.generative import (
    GenerativeChunkConfig,
    GenerativeChunkPolicy,
    seeded_generator,
)
from apprentice.policies.transfer import host_to_device

_TIME_SAMPLINGS = ("uniform", "beta")
_TIME_SCALE = 1000.0
"""The network's step input is t * 1000: diffusion's steps span 0..K-1 (K = 100 by default),
and the sinusoidal embedding's finest frequency turns 1 rad per unit of input."""
_BETA_CUTOFF = 0.999
"""pi0's s: the beta time density vanishes above t = s (Black et al. 2024, Sec. IV.B)."""
_NOISE_PLANS = 64
"""Act-time noise chunks in the bank; plan n of a row uses entry n mod 64."""


@dataclass(frozen=True)
class FlowConfig(GenerativeChunkConfig):
    """Flow matching (rectified flow): velocity regression, Euler sampling, receding horizon."""

    RUN_TIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"inference_steps"})

    denoiser: str = "transformer"
    """Velocity network: "transformer" (cross-attention; the default, the faster one at
    batch 1 on a CPU), "unet" (1D temporal U-Net, FiLM) or "mlp" (the flat chunk through an
    MLP: the cheapest per training step, for low-dim tasks)."""
    num_layers: int = 2
    """Transformer decoder layers (Chi et al.'s diffusion transformer: 8); 2 keeps a 4-step
    chunk within 10 ms at batch 1 on one CPU thread, p99 included."""
    inference_steps: int = 4
    """Euler steps S per chunk at act time; each is one network pass."""
    time_sampling: str = "beta"
    """Training times t: "beta" (pi0: t = 0.999 (1 - u), u ~ Beta(1.5, 1), more weight on the
    noisier times where the first Euler steps act) or "uniform" (U[0, 1], rectified flow)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.refuse_unless(
            (
                self.inference_steps >= 1,
                f"inference_steps must be >= 1, got {self.inference_steps}",
            ),
            (
                self.time_sampling in _TIME_SAMPLINGS,
                f"unknown time_sampling {self.time_sampling!r}; known: uniform, beta",
            ),
        )

    def build(self, spec: ObsActSpec, normalizer_state: dict[str, Any]) -> FlowPolicy:
        return FlowPolicy(self, spec, normalizer_state)

    @classmethod
    def tiny(cls, **overrides: Any) -> Self:
        return cls(
            **{
                "embed_dim": 32,
                "num_layers": 1,
                "unet_channels": (16, 32),
                "step_embed_dim": 16,
                "seq_len": 8,
                "action_horizon": 4,
                "inference_steps": 2,
                **overrides,
            }
        )


class FlowPolicy(GenerativeChunkPolicy):
    """obs of the To frames -> Euler-integrated chunk (Tp, A) -> its first Ta actions, queued."""

    config: FlowConfig
    noise_bank: Tensor

    def __init__(
        self, config: FlowConfig, spec: ObsActSpec, normalizer_state: dict[str, Any]
    ) -> None:
        super().__init__(config, spec, normalizer_state)
        gen = seeded_generator(config.sample_seed)
        bank = torch.randn((_NOISE_PLANS, config.seq_len, self.action_dim), generator=gen)
        # Not persistent: a function of the config, rebuilt on load.
        self.register_buffer("noise_bank", bank, persistent=False)  # (64, Tp, A)

    def velocity(self, x: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        """v(x_t, t | obs) (B, Tp, A) for x (B, Tp, A), t (B,) in [0, 1], obs (B, To, Dc)."""
        return self.denoise(x, t * _TIME_SCALE, obs)

    def sample_times(self, batch: int, gen: torch.Generator) -> Tensor:
        """Training times t (B,) in [0, 1] drawn on `gen` as `time_sampling` says."""
        u = torch.rand(batch, generator=gen)  # (B,)
        if self.config.time_sampling == "uniform":
            return u
        # Beta(1.5, 1) by its inverse CDF (CDF u^1.5), then pi0's map: 1 - t ~ Beta(1.5, 1)
        # scaled by s, a density rising toward t = 0 (noise) and zero above t = s.
        return _BETA_CUTOFF * (1.0 - u.pow(1.0 / 1.5))

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        obs, x1, mask = self.training_chunk(batch)  # (B, To, Dc), (B, Tp, A), (B, Tp)
        gen = self.training_generator()
        # Drawn on the CPU generator, then moved: the same noise and times on any device.
        x0 = host_to_device(torch.randn(x1.shape, generator=gen), x1.device).to(x1.dtype)
        t = host_to_device(self.sample_times(x1.shape[0], gen), x1.device).to(x1.dtype)  # (B,)
        tt = t[:, None, None]  # (B, 1, 1)
        pred = self.velocity((1 - tt) * x0 + tt * x1, t, obs)  # (B, Tp, A)
        loss = masked_mean((pred - (x1 - x0)).pow(2).mean(-1), mask)
        return loss, {"mse": loss.detach()}

    # ---- run time --------------------------------------------------------------------------

    def integrate(self, obs: Tensor, noise: Tensor) -> Tensor:
        """Euler from x_0 = noise (n, Tp, A) to t = 1 given obs (n, To, Dc) -> chunk (n, Tp, A)
        in the action box."""
        steps = self.config.inference_steps
        x = noise
        for i in range(steps):
            t = x.new_full((x.shape[0],), i / steps)  # (n,)
            x = x + self.velocity(x, t, obs) / steps
        return x.clamp(-1.0, 1.0)

    @torch.no_grad()
    def sample_chunk(self, obs: Tensor, noise: Tensor) -> Tensor:
        """`integrate` without gradients: the chunk (n, Tp, A) for obs (n, To, Dc)."""
        return self.integrate(obs, noise)

    def plan_chunk(self, obs: Tensor, plans: Tensor) -> Tensor:
        noise = self.noise_bank[plans.to(self.noise_bank.device) % _NOISE_PLANS]  # (n, Tp, A)
        return self.sample_chunk(obs, noise.to(obs))

    # ---- export ------------------------------------------------------------------------------

    def export_state(self) -> dict[str, tuple[int, ...]]:
        return {"chunk": (1, self.config.action_horizon, self.action_dim)}

    def export_step(
        self, x: Tensor, step: Tensor | None, state: dict[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        assert step is not None  # a policy with export_state is given its step count
        cfg = self.config
        ta = cfg.action_horizon
        obs = x.unflatten(-1, (cfg.frame_stack, -1))  # (B, To, Dc)
        noise = self.noise_bank[(step // ta) % _NOISE_PLANS]  # (B, Tp, A): plan step // Ta
        planned = self.integrate(obs, noise)[:, :ta]  # (B, Ta, A)
        index = step % ta  # (B,): the queue position, 0 = a plan is due
        chunk = torch.where((index == 0)[:, None, None], planned, state["chunk"])  # (B, Ta, A)
        action = chunk.gather(1, index[:, None, None].expand(-1, 1, chunk.shape[2]))[:, 0]
        return action, {"chunk": chunk}  # (B, A)


register_policy("flow")(FlowConfig)
