"""Camera encoders: uint8 frames -> a feature vector per frame (robomimic's VisualCore).

robomimic (Mandlekar et al. 2021) encodes each camera with a ResNet-18 conv trunk, a spatial
softmax that turns each of K feature maps into the expected (x, y) of its activation
(Levine et al. 2016, "deep spatial autoencoders"), and a linear layer to 64 features. The
keypoints keep *where* things are, which a global average pool throws away, and a
manipulation policy needs exactly that. Two trunks:

- `conv`: three small conv layers (84x84 -> 21x21 maps, ~8M multiply-adds per image), the
  practical default on a CPU;
- `resnet18`: the BasicBlock ResNet-18 of He et al. 2016 in torchvision's parameter layout,
  so a torchvision `resnet18` state_dict saved to a local file loads as is
  (`pretrained_path`; nothing is ever downloaded).

Normalization: GroupNorm (Diffusion Policy, Chi et al. 2023, replaces ResNet's BatchNorm with
it: BatchNorm's running statistics drift under small batches and EMA weights), BatchNorm, or
none.

Shape legend: N images (B * To in training), C channels, H, W pixels, K keypoints, Df features.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import torch
from torch import Tensor, nn

from apprentice.errors import ApprenticeError
from apprentice.policies.augment import ImageAugment

ENCODERS = ("conv", "resnet18")
NORMS = ("group", "batch", "none")
# torchvision's ImageNet statistics: what pretrained trunks expect, harmless from scratch.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CameraConfig:
    """How a policy encodes its cameras (its `image_keys`) and augments their frames in
    training: the `camera` field of every policy config. On the command line its fields go
    by name (`--policy-args encoder=resnet18 random_shift=0`) or by path (`camera.encoder=...`).
    """

    encoder: str = "conv"
    """Camera encoder trunk: conv (3 small layers, the CPU default) or resnet18 (robomimic)."""
    feature_dim: int = 64
    """Features per camera: the linear layer after the spatial softmax (robomimic: 64)."""
    num_keypoints: int = 32
    """Spatial-softmax keypoints per camera (robomimic: 32)."""
    encoder_norm: str = "group"
    """Normalization in the encoder: group (GroupNorm, as Diffusion Policy), batch or none."""
    share_encoder: bool = False
    """One encoder for all cameras (their images must have one size) instead of one each."""
    random_shift: int = 4
    """Training augmentation: pad by this many pixels and crop at a random offset (DrQ); 0 = off."""
    color_jitter: float = 0.0
    """Training augmentation: strength of random brightness/contrast/saturation/hue; 0 = off."""
    pretrained_path: str | None = None
    """resnet18: a local torchvision resnet18 state_dict file to start from (never downloaded)."""
    encoder_checkpoint: str | None = None
    """Start the encoders from `apprentice pretrain-encoder` files: one file, or one per camera
    comma-separated (each file names its camera); their camera settings must be these."""
    freeze_encoder: bool = False
    """Never train the encoders: eval mode, no augmentation, and in training each frame's
    features computed once and cached, not every step."""

    def __post_init__(self) -> None:
        checks = [
            (
                self.encoder in ENCODERS,
                f"unknown encoder {self.encoder!r}; known: {', '.join(ENCODERS)}",
            ),
            (
                self.encoder_norm in NORMS,
                f"unknown encoder_norm {self.encoder_norm!r}; known: {', '.join(NORMS)}",
            ),
            (
                self.feature_dim >= 1 and self.num_keypoints >= 1,
                "feature_dim and num_keypoints must be >= 1",
            ),
            (self.random_shift >= 0, f"random_shift must be >= 0, got {self.random_shift}"),
            (
                0 <= self.color_jitter <= 1,
                f"color_jitter must be in [0, 1], not {self.color_jitter}",
            ),
            (
                self.pretrained_path is None
                or (self.encoder == "resnet18" and self.encoder_norm != "none"),
                "pretrained_path needs encoder=resnet18 with encoder_norm batch or group",
            ),
            (
                self.pretrained_path is None or self.encoder_checkpoint is None,
                "give pretrained_path or encoder_checkpoint, not both",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ApprenticeError(f"camera config: {message}")

    def build(self, image_shape: tuple[int, ...]) -> VisualCore:
        """The encoder of one camera whose frames are `image_shape` (H, W, C)."""
        return VisualCore(
            image_shape,
            encoder=self.encoder,
            feature_dim=self.feature_dim,
            num_keypoints=self.num_keypoints,
            norm=self.encoder_norm,
            shift_pad=self.random_shift,
            color_strength=self.color_jitter,
            frozen=self.freeze_encoder,
        )


def norm_layer(kind: str, channels: int) -> nn.Module:
    """GroupNorm with 16 channels per group (Diffusion Policy), BatchNorm, or nothing."""
    if kind == "group":
        return nn.GroupNorm(max(1, channels // 16), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class SpatialSoftmax(nn.Module):
    """Feature maps (N, C, H, W) -> K keypoints (N, K, 2): the expected (x, y) in [-1, 1].

    A 1x1 conv first maps C channels to K (robomimic); `num_keypoints=None` uses the C
    channels as they are. x runs along the width (left -1, right +1), y along the height.
    """

    def __init__(
        self, in_channels: int, num_keypoints: int | None = 32, temperature: float = 1.0
    ) -> None:
        super().__init__()
        self.keypoints: nn.Module = (
            nn.Identity() if num_keypoints is None else nn.Conv2d(in_channels, num_keypoints, 1)
        )
        self.temperature = temperature

    def forward(self, feat: Tensor) -> Tensor:
        maps = self.keypoints(feat)  # (N, K, H, W)
        n, k, h, w = maps.shape
        attention = (maps.reshape(n, k, h * w) / self.temperature).softmax(-1)  # (N, K, HW)
        ys = torch.linspace(-1.0, 1.0, h, dtype=attention.dtype, device=attention.device)  # (H,)
        xs = torch.linspace(-1.0, 1.0, w, dtype=attention.dtype, device=attention.device)  # (W,)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
        x = attention @ grid_x.reshape(h * w, 1)  # (N, K, 1)
        y = attention @ grid_y.reshape(h * w, 1)  # (N, K, 1)
        return torch.cat([x, y], dim=-1)  # (N, K, 2)


class ConvTrunk(nn.Module):
    """Three conv layers: stride 2, 2, 1 (84x84 -> 21x21, 32 channels); the CPU default."""

    def __init__(self, in_channels: int, norm: str) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5, stride=2, padding=2),
            norm_layer(norm, 16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            norm_layer(norm, 32),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1, padding=1),
            norm_layer(norm, 32),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # (N, 32, H/4, W/4)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (He et al. 2016); torchvision's names."""

    def __init__(self, in_channels: int, channels: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(norm, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = norm_layer(norm, channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            # The shortcut must match the block's output shape to be added to it.
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                norm_layer(norm, channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (N, C', H', W')
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet18Trunk(nn.Module):
    """ResNet-18 without its pooling and classifier: (N, C, H, W) -> (N, 512, H/32, W/32)."""

    def __init__(self, in_channels: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(norm, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths, strides = (64, 128, 256, 512), (1, 2, 2, 2)
        in_ch = 64
        for i, (width, stride) in enumerate(zip(widths, strides, strict=True), start=1):
            blocks = [BasicBlock(in_ch, width, stride, norm), BasicBlock(width, width, 1, norm)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            in_ch = width
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 64, H/4, W/4)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x  # (N, 512, H/32, W/32)

    def load_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Load a torchvision-layout resnet18 state_dict from a local file (never downloads).

        The classifier (`fc.*`) is dropped. With GroupNorm, BatchNorm's affine weights become
        the GroupNorm's and its running statistics are dropped, as Diffusion Policy does.
        """
        p = Path(path)
        if not p.is_file():
            raise ApprenticeError(
                f"pretrained_path {p} does not exist; ResNet-18 weights are read only from a "
                "local file (a torchvision resnet18 state_dict saved with torch.save), never "
                "downloaded"
            )
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for foreign or truncated files
            raise ApprenticeError(
                f"pretrained_path {p} is not a readable torch state_dict ({type(exc).__name__})"
            ) from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ApprenticeError(f"pretrained_path {p} holds a {type(state).__name__}, not a dict")
        stats = ("running_mean", "running_var", "num_batches_tracked")
        weights = {
            k.removeprefix("module."): v
            for k, v in state.items()
            if not k.removeprefix("module.").startswith("fc.")
            and (self.norm == "batch" or not k.endswith(stats))
        }
        missing, unexpected = self._diff(weights)
        if missing or unexpected:
            raise ApprenticeError(
                f"pretrained_path {p} is not a resnet18 state_dict for encoder_norm="
                f"{self.norm!r}: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        try:
            self.load_state_dict(weights)
        except RuntimeError as exc:
            raise ApprenticeError(
                f"pretrained_path {p}: weights do not fit ResNet-18 ({str(exc).splitlines()[-1]})"
            ) from None

    def _diff(self, weights: dict[str, Tensor]) -> tuple[list[str], list[str]]:
        own = set(self.state_dict())
        return sorted(own - set(weights)), sorted(set(weights) - own)


class VisualCore(nn.Module):
    """uint8 frames (N, H, W, C) -> features (N, Df): augment, trunk, spatial softmax, linear.

    Frames become float in [0, 1] here, are augmented in train mode, then normalized with
    ImageNet statistics (RGB) or to [-1, 1] (other channel counts). A `frozen` encoder has no
    trainable parameters and stays in eval mode (no augmentation) whatever mode its policy is
    put in, so its features are a fixed function of the frame, which training may cache.
    """

    pixel_mean: Tensor
    pixel_std: Tensor

    def __init__(
        self,
        image_shape: tuple[int, ...],
        *,
        encoder: str = "conv",
        feature_dim: int = 64,
        num_keypoints: int = 32,
        norm: str = "group",
        shift_pad: int = 4,
        color_strength: float = 0.0,
        frozen: bool = False,
    ) -> None:
        super().__init__()
        if len(image_shape) != 3:
            raise ApprenticeError(f"camera images must be (H, W, C), got shape {image_shape}")
        h, w, c = (int(s) for s in image_shape)
        self.image_shape = (h, w, c)
        self.augment = ImageAugment(shift_pad=shift_pad, color_strength=color_strength)
        self.trunk: ConvTrunk | ResNet18Trunk = (
            ResNet18Trunk(c, norm) if encoder == "resnet18" else ConvTrunk(c, norm)
        )
        with torch.no_grad():
            maps = self.trunk.eval()(torch.zeros(1, c, h, w))  # (1, C', H', W')
        self.trunk.train()
        self.pool = SpatialSoftmax(maps.shape[1], num_keypoints)
        self.linear = nn.Linear(2 * num_keypoints, feature_dim)
        mean, std = (_IMAGENET_MEAN, _IMAGENET_STD) if c == 3 else ((0.5,) * c, (0.5,) * c)
        # Constants, not learned or saved: they follow from the channel count.
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, c, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, c, 1, 1), persistent=False)
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True) -> Self:
        return super().train(mode and not self.frozen)

    def forward(self, images: Tensor, group: int = 1) -> Tensor:
        """images (N, H, W, C) uint8 -> (N, Df); `group` frames in a row share augmentation."""
        return self.linear(self.keypoints(images, group).flatten(1))  # (N, Df)

    def keypoints(self, images: Tensor, group: int = 1) -> Tensor:
        """images (N, H, W, C) uint8 -> spatial-softmax keypoints (N, K, 2), before the linear."""
        # contiguous: a channels-last view would make every conv reorder its input.
        x = images.permute(0, 3, 1, 2).contiguous().float().div(255.0)  # (N, C, H, W), [0, 1]
        x = self.augment(x, group)
        x = (x - self.pixel_mean) / self.pixel_std
        return self.pool(self.trunk(x))  # (N, K, 2)

    def load_pretrained(self, path: str | os.PathLike[str]) -> None:
        if not isinstance(self.trunk, ResNet18Trunk):
            raise ApprenticeError("pretrained_path needs encoder=resnet18")
        self.trunk.load_pretrained(path)
