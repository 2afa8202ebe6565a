"""Diffusion Policy (Chi et al. 2023): an action chunk is the denoised sample of a DDPM
conditioned on the last To observations.

Training (DDPM, Ho et al. 2020): the window's clean chunk x0 and its conditioning come from
`GenerativeChunkPolicy.training_chunk`. Draw a step t ~ U{0..K-1} and noise eps, form
x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (eq. 4) and regress eps (or x0) with an MSE
masked on the steps past an episode's end.

Inference (DDIM, Song et al. 2021): S = inference_steps deterministic (eta = 0) updates from
seeded noise, the predicted x0 clipped to the [-1, 1] action box at every step. The initial
noise of a row's n-th plan is drawn from a generator seeded by (sample_seed, n).

The horizons, the networks, the EMA and the receding-horizon execution are shared with the
flow policy (`generative.py`).

Shape legend: B batch, To observation steps (= frame_stack), Tp prediction horizon
(= seq_len), Ta executed steps, A action, Dc observation features per step, K training
diffusion steps, S inference steps, n rows planned now.
"""

from __future__ import annotations

import math
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

_PREDICTIONS = ("epsilon", "sample")


@dataclass(frozen=True)
class DiffusionConfig(GenerativeChunkConfig):
    """Diffusion Policy: DDPM training, DDIM inference, receding-horizon execution."""

    RUN_TIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"inference_steps", "ddim_eta"})

    num_train_steps: int = 100
    """DDPM diffusion steps K of training (squared-cosine schedule)."""
    inference_steps: int = 10
    """DDIM steps S per chunk at act time (<= num_train_steps); fewer = faster, coarser."""
    prediction: str = "epsilon"
    """What the denoiser regresses: "epsilon" (the noise) or "sample" (the clean chunk)."""
    ddim_eta: float = 0.0
    """DDIM stochasticity: 0 = deterministic (Song et al.), 1 = DDPM-like ancestral noise."""
    clip_sample: bool = True
    """Clip the predicted clean chunk to the [-1, 1] action box at every DDIM step."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.refuse_unless(
            (
                self.prediction in _PREDICTIONS,
                f"unknown prediction {self.prediction!r}; known: epsilon, sample",
            ),
            (
                self.num_train_steps >= 1,
                f"num_train_steps must be >= 1, got {self.num_train_steps}",
            ),
            (
                1 <= self.inference_steps <= self.num_train_steps,
                f"inference_steps must be in 1..num_train_steps={self.num_train_steps}, got "
                f"{self.inference_steps}",
            ),
            (self.ddim_eta >= 0.0, f"ddim_eta must be >= 0, got {self.ddim_eta}"),
        )

    def build(self, spec: ObsActSpec, normalizer_state: dict[str, Any]) -> DiffusionPolicy:
        return DiffusionPolicy(self, spec, normalizer_state)

    @classmethod
    def tiny(cls, **overrides: Any) -> Self:
        return cls(
            **{
                "unet_channels": (16, 32),
                "step_embed_dim": 16,
                "seq_len": 8,
                "action_horizon": 4,
                "inference_steps": 4,
                **overrides,
            }
        )


class NoiseSchedule:
    """The squared-cosine DDPM schedule over K steps (Nichol & Dhariwal 2021, eq. 17) and the
    two updates built on it: forward noising and the DDIM reverse step."""

    def __init__(self, num_steps: int, offset: float = 0.008) -> None:
        self.num_steps = num_steps
        # float64: abar near t = K is ~1e-7, where float32 would lose the signal's digits.
        s = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps  # (K+1,) t / K
        f = torch.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2  # (K+1,)
        self.betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)  # (K,), eq. 17's clip at t = K
        self.alpha_bars = torch.cumprod(1 - self.betas, dim=0)  # (K,) abar_t, decreasing
        self._abar = self.alpha_bars.tolist()  # Python floats for the per-step scalars
        self._abar_on: dict[tuple[torch.device, torch.dtype], Tensor] = {}  # copies, made once

    def add_noise(self, x0: Tensor, noise: Tensor, step: Tensor) -> Tensor:
        """q(x_t | x0) (Ho et al. eq. 4): x0, noise (B, ...) and step (B,) -> x_t (B, ...)."""
        where = (x0.device, x0.dtype)
        if where not in self._abar_on:
            self._abar_on[where] = self.alpha_bars.to(x0)
        abar = self._abar_on[where][step].view(-1, *([1] * (x0.ndim - 1)))  # (B, 1..)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def ddim_steps(self, steps: int) -> list[int]:
        """S descending steps from K - 1 ("trailing" spacing, Lin et al. 2024, Table 2), so the
        first update starts from (nearly) pure noise whatever S is."""
        k = self.num_steps
        return [round(k - i * k / steps) - 1 for i in range(steps)]

    def ddim_step(
        self,
        x_t: Tensor,
        model_out: Tensor,
        step: int,
        prev_step: int,
        *,
        prediction: str = "epsilon",
        eta: float = 0.0,
        noise: Tensor | None = None,
        clip: bool = True,
    ) -> Tensor:
        """x_prev from x_t (Song et al. 2021, eq. 12); prev_step = -1 is the clean chunk.

        With eta = 1 and prev_step = step - 1 this is DDPM's ancestral step (posterior mean
        plus posterior noise); with eta = 0 it is deterministic.
        """
        abar = self._abar[step]
        abar_prev = self._abar[prev_step] if prev_step >= 0 else 1.0
        if prediction == "epsilon":
            eps = model_out
            x0 = (x_t - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
        else:
            x0 = model_out
            eps = (x_t - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
        sigma = eta * math.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))
        x_prev = math.sqrt(abar_prev) * x0 + math.sqrt(max(1 - abar_prev - sigma**2, 0.0)) * eps
        if sigma > 0.0 and noise is not None:
            x_prev = x_prev + sigma * noise
        return x_prev


class DiffusionPolicy(GenerativeChunkPolicy):
    """obs of the To frames -> DDIM-denoised chunk (Tp, A) -> its first Ta actions, queued."""

    config: DiffusionConfig

    def __init__(
        self, config: DiffusionConfig, spec: ObsActSpec, normalizer_state: dict[str, Any]
    ) -> None:
        super().__init__(config, spec, normalizer_state)
        self.schedule = NoiseSchedule(config.num_train_steps)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        obs, x0, mask = self.training_chunk(batch)  # (B, To, Dc), (B, Tp, A), (B, Tp)
        gen = self.training_generator()
        # Drawn on the CPU generator, then moved: the same noise on any device.
        noise = host_to_device(torch.randn(x0.shape, generator=gen), x0.device).to(x0.dtype)
        step = torch.randint(0, self.config.num_train_steps, (x0.shape[0],), generator=gen)  # B
        step = host_to_device(step, x0.device)
        pred = self.denoise(self.schedule.add_noise(x0, noise, step), step, obs)  # (B, Tp, A)
        target = noise if self.config.prediction == "epsilon" else x0
        loss = masked_mean((pred - target).pow(2).mean(-1), mask)
        return loss, {"mse": loss.detach()}

    # ---- run time --------------------------------------------------------------------------

    @torch.no_grad()
    def sample_chunk(self, obs: Tensor, noise: Tensor, eta_noise: Tensor | None = None) -> Tensor:
        """DDIM from noise (n, Tp, A) given obs (n, To, Dc) -> clean chunk (n, Tp, A).

        eta_noise (S, n, Tp, A) is the per-update noise when ddim_eta > 0.
        """
        cfg = self.config
        steps = self.schedule.ddim_steps(cfg.inference_steps)
        x = noise
        for i, step in enumerate(steps):
            prev = steps[i + 1] if i + 1 < len(steps) else -1
            t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)  # (n,)
            out = self.denoise(x, t, obs)  # (n, Tp, A)
            x = self.schedule.ddim_step(
                x,
                out,
                step,
                prev,
                prediction=cfg.prediction,
                eta=cfg.ddim_eta,
                noise=None if eta_noise is None else eta_noise[i],
                clip=cfg.clip_sample,
            )
        return x.clamp(-1.0, 1.0)

    def plan_chunk(self, obs: Tensor, plans: Tensor) -> Tensor:
        cfg = self.config
        shape = (cfg.seq_len, self.action_dim)
        noise, eta_noise = [], []
        for plan in plans.tolist():
            gen = seeded_generator(cfg.sample_seed, plan)
            noise.append(torch.randn(shape, generator=gen))  # (Tp, A)
            if cfg.ddim_eta > 0:
                eta_noise.append(torch.randn((cfg.inference_steps, *shape), generator=gen))
        per_update = torch.stack(eta_noise, dim=1).to(obs) if eta_noise else None  # S,n,Tp,A
        return self.sample_chunk(obs, torch.stack(noise).to(obs), per_update)  # (n, Tp, A)


register_policy("diffusion")(DiffusionConfig)
