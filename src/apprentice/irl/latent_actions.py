"""Latent actions learnt from frames alone, behind `apprentice label-actions --from-video --latent`.

LAPO (Schmidt & Jiang 2024, "Learning to Act without Actions", Sec. 3) and Genie (Bruce et
al. 2024, Sec. 2.1) learn what happened between two frames without being told: an inverse
model q(z_t | frames around t, t + 1) and a forward model p(frame t+1 | frames t-1, t, z_t),
trained together to reconstruct frame t + 1. Through a narrow bottleneck z can only carry
what frame t does not already predict: the agent's action. A small decoder z -> a, fitted on
a little interaction where the actions are known, turns latent actions into the robot's.

    inverse: frames t-P .. t+1+Q -> `PixelIDM` (conv trunk, spatial mean, MLP, tanh)
      -> z_t (B, Dz) in [-1, 1]        (+ N(0, noise^2) while training)
    forward: x = [frame t, frame t - frame t-1] -> `ConvTrunk` (B, 32, H/4, W/4)
      -> FiLM by z_t -> conv -> upsample to H, W -> [., x] -> conv, conv -> frame t+1 - frame t
    loss:    mean squared error of that difference (pixels in [0, 1])
    decoder: z_t -> standardize -> MLP -> tanh -> a_t, fitted on the labelled steps alone
             (the latent model frozen; the mean and std of z from those steps)

The bottleneck is continuous and narrow (tanh, Dz = 8 numbers for a 32x32x3 frame), not
LAPO's and Genie's vector quantization: the actions here are continuous delta poses whose
magnitude matters, which a codebook of a few codes would quantize away, and at a few thousand
transitions a codebook collapses onto few codes without the resets LAPO needs. Gaussian noise
on z in training (`noise`) narrows it further, bounding what z carries to about
log2(2 / noise) bits a dimension; it is off by default: on squares moving by -1, 0 or +1
pixel per axis (16x16, Dz = 4, 1,200 steps) the decoded MAE was 0.09 without noise and 0.26
with noise 0.1 (0.62 guessing 0), and at Dz = 8 the frame cannot pass through z anyway.
The forward model predicts the difference of frames
rather than the frame: a step moves the gripper by about a pixel, and the unchanged
background would otherwise dominate the loss. FiLM applies z at every position, so a "move
right" found anywhere moves the gripper wherever frame t shows it.

The decoder standardizes z because z barely moves: on 20 lift videos at 32x32 (1,500 steps)
the inverse model's output varied by a std of about 0.01 around a fixed point, and a decoder
fed raw z predicted about the mean action (relative MAE 0.94 on the 3,000 steps it was fitted
on, 1.01 on the videos). Standardized, the same z decoded the videos at 0.60 (0.88 from an
untrained inverse model's z). The bottleneck is barely used: the forward model predicts
frame t+1 from frames t-1 and t as well with a shuffled z as with the true one (the motion
under way halves the error of predicting no change).

Shape legend: B batch, F frames per window, H, W pixels, Dz latent action, A action.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from apprentice.errors import ApprenticeError
from apprentice.irl.pixel_idm import (
    FrameModel,
    FrameTransitions,
    PixelIDM,
    PixelIDMConfig,
    fit_batches,
)
from apprentice.policies.encoders import ConvTrunk, norm_layer

# ---- config -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatentActionConfig:
    """The latent action model, its decoder, and their training."""

    latent_dim: int = 8
    """Dz: dimensions of a latent action."""
    noise: float = 0.0
    """Std of Gaussian noise added to z while training (narrows the bottleneck further)."""
    past_frames: int = 1
    """Frames before t the inverse model also sees."""
    future_frames: int = 1
    """Frames after t + 1 the inverse model also sees."""
    hidden_dims: tuple[int, ...] = (256, 256)
    """Hidden widths of the inverse model's MLP."""
    steps: int = 3000
    """Gradient steps training the latent model."""
    decoder_hidden_dims: tuple[int, ...] = (64, 64)
    """Hidden widths of the decoder z -> a."""
    decoder_steps: int = 2000
    """Gradient steps fitting the decoder."""
    batch_size: int = 64
    """Transitions per gradient step."""
    lr: float = 1e-3
    """Adam learning rate."""

    def __post_init__(self) -> None:
        for name in ("hidden_dims", "decoder_hidden_dims"):
            object.__setattr__(self, name, tuple(int(h) for h in getattr(self, name)))
        if min(self.latent_dim, self.steps, self.decoder_steps, self.batch_size) < 1:
            raise ApprenticeError(
                "latent actions: latent_dim, steps, decoder_steps and batch_size must be >= 1"
            )
        if self.noise < 0 or min(self.past_frames, self.future_frames) < 0:
            raise ApprenticeError("latent actions: noise, past_frames, future_frames >= 0")

    @property
    def inverse(self) -> PixelIDMConfig:
        """The inverse model's network (a PixelIDM whose 'actions' are the latent ones)."""
        return PixelIDMConfig(
            past_frames=self.past_frames,
            future_frames=self.future_frames,
            hidden_dims=self.hidden_dims,
            batch_size=self.batch_size,
            lr=self.lr,
        )


# ---- modules ------------------------------------------------------------------------------


class ForwardModel(nn.Module):
    """(frame t-1, frame t, z_t) -> frame t+1 - frame t (see the module docstring)."""

    def __init__(self, channels: int, latent_dim: int) -> None:
        super().__init__()
        self.trunk = ConvTrunk(2 * channels, "group")  # B,32,H/4,W/4
        self.film = nn.Linear(latent_dim, 2 * 32)
        self.up = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), norm_layer("group", 32), nn.ReLU())
        # The full-resolution input joins again before the last layers (a U-Net skip): a step
        # moves the gripper by about a pixel, finer than the trunk's H/4 grid.
        self.fine = nn.Sequential(
            nn.Conv2d(32 + 2 * channels, 16, 3, padding=1), norm_layer("group", 16), nn.ReLU()
        )
        self.out = nn.Conv2d(16, channels, 3, padding=1)

    def forward(self, before: Tensor, now: Tensor, z: Tensor) -> Tensor:
        """before, now (B, C, H, W) in [0, 1], z (B, Dz) -> difference (B, C, H, W)."""
        h, w = now.shape[-2:]
        x0 = torch.cat([now - 0.5, now - before], dim=1)  # B,2C,H,W
        x = self.trunk(x0)  # B,32,H/4,W/4
        scale, shift = self.film(z)[:, :, None, None].chunk(2, dim=1)  # B,32,1,1 each
        x = self.up(x * (1 + scale) + shift)  # B,32,H/4,W/4
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)  # B,32,H,W
        x = self.fine(torch.cat([x, x0], dim=1))  # B,16,H,W
        return self.out(x)  # B,C,H,W


def _mlp(width: int, hidden: tuple[int, ...], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, out), nn.Tanh())


class LatentActionModel(FrameModel):
    """The inverse and forward models over one camera's frames, and the decoder z -> a."""

    FORMAT = "apprentice-latent-actions"
    CONFIG = LatentActionConfig
    NAME = "latent action model"
    cfg: LatentActionConfig
    z_mean: Tensor
    z_std: Tensor

    def __init__(
        self, camera: str, image_shape: tuple[int, ...], action_dim: int, cfg: LatentActionConfig
    ) -> None:
        super().__init__(camera, image_shape, action_dim, cfg)
        c = self.image_shape[2]
        self.inverse = PixelIDM(camera, self.image_shape, cfg.latent_dim, cfg.inverse)
        self.forward_model = ForwardModel(c, cfg.latent_dim)
        self.decoder = _mlp(cfg.latent_dim, cfg.decoder_hidden_dims, action_dim)
        # The decoder's normalizer: mean and std of z over the steps it was fitted on.
        self.register_buffer("z_mean", torch.zeros(cfg.latent_dim))  # Dz
        self.register_buffer("z_std", torch.ones(cfg.latent_dim))  # Dz

    def reconstruction_loss(self, windows: Tensor, noise: float) -> Tensor:
        """windows (B, F, H, W, C) uint8 -> mean squared error of the predicted frame t+1 -
        frame t, with z_t from the inverse model plus N(0, noise^2)."""
        p = self.cfg.past_frames
        z = self.inverse(windows)  # B,Dz
        z = z + noise * torch.randn_like(z)
        x = windows.permute(0, 1, 4, 2, 3).float().div(255.0)  # B,F,C,H,W
        # Without past frames, frame t stands in for t-1 (no motion under way is shown).
        before, now, after = x[:, max(p - 1, 0)], x[:, p], x[:, p + 1]  # B,C,H,W each
        return (self.forward_model(before, now, z) - (after - now)).pow(2).mean()

    def latents(self, data: FrameTransitions, batch_size: int = 256) -> np.ndarray:
        """z_t of every transition of `data` (N, Dz) float32, without noise."""
        return self.inverse.label(data, batch_size)

    def label(self, data: FrameTransitions, batch_size: int = 256) -> np.ndarray:
        """The decoded action of every transition of `data` (N, A) float32."""
        return self.decode(self.latents(data, batch_size))

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Latent actions (N, Dz) -> actions (N, A) in [-1, 1]: how a policy trained in
        latent actions acts on the robot."""
        self.eval()
        with torch.no_grad():
            return self.decoder(self.standardize(torch.as_tensor(z, dtype=torch.float32))).numpy()

    def standardize(self, z: Tensor) -> Tensor:
        """z (B, Dz) -> (z - mean) / std with the decoder's statistics (B, Dz)."""
        return (z - self.z_mean) / self.z_std

    @classmethod
    def foreign(cls, path: str | Path, saved: object) -> str:
        """The error message for a file at `path` that holds `saved`, not this model."""
        return f"{path} is not a latent action model (label-actions --latent)"


# ---- training -----------------------------------------------------------------------------


def fit_latent_actions(
    frames: FrameTransitions,
    camera: str,
    action_dim: int,
    cfg: LatentActionConfig,
    *,
    seed: int,
    device: str = "cpu",
) -> tuple[LatentActionModel, float]:
    """Train the inverse and forward models on `frames` by reconstruction. Only the frames
    are read: their actions (if any) are never looked at. Returns the model (on the CPU,
    decoder untrained) and the mean loss of the last 10% of the steps."""
    if len(frames) == 0:
        raise ApprenticeError("latent actions: no transitions to learn from")
    torch.manual_seed(seed)
    model = LatentActionModel(camera, frames.frames.shape[1:], action_dim, cfg).to(device)

    def batch_loss(idx: np.ndarray) -> Tensor:
        w = frames.windows(idx, cfg.past_frames, cfg.future_frames)  # B,F,H,W,C
        return model.reconstruction_loss(torch.as_tensor(w, device=device), cfg.noise)

    model.train()
    loss = fit_batches(
        [*model.inverse.parameters(), *model.forward_model.parameters()],
        batch_loss,
        n=len(frames),
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        rng=np.random.default_rng([seed, 13]),
    )
    return model.cpu().eval(), loss


def fit_decoder(
    model: LatentActionModel, labelled: FrameTransitions, *, seed: int, device: str = "cpu"
) -> float:
    """Fit `model.decoder` (z -> a, in place) by L2 regression on `labelled`, whose frames
    the frozen inverse model turns into z, standardized by their mean and std (stored in the
    model); returns the mean loss of the last 10% of steps."""
    if len(labelled) == 0 or labelled.actions.shape[1] != model.action_dim:
        raise ApprenticeError(
            f"latent actions: the decoder needs transitions with {model.action_dim}-dim "
            f"actions, got {len(labelled)} with {labelled.actions.shape[1]}"
        )
    cfg = model.cfg
    raw = torch.as_tensor(model.latents(labelled))  # N,Dz
    model.z_mean.copy_(raw.mean(0))
    model.z_std.copy_(raw.std(0).clamp_min(1e-6))  # one labelled step has no spread
    z = model.standardize(raw).to(device)  # N,Dz
    actions = torch.as_tensor(labelled.actions, device=device)  # N,A
    torch.manual_seed(seed)
    decoder = model.decoder.to(device).train()

    def batch_loss(idx: np.ndarray) -> Tensor:
        i = torch.as_tensor(idx, device=device)  # B
        return (decoder(z[i]) - actions[i]).pow(2).mean()

    loss = fit_batches(
        decoder.parameters(),
        batch_loss,
        n=len(labelled),
        steps=cfg.decoder_steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        rng=np.random.default_rng([seed, 14]),
    )
    model.cpu().eval()
    return loss


__all__ = [
    "ForwardModel",
    "LatentActionConfig",
    "LatentActionModel",
    "fit_decoder",
    "fit_latent_actions",
]
