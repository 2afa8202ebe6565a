"""Diffusion Policy (Chi et al. 2023): an action chunk is the denoised sample of a DDPM
conditioned on the last To observations.

Training (DDPM, Ho et al. 2020): the window's first step sees its To frames (frame_stack); its
Tp = seq_len actions are the clean chunk x0. Draw a step t ~ U{0..K-1} and noise eps, form
x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (eq. 4) and regress eps (or x0) with an MSE
masked on the steps past an episode's end. Those padded steps hold the last real action
(the sampler's edge padding, re-applied here so their values never matter).

Inference (DDIM, Song et al. 2021): S = inference_steps deterministic (eta = 0) updates from
seeded noise, the predicted x0 clipped to the [-1, 1] action box at every step.

Run time (receding horizon): execute the first Ta = action_horizon actions of a chunk, then
plan again (`chunking.ActionQueue`). The initial noise of a row's n-th plan is drawn from a
generator seeded by (sample_seed, n): actions are a function of the observations since the
row's reset alone, so a reset replays and `act_batch` rows equal separate `act` streams.

EMA (Chi et al.'s EMAModel, power-law warmup): a shadow copy of the denoiser's and the camera
encoders' weights, stored as buffers (in every checkpoint, never in `parameters()`), is
updated after every optimizer step and used whenever the policy is in eval mode (act,
validation loss).

Shape legend: B batch, To observation steps (= frame_stack), Tp prediction horizon
(= seq_len), Ta executed steps, A action, Dc observation features per step, K training
diffusion steps, S inference steps, n rows planned now.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import Tensor, nn

from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError
from apprentice.policies.averaging import ema_decay, ema_update
from apprentice.policies.base import Policy, PolicyConfig, masked_mean, register_policy
from apprentice.policies.chunking import ActionQueue
from apprentice.policies.denoisers import ConditionalUnet1D, MlpDenoiser, TransformerDenoiser
from apprentice.policies.encoders import VisualCore
from apprentice.policies.transfer import host_to_device

_DENOISERS = ("unet", "transformer", "mlp")
_AVERAGED = ("denoiser", "image_encoders")  # the trained submodules the EMA shadows
_HOST_COUNTERS = ("optimizer_steps", "noise_seed")  # buffers kept on the CPU
_PREDICTIONS = ("epsilon", "sample")


@dataclass(frozen=True)
class DiffusionConfig(PolicyConfig):
    """Diffusion Policy: DDPM training, DDIM inference, receding-horizon execution."""

    RUN_TIME_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"action_horizon", "inference_steps", "ddim_eta", "clip_sample", "sample_seed"}
    )

    seq_len: int = 16
    """Prediction horizon Tp: actions per denoised chunk (Chi et al.: 16)."""
    frame_stack: int = 2
    """Observation horizon To: frames conditioning each chunk (Chi et al.: 2)."""
    action_horizon: int = 8
    """Execution horizon Ta: actions of a chunk executed before planning again (<= seq_len)."""
    denoiser: str = "unet"
    """Denoising network: "unet" (1D temporal U-Net, FiLM), "transformer" (cross-attention) or
    "mlp" (the flat chunk through an MLP: far cheaper per step, for low-dim tasks)."""
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
    unet_channels: tuple[int, ...] = (64, 128, 256)
    """U-Net channels per level (Chi et al.: 256, 512, 1024); Tp % 2^(levels-1) must be 0."""
    unet_kernel_size: int = 5
    """U-Net Conv1d kernel size over time (odd)."""
    unet_groups: int = 8
    """GroupNorm groups of the U-Net; must divide every channel count."""
    step_embed_dim: int = 64
    """U-Net diffusion-step embedding size (Chi et al.: 256); even."""
    embed_dim: int = 128
    """Transformer token width E (Chi et al.: 256); divisible by num_heads."""
    num_layers: int = 4
    """Transformer decoder layers (Chi et al.: 8)."""
    num_heads: int = 4
    """Transformer attention heads (Chi et al.: 4)."""
    mlp_hidden_dims: tuple[int, ...] = (1024, 1024, 1024)
    """Hidden widths of the "mlp" denoiser (LayerNorm + Mish after each)."""
    dropout: float = 0.0
    """Transformer dropout (Chi et al.: 0.01 low-dim, 0.3 image); 0 keeps the loss a pure
    function of weights, batch and step."""
    ema: bool = True
    """Keep an exponential moving average of the denoiser's and camera encoders' weights,
    and act (and validate) with it."""
    ema_power: float = 0.75
    """EMA warmup: decay after n updates = 1 - n^-power (Chi et al.: 0.75)."""
    ema_max_decay: float = 0.9999
    """Upper bound of the EMA decay (Chi et al.: 0.9999)."""
    sample_seed: int = 0
    """Seed of the act-time noise; plan n of a row since its reset uses (sample_seed, n)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("unet_channels", "mlp_hidden_dims"):
            widths: Any = getattr(self, name)
            if isinstance(widths, str):  # the command line's "64,128,256"
                widths = widths.strip("()[] ").split(",")
            try:
                widths = tuple(int(c) for c in widths)
            except (TypeError, ValueError):
                raise ApprenticeError(
                    f"diffusion policy: {name} must be integers, got {getattr(self, name)!r}"
                ) from None
            object.__setattr__(self, name, widths)
        levels = len(self.unet_channels)
        checks = [
            (
                self.denoiser in _DENOISERS,
                f"unknown denoiser {self.denoiser!r}; known: {', '.join(_DENOISERS)}",
            ),
            (
                self.prediction in _PREDICTIONS,
                f"unknown prediction {self.prediction!r}; known: epsilon, sample",
            ),
            (
                1 <= self.action_horizon <= self.seq_len,
                f"action_horizon must be in 1..seq_len={self.seq_len}, got {self.action_horizon}",
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
            (
                levels >= 1
                and all(c >= 1 and c % self.unet_groups == 0 for c in self.unet_channels)
                and self.unet_groups >= 1,
                f"unet_channels {self.unet_channels} must be non-empty multiples of "
                f"unet_groups={self.unet_groups}",
            ),
            (
                self.denoiser != "unet" or self.seq_len % 2 ** (levels - 1) == 0,
                f"seq_len={self.seq_len} (Tp) must be divisible by 2^{levels - 1}: the U-Net "
                f"halves it {levels - 1} times (unet_channels={self.unet_channels})",
            ),
            (
                self.unet_kernel_size >= 1 and self.unet_kernel_size % 2 == 1,
                f"unet_kernel_size must be odd, got {self.unet_kernel_size}",
            ),
            (
                self.step_embed_dim >= 2 and self.step_embed_dim % 2 == 0,
                f"step_embed_dim must be even and >= 2, got {self.step_embed_dim}",
            ),
            (
                self.num_layers >= 1
                and self.num_heads >= 1
                and self.embed_dim % self.num_heads == 0
                and self.embed_dim % 2 == 0,
                f"embed_dim={self.embed_dim} must be even and a multiple of num_heads="
                f"{self.num_heads}, and num_layers >= 1",
            ),
            (
                len(self.mlp_hidden_dims) >= 1 and min(self.mlp_hidden_dims) >= 1,
                f"mlp_hidden_dims must be non-empty positive widths, got {self.mlp_hidden_dims}",
            ),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (
                self.ema_power > 0.0 and 0.0 <= self.ema_max_decay < 1.0,
                "ema_power must be > 0 and ema_max_decay in [0, 1)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ApprenticeError(f"diffusion policy: {message}")

    @property
    def chunk_size(self) -> int:
        """Tp: `chunking.check_horizon` refuses a chunk longer than the shortest demo."""
        return self.seq_len

    @property
    def keeps_ema(self) -> bool:
        """With `ema`, the policy averages its own weights (and saves them in its checkpoints),
        so the trainer's EMA (`TrainConfig.ema_decay`) is refused on top of it."""
        return self.ema

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


def shadow_copy(module: nn.Module) -> nn.Module:
    """A deep copy of `module` whose parameters are buffers: saved in the state_dict, run by
    the same forward, invisible to `parameters()` and so to every optimizer."""
    shadow = copy.deepcopy(module)
    for sub in shadow.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None:
                del sub._parameters[name]
                sub.register_buffer(name, param.detach().clone())
    return shadow


def _hold_last_valid(actions: Tensor, mask: Tensor) -> Tensor:
    """actions (B, Tp, A) with every masked step (mask (B, Tp) == 0) replaced by the latest
    valid action before it, so padded values never reach the denoiser's input."""
    b, tp, a = actions.shape
    steps = torch.arange(tp, device=actions.device).expand(b, tp)  # (B, Tp)
    src = torch.where(mask > 0, steps, torch.zeros_like(steps)).cummax(dim=1).values  # (B, Tp)
    return actions.gather(1, src[..., None].expand(b, tp, a))  # (B, Tp, A)


def _seeded_generator(*entropy: int) -> torch.Generator:
    """A torch generator whose seed mixes all of `entropy` (numpy's SeedSequence hashing)."""
    seed = int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(seed)


class DiffusionPolicy(Policy):
    """obs of the To frames -> DDIM-denoised chunk (Tp, A) -> its first Ta actions, queued."""

    config: DiffusionConfig
    optimizer_steps: Tensor
    noise_seed: Tensor

    def __init__(
        self, config: DiffusionConfig, spec: ObsActSpec, normalizer_state: dict[str, Any]
    ) -> None:
        super().__init__(config, spec, normalizer_state)
        to = config.frame_stack
        obs_step_dim = self.input_dim // to  # Dc: whatever features the base gives per frame
        self.denoiser: nn.Module
        if config.denoiser == "unet":
            self.denoiser = ConditionalUnet1D(
                self.action_dim,
                to,
                obs_step_dim,
                channels=config.unet_channels,
                step_embed_dim=config.step_embed_dim,
                kernel_size=config.unet_kernel_size,
                groups=config.unet_groups,
            )
        elif config.denoiser == "mlp":
            self.denoiser = MlpDenoiser(
                self.action_dim,
                to,
                obs_step_dim,
                horizon=config.seq_len,
                hidden_dims=config.mlp_hidden_dims,
                step_embed_dim=config.step_embed_dim,
            )
        else:
            self.denoiser = TransformerDenoiser(
                self.action_dim,
                to,
                obs_step_dim,
                horizon=config.seq_len,
                embed_dim=config.embed_dim,
                num_layers=config.num_layers,
                num_heads=config.num_heads,
                dropout=config.dropout,
            )
        # What is averaged: every trained module (Chi et al. average the whole policy).
        self.ema: nn.ModuleDict | None = None
        if config.ema:
            self.ema = nn.ModuleDict({name: shadow_copy(getattr(self, name)) for name in _AVERAGED})
        self.schedule = NoiseSchedule(config.num_train_steps)
        # Training noise of step n comes from a generator seeded by (noise_seed, n): two loss
        # calls between optimizer steps agree (validation, checks), a resumed run continues
        # the same noise, and the trainer's seed (torch's global RNG here) picks noise_seed.
        # Both stay on the CPU when the policy moves (`_apply`): the host reads them every
        # step, and a read from a GPU would wait for it.
        self.register_buffer("optimizer_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("noise_seed", torch.randint(0, 2**62, ()))
        self._queue = ActionQueue(config.action_horizon)
        self._plans: Tensor | None = None  # (B,) int64: plans made per row since its reset

    def _apply(self, fn: Any, recurse: bool = True) -> DiffusionPolicy:
        kept = {name: self._buffers[name] for name in _HOST_COUNTERS}
        super()._apply(fn, recurse)
        self._buffers.update(kept)
        return self

    # ---- training -------------------------------------------------------------------------

    def averaging(self) -> bool:
        """Whether the EMA weights run: in eval mode, once the hook has updated them (a
        hand-written loop without the hook acts with the trained weights, not the initial)."""
        return self.ema is not None and not self.training and int(self.optimizer_steps) > 0

    def denoise(self, sample: Tensor, step: Tensor, obs: Tensor) -> Tensor:
        """The denoiser's prediction (B, Tp, A); the EMA weights when `averaging()`."""
        net = self.ema["denoiser"] if self.ema is not None and self.averaging() else self.denoiser
        return net(sample, step, obs)

    def image_encoder(self, key: str) -> VisualCore:
        """The base class's camera encoder, swapped for its EMA copy when `averaging()`."""
        if self.ema is None or not self.averaging():
            return super().image_encoder(key)
        encoders = self.ema["image_encoders"]
        assert isinstance(encoders, nn.ModuleDict)
        core = encoders["shared" if self.config.camera.share_encoder else key]
        assert isinstance(core, VisualCore)
        return core

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        obs = self.first_step_features(batch)  # (B, To * Dc): the chunk's conditioning step
        obs = obs.unflatten(-1, (self.config.frame_stack, -1))  # (B, To, Dc)
        actions, mask = self.targets(batch, self.config.seq_len)  # (B, Tp, A), (B, Tp)
        b = actions.shape[0]
        x0 = _hold_last_valid(actions, mask)  # (B, Tp, A)
        gen = _seeded_generator(int(self.noise_seed), int(self.optimizer_steps))
        # Drawn on the CPU generator, then moved: the same noise on any device.
        noise = host_to_device(torch.randn(x0.shape, generator=gen), x0.device).to(x0.dtype)
        step = torch.randint(0, self.config.num_train_steps, (b,), generator=gen)  # (B,)
        step = host_to_device(step, x0.device)
        pred = self.denoise(self.schedule.add_noise(x0, noise, step), step, obs)  # (B, Tp, A)
        target = noise if self.config.prediction == "epsilon" else x0
        loss = masked_mean((pred - target).pow(2).mean(-1), mask)
        return loss, {"mse": loss.detach()}

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """EMA update (Chi et al.'s EMAModel.step), and the next step's training noise."""
        if self.ema is not None:
            cfg = self.config
            decay = ema_decay(int(self.optimizer_steps), cfg.ema_power, cfg.ema_max_decay)
            for name in _AVERAGED:  # running statistics are copied, as EMAModel does
                ema_update(dict(self.ema[name].named_buffers()), getattr(self, name), decay)
        self.optimizer_steps += 1

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

    def _act_step(self, x: Tensor, fresh: Tensor) -> Tensor:
        b, cfg = x.shape[0], self.config
        if self._plans is None or self._plans.shape[0] != b:
            self._plans = torch.zeros(b, dtype=torch.long)
        self._plans[fresh] = 0
        obs = x.unflatten(-1, (cfg.frame_stack, -1))  # (B, To, Dc)
        shape = (cfg.seq_len, self.action_dim)

        def plan(rows: Tensor) -> Tensor:
            assert self._plans is not None
            noise, eta_noise = [], []
            for row in rows.tolist():
                gen = _seeded_generator(cfg.sample_seed, int(self._plans[row]))
                noise.append(torch.randn(shape, generator=gen))  # (Tp, A)
                if cfg.ddim_eta > 0:
                    eta_noise.append(torch.randn((cfg.inference_steps, *shape), generator=gen))
            self._plans[rows] += 1
            per_update = torch.stack(eta_noise, dim=1).to(x) if eta_noise else None  # S,n,Tp,A
            return self.sample_chunk(obs[rows], torch.stack(noise).to(x), per_update)  # n,Tp,A

        return self._queue.step(fresh, plan)  # (B, A)

    def _reset_rows(self, rows: Tensor | None) -> None:
        if rows is None:
            self._queue.reset(None)
            self._plans = None


register_policy("diffusion")(DiffusionConfig)
