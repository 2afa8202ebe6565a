"""What the generative chunk policies (`diffusion`, `flow`) share: an action chunk drawn from
seeded noise by a network conditioned on the last To observations, run with a receding horizon.

Each policy brings its own training loss and sampler (`forward`, `plan_chunk`); this module
holds the rest:

- Config (`GenerativeChunkConfig`): the horizons, the network (`denoisers.py`: a 1D temporal
  U-Net or a transformer, both `forward(sample, step, obs)`) and its sizes, the EMA and the
  act-time noise seed, validated in one place.
- Training inputs (`training_chunk`): the window's first step is the conditioning (its To
  frames, frame_stack); its Tp = seq_len actions are the clean chunk, the padded steps past an
  episode's end holding the last real action (the sampler's edge padding, re-applied here so
  their values never matter; the loss masks them). The training noise of optimizer step n
  comes from a generator seeded by (noise_seed, n) (`training_generator`): two loss calls
  between optimizer steps agree (validation, checks), a resumed run continues the same noise,
  and the trainer's seed (torch's global RNG here) picks noise_seed.
- EMA (Chi et al. 2023's EMAModel, power-law warmup): a shadow copy of the network's and the
  camera encoders' weights, stored as buffers (in every checkpoint, never in `parameters()`),
  is updated after every optimizer step and used whenever the policy is in eval mode (act,
  validation loss, export).
- Run time (receding horizon): execute the first Ta = action_horizon actions of a chunk, then
  plan again (`chunking.ActionQueue`). A row's n-th plan since its reset is
  `plan_chunk(obs, n)`, whose noise depends on (sample_seed, n) alone: actions are a function
  of the observations since the row's reset, so a reset replays and `act_batch` rows equal
  separate `act` streams.

Shape legend: B batch, To observation steps (= frame_stack), Tp prediction horizon
(= seq_len), Ta executed steps, A action, Dc observation features per step, n rows planned now.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from apprentice.data.spec import ObsActSpec
from apprentice.errors import ApprenticeError
from apprentice.policies.averaging import ema_decay, ema_update
from apprentice.policies.base import Policy, PolicyConfig, RunState
from apprentice.policies.chunking import ActionQueue
from apprentice.policies.denoisers import ConditionalUnet1D, MlpDenoiser, TransformerDenoiser
from apprentice.policies.encoders import VisualCore

_DENOISERS = ("unet", "transformer", "mlp")
_AVERAGED = ("denoiser", "image_encoders")  # the trained submodules the EMA shadows
_HOST_COUNTERS = ("optimizer_steps", "noise_seed")  # buffers kept on the CPU


@dataclass(frozen=True)
class GenerativeChunkConfig(PolicyConfig):
    """Horizons, network, EMA and act-time seed of a policy that samples action chunks."""

    RUN_TIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"action_horizon", "sample_seed"})

    seq_len: int = 16
    """Prediction horizon Tp: actions per sampled chunk (Chi et al.: 16)."""
    frame_stack: int = 2
    """Observation horizon To: frames conditioning each chunk (Chi et al.: 2)."""
    action_horizon: int = 8
    """Execution horizon Ta: actions of a chunk executed before planning again (<= seq_len)."""
    denoiser: str = "unet"
    """Network: "unet" (1D temporal U-Net, FiLM), "transformer" (cross-attention) or "mlp"
    (the flat chunk through an MLP: far cheaper per step, for low-dim tasks)."""
    unet_channels: tuple[int, ...] = (64, 128, 256)
    """U-Net channels per level (Chi et al.: 256, 512, 1024); Tp % 2^(levels-1) must be 0."""
    unet_kernel_size: int = 5
    """U-Net Conv1d kernel size over time (odd)."""
    unet_groups: int = 8
    """GroupNorm groups of the U-Net; must divide every channel count."""
    step_embed_dim: int = 64
    """U-Net step (or flow time) embedding size (Chi et al.: 256); even."""
    embed_dim: int = 128
    """Transformer token width E (Chi et al.: 256); divisible by num_heads."""
    num_layers: int = 4
    """Transformer decoder layers (Chi et al.: 8)."""
    num_heads: int = 4
    """Transformer attention heads (Chi et al.: 4)."""
    mlp_hidden_dims: tuple[int, ...] = (1024, 1024, 1024)
    """Hidden widths of the "mlp" network (LayerNorm + Mish after each)."""
    dropout: float = 0.0
    """Transformer dropout (Chi et al.: 0.01 low-dim, 0.3 image); 0 keeps the loss a pure
    function of weights, batch and step."""
    ema: bool = True
    """Keep an exponential moving average of the network's and camera encoders' weights,
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
                    f"{self.name} policy: {name} must be integers, got {getattr(self, name)!r}"
                ) from None
            object.__setattr__(self, name, widths)
        levels = len(self.unet_channels)
        self.refuse_unless(
            (
                self.denoiser in _DENOISERS,
                f"unknown denoiser {self.denoiser!r}; known: {', '.join(_DENOISERS)}",
            ),
            (
                1 <= self.action_horizon <= self.seq_len,
                f"action_horizon must be in 1..seq_len={self.seq_len}, got {self.action_horizon}",
            ),
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
        )

    def refuse_unless(self, *checks: tuple[bool, str]) -> None:
        """Raise one ApprenticeError, "<name> policy: <message>", for the first failed check."""
        for ok, message in checks:
            if not ok:
                raise ApprenticeError(f"{self.name} policy: {message}")

    @property
    def chunk_size(self) -> int:
        """Tp: `chunking.check_horizon` refuses a chunk longer than the median demo."""
        return self.seq_len

    @property
    def keeps_ema(self) -> bool:
        """With `ema`, the policy averages its own weights (and saves them in its checkpoints),
        so the trainer's EMA (`TrainConfig.ema_decay`) is refused on top of it."""
        return self.ema


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


def hold_last_valid(actions: Tensor, mask: Tensor) -> Tensor:
    """actions (B, Tp, A) with every masked step (mask (B, Tp) == 0) replaced by the latest
    valid action before it, so padded values never reach the network's input."""
    b, tp, a = actions.shape
    steps = torch.arange(tp, device=actions.device).expand(b, tp)  # (B, Tp)
    src = torch.where(mask > 0, steps, torch.zeros_like(steps)).cummax(dim=1).values  # (B, Tp)
    return actions.gather(1, src[..., None].expand(b, tp, a))  # (B, Tp, A)


def seeded_generator(*entropy: int) -> torch.Generator:
    """A torch generator whose seed mixes all of `entropy` (numpy's SeedSequence hashing)."""
    seed = int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(seed)


def _mirror_step_count(module: nn.Module, _incompatible: Any) -> None:
    """After load_state_dict: the loaded optimizer_steps decide whether the EMA acts."""
    assert isinstance(module, GenerativeChunkPolicy)
    module.stepped = int(module.optimizer_steps) > 0


class GenerativeChunkPolicy(Policy):
    """obs of the To frames -> a chunk (Tp, A) sampled from seeded noise -> its first Ta
    actions, queued. Subclasses define `forward` (the loss) and `plan_chunk` (the sampler)."""

    config: GenerativeChunkConfig
    optimizer_steps: Tensor
    noise_seed: Tensor

    def __init__(
        self, config: GenerativeChunkConfig, spec: ObsActSpec, normalizer_state: dict[str, Any]
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
        # Both counters stay on the CPU when the policy moves (`_apply`): the host reads them
        # every step, and a read from a GPU would wait for it.
        self.register_buffer("optimizer_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("noise_seed", torch.randint(0, 2**62, ()))
        self.stepped = False
        """optimizer_steps > 0 as a Python bool: `averaging` reads it, because a graph being
        exported (torch.export) cannot branch on a buffer's value."""
        self.register_load_state_dict_post_hook(_mirror_step_count)
        self.replica = 0
        """The data-parallel replica this copy trains as (`as_replica`): its noise's too."""
        self._queue = ActionQueue(config.action_horizon)
        self._plans: Tensor | None = None  # (B,) int64: plans made per row since its reset

    def _apply(self, fn: Any, recurse: bool = True) -> GenerativeChunkPolicy:
        kept = {name: self._buffers[name] for name in _HOST_COUNTERS}
        super()._apply(fn, recurse)
        self._buffers.update(kept)
        return self

    # ---- training -------------------------------------------------------------------------

    def averaging(self) -> bool:
        """Whether the EMA weights run: in eval mode, once the hook has updated them (a
        hand-written loop without the hook acts with the trained weights, not the initial)."""
        return self.ema is not None and not self.training and self.stepped

    def denoise(self, sample: Tensor, step: Tensor, obs: Tensor) -> Tensor:
        """The network's output (B, Tp, A) for sample (B, Tp, A), step (B,), obs (B, To, Dc);
        the EMA weights when `averaging()`."""
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

    def training_chunk(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """A window batch's conditioning obs (B, To, Dc), clean chunk (B, Tp, A), with padded
        steps holding the last real action, and mask (B, Tp)."""
        obs = self.first_step_features(batch)  # (B, To * Dc): the chunk's conditioning step
        obs = obs.unflatten(-1, (self.config.frame_stack, -1))  # (B, To, Dc)
        actions, mask = self.targets(batch, self.config.seq_len)  # (B, Tp, A), (B, Tp)
        return obs, hold_last_valid(actions, mask), mask

    def training_generator(self) -> torch.Generator:
        """The CPU generator of this optimizer step's training noise, seeded by
        (noise_seed, optimizer_steps) and, for a replica other than 0, its rank; draw on it,
        then move: the same noise on any device."""
        replica = (self.replica,) if self.replica else ()
        return seeded_generator(int(self.noise_seed), int(self.optimizer_steps), *replica)

    def as_replica(self, rank: int) -> None:
        self.replica = rank

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """EMA update (Chi et al.'s EMAModel.step), and the next step's training noise."""
        if self.ema is not None:
            cfg = self.config
            decay = ema_decay(int(self.optimizer_steps), cfg.ema_power, cfg.ema_max_decay)
            for name in _AVERAGED:  # running statistics are copied, as EMAModel does
                ema_update(dict(self.ema[name].named_buffers()), getattr(self, name), decay)
        self.optimizer_steps += 1
        self.stepped = True

    # ---- run time --------------------------------------------------------------------------

    def plan_chunk(self, obs: Tensor, plans: Tensor) -> Tensor:
        """The chunk (n, Tp, A) for obs (n, To, Dc), each row's plans (n,) int64 made since its
        reset: the policy's sampler from the noise that (sample_seed, plan) fixes."""
        raise NotImplementedError

    def _act_step(self, x: Tensor, fresh: Tensor) -> Tensor:
        b, cfg = x.shape[0], self.config
        if self._plans is None or self._plans.shape[0] != b:
            self._plans = torch.zeros(b, dtype=torch.long)
        self._plans[fresh] = 0
        obs = x.unflatten(-1, (cfg.frame_stack, -1))  # (B, To, Dc)

        def plan(rows: Tensor) -> Tensor:
            assert self._plans is not None
            plans = self._plans[rows]  # (n,): advanced indexing copies
            self._plans[rows] += 1
            return self.plan_chunk(obs[rows], plans)  # (n, Tp, A)

        return self._queue.step(fresh, plan)  # (B, A)

    def _reset_rows(self, rows: Tensor | None) -> None:
        if rows is None:
            self._queue.reset(None)
            self._plans = None

    def _row_state(self) -> RunState:
        plans = {} if self._plans is None else {"plans": self._plans}  # (B,)
        return {**self._queue.row_state(), **plans}

    def _load_row_state(self, state: RunState) -> None:
        self._queue.load_row_state(state)
        self._plans = state.get("plans")
