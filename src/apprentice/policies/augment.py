"""Image augmentation for training: random shift (DrQ) and color jitter, inside the model.

Augmentation runs on float images in [0, 1] after the encoder's uint8 -> float conversion, so
datasets, samplers and batches keep images as uint8 (4x less memory than float32) and the
sampler stays a pure gather. It is active only in train mode: `Policy.act` runs in eval mode
and sees the camera frames unchanged.

Frames of one training window can share one draw (`group`): a frame stack whose frames moved
by different random offsets would show motion that never happened (DrQ shifts the stacked
frames of an observation together).

Shape legend: N images, C channels, H height, W width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from apprentice.policies.transfer import host_to_device

# RGB <-> YIQ (NTSC): hue is the angle of the (I, Q) chroma vector, so a hue shift is a
# rotation in that plane and luma (Y) is untouched.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
_LUMA = _RGB_TO_YIQ[0]  # (3,) grayscale weights


def _draws(n: int, group: int, generator: torch.Generator | None) -> Tensor:
    """n uniform draws in [-1, 1), one per group of `group` consecutive images."""
    if n % group:
        raise ValueError(f"{n} images do not split into groups of {group}")
    u = torch.rand(n // group, generator=generator) * 2.0 - 1.0  # (N / group,)
    return u.repeat_interleave(group)  # (N,)


def random_shift(
    x: Tensor, pad: int, *, group: int = 1, generator: torch.Generator | None = None
) -> Tensor:
    """Translate each image by a random integer offset in [-pad, pad]^2 (DrQ).

    Kostrikov et al. 2021 (DrQ): pad by `pad` pixels repeating the border, then crop the
    original size at a random position. x (N, C, H, W) -> (N, C, H, W), same dtype.
    """
    if pad <= 0:
        return x
    n, _, h, w = x.shape
    if n % group:
        raise ValueError(f"{n} images do not split into groups of {group}")
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")  # (N, C, H + 2p, W + 2p)
    # Offsets come from the (CPU) generator, so a seed draws the same shifts on any device.
    dy = host_to_device(torch.randint(0, 2 * pad + 1, (n // group,), generator=generator), x.device)
    dx = host_to_device(torch.randint(0, 2 * pad + 1, (n // group,), generator=generator), x.device)
    rows = dy.repeat_interleave(group)[:, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = dx.repeat_interleave(group)[:, None] + torch.arange(w, device=x.device)  # (N, W)
    idx = torch.arange(n, device=x.device)[:, None, None]  # (N, 1, 1)
    # Advanced indexing on (N, H', W', C) gathers every image's crop at once.
    out = padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2)


def color_jitter(
    x: Tensor, strength: float, *, group: int = 1, generator: torch.Generator | None = None
) -> Tensor:
    """Random brightness, contrast, saturation and hue per image, as torchvision's ColorJitter.

    x (N, C, H, W) in [0, 1] -> a new tensor in [0, 1]. Brightness, contrast and saturation
    factors are drawn from [1 - s, 1 + s]; the hue rotates by up to s * pi in YIQ space.
    Saturation and hue need RGB (C = 3) and are skipped otherwise.
    """
    if strength <= 0:
        return x
    n, c = x.shape[:2]

    def factor() -> Tensor:
        draws = host_to_device(_draws(n, group, generator), x.device).to(x.dtype)  # CPU draws
        return (1.0 + strength * draws).view(n, 1, 1, 1)  # (N, 1, 1, 1)

    x = x * factor()  # brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    x = (x - mean) * factor() + mean  # contrast
    if c == 3:
        luma = host_to_device(_LUMA, x.device).to(x.dtype)  # (3,)
        gray = torch.einsum("nchw,c->nhw", x, luma)[:, None]  # (N, 1, H, W)
        x = (x - gray) * factor() + gray  # saturation
        angle = strength * math.pi * _draws(n, group, generator)  # (N,)
        cos, sin = angle.cos(), angle.sin()
        rot = torch.zeros(n, 3, 3)
        rot[:, 0, 0] = 1.0
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
        mix = _YIQ_TO_RGB @ rot @ _RGB_TO_YIQ  # (N, 3, 3) RGB -> RGB, built on the CPU
        mix = host_to_device(mix, x.device).to(x.dtype)
        x = torch.einsum("nij,njhw->nihw", mix, x)  # hue
    return x.clamp(0.0, 1.0)


class ImageAugment(nn.Module):
    """Training-time augmentation of float images in [0, 1]; the identity in eval mode."""

    def __init__(self, *, shift_pad: int = 4, color_strength: float = 0.0) -> None:
        super().__init__()
        if shift_pad < 0 or color_strength < 0:
            raise ValueError("shift_pad and color_strength must be >= 0")
        self.shift_pad = shift_pad
        self.color_strength = color_strength

    def forward(self, x: Tensor, group: int = 1) -> Tensor:
        """x (N, C, H, W) -> (N, C, H, W); `group` consecutive images share one draw."""
        if not self.training:
            return x
        x = color_jitter(x, self.color_strength, group=group)
        return random_shift(x, self.shift_pad, group=group)
